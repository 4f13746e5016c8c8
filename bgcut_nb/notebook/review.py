"""Review cut-outs one by one, worst first, and pay only for the approved ones.

:class:`ReviewWidget` (``out.bgcut.review("cutout")``) walks a processed frame's rows in
:func:`review_order` (``bgcut_risk`` descending when the frame has it, then the number of
``bgcut_flags``, else the frame's own order), shows the original and the cut-out over a
checkerboard and over a flat colour, and takes approve / reject / skip by button or key:

====================  =====================================================
key                   action
====================  =====================================================
``a``                 approve this row, go to the next
``r``                 reject this row, go to the next
space                 skip: leave the decision as it is, go to the next
``u``                 clear this row's decision (undecided again)
right / down arrow    next row
left / up arrow       previous row
====================  =====================================================

Keys are caught with `ipyevents <https://github.com/mwcraig/ipyevents>`_ while the mouse
pointer is over the widget (the element with CSS class ``bgcut-review``): it takes the
keyboard focus on hover and stops the keys reaching JupyterLab, so ``a`` approves instead of
inserting a cell. Each decision is saved at once in the reuse cache by (image SHA-256, variant
name), so the same image in another row, a re-run or a restarted kernel finds it again;
:func:`reviewed` reads them back into a ``bgcut_review`` column (``"approved"``,
``"rejected"``, ``""`` for undecided).

Drafts (``df.bgcut.process(variants, draft=True)``) are the same variants capped at
:data:`DRAFT_MAX_PIXELS` and rendered by the local engine into ``<out_dir>-draft``
(:func:`draft_variants`, :func:`draft_dir`); ``process(..., only="approved")`` then renders
only approved rows (:func:`review_decisions`, :func:`skip_reasons`).
"""

from __future__ import annotations

import html
import math
import os
from collections.abc import Hashable, Iterable, Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import ipywidgets as widgets
import pandas as pd

from ..batch.columns import META_KEY, check_image_col, frame_meta, infer_image_col
from ..batch.reuse import ReuseCache, sha256_bytes, sha256_file
from ..contract.variants import Variant, parse_variants
from ..core.sources import image_source
from .widgets import (
    _base_dir,
    _card,
    _fill,
    _note,
    _row_error,
    _variant_names,
    row_label,
)

__all__ = [
    "ReviewWidget",
    "REVIEW_COL",
    "RISK_COL",
    "FLAGS_COL",
    "SKIPPED_COL",
    "DRAFT_MAX_PIXELS",
    "FLAT_COLOUR",
    "REVIEW_SIZE",
    "review_order",
    "image_hashes",
    "reviewed",
    "review_decisions",
    "skip_reasons",
    "draft_variants",
    "draft_dir",
]

#: The column holding each row's decision: ``"approved"``, ``"rejected"`` or ``""``.
REVIEW_COL = "bgcut_review"
#: Quality signals the review sorts by when a frame has them (larger risk = worse).
RISK_COL = "bgcut_risk"
FLAGS_COL = "bgcut_flags"
#: Why ``process(..., only="approved")`` left a row alone (``""`` where it processed it).
SKIPPED_COL = "bgcut_skipped"
#: Pixel budget of a draft output: 0.25 MP (500x500), enough to judge a cut-out on screen.
DRAFT_MAX_PIXELS = 250_000
#: Default flat colour behind the cut-out (chroma green: halos and leftovers stand out).
FLAT_COLOUR = "#00b140"
#: Long side of the review's images, in pixels (three side by side fit a 1024 px window).
REVIEW_SIZE = 288

_KEYS = {
    "a": "approve",
    "r": "reject",
    " ": "skip",
    "Spacebar": "skip",
    "u": "clear",
    "ArrowRight": "next",
    "ArrowDown": "next",
    "ArrowLeft": "previous",
    "ArrowUp": "previous",
}
#: JupyterLab's theme colours (readable in light and dark themes), with fallbacks elsewhere.
_DECISION_COLOURS = {
    "approved": "var(--jp-success-color1, #1b7f3b)",
    "rejected": "var(--jp-error-color1, #b00020)",
}


# -- order, hashes and decisions -------------------------------------------------------------
def _risk(value: object) -> float | None:
    try:
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    return None if math.isnan(number) else number


def _flag_count(value: object) -> int:
    if not isinstance(value, str):
        return 0
    return sum(1 for name in value.split(",") if name.strip())


def review_order(frame: pd.DataFrame) -> list[int]:
    """Row positions, worst first: ``bgcut_risk`` descending (rows without one after those
    with one), then more ``bgcut_flags`` first, then the frame's order. Without either column
    it is the frame's order."""
    risks = frame[RISK_COL].tolist() if RISK_COL in frame.columns else [None] * len(frame)
    flags = frame[FLAGS_COL].tolist() if FLAGS_COL in frame.columns else [""] * len(frame)

    def key(pos: int) -> tuple:
        risk = _risk(risks[pos])
        return (risk is None, -(risk or 0.0), -_flag_count(flags[pos]), pos)

    return sorted(range(len(frame)), key=key)


