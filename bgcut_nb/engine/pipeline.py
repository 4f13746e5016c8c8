"""The embedded engine: from a decoded image to a cut-out, and from a cut-out to variants."""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from dataclasses import replace

import numpy as np
from PIL import Image

from ..contract.variants import Variant
from .matting import Cutout, Matting
from .providers import choose_providers
from .render import render_variant

__all__ = ["LocalEngine"]


class LocalEngine:
    """Segmentation (:class:`~bgcut_nb.engine.matting.Matting`) plus rendering, in-process."""

    def __init__(
        self,
        model_dir: str | os.PathLike[str] | None = None,
        matting: Matting | None = None,
        *,
        providers: str | Sequence[str] | None = None,
    ) -> None:
        self.matting = matting if matting is not None else Matting(model_dir, providers=providers)

    def describe(self) -> str:
        """One line: the ONNX Runtime version and the providers sessions run on, best first."""
        import onnxruntime as ort

        chosen = choose_providers(self.matting.providers)
        return f"local engine: ONNX Runtime {ort.__version__} on {', '.join(chosen)}"

    def cutout(self, image: Image.Image, quality: str) -> Cutout:
        """The cut-out of an ``RGB``/``RGBA`` image at a quality tier.

        An input that already has transparency keeps it: the subject's matte is multiplied by
        the input's own alpha, and the model sees the image over white.
        """
        return self.cutouts(image, [quality])[quality]

    def cutouts(self, image: Image.Image, qualities: Iterable[str]) -> dict[str, Cutout]:
        """:meth:`cutout` at several tiers at once: the image is converted once and tiers that
        stand on the same model pass share it (:meth:`Matting.cutouts`)."""
        rgb, own_alpha = _model_input(image)
        found = self.matting.cutouts(rgb, qualities)
        return {quality: _with_alpha(cut, own_alpha) for quality, cut in found.items()}

    def cutout_from_pass(
        self,
        image: Image.Image,
        quality: str,
        prob: np.ndarray,
        correction: np.ndarray | None = None,
    ) -> Cutout:
        """The same cut-out as :meth:`cutout` from what it was made of (``Cutout.model_pass``
        and ``Cutout.correction``, stored earlier); runs no model."""
        rgb, own_alpha = _model_input(image)
        return _with_alpha(self.matting.cutout_from_pass(rgb, quality, prob, correction), own_alpha)

    def render(self, cutout: Cutout, variant: Variant) -> bytes:
        """Encoded bytes of one variant."""
        return render_variant(cutout, variant)


def _model_input(image: Image.Image) -> tuple[np.ndarray, np.ndarray | None]:
    """What the model sees (RGB uint8; an ``RGBA`` image over white) and the image's own
    alpha (float32 0..1, ``None`` unless ``RGBA``)."""
    if image.mode != "RGBA":
        return np.asarray(image.convert("RGB")), None
    own_alpha = np.asarray(image.getchannel("A"), dtype=np.float32) / 255.0
    white = Image.new("RGB", image.size, (255, 255, 255))
    white.paste(image, mask=image.getchannel("A"))
    return np.asarray(white), own_alpha


def _with_alpha(cutout: Cutout, own_alpha: np.ndarray | None) -> Cutout:
    """The cut-out with its matte multiplied by the input's own alpha (when it has one)."""
    if own_alpha is None:
        return cutout
    return replace(cutout, alpha=(cutout.alpha * own_alpha).astype(np.float32))
