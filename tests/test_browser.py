"""The notebook UI in a real browser: JupyterLab serves ``notebooks/quickstart.ipynb``, headless
Chromium runs all cells through JupyterLab's menu, and the widgets must render as widgets.

Needs Debian's ``chromium`` (``/usr/bin/chromium``, driven by Python playwright with
``executable_path``; playwright's own browser download is never used). Without it the test
skips, except when ``CI`` is set: then it fails, so CI cannot skip it silently. Screenshots
go to ``output/browser/`` at the repository root, or to ``$BGCUT_SCREENSHOT_DIR``.
"""

from __future__ import annotations

import base64
import io
import json
import os
import re
import secrets
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import requests
from notebook_support import DATA, REPO
from PIL import Image

from bgcut_nb.core.config import resolve_model_dir
from bgcut_nb.notebook.widgets import thumbnail

pytestmark = pytest.mark.browser

CHROMIUM = Path("/usr/bin/chromium")
#: The machine's network is closed: without these Chromium keeps retrying refused connections.
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
SCREENSHOT_ENV = "BGCUT_SCREENSHOT_DIR"
#: Generous limits for a loaded 2-CPU machine; nothing asserts on time.
START_TIMEOUT_S = 180
RUN_TIMEOUT_MS = 600_000
#: Text that means a widget did not render: the placeholder, a failure, or the text repr.
NOT_RENDERED = re.compile(
    r"Loading widget|Error displaying widget|\b(?:VBox|HBox|GridBox|FloatProgress)\(children="
    r"|\bFloatProgress\(value="
)


def require(ok: bool, reason: str) -> None:
    """Skip when ``ok`` is false, but fail under CI (``CI`` set), where skipping hides a gap."""
    if ok:
        return
    if os.environ.get("CI"):
        pytest.fail(f"{reason}; CI is set, so the browser test may not skip")
    pytest.skip(reason)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class Lab:
    """A running JupyterLab server."""

    url: str
    token: str
    root: Path


def write_settings(settings: Path) -> None:
    """User settings for a quiet, deterministic JupyterLab."""
    files = {
        # every cell stays in the DOM (no virtual scrolling), so every output can be inspected
        "@jupyterlab/notebook-extension/tracker": {"windowingMode": "none"},
        # no news or update checks: the network is closed, and toasts would cover screenshots
        "@jupyterlab/apputils-extension/notification": {
            "fetchNews": "false",
            "checkForUpdates": False,
        },
    }
    for plugin, values in files.items():
        path = settings / f"{plugin}.jupyterlab-settings"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(values))


@pytest.fixture
def chromium() -> Path:
    """Debian's Chromium, checked before anything starts (skip, or fail under CI)."""
    require(CHROMIUM.exists(), f"{CHROMIUM} is not installed (apt-get install chromium)")
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        require(False, "playwright is not installed (it is in the [test] extra)")
    return CHROMIUM