def image_hashes(
    values: Iterable[object], base_dir: Path | None, cache: ReuseCache | None
) -> list[str | None]:
    """SHA-256 of each row's image bytes (``None`` where it cannot be read); file hashes are
    remembered in ``cache`` by path, size and modification time."""
    hashes: list[str | None] = []
    for value in values:
        source = image_source(value, base_dir)
        if isinstance(source, bytes):
            hashes.append(sha256_bytes(source))
            continue
        try:
            if source is None:
                raise OSError("no image")
            hashes.append(cache.file_sha256(source) if cache is not None else sha256_file(source))
        except OSError:
            hashes.append(None)
    return hashes


def _decision(value: object) -> str:
    text = value.strip().lower() if isinstance(value, str) else ""
    return text if text in ("approved", "rejected") else ""


def _pick_variant(frame: pd.DataFrame, variant: str | None) -> str:
    if variant is not None:
        return str(variant)
    names = _variant_names(frame)
    if not names:
        raise ValueError("bgcut: name the variant whose decisions you mean, e.g. 'cutout'")
    return names[0]


def _image_col(frame: pd.DataFrame, image_col: Hashable | None) -> Hashable:
    return infer_image_col(frame) if image_col is None else check_image_col(frame, image_col)


def reviewed(
    frame: pd.DataFrame,
    variant: str | None = None,
    *,
    cache: ReuseCache,
    image_col: Hashable | None = None,
    base_dir: str | os.PathLike[str] | None = None,
) -> pd.DataFrame:
    """A copy of ``frame`` with ``bgcut_review`` filled from the decisions in ``cache``.

    ``variant`` defaults to the frame's first variant; ``base_dir`` to the one the run that made
    ``frame`` resolved relative paths against. Rows whose image cannot be read get ``""``.
    """
    name = _pick_variant(frame, variant)
    col = _image_col(frame, image_col)
    hashes = image_hashes(frame[col].tolist(), _base_dir(frame, base_dir), cache)
    out = frame.copy()
    out[REVIEW_COL] = [cache.get_review(sha, name) if sha else "" for sha in hashes]
    out.attrs[META_KEY] = {**frame_meta(frame), "review_variant": name}
    return out


def review_decisions(
    frame: pd.DataFrame,
    values: Sequence[object],
    variant: str,
    *,
    base_dir: Path | None,
    cache: ReuseCache | None,
) -> list[str]:
    """Each row's decision: the frame's ``bgcut_review`` column where it has one (so decisions
    edited in pandas count), else the cache's decisions on ``variant`` for the rows' images."""
    if REVIEW_COL in frame.columns:
        return [_decision(value) for value in frame[REVIEW_COL].tolist()]
    if cache is None:
        raise ValueError(
            "bgcut: only='approved' needs review decisions: a bgcut_review column or the cache"
        )
    hashes = image_hashes(values, base_dir, cache)
    return [cache.get_review(sha, variant) if sha else "" for sha in hashes]


def skip_reasons(decisions: Sequence[str], variant: str) -> list[str]:
    """``bgcut_skipped`` for ``only="approved"``: ``""`` for approved rows, else why not."""
    return [
        ""
        if decision == "approved"
        else f"not approved: {decision or 'undecided'} (review of {variant!r})"
        for decision in decisions
    ]


# -- drafts ----------------------------------------------------------------------------------
def draft_variants(
    variants: Iterable[Variant | Mapping[str, Any]] | Variant | Mapping[str, Any],
) -> list[Variant]:
    """The same variants (names, formats, tiers) with ``max_resolution`` capped at
    :data:`DRAFT_MAX_PIXELS`: their own cache entries, their own file names."""
    return [
        replace(v, max_resolution=min(v.max_resolution, DRAFT_MAX_PIXELS))
        for v in parse_variants(variants)
    ]


def draft_dir(out_dir: str | os.PathLike[str]) -> Path:
    """Where drafts go: ``<out_dir>-draft`` beside ``out_dir``, so finals never mix with them."""
    target = Path(out_dir).expanduser().resolve()
    return target.with_name(f"{target.name}-draft")


