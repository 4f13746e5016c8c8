"""ONNX Runtime execution providers: BGCUT_ONNX_PROVIDERS / providers=, CPU as the fallback."""

from __future__ import annotations

import logging

import onnxruntime as ort
import pytest
from models_support import model_path

from bgcut_nb import LocalBackend
from bgcut_nb.engine.models import get_spec
from bgcut_nb.engine.providers import CPU, choose_providers
from bgcut_nb.engine.segmenter import Segmenter

CUDA = "CUDAExecutionProvider"


def test_requested_providers_that_exist_come_first_and_cpu_is_always_last():
    assert choose_providers("cuda,cpu", available=[CUDA, CPU]) == [CUDA, CPU]
    assert choose_providers(["CoreML"], available=["CoreMLExecutionProvider", CPU]) == [
        "CoreMLExecutionProvider",
        CPU,
    ]
    assert choose_providers(None, available=[CUDA, CPU]) == [CPU]  # default: the CPU alone


def test_a_provider_this_build_lacks_falls_back_to_cpu_with_one_warning(caplog):
    caplog.set_level(logging.WARNING, logger="bgcut_nb.engine.providers")
    assert choose_providers("tensorrt,cpu", available=[CPU]) == [CPU]
    assert choose_providers("tensorrt", available=[CPU]) == [CPU]
    warnings = [r.getMessage() for r in caplog.records if "Tensorrt" in r.getMessage()]
    assert len(warnings) == 1 and "using CPU" in warnings[0]


def test_environment_variable_and_argument(monkeypatch):
    monkeypatch.setenv("BGCUT_ONNX_PROVIDERS", "cuda")
    assert choose_providers(available=[CUDA, CPU]) == [CUDA, CPU]
    assert choose_providers("cpu", available=[CUDA, CPU]) == [CPU]  # the argument wins


def test_unknown_names_are_refused_with_a_suggestion():
    with pytest.raises(ValueError, match="did you mean 'cuda'"):
        choose_providers("cdua", available=[CPU])


def test_a_real_session_asked_for_cuda_runs_on_what_this_build_has(monkeypatch, tmp_path):
    monkeypatch.setenv("BGCUT_ONNX_PROVIDERS", "cuda,cpu")
    seg = Segmenter(model_path("u2netp"), get_spec("u2netp"))
    want = [CUDA, CPU] if CUDA in ort.get_available_providers() else [CPU]
    assert seg.providers == want and want[0] in repr(seg)
    described = LocalBackend(tmp_path, providers="cpu").describe()
    assert described.endswith(f"on {CPU}") and ort.__version__ in described
