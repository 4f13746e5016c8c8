"""ONNX Runtime execution providers: which accelerator the engine asks for, CPU as the fallback.

``BGCUT_ONNX_PROVIDERS`` (or a ``providers=`` argument) lists them in order of preference, by
full name (``CUDAExecutionProvider``) or short name (``cuda``, ``tensorrt``, ``rocm``,
``coreml``, ``directml``, ``openvino``, ``cpu``). Providers this onnxruntime build lacks are
skipped with one warning (install ``onnxruntime-gpu`` for CUDA); the CPU provider always comes
last, so a session can always be made.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from ..contract.variants import did_you_mean
from ..core.config import resolve_onnx_providers

__all__ = ["CPU", "SHORT_NAMES", "choose_providers"]

log = logging.getLogger(__name__)

CPU = "CPUExecutionProvider"
SHORT_NAMES = {
    "cpu": CPU,
    "cuda": "CUDAExecutionProvider",
    "tensorrt": "TensorrtExecutionProvider",
    "rocm": "ROCMExecutionProvider",
    "migraphx": "MIGraphXExecutionProvider",
    "coreml": "CoreMLExecutionProvider",
    "directml": "DmlExecutionProvider",
    "dml": "DmlExecutionProvider",
    "openvino": "OpenVINOExecutionProvider",
}
_HINTS = {
    "CUDAExecutionProvider": "install onnxruntime-gpu instead of onnxruntime",
    "TensorrtExecutionProvider": "install onnxruntime-gpu and TensorRT",
    "DmlExecutionProvider": "install onnxruntime-directml (Windows)",
    "OpenVINOExecutionProvider": "install onnxruntime-openvino",
}
_warned: set[str] = set()


def forget_warnings() -> None:
    """Warn again about a missing provider, once, the next time it is asked for."""
    _warned.clear()


def _full_name(name: str) -> str:
    if name.lower() in SHORT_NAMES:
        return SHORT_NAMES[name.lower()]
    if name.endswith("ExecutionProvider"):
        return name
    raise ValueError(
        f"unknown ONNX Runtime provider {name!r} (BGCUT_ONNX_PROVIDERS): use a full name like "
        f"'CUDAExecutionProvider' or one of {sorted(SHORT_NAMES)}"
        + did_you_mean([name], SHORT_NAMES)
    )


def choose_providers(
    providers: str | Sequence[str] | None = None, available: Sequence[str] | None = None
) -> list[str]:
    """The providers a session is created with: the requested ones this build has, then CPU."""
    if available is None:
        import onnxruntime as ort

        available = ort.get_available_providers()
    chosen: list[str] = []
    for name in map(_full_name, resolve_onnx_providers(providers)):
        if name in chosen or name == CPU:
            continue
        if name in available:
            chosen.append(name)
        elif name not in _warned:
            _warned.add(name)
            hint = _HINTS.get(name, "it is not in this onnxruntime build")
            log.warning("ONNX Runtime provider %s is not available (%s); using CPU", name, hint)
    return [*chosen, CPU]