# -- the widget --------------------------------------------------------------------------------
class ReviewWidget(widgets.VBox):
    """Approve or reject a processed frame's cut-outs, worst first (see the module docstring).

    ``frame`` (a property) is the frame with ``bgcut_review``; :meth:`approve`, :meth:`reject`,
    :meth:`skip`, :meth:`clear`, :meth:`next`, :meth:`previous` and :meth:`handle_key` drive it
    from code as the buttons and keys do. With ``cache=None`` decisions live in the widget only.
    """

    def __init__(
        self,
        frame: pd.DataFrame,
        variant: str | None = None,
        *,
        cache: ReuseCache | None,
        image_col: Hashable | None = None,
        base_dir: str | os.PathLike[str] | None = None,
        thumb_size: int = REVIEW_SIZE,
        flat_colour: str = FLAT_COLOUR,
    ) -> None:
        super().__init__()
        self.variant = _pick_variant(frame, variant)
        if f"{self.variant}_path" not in frame.columns:
            raise KeyError(
                f"bgcut: no column {self.variant + '_path'!r}; "
                f"variants here: {_variant_names(frame)}"
            )
        self._source = frame
        self._col = _image_col(frame, image_col)
        self._base = _base_dir(frame, base_dir)
        self._cache = cache
        self._size = int(thumb_size)
        self._variant_key = self._recorded_key(frame, self.variant)
        self._order = review_order(frame)
        self._hashes = image_hashes(frame[self._col].tolist(), self._base, cache)
        self._same: dict[str, list[int]] = {}
        for pos, sha in enumerate(self._hashes):
            if sha is not None:
                self._same.setdefault(sha, []).append(pos)
        self._decisions = [
            cache.get_review(sha, self.variant) if cache is not None and sha else ""
            for sha in self._hashes
        ]
        self._build(flat_colour)
        undecided = [i for i, pos in enumerate(self._order) if not self._decisions[pos]]
        self._index = undecided[0] if undecided else 0
        self._show()

    @staticmethod
    def _recorded_key(frame: pd.DataFrame, name: str) -> str:
        for data in frame_meta(frame).get("variants", []):
            if data.get("variant_name") == name:
                return Variant.from_dict(data).cache_key()
        return ""

    # -- layout ----------------------------------------------------------------------------
    def _build(self, flat_colour: str) -> None:
        size = self._size
        self.progress = widgets.HTML()
        self.progress.add_class("bgcut-review-progress")
        self.position = widgets.HTML()
        self.note = widgets.HTML()
        self.colour = widgets.ColorPicker(value=flat_colour, concise=True, description="colour")
        self.colour.observe(lambda _: self._show(), names="value")
        titles = {
            "original": "original",
            "checkerboard": f"{self.variant} · checkerboard",
            "colour": f"{self.variant} · flat colour",
        }
        cards = {key: _card(title, size) for key, title in titles.items()}
        self.images = {key: card[1] for key, card in cards.items()}
        self.infos = {key: card[2] for key, card in cards.items()}
        self.buttons = {
            "previous": widgets.Button(description="◀ previous", tooltip="left arrow"),
            "approve": widgets.Button(description="approve (a)", button_style="success"),
            "reject": widgets.Button(description="reject (r)", button_style="danger"),
            "skip": widgets.Button(description="skip (space)"),
            "clear": widgets.Button(description="clear (u)", tooltip="undecided again"),
            "next": widgets.Button(description="next ▶", tooltip="right arrow"),
        }
        for action, button in self.buttons.items():
            button.add_class(f"bgcut-review-{action}")
            button.on_click(lambda _, action=action: self.act(action))
        help_text = (
            "<small>Keys work while the mouse pointer is over this box: <b>a</b> approve · "
            "<b>r</b> reject · <b>space</b> skip · <b>u</b> clear · <b>← →</b> previous / next. "
            f"Decisions are saved as you go (by image and variant "
            f"<code>{html.escape(self.variant)}</code>).</small>"
        )
        self.children = [
            widgets.HBox(
                [self.progress, self.colour], layout=widgets.Layout(justify_content="space-between")
            ),
            self.position,
            widgets.HBox(
                [card[0] for card in cards.values()], layout=widgets.Layout(flex_flow="row wrap")
            ),
            self.note,
            widgets.HBox(list(self.buttons.values()), layout=widgets.Layout(flex_flow="row wrap")),
            widgets.HTML(help_text),
        ]
        self.add_class("bgcut-review")
        from ipyevents import Event  # the keyboard: ipywidgets has no key events of its own

        self.key_events = Event(
            source=self, watched_events=["keydown"], prevent_default_action=True
        )
        self.key_events.on_dom_event(self.handle_key)

    # -- state -----------------------------------------------------------------------------
    @property
    def frame(self) -> pd.DataFrame:
        """The reviewed frame: a copy with ``bgcut_review`` (in the frame's own row order)."""
        out = self._source.copy()
        out[REVIEW_COL] = list(self._decisions)
        out.attrs[META_KEY] = {**frame_meta(self._source), "review_variant": self.variant}
        return out

    @property
    def counts(self) -> dict[str, int]:
        """Rows ``approved``, ``rejected``, ``undecided``, and ``rows`` in all."""
        approved = self._decisions.count("approved")
        rejected = self._decisions.count("rejected")
        total = len(self._decisions)
        return {
            "rows": total,
            "approved": approved,
            "rejected": rejected,
            "undecided": total - approved - rejected,
        }

    @property
    def current(self) -> Hashable | None:
        """The index label of the row on show (``None`` for an empty frame)."""
        if not self._order:
            return None
        return self._source.index[self._order[self._index]]

    # -- actions ---------------------------------------------------------------------------
    def act(self, action: str) -> None:
        """Do what a button or key does: approve, reject, skip, clear, next, previous."""
        if not self._order:
            return
        if action in ("approve", "reject", "clear"):
            self._decide({"approve": "approved", "reject": "rejected", "clear": ""}[action])
        if action in ("approve", "reject", "skip", "next"):
            self._index = min(self._index + 1, len(self._order) - 1)
        elif action == "previous":
            self._index = max(self._index - 1, 0)
        elif action != "clear":
            raise ValueError(f"unknown review action {action!r}")
        self._show()

    def approve(self) -> None:
        """Approve the row on show and move to the next."""
        self.act("approve")

    def reject(self) -> None:
        """Reject the row on show and move to the next."""
        self.act("reject")

    def skip(self) -> None:
        """Move to the next row, leaving this one's decision as it is."""
        self.act("skip")

    def clear(self) -> None:
        """Make the row on show undecided again (and forget its saved decision)."""
        self.act("clear")

    def next(self) -> None:
        self.act("next")

    def previous(self) -> None:
        self.act("previous")

    def handle_key(self, event: Mapping[str, Any]) -> str:
        """Handle one ipyevents key event (``{"event": "keydown", "key": "a", ...}``); returns
        the action taken, or ``""`` for keys without one (or with Ctrl, Alt or Meta held)."""
        if event.get("event", event.get("type")) != "keydown":
            return ""
        if any(event.get(mod) for mod in ("ctrlKey", "altKey", "metaKey")):
            return ""
        key = str(event.get("key", ""))
        action = _KEYS.get(key.lower() if len(key) == 1 else key, "")
        if action:
            self.act(action)
        return action

    def _decide(self, decision: str) -> None:
        pos = self._order[self._index]
        sha = self._hashes[pos]
        for other in self._same.get(sha, [pos]) if sha else [pos]:
            self._decisions[other] = decision
        if self._cache is not None and sha:
            value = self._source[self._col].iloc[pos]
            self._cache.put_review(
                sha,
                self.variant,
                decision,
                variant_key=self._variant_key,
                image=value if isinstance(value, str) else "",
            )

    # -- display ---------------------------------------------------------------------------
    def _show(self) -> None:
        counts = self.counts
        reviewed_rows = counts["approved"] + counts["rejected"]
        self.progress.value = (
            f"<b>{reviewed_rows:,} of {counts['rows']:,} reviewed, "
            f"{counts['rejected']:,} rejected</b>"
        )
        if not self._order:
            self.position.value = "<i>bgcut: nothing to review (empty DataFrame)</i>"
            for button in self.buttons.values():
                button.disabled = True
            return
        pos = self._order[self._index]
        row = self._source.iloc[pos]
        label = row_label(self._source.index[pos], row[self._col])
        last = " (the last)" if self._index == len(self._order) - 1 else ""
        parts = [f"row {self._index + 1:,} of {len(self._order):,}{last}: {html.escape(label)}"]
        risk = _risk(row.get(RISK_COL))
        if risk is not None:
            parts.append(f"risk {risk:.2f}")
        if _flag_count(row.get(FLAGS_COL)):
            parts.append(f"flags: {html.escape(str(row.get(FLAGS_COL)))}")
        decision = self._decisions[pos]
        colour = _DECISION_COLOURS.get(decision, "inherit")
        parts.append(f'<b style="color:{colour}">{decision or "undecided"}</b>')
        if self._hashes[pos] is None:
            parts.append("<i>not saved: the image cannot be read</i>")
        self.position.value = " · ".join(parts)
        error = _row_error(row)
        original = image_source(row[self._col], self._base)
        output = image_source(row.get(f"{self.variant}_path"), None)
        _fill(self.images["original"], self.infos["original"], original, self._size, "jpeg")
        colour = self.colour.value or FLAT_COLOUR
        _fill(  # one decode for the checkerboard card and the flat-colour card
            self.images["checkerboard"],
            self.infos["checkerboard"],
            output,
            self._size,
            "png",
            failed=error,
            flat=[(self.images["colour"], self.infos["colour"], colour)],
        )
        self.note.value = _note(error) if error else ""
