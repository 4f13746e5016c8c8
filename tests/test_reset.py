"""``bgcut_nb.reset()``: one public way to forget every process-wide registry."""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import os

import pytest
from models_support import model_path

import bgcut_nb
from bgcut_nb.batch.options import resolve_backend
from bgcut_nb.batch.reuse import default_cache
from bgcut_nb.engine import models, segmenter
from bgcut_nb.engine.models import MODELS, verify_file
from bgcut_nb.engine.providers import choose_providers
from bgcut_nb.engine.segmenter import shared_segmenter


@pytest.fixture(autouse=True)
def _warm_sessions_come_back():
    """reset() drops the process's ONNX sessions and verified-model memo; the tests after these
    (some with uploads that live 1 s) must not pay a cold model load for it, so the sessions and
    the memo there were before each test are put back after it."""
    sessions, verified = dict(segmenter._shared), set(models._verified)
    yield
    segmenter._shared.update(sessions)
    models._verified.update(verified)


def test_reset_closes_the_default_caches_and_the_next_one_is_new(tmp_path):
    first = default_cache(tmp_path / "cache")
    assert default_cache(tmp_path / "cache") is first
    bgcut_nb.reset()
    second = default_cache(tmp_path / "cache")
    assert second is not first
    assert second.stats()["directory"] == first.stats()["directory"]  # the closed one reopens


def test_reset_forgets_the_backends_made_for_backend_none(tmp_path, monkeypatch):
    monkeypatch.delenv("BGCUT_API_KEY", raising=False)
    first = resolve_backend(None, cache=tmp_path / "cache")
    assert resolve_backend(None, cache=tmp_path / "cache") is first
    bgcut_nb.reset()
    assert resolve_backend(None, cache=tmp_path / "cache") is not first


def test_reset_gives_the_next_engine_a_fresh_session():
    path = model_path("u2netp")
    spec = MODELS["u2netp"]
    session = shared_segmenter(path, spec, threads=1)
    assert shared_segmenter(path, spec, threads=1) is session
    bgcut_nb.reset()
    assert shared_segmenter(path, spec, threads=1) is not session


def test_reset_makes_a_model_file_changed_in_place_be_checked_again(tmp_path):
    """A file verified once is remembered by (path, size, mtime); one rewritten in place with the
    same size and mtime passes until the memo is forgotten."""
    good = tmp_path / "tiny.onnx"
    good.write_bytes(b"model bytes")
    spec = dataclasses.replace(
        MODELS["u2netp"],
        md5=hashlib.md5(b"model bytes").hexdigest(),
        sha256=None,
        size_bytes=len(b"model bytes"),
    )
    assert verify_file(good, spec) is None
    stat = good.stat()
    good.write_bytes(b"MODEL BYTES")  # same size
    os.utime(good, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert verify_file(good, spec) is None  # remembered
    bgcut_nb.reset()
    assert "md5" in (verify_file(good, spec) or "").lower()


def test_reset_warns_again_about_a_missing_provider(caplog):
    cpu_only = ["CPUExecutionProvider"]
    with caplog.at_level(logging.WARNING, logger="bgcut_nb"):
        bgcut_nb.reset()
        choose_providers(["cuda"], available=cpu_only)
        choose_providers(["cuda"], available=cpu_only)
        assert sum("CUDAExecutionProvider" in r.getMessage() for r in caplog.records) == 1
        bgcut_nb.reset()
        choose_providers(["cuda"], available=cpu_only)
        assert sum("CUDAExecutionProvider" in r.getMessage() for r in caplog.records) == 2
