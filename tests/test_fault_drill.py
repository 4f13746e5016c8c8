"""Fault drill: 30 images (``benchmarks/faults.py`` runs 50) through RemoteBackend while the
proxy injects faults; every output is checked on pixels and nothing is charged twice."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

from bgcut_nb.testing.faults import FAULT_KINDS

pytestmark = pytest.mark.slow

_PATH = Path(__file__).resolve().parents[1] / "benchmarks" / "faults.py"
_spec = importlib.util.spec_from_file_location("bgcut_fault_drill", _PATH)
drill = importlib.util.module_from_spec(_spec)
sys.modules[_spec.name] = drill  # dataclasses look their module up there
_spec.loader.exec_module(drill)


IMAGES = 30  # with seed 11, enough requests for every kind of fault
#: Distinct balls among them: the drill is about faults, so equal photos share one model pass
#: (every image is still uploaded, processed, charged and checked on its own).
DISTINCT = 6


def test_a_batch_survives_injected_faults(bgcut_engine, tmp_path):
    report = drill.run_drill(
        IMAGES,
        rate=0.2,
        workers=4,
        seed=11,
        backend=bgcut_engine,
        storage_dir=tmp_path / "srv",
        distinct=DISTINCT,
    )
    print(report.table())
    assert report.failures == []
    # every kind of fault really happened, and the batch still completed
    assert set(report.faults) == set(FAULT_KINDS), report.faults
    # one charge per variant set, the balance down by exactly that
    assert report.charges == report.distinct_charges == IMAGES
    assert report.credits_charged == report.credits_expected == IMAGES * 2.0
    assert report.ok