@pytest.fixture
def jupyterlab(chromium: Path, tmp_path: Path, monkeypatch) -> Iterator[Lab]:
    """JupyterLab on 127.0.0.1 (free port, token) over a copy of ``notebooks/`` and ``data/``,
    with a ``HOME`` of its own (also for Chromium and Playwright's driver, which the test
    starts): nothing is written into the user's home."""
    from ipykernel.kernelspec import write_kernel_spec

    root = tmp_path / "root"
    shutil.copytree(REPO / "notebooks", root / "notebooks")
    shutil.copytree(DATA, root / "data")
    jupyter = tmp_path / "jupyter"
    write_kernel_spec(jupyter / "kernels" / "python3")  # the notebook's kernel: this Python
    write_settings(tmp_path / "lab-settings")
    env = {
        **os.environ,
        "JUPYTER_PATH": str(jupyter),
        "JUPYTER_CONFIG_DIR": str(tmp_path / "jupyter-config"),
        "JUPYTER_RUNTIME_DIR": str(tmp_path / "jupyter-runtime"),
        "IPYTHONDIR": str(tmp_path / "ipython"),  # the kernel's profile: not in HOME
        "JUPYTERLAB_SETTINGS_DIR": str(tmp_path / "lab-settings"),
        "JUPYTERLAB_WORKSPACES_DIR": str(tmp_path / "lab-workspaces"),
        "BGCUT_CACHE_DIR": str(tmp_path / "cache"),
        "BGCUT_MODEL_DIR": str(resolve_model_dir()),  # BGCUT_MODEL_DIR, else the user cache
    }
    env.pop("BGCUT_API_KEY", None)  # the local engine, offline
    home = tmp_path / "home"
    home.mkdir()
    for name in ("XDG_CONFIG_HOME", "XDG_CACHE_HOME", "XDG_DATA_HOME", "JUPYTER_DATA_DIR"):
        env.pop(name, None)
        monkeypatch.delenv(name, raising=False)
    env["HOME"] = str(home)
    monkeypatch.setenv("HOME", str(home))
    port, token = free_port(), secrets.token_hex(16)
    url = f"http://127.0.0.1:{port}"
    log = (tmp_path / "jupyterlab.log").open("wb")
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "jupyterlab",
            "--no-browser",
            "--ServerApp.ip=127.0.0.1",
            f"--ServerApp.port={port}",
            "--ServerApp.port_retries=0",
            f"--IdentityProvider.token={token}",
            f"--ServerApp.root_dir={root}",
            "--ServerApp.allow_root=True",  # CI containers often run as root
            "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
            "--LabApp.extension_manager=readonly",  # no extension listing fetched from PyPI
        ],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            assert server.poll() is None, (tmp_path / "jupyterlab.log").read_text()
            try:
                if requests.get(f"{url}/api/status", params={"token": token}, timeout=5).ok:
                    break
            except requests.ConnectionError:
                pass
            assert time.monotonic() < deadline, "JupyterLab did not start"
            time.sleep(0.5)
        yield Lab(url, token, root)
    finally:
        try:  # a clean shutdown also stops the kernels
            requests.post(f"{url}/api/shutdown", params={"token": token}, timeout=10)
            server.wait(30)
        except (requests.RequestException, subprocess.TimeoutExpired):
            server.terminate()
            server.wait(30)
        log.close()


def screenshot_dir() -> Path:
    folder = Path(os.environ.get(SCREENSHOT_ENV) or REPO / "output" / "browser")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


#: Draws an <img> onto a canvas and returns its pixels as a PNG data URL.
READ_PIXELS = """img => {
    const canvas = document.createElement("canvas");
    canvas.width = img.naturalWidth;
    canvas.height = img.naturalHeight;
    canvas.getContext("2d").drawImage(img, 0, 0);
    return canvas.toDataURL("image/png");
}"""

#: True once every code cell of the notebook on show has run (a number in its prompt) and its
#: kernel is idle.
ALL_CELLS_RAN = """() => {
    const panel = document.querySelector(".jp-NotebookPanel:not(.lm-mod-hidden)");
    if (panel === null) return false;
    const prompts = [...panel.querySelectorAll(".jp-CodeCell .jp-InputPrompt")]
        .map(p => p.textContent.trim());
    const indicator = panel.querySelector(".jp-Notebook-ExecutionIndicator");
    return prompts.length > 0 && prompts.every(p => /^\\[\\d+\\]:$/.test(p))
        && indicator !== null && indicator.getAttribute("data-status") === "idle";
}"""


def pixels_of(img) -> np.ndarray:
    """The pixels the browser decoded for an ``<img>`` element (RGB)."""
    data_url = img.evaluate(READ_PIXELS)
    raw = base64.b64decode(data_url.split(",", 1)[1])
    with Image.open(io.BytesIO(raw)) as decoded:
        return np.asarray(decoded.convert("RGB")).astype(int)


def natural_sizes(output) -> list[tuple[int, int]]:
    return output.locator("img").evaluate_all(
        "imgs => imgs.map(i => [i.complete ? i.naturalWidth : 0, i.naturalHeight])"
    )


def kernel_idle(lab: Lab, notebook: str) -> bool:
    """Whether the server holds a session for ``notebook`` whose kernel is idle."""
    sessions = requests.get(f"{lab.url}/api/sessions", params={"token": lab.token}, timeout=10)
    return any(
        s["path"].endswith(notebook) and s["kernel"]["execution_state"] == "idle"
        for s in sessions.json()
    )


