"""The model registry's newer entries and per-tier model choice, on ONNX graphs built here.

The real ISNet and BiRefNet files cannot be downloaded on these machines, so each model's pre-
and post-processing is checked on a tiny graph with the same input and output signature (input
[1,3,H,W] at the registry's size; first output [1,1,H,W] = the mean of the three normalised
channels; a second output that must be ignored), dropped into a temporary ``BGCUT_MODEL_DIR``
under the registry's file name and accepted through ``BGCUT_MODEL_UNVERIFIED=1``.
"""

from __future__ import annotations

import io
import re
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import onnx
import pytest
import requests
from onnx import TensorProto, helper
from PIL import Image

from bgcut_nb.backends.local import LocalBackend
from bgcut_nb.backends.remote import RemoteBackend
from bgcut_nb.cli import main as cli_main
from bgcut_nb.contract.errors import ModelUnavailableError
from bgcut_nb.engine.matting import TIER_MODELS, Matting
from bgcut_nb.engine.models import (
    MODELS,
    RELEASE_BASE_URL,
    ensure_model,
    get_spec,
    model_file,
    verify_file,
)
from bgcut_nb.testing.server import ServerThread, wait_until_serving

NEW_MODELS = ["isnet-general-use", "birefnet-general-lite", "birefnet-general"]


def _closed_port() -> int:
    """A loopback port nobody listens on (connections are refused at once)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def write_graph(name: str, folder: Path) -> Path:
    """A tiny ONNX graph with model ``name``'s signature, saved under its registry file name."""
    spec = get_spec(name)
    width, height = spec.input_size
    image = helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 3, height, width])
    first = helper.make_tensor_value_info("d0", TensorProto.FLOAT, [1, 1, height, width])
    second = helper.make_tensor_value_info("d1", TensorProto.FLOAT, [1, 1, height, width])
    nodes = [
        helper.make_node("ReduceMean", ["input"], ["d0"], axes=[1], keepdims=1),
        helper.make_node("Neg", ["d0"], ["d1"]),  # a side output the engine must not take
    ]
    graph = helper.make_graph(nodes, f"{name}-test", [image], [first, second])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / spec.filename
    onnx.save(model, str(path))
    return path


def expected_pass(name: str, rgb: np.ndarray) -> np.ndarray:
    """What the engine must make of the test graph's output for a photo already at the model's
    input size: scaled by its maximum, normalised with the entry's mean/std, channel mean,
    sigmoid where the entry says so, min-max to 0..1 (written out here, independently)."""
    spec = get_spec(name)
    x = rgb.astype(np.float64) / rgb.max()
    x = (x - np.array(spec.mean)) / np.array(spec.std)
    out = x.mean(axis=2)
    if spec.sigmoid:
        out = 1.0 / (1.0 + np.exp(-out))
    return (out - out.min()) / (out.max() - out.min())


def photo(size: tuple[int, int]) -> np.ndarray:
    """A photo at exactly ``size`` (no resize happens), its channels different ramps, so a
    wrong mean/std weighting or a missing sigmoid changes the result."""
    width, height = size
    yy, xx = np.mgrid[0:height, 0:width]
    red = 255 * xx / (width - 1)
    green = 255 * yy / (height - 1)
    blue = 255 * ((xx + yy) % 64) / 63
    return np.stack([red, green, blue], axis=2).round().astype(np.uint8)


