"""The embedded engine: from a decoded image to a cut-out, and from a cut-out to variants."""

from __future__ import annotations

import os
from collections.abc import Sequence
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
        return self._cutout(image, quality, None, None)

    def cutout_from_pass(
        self,
        image: Image.Image,
        quality: str,
        prob: np.ndarray,
        correction: np.ndarray | None = None,
    ) -> Cutout:
        """The same cut-out as :meth:`cutout` from what it was made of (``Cutout.model_pass``
        and ``Cutout.correction``, stored earlier); runs no model."""
        return self._cutout(image, quality, prob, correction)

    def _cutout(
        self,
        image: Image.Image,
        quality: str,
        prob: np.ndarray | None,
        correction: np.ndarray | None,
    ) -> Cutout:
        own_alpha = None
        if image.mode == "RGBA":
            own_alpha = np.asarray(image.getchannel("A"), dtype=np.float32) / 255.0
            white = Image.new("RGB", image.size, (255, 255, 255))
            white.paste(image, mask=image.getchannel("A"))
            rgb = np.asarray(white)
        else:
            rgb = np.asarray(image.convert("RGB"))
        if prob is None:
            result = self.matting.cutout(rgb, quality)
        else:
            result = self.matting.cutout_from_pass(rgb, quality, prob, correction)
        if own_alpha is None:
            return result
        return replace(result, alpha=(result.alpha * own_alpha).astype(np.float32))

    def render(self, cutout: Cutout, variant: Variant) -> bytes:
        """Encoded bytes of one variant."""
        return render_variant(cutout, variant)