def wait_for_kernel(page, lab: Lab, notebook: str = "quickstart.ipynb") -> None:
    """Wait until the notebook's kernel is started and idle.

    On a loaded machine JupyterLab sometimes asks which kernel to start (its kernelspecs had
    not arrived when the notebook opened); the dialog proposes the notebook's own kernel, so
    the test accepts it, as a user would.
    """
    dialog = page.locator(".jp-Dialog", has_text="Select Kernel")
    deadline = time.monotonic() + START_TIMEOUT_S
    while not (kernel_idle(lab, notebook) and not dialog.count()):
        if dialog.count():
            dialog.get_by_role("button", name="Select", exact=True).click()
        assert time.monotonic() < deadline, "the notebook's kernel did not start"
        page.wait_for_timeout(500)


def run_all_cells(page, lab: Lab, notebook: str):
    """Open ``notebooks/<notebook>`` in JupyterLab, Run All Cells from the menu, wait until
    every cell ran; returns the notebook's locator."""
    from playwright.sync_api import expect

    # ``reset``: a fresh workspace, so the notebook is the only one open (and the one on show)
    page.goto(f"{lab.url}/lab/tree/notebooks/{notebook}?reset&token={lab.token}")
    cells = page.locator(".jp-NotebookPanel:not(.lm-mod-hidden) .jp-Notebook")
    expect(cells).to_be_visible(timeout=120_000)
    wait_for_kernel(page, lab, notebook)
    page.locator(".lm-MenuBar-item", has_text=re.compile(r"^Run$")).click()
    page.locator(".lm-Menu-item", has_text=re.compile(r"^Run All Cells")).click()
    page.wait_for_function(ALL_CELLS_RAN, timeout=RUN_TIMEOUT_MS, polling=500)
    return cells


def cell_output(page, notebook, source: str):
    """The output area of the one code cell whose source contains ``source``."""
    from playwright.sync_api import expect

    cell = notebook.locator(".jp-CodeCell").filter(
        has=page.locator(".jp-InputArea", has_text=source)
    )
    expect(cell).to_have_count(1)
    return cell.locator(".jp-OutputArea")


def watch_console(page, *, console: bool = True) -> list[str]:
    """Page errors (and with ``console``, console errors), collected while the test runs."""
    problems: list[str] = []
    if console:
        page.on(
            "console",
            lambda m: (
                problems.append(f"console {m.type}: {m.text} ({m.location})")
                if m.type == "error"
                else None
            ),
        )
    page.on("pageerror", lambda e: problems.append(f"page error: {e}"))
    return problems


@contextmanager
def lab_page(
    chromium: Path, height: int, failure: str = "failure", *, console: bool = True
) -> Iterator[tuple[Any, Path]]:
    """A 1400 px wide Chromium page and the screenshot folder; on failure a screenshot and the
    page's HTML are saved as ``<failure>.png`` / ``.html``; at the end, no page error (and with
    ``console``, no console error) may have occurred."""
    from playwright.sync_api import sync_playwright

    shots = screenshot_dir()
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(chromium), args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": height})
        problems = watch_console(page, console=console)
        try:
            yield page, shots
        except Exception:
            page.screenshot(path=shots / f"{failure}.png")  # what the page showed
            (shots / f"{failure}.html").write_text(page.content())
            raise
        finally:
            browser.close()
    assert not problems, "\n".join(problems)


