"""ONNX Runtime inference for the registry's salient-object models (U^2-Net, IS-Net, BiRefNet).

Pre- and post-processing follow rembg exactly, driven by the model's registry entry: resize the
RGB photo to the model's input size (Lanczos), divide by the image's maximum, normalise with the
entry's mean/std, run, take the first output's first channel (U^2-Net's fused side output
``d0``), apply a sigmoid where the entry says the output is a logit map (BiRefNet), and min-max
normalise it to 0..1. The result is the model-resolution probability map (320x320 or
1024x1024); upsampling to the photo's size belongs to the matting tiers.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image

from ..core.cpus import available_cpus
from .models import ModelSpec
from .providers import choose_providers

__all__ = ["Segmenter", "default_threads", "shared_segmenter"]


def default_threads() -> int:
    """Intra-op threads: one per available core, at most 4 (more only adds contention)."""
    return min(available_cpus(), 4)


class Segmenter:
    """One loaded ONNX model; ``predict`` is safe to call from several threads at once."""

    def __init__(
        self,
        model_path: str | os.PathLike[str],
        spec: ModelSpec,
        *,
        threads: int | None = None,
        providers: str | Sequence[str] | None = None,
    ):
        import onnxruntime as ort

        self.spec = spec
        self.model_path = Path(model_path)
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads or default_threads()
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.log_severity_level = 3
        # Idle workers sleep instead of spinning: on a small machine shared with decoding,
        # rendering and other sessions, spinning burns the cores the other work needs.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        # One session serves every thread. ORT's CPU arena keeps the peak of each concurrent
        # run for good (measured: +230 MiB per thread running u2net, never given back); without
        # it, buffers are freed after each run (8 threads: 1.0 GiB instead of 1.9 GiB).
        options.enable_cpu_mem_arena = False
        self._session = ort.InferenceSession(
            str(self.model_path),
            sess_options=options,
            providers=choose_providers(providers),
        )
        #: The providers the session runs on, best first (CPU is always the last fallback).
        self.providers: list[str] = list(self._session.get_providers())
        self._input = self._session.get_inputs()[0].name
        self._output = self._session.get_outputs()[0].name
        self._mean = np.asarray(spec.mean, dtype=np.float32)
        self._std = np.asarray(spec.std, dtype=np.float32)
        #: How many network passes ``predict`` has run (counted, for tests and benchmarks).
        self.passes = 0
        self._count_lock = threading.Lock()

    def __repr__(self) -> str:
        return f"Segmenter({self.spec.name!r}, {str(self.model_path)!r}, {self.providers[0]!r})"

    def preprocess(self, rgb: np.ndarray) -> np.ndarray:
        """The model's input tensor (1x3xHxW float32, its native size) for an RGB uint8 photo."""
        width, height = self.spec.input_size
        small = Image.fromarray(rgb).resize(
            (width, height), Image.Resampling.LANCZOS, reducing_gap=3.0
        )
        arr = np.asarray(small, dtype=np.float32)
        arr = arr / max(float(arr.max()), 1e-6)
        arr = (arr - self._mean) / self._std
        return np.ascontiguousarray(arr.transpose(2, 0, 1)[None])

    def predict(self, rgb: np.ndarray) -> np.ndarray:
        """Foreground probability at the model's input size (float32, min-max normalised 0..1)."""
        if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
            raise ValueError(f"expected an RGB uint8 HxWx3 array, got {rgb.dtype} {rgb.shape}")
        out = self._session.run([self._output], {self._input: self.preprocess(rgb)})[0]
        with self._count_lock:
            self.passes += 1
        pred = np.asarray(out[0, 0], dtype=np.float32)
        if self.spec.sigmoid:
            pred = 0.5 * (1.0 + np.tanh(0.5 * pred))  # the logistic sigmoid, no overflow
        lo, hi = float(pred.min()), float(pred.max())
        if hi - lo < 1e-6:
            return np.zeros_like(pred)
        return (pred - lo) / (hi - lo)


_shared: dict[tuple[str, int, int | None, tuple[str, ...]], Segmenter] = {}
_shared_lock = threading.Lock()


def shared_segmenter(
    model_path: str | os.PathLike[str],
    spec: ModelSpec,
    *,
    threads: int | None = None,
    providers: str | Sequence[str] | None = None,
) -> Segmenter:
    """The process-wide :class:`Segmenter` for this model file and settings.

    Every engine in a process (several ``LocalBackend``s, a server next to a notebook) shares
    one ONNX Runtime session per model: its weights and memory arena exist once, not per engine.
    A file replaced on disk (another size) gets a new session.
    """
    path = Path(model_path).resolve()
    chosen = tuple(choose_providers(providers))
    key = (str(path), path.stat().st_size, threads, chosen)
    with _shared_lock:
        seg = _shared.get(key)
        if seg is None:
            seg = Segmenter(path, spec, threads=threads, providers=chosen)
            _shared[key] = seg
        return seg


def release_segmenters() -> int:
    """Drop the process-wide sessions (returns how many): their memory is freed once no engine
    holds them, and the next engine opens a fresh session (for example on a replaced file)."""
    with _shared_lock:
        count = len(_shared)
        _shared.clear()
    return count
