"""ONNX Runtime inference for U^2-Net-family salient-object models.

Pre- and post-processing follow rembg exactly: resize the RGB photo to the model's input size
(Lanczos), divide by the image's maximum, normalise with the ImageNet mean/std, run, take the
first output (the fused side output ``d0``) and min-max normalise it to 0..1. The result is the
model-resolution probability map; upsampling to the photo's size belongs to the matting tiers.

The published ONNX files declare a fixed 1x3x320x320 input although the graph computes every
resize from the actual tensor shapes; the session is built from a copy whose height and width
are declared free (with the ``onnx`` library, in memory, the file on disk is untouched) when a
segmenter is built with ``any_size=True``, so that ``predict(rgb, size=...)`` can also run at an
aspect-preserving size (multiples of 32). That session is about 10% slower at 320x320, so the
fixed-size one is kept for the tiers that only need the native size.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path

import numpy as np
from PIL import Image

from .models import ModelSpec

__all__ = ["Segmenter", "default_threads"]


def default_threads() -> int:
    """Intra-op threads: one per available core, at most 4 (more only adds contention)."""
    try:
        cores = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # pragma: no cover - non-Linux
        cores = os.cpu_count() or 1
    return max(1, min(cores, 4))


class Segmenter:
    """One loaded ONNX model; ``predict`` is safe to call from several threads at once."""

    def __init__(
        self,
        model_path: str | os.PathLike[str],
        spec: ModelSpec,
        *,
        threads: int | None = None,
        any_size: bool = False,
    ):
        import onnxruntime as ort

        self.spec = spec
        self.model_path = Path(model_path)
        self.any_size = any_size
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads or default_threads()
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.log_severity_level = 3
        # Idle workers sleep instead of spinning: on a small machine shared with decoding,
        # rendering and other sessions, spinning burns the cores the other work needs.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self._session = ort.InferenceSession(
            _free_spatial_dims(self.model_path) if any_size else str(self.model_path),
            sess_options=options,
            providers=["CPUExecutionProvider"],
        )
        self._input = self._session.get_inputs()[0].name
        self._output = self._session.get_outputs()[0].name
        self._mean = np.asarray(spec.mean, dtype=np.float32)
        self._std = np.asarray(spec.std, dtype=np.float32)
        #: How many network passes ``predict`` has run (counted, for tests and benchmarks).
        self.passes = 0
        self._count_lock = threading.Lock()

    def __repr__(self) -> str:
        return f"Segmenter({self.spec.name!r}, {str(self.model_path)!r})"

    def preprocess(self, rgb: np.ndarray, size: tuple[int, int] | None = None) -> np.ndarray:
        """The model's input tensor (1x3xHxW float32) for an RGB uint8 photo.

        ``size`` = (width, height), multiples of 32; default the model's native input size.
        """
        width, height = size or self.spec.input_size
        if not self.any_size and (width, height) != self.spec.input_size:
            raise ValueError(f"this {self.spec.name} session only takes {self.spec.input_size}")
        if width % 32 or height % 32 or width < 32 or height < 32:
            raise ValueError(f"input size must be positive multiples of 32, got {width}x{height}")
        small = Image.fromarray(rgb).resize(
            (width, height), Image.Resampling.LANCZOS, reducing_gap=3.0
        )
        arr = np.asarray(small, dtype=np.float32)
        arr = arr / max(float(arr.max()), 1e-6)
        arr = (arr - self._mean) / self._std
        return np.ascontiguousarray(arr.transpose(2, 0, 1)[None])

    def predict(self, rgb: np.ndarray, size: tuple[int, int] | None = None) -> np.ndarray:
        """Foreground probability at the input size (float32 HxW, min-max normalised to 0..1).

        ``size`` = (width, height) of the network input, default the model's native size.
        """
        if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
            raise ValueError(f"expected an RGB uint8 HxWx3 array, got {rgb.dtype} {rgb.shape}")
        out = self._session.run([self._output], {self._input: self.preprocess(rgb, size)})[0]
        with self._count_lock:
            self.passes += 1
        pred = np.asarray(out[0, 0], dtype=np.float32)
        lo, hi = float(pred.min()), float(pred.max())
        if hi - lo < 1e-6:
            return np.zeros_like(pred)
        return (pred - lo) / (hi - lo)


def _free_spatial_dims(path: Path) -> bytes:
    """The serialised model with the input's and outputs' height and width declared free."""
    import onnx

    model = onnx.load(str(path))
    for value in [*model.graph.input[:1], *model.graph.output]:
        dims = value.type.tensor_type.shape.dim
        if len(dims) == 4:
            dims[2].dim_param = "height"
            dims[3].dim_param = "width"
    return model.SerializeToString()