def test_quickstart_runs_in_jupyterlab_and_its_widgets_render(chromium: Path, jupyterlab: Lab):
    """Run All Cells in JupyterLab: progress bar, preview and gallery render as widgets, a new
    row shows that row's pixels, gallery captions line up, and the console stays clean."""
    from playwright.sync_api import expect

    with lab_page(chromium, 2400, "failure") as (page, shots):
        notebook = run_all_cells(page, jupyterlab, "quickstart.ipynb")

        progress = cell_output(page, notebook, "out = df.bgcut.process(")
        preview = cell_output(page, notebook, "out.bgcut.preview()")
        gallery = cell_output(page, notebook, 'out.bgcut.gallery("cutout")')
        for output in (progress, preview, gallery):
            expect(output.locator(".jupyter-widgets").first).to_be_visible(timeout=60_000)
        bar = progress.locator(".widget-hprogress .progress-bar")  # tqdm's widget bar
        expect(bar).to_be_visible()
        expect(bar).to_have_attribute("style", re.compile(r"width: 100%"))
        expect(progress).to_contain_text("4/4")
        expect(preview.locator("img")).to_have_count(3)  # original + 2 variants
        expect(gallery.locator("img")).to_have_count(4)
        for output in (preview, gallery):
            page.wait_for_function(
                "imgs => imgs.every(i => i.complete && i.naturalWidth > 0)",
                arg=output.locator("img").element_handles(),
            )
            assert all(w > 0 and h > 0 for w, h in natural_sizes(output))
        text = notebook.inner_text()
        assert not NOT_RENDERED.search(text), NOT_RENDERED.search(text)
        assert not notebook.locator('[data-mime-type="application/vnd.jupyter.error"]').count()
        assert "credits to run it again: 0.0" in text
        page.screenshot(path=shots / "quickstart-run-all.png")

        # choosing another row changes the images: to that row's photo and cut-outs
        select = preview.locator("select")
        # ipywidgets writes option text with non-breaking spaces
        labels = [t.replace("\xa0", " ") for t in select.locator("option").all_inner_texts()]
        assert labels == [
            "0 · astronaut.png",
            "1 · chelsea.png",
            "2 · coffee.png",
            "3 · rocket.jpg",
        ]
        images = preview.locator("img")
        before = [pixels_of(images.nth(i)) for i in range(3)]
        sources = images.evaluate_all("imgs => imgs.map(i => i.src)")
        select.select_option(index=labels.index("1 · chelsea.png"))
        page.wait_for_function(
            "([imgs, old]) => imgs.every((i, k) => i.src !== old[k] && i.complete"
            " && i.naturalWidth > 0)",
            arg=[images.element_handles(), sources],
        )
        after = [pixels_of(images.nth(i)) for i in range(3)]
        for old, new in zip(before, after, strict=True):
            assert old.shape != new.shape or np.abs(old - new).mean() > 10
        expected, _ = thumbnail(jupyterlab.root / "data" / "chelsea.png")
        with Image.open(io.BytesIO(expected)) as img:
            chelsea = np.asarray(img.convert("RGB")).astype(int)
        assert after[0].shape == chelsea.shape
        assert np.abs(after[0] - chelsea).max() <= 2  # the browser shows chelsea's pixels
        preview.screenshot(path=shots / "preview-row-1.png")

        # gallery captions line up: one width per cell, captions at one height per row
        cells = gallery.locator(".widget-gridbox > .widget-vbox")
        expect(cells).to_have_count(4)
        boxes = [cells.nth(i).bounding_box() for i in range(4)]
        captions = [cells.nth(i).locator(".widget-html").first.bounding_box() for i in range(4)]
        assert len({round(b["width"]) for b in boxes}) == 1
        rows: dict[int, set[int]] = {}
        for box, caption in zip(boxes, captions, strict=True):
            rows.setdefault(round(box["y"]), set()).add(round(caption["y"]))
        assert all(len(tops) == 1 for tops in rows.values()), rows
        gallery.screenshot(path=shots / "gallery.png")

        # the second notebook: re-runs and new variants from the cache, in the same lab
        notebook = run_all_cells(page, jupyterlab, "reuse.ipynb")
        text = notebook.inner_text()
        assert not NOT_RENDERED.search(text), NOT_RENDERED.search(text)
        assert not notebook.locator('[data-mime-type="application/vnd.jupyter.error"]').count()
        again = cell_output(page, notebook, "again = df.bgcut.process(").inner_text()
        assert re.search(r"'uploads': 0\b", again) and re.search(r"'cached': 4\b", again)
        shown = cell_output(page, notebook, "later.bgcut.preview()")
        expect(shown.locator("img")).to_have_count(4)  # original + 3 variants
        page.wait_for_function(
            "imgs => imgs.every(i => i.complete && i.naturalWidth > 0)",
            arg=shown.locator("img").element_handles(),
        )
        page.screenshot(path=shots / "reuse-run-all.png")


