"""The batch at the service's limit: adaptive in-flight limit, 429s counted, pools sized.

The AIMD rules are checked by feeding latencies to :class:`AdaptiveLimit` directly (no clock);
the batch runs against the project's service simulator on 127.0.0.1, whose counts are the
server's. No figure here is a speed target (those live in ``benchmarks/batch.py --simulate``).
"""

from __future__ import annotations

import logging

import pandas as pd
from notebook_support import make_photos

import bgcut_nb  # noqa: F401 - registers the accessors
from bgcut_nb import RemoteBackend
from bgcut_nb.backends.remote import RetryPolicy
from bgcut_nb.batch.concurrency import AdaptiveLimit
from bgcut_nb.contract.wire import PROCESS_PATH
from bgcut_nb.testing.faults import FaultSpec
from bgcut_nb.testing.server import ServerThread
from bgcut_nb.testing.simulator import SimulatorSpec

KEY = "sk-throughput-SECRET-4e5f"
FAST = RetryPolicy(retries=6, backoff=0.01, backoff_max=0.05)
ONE = [{"variant_name": "cut", "max_resolution": 4_000}, {"variant_name": "jpg", "format": "jpg"}]


def finish(gate: AdaptiveLimit, op: str, seconds: float, n: int) -> None:
    for _ in range(n):
        gate.acquire()
        gate.release(op, seconds)


def test_the_limit_grows_one_per_round_while_latency_is_flat():
    gate = AdaptiveLimit(4, maximum=10)
    finish(gate, "process", 2.0, 4)  # round 1 sets the baseline
    assert gate.limit == 5
    finish(gate, "process", 2.2, 5)
    finish(gate, "process", 1.9, 6)
    assert gate.limit == 7
    finish(gate, "process", 5.0, 7)  # latency went up 2.5x: hold
    assert gate.limit == 7
    for _ in range(20):
        finish(gate, "process", 2.0, gate.limit)
    assert gate.limit == gate.peak == 10  # never past the maximum


def test_pushback_halves_the_limit():
    pushback = [0]
    gate = AdaptiveLimit(16, maximum=32, pressure=lambda: pushback[0])
    finish(gate, "upload", 0.1, 3)
    pushback[0] = 1  # the backend saw a 503
    finish(gate, "upload", 0.1, 1)
    assert gate.limit == 8 and gate.decreases == 1
    pushback[0] = 3
    finish(gate, "upload", 0.1, 1)
    assert gate.limit == 4
    finish(gate, "upload", 0.1, 4)
    assert gate.limit == 5  # and grows again once the pushback stops


def test_a_fixed_limit_never_moves():
    gate = AdaptiveLimit(3, adaptive=False, pressure=lambda: 99)
    finish(gate, "process", 1.0, 30)
    assert gate.limit == gate.peak == 3


def frame(tmp_path, n: int) -> pd.DataFrame:
    return pd.DataFrame({"path": [str(p) for p in make_photos(tmp_path / "photos", n)]})


def test_with_room_to_spare_the_batch_keeps_more_calls_in_flight(tmp_path, monkeypatch, caplog):
    monkeypatch.delenv("BGCUT_REQUESTS_PER_MINUTE", raising=False)
    spec = SimulatorSpec(process_seconds=(0.2, 0.3))  # no plan limit
    df = frame(tmp_path, 80)
    with ServerThread({KEY: 1e6}, tmp_path / "server", simulate=spec) as server:
        backend = RemoteBackend(KEY, server.base_url)
        with caplog.at_level(logging.WARNING, logger="urllib3.connectionpool"):
            out = df.bgcut.process(
                ONE, backend=backend, out_dir=tmp_path / "out", cache=False, progress=False
            )
        backend.close()
        peak_on_server = server.backend.peak_in_flight
        assert server.stats["process"] == 80 and server.stats["file"] == 160
    stats = out.bgcut.stats
    assert stats["done"] == 80 and (out["bgcut_error"] == "").all()
    assert stats["concurrency"] > backend.default_workers  # grew past the default 8
    assert peak_on_server > backend.default_workers
    # the connection pool was sized to the batch's threads: no connection thrown away
    assert not [r for r in caplog.records if "pool is full" in r.getMessage()]


def test_429s_are_waited_out_counted_and_fail_no_row(tmp_path, monkeypatch):
    monkeypatch.delenv("BGCUT_REQUESTS_PER_MINUTE", raising=False)
    spec = SimulatorSpec(process_seconds=(0.05, 0.1), plan_rpm=600)  # 10/s, bucket of 10
    df = frame(tmp_path, 16)
    with ServerThread({KEY: 1e6}, tmp_path / "server", simulate=spec) as server:
        backend = RemoteBackend(KEY, server.base_url)  # no plan configured: learnt from 429s
        out = df.bgcut.process(
            ONE, backend=backend, out_dir=tmp_path / "out", cache=False, progress=False
        )
        backend.close()
        sent = server.stats["rate_limited"]
        assert server.stats["upload"] == 16 and server.stats["process"] == 16
    assert (out["bgcut_error"] == "").all()
    stats = out.bgcut.stats
    assert stats["rate_limited"] == sent > 0  # every 429 the plan sent, seen and retried
    # a 429 is about the pace (the rate limiter's job), not about calls in flight
    assert stats["concurrency_cuts"] == 0 and stats["concurrency"] >= backend.default_workers


def test_503s_halve_the_calls_in_flight_and_fail_no_row(tmp_path, monkeypatch):
    monkeypatch.delenv("BGCUT_REQUESTS_PER_MINUTE", raising=False)
    spec = SimulatorSpec(process_seconds=(0.05, 0.1))
    overloaded = FaultSpec(rate=0.3, kinds=("503",), paths=(PROCESS_PATH,), seed=3)
    df = frame(tmp_path, 24)
    with ServerThread({KEY: 1e6}, tmp_path / "server", simulate=spec, faults=overloaded) as server:
        backend = RemoteBackend(KEY, server.base_url, retry=FAST)
        out = df.bgcut.process(
            ONE, backend=backend, out_dir=tmp_path / "out", cache=False, progress=False
        )
        backend.close()
        injected = server.proxy.stats["503"]
    assert (out["bgcut_error"] == "").all(), out["bgcut_error"].tolist()
    stats = out.bgcut.stats
    assert stats["overloaded"] == injected > 0
    assert stats["concurrency_cuts"] >= 1


def test_a_fixed_max_workers_keeps_the_old_pool(tmp_path, monkeypatch):
    monkeypatch.delenv("BGCUT_REQUESTS_PER_MINUTE", raising=False)
    df = frame(tmp_path, 6)
    spec = SimulatorSpec(process_seconds=(0.05, 0.05))
    with ServerThread({KEY: 1e6}, tmp_path / "server", simulate=spec) as server:
        backend = RemoteBackend(KEY, server.base_url)
        out = df.bgcut.process(
            ONE,
            backend=backend,
            out_dir=tmp_path / "out",
            cache=tmp_path / "cache",
            max_workers=2,
            progress=False,
        )
        backend.close()
        assert server.backend.peak_in_flight <= 2
    assert out.bgcut.stats["concurrency"] == 0 and (out["bgcut_error"] == "").all()