def square_png(size: int = 1024) -> bytes:
    """A white square on black, the square a quarter of the frame."""
    rgb = np.zeros((size, size, 3), np.uint8)
    rgb[size // 4 : 3 * size // 4, size // 4 : 3 * size // 4] = 255
    buffer = io.BytesIO()
    Image.fromarray(rgb).save(buffer, "PNG")
    return buffer.getvalue()


def assert_square_matte(alpha: np.ndarray) -> None:
    """Opaque inside the square, clear outside, away from the edge band."""
    size = alpha.shape[0]
    q, m = size // 4, size // 32
    inside = alpha[q + m : 3 * q - m, q + m : 3 * q - m]
    outside = np.concatenate([alpha[: q - m].ravel(), alpha[3 * q + m :].ravel()])
    assert inside.min() >= 250 and outside.max() <= 5


@pytest.fixture
def drop_in(tmp_path, monkeypatch):
    """A temporary BGCUT_MODEL_DIR that accepts unverified drop-ins, and no network sources."""
    folder = tmp_path / "models"
    folder.mkdir()
    monkeypatch.setenv("BGCUT_MODEL_DIR", str(folder))
    monkeypatch.setenv("BGCUT_MODEL_UNVERIFIED", "1")
    monkeypatch.setenv("BGCUT_MODEL_SOURCES", "none")
    return folder


def test_every_entry_says_where_it_comes_from_and_how_it_runs():
    assert {"u2netp", "u2net", "silueta", "u2net_human_seg", *NEW_MODELS} <= set(MODELS)
    for name, spec in MODELS.items():
        assert re.fullmatch(r"[0-9a-f]{32}", spec.md5), name
        assert spec.url().startswith(RELEASE_BASE_URL + "/") and spec.url().endswith(".onnx")
        assert spec.licence and spec.publisher.startswith("https://github.com/")
        assert spec.approx_mb > 0 and len(spec.mean) == len(spec.std) == 3
    for name in NEW_MODELS:
        assert MODELS[name].input_size == (1024, 1024)
        assert MODELS[name].sha256 is None  # the publisher gives an MD5 only
    assert MODELS["isnet-general-use"].std == (1.0, 1.0, 1.0)
    assert MODELS["birefnet-general"].sigmoid and not MODELS["isnet-general-use"].sigmoid
    assert MODELS["birefnet-general"].url().endswith("/BiRefNet-general-epoch_244.onnx")


@pytest.mark.parametrize("name", sorted(MODELS))
def test_pre_and_post_processing_on_a_graph_with_the_models_signature(name, drop_in):
    write_graph(name, drop_in)
    rgb = photo(get_spec(name).input_size)
    got = Matting(memo=0).segmenter(name).predict(rgb)
    assert got.shape == rgb.shape[:2] and got.dtype == np.float32
    np.testing.assert_allclose(got, expected_pass(name, rgb), atol=2e-4)


def test_drop_in_with_the_wrong_checksum_is_refused_unless_asked(tmp_path, monkeypatch):
    monkeypatch.delenv("BGCUT_MODEL_UNVERIFIED", raising=False)
    path = write_graph("isnet-general-use", tmp_path)
    with pytest.raises(ModelUnavailableError) as caught:
        ensure_model("isnet-general-use", model_dir=tmp_path, sources=())
    message = str(caught.value)
    assert "checksum mismatch" in message and str(path) in message
    assert ensure_model("isnet-general-use", model_dir=tmp_path, verify=False) == path
    monkeypatch.setenv("BGCUT_MODEL_UNVERIFIED", "1")
    assert ensure_model("isnet-general-use", model_dir=tmp_path, sources=()) == path
    assert verify_file(path, get_spec("isnet-general-use")) is not None  # still not the real one


def test_models_pull_without_network_names_the_url_and_the_drop_in_path(
    tmp_path, monkeypatch, capsys
):
    base = f"http://127.0.0.1:{_closed_port()}/release"
    monkeypatch.setenv("BGCUT_MODEL_BASE_URL", base)
    monkeypatch.delenv("BGCUT_MODEL_SOURCES", raising=False)
    started = time.monotonic()
    status = cli_main(["models", "pull", "birefnet-general", "--model-dir", str(tmp_path)])
    assert time.monotonic() - started < 30
    err = capsys.readouterr().err
    assert status == 1
    assert f"{base}/BiRefNet-general-epoch_244.onnx" in err  # the address tried
    assert f"{RELEASE_BASE_URL}/BiRefNet-general-epoch_244.onnx" in err  # where to get it
    assert f"save it as {tmp_path / 'birefnet-general.onnx'}" in err
    assert "md5 7a35a0141cbbc80de11d9c9a28f52697" in err
    assert "PyPI" not in err  # no wheel carries it: pip is not tried
    assert not list(tmp_path.glob("*.onnx"))


def test_models_list_shows_installed_size_and_licence(drop_in, capsys):
    write_graph("birefnet-general-lite", drop_in)
    assert cli_main(["models", "list"]) == 0
    rows = {line.split()[0]: line.split() for line in capsys.readouterr().out.splitlines()[1:]}
    assert rows["birefnet-general-lite"][1:4] == ["unverified", "224.0MB~", "MIT"]
    assert rows["birefnet-general-lite"][-1] == str(model_file("birefnet-general-lite"))
    assert rows["isnet-general-use"][1] == "no" and rows["isnet-general-use"][3] == "Apache-2.0"


def test_local_backend_runs_the_chosen_model_for_the_high_tier(drop_in, tmp_path):
    write_graph("isnet-general-use", drop_in)
    backend = LocalBackend(tmp_path / "engine", models={"high": "isnet-general-use"})
    assert backend.tier_models == {**TIER_MODELS, "high": "isnet-general-use"}
    uid = backend.upload_image(square_png()).unique_filename
    result = backend.process_image(uid, [{"variant_name": "cut", "quality": "high"}])
    out = Image.open(io.BytesIO(backend.fetch(result.output_urls["cut"])))
    assert out.mode == "RGBA" and out.size == (1024, 1024)
    assert_square_matte(np.asarray(out)[..., 3])
    matting = backend.engine.matting
    assert matting.model_for("high") == "isnet-general-use"
    assert matting.segmenter("isnet-general-use").passes == 1
    assert "u2net" not in matting._segmenters  # the default high model was never loaded


def test_an_explicit_model_that_is_missing_is_an_error_not_a_fallback(drop_in, tmp_path):
    backend = LocalBackend(tmp_path / "engine", models={"high": "birefnet-general"})
    uid = backend.upload_image(square_png(256)).unique_filename
    with pytest.raises(ModelUnavailableError, match="birefnet-general.onnx"):
        backend.process_image(uid, [{"variant_name": "cut", "quality": "high"}])


def test_unknown_model_or_tier_is_refused_at_once(tmp_path):
    with pytest.raises(ModelUnavailableError, match="unknown model 'isnet'"):
        LocalBackend(tmp_path, models={"high": "isnet"})
    with pytest.raises(ValueError, match="unknown quality tier"):
        LocalBackend(tmp_path, models={"best": "u2net"})


def test_server_uses_the_high_tier_model_it_was_given(drop_in, tmp_path):
    write_graph("isnet-general-use", drop_in)
    with ServerThread(
        {"k": 10.0}, tmp_path / "server", models={"high": "isnet-general-use"}, rate_limit=0
    ) as server:
        assert server.backend.tier_models["high"] == "isnet-general-use"
        client = RemoteBackend("k", server.base_url)
        uid = client.upload_image(square_png()).unique_filename
        result = client.process_image(uid, [{"variant_name": "cut", "quality": "high"}])
        out = Image.open(io.BytesIO(requests.get(result.output_urls["cut"], timeout=30).content))
        assert_square_matte(np.asarray(out)[..., 3])


def test_serve_command_takes_a_model_per_tier(drop_in, tmp_path):
    """``bgcut-nb serve --model-high NAME`` in a real subprocess on loopback."""
    write_graph("isnet-general-use", drop_in)
    port = _closed_port()
    command = [
        sys.executable, "-m", "bgcut_nb", "serve", "--port", str(port), "--api-key", "k",
        "--storage-dir", str(tmp_path / "store"), "--model-high", "isnet-general-use",
    ]  # fmt: skip
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        base = f"http://127.0.0.1:{port}"
        assert wait_until_serving(proc, base), "serve did not start"
        client = RemoteBackend("k", base)
        uid = client.upload_image(square_png()).unique_filename
        result = client.process_image(uid, [{"variant_name": "cut", "quality": "high"}])
        out = Image.open(io.BytesIO(requests.get(result.output_urls["cut"], timeout=30).content))
        assert_square_matte(np.asarray(out)[..., 3])
    finally:
        proc.terminate()
        output = proc.communicate(timeout=30)[0]
    assert "using the unverified copy" in output and "isnet-general-use.onnx" in output


def test_serve_refuses_an_unknown_model_name(capsys):
    status = cli_main(["serve", "--api-key", "k", "--model-high", "no-such-model"])
    assert status == 2
    assert "unknown model 'no-such-model'" in capsys.readouterr().err