#: A frame with failed rows: two missing files among the sample photos, low tier, small.
FAILURES_NOTEBOOK = [
    "import pandas as pd\n\nimport bgcut_nb  # noqa: F401",
    "names = ['astronaut.png', 'missing-photo-with-a-long-file-name.png', 'chelsea.png',\n"
    "         'coffee.png', 'rocket.jpg', 'gone.jpg']\n"
    "df = pd.DataFrame({'path': names})\n"
    "variants = [{'variant_name': 'cutout', 'quality': 'low', 'max_resolution': 40_000},\n"
    "            {'variant_name': 'white', 'quality': 'low', 'format': 'jpg',\n"
    "             'background_color': '#ffffff', 'max_resolution': 40_000}]\n"
    "out = df.bgcut.process(variants, base_dir='../data', out_dir='../output/failures')",
    "out.bgcut.preview()",
    "out.bgcut.gallery('cutout')",
    "many = pd.concat([out] * 50, ignore_index=True)  # 300 rows: the slider\nmany.bgcut.preview()",
]

#: For each <img>: its rendered size, the part of it no ancestor clips, and its natural size.
VISIBLE_SIZES = """imgs => imgs.map(i => {
    const r = i.getBoundingClientRect();
    let [left, top, right, bottom] = [r.left, r.top, r.right, r.bottom];
    // the body's overflow applies to the viewport, not to the body's own (0 px high) box
    for (let a = i.parentElement; a && a !== document.body; a = a.parentElement) {
        const s = getComputedStyle(a);
        if (s.overflowX === "visible" && s.overflowY === "visible") continue;
        if (s.display === "contents") continue;  // no box of its own: clips nothing
        const q = a.getBoundingClientRect();
        left = Math.max(left, q.left); right = Math.min(right, q.right);
        top = Math.max(top, q.top); bottom = Math.min(bottom, q.bottom);
    }
    return {w: r.width, h: r.height, visible_w: Math.max(0, right - left),
            visible_h: Math.max(0, bottom - top), nw: i.naturalWidth, nh: i.naturalHeight};
})"""

#: The colour an element's text is drawn in and the first opaque background behind it.
COLOURS = """el => {
    const colour = getComputedStyle(el).color;
    for (let a = el; a; a = a.parentElement) {
        const bg = getComputedStyle(a).backgroundColor;
        if (bg && bg !== "transparent" && !/rgba\\(.*, 0\\)$/.test(bg)) return [colour, bg];
    }
    return [colour, "rgb(255, 255, 255)"];
}"""


def contrast(css_a: str, css_b: str) -> float:
    """WCAG contrast ratio of two CSS ``rgb()``/``rgba()`` colours."""

    def luminance(css: str) -> float:
        channels = [int(v) / 255 for v in re.findall(r"[\d.]+", css)[:3]]
        linear = [c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4 for c in channels]
        return 0.2126 * linear[0] + 0.7152 * linear[1] + 0.0722 * linear[2]

    high, low = sorted((luminance(css_a), luminance(css_b)), reverse=True)
    return (high + 0.05) / (low + 0.05)


def assert_images_fit(page, output, where: str) -> list[dict]:
    """Every image of ``output`` is shown whole (nothing clipped) at its natural aspect ratio."""
    output.scroll_into_view_if_needed()
    page.wait_for_timeout(300)  # JupyterLab lays out again after a resize
    page.wait_for_function(
        "imgs => imgs.every(i => i.complete && i.naturalWidth > 0)",
        arg=output.locator("img").element_handles(),
    )
    sizes = output.locator("img").evaluate_all(VISIBLE_SIZES)
    for size in sizes:
        assert size["w"] > 0 and size["h"] > 0, (where, size)
        assert size["visible_w"] >= size["w"] - 1, (where, "clipped", size)
        assert size["visible_h"] >= size["h"] - 1, (where, "clipped", size)
        assert abs(size["w"] / size["h"] - size["nw"] / size["nh"]) < 0.05, (where, size)
    return sizes


def show_file_browser(page) -> None:
    """Open the left sidebar's file browser (it takes about 250 px from the notebook)."""
    if not page.locator("#filebrowser").is_visible():
        page.locator('.jp-SideBar.jp-mod-left [data-id="filebrowser"]').click()
    page.locator("#filebrowser").wait_for(state="visible")


def test_failed_rows_narrow_windows_slider_and_dark_theme(chromium: Path, jupyterlab: Lab):
    """A frame with failed rows at 1400 and 1024 px with the file browser open: images scale
    down instead of being clipped, cards keep their width and line up between rows, a failed
    row says its error once and without its folder, the gallery wraps, the bar of a batch
    with failures is not green, a 300-row preview gets a long slider, and notes keep 4.5:1
    contrast in the dark theme."""
    import nbformat
    from playwright.sync_api import expect

    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(source) for source in FAILURES_NOTEBOOK]
    nb.metadata["kernelspec"] = {
        "name": "python3",
        "display_name": "Python 3",
        "language": "python",
    }
    nbformat.write(nb, jupyterlab.root / "notebooks" / "failures.ipynb")
    with lab_page(chromium, 1600, "failure") as (page, shots):
        notebook = run_all_cells(page, jupyterlab, "failures.ipynb")
        show_file_browser(page)
        text = notebook.inner_text()
        assert not NOT_RENDERED.search(text), NOT_RENDERED.search(text)
        progress = cell_output(page, notebook, "out = df.bgcut.process(")
        expect(progress).to_contain_text("6/6")
        expect(progress).to_contain_text("failed=2")
        bar = progress.locator(".widget-hprogress .progress-bar")
        expect(bar).to_have_class(re.compile(r"progress-bar-warning"))  # not green

        preview = cell_output(page, notebook, "out.bgcut.preview()")
        gallery = cell_output(page, notebook, "out.bgcut.gallery('cutout')")
        select = preview.locator("select")
        cards = preview.locator(".bgcut-card")
        expect(cards).to_have_count(3)
        for width in (1400, 1024):
            page.set_viewport_size({"width": width, "height": 1600})
            widths, info_tops = set(), set()
            for row in (0, 1, 4):  # landscape photo, failed row, tall rocket
                select.select_option(index=row)
                sizes = assert_images_fit(page, preview, f"preview {width}px row {row}")
                area = preview.bounding_box()
                boxes = [cards.nth(i).bounding_box() for i in range(3)]
                assert max(b["x"] + b["width"] for b in boxes) <= area["x"] + area["width"]
                widths.add(tuple(round(b["width"]) for b in boxes))
                infos = cards.locator(".widget-html:last-child")
                top = min(b["y"] for b in boxes)
                info_tops |= {round(infos.nth(i).bounding_box()["y"] - top) for i in range(3)}
                if width == 1024:  # the notebook is narrower than three 256 px cards
                    assert all(s["w"] < 256 for s in sizes if s["nw"] == 256), sizes
                if row == 1:
                    shown = preview.inner_text()
                    on_cards = preview.locator(".bgcut-cards").inner_text()
                    assert "missing-photo" not in on_cards  # the header names the row
                    assert on_cards.count("failed") == 2, on_cards  # the outputs say why
                    assert shown.count("file not found: ") == 1, shown
                    assert str(jupyterlab.root) not in shown
                    preview.screenshot(path=shots / f"failed-row-{width}.png")
            assert len(widths) == 1, widths  # cards keep their widths between rows
            assert len(info_tops) == 1, info_tops  # and their info lines line up
            sizes = assert_images_fit(page, gallery, f"gallery {width}px")
            assert len(sizes) == 6
            grid = gallery.locator(".widget-gridbox").bounding_box()
            assert (
                grid["x"] + grid["width"]
                <= gallery.bounding_box()["x"] + gallery.bounding_box()["width"]
            )
            gallery.screenshot(path=shots / f"gallery-failures-{width}.png")

        slider_output = cell_output(page, notebook, "many.bgcut.preview()")
        slider = slider_output.locator(".widget-hslider .slider-container")
        expect(slider).to_be_visible()
        assert slider.bounding_box()["width"] >= 300

        page.locator(".lm-MenuBar-item", has_text=re.compile(r"^Settings$")).click()
        page.locator(".lm-Menu-item", has_text=re.compile(r"^Theme")).hover()
        page.locator(".lm-Menu-item", has_text=re.compile(r"^JupyterLab Dark$")).click()
        page.wait_for_function("document.body.dataset.jpThemeLight === 'false'")
        page.wait_for_timeout(500)
        select.select_option(index=1)
        note = preview.locator(".bgcut-note").last
        colour, background = note.evaluate(COLOURS)
        assert contrast(colour, background) >= 4.5, (colour, background)
        page.screenshot(path=shots / "failures-dark.png")
