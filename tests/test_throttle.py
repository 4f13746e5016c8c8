"""The client's rate limiter: pacing at a configured plan, learning one from 429 answers.

The pacing rules are checked on a virtual clock (the limiter takes ``clock``/``sleep``), so
nothing here depends on this machine's speed; the HTTP tests count 429s on the project's own
simulator on 127.0.0.1.
"""

from __future__ import annotations

import io

import pytest
from PIL import Image

from bgcut_nb import RemoteBackend
from bgcut_nb.backends.pacing import Pacer
from bgcut_nb.core.config import resolve_requests_per_minute
from bgcut_nb.testing.server import ServerThread
from bgcut_nb.testing.simulator import SimulatorSpec

KEY = "sk-throttle-SECRET-9d8e"


class VirtualClock:
    """Time that passes only when someone sleeps (or the test says so)."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += max(0.0, seconds)


def limiter(rpm=None, **kw) -> tuple[Pacer, VirtualClock]:
    clock = VirtualClock()
    return Pacer(rpm, clock=clock, sleep=clock.sleep, **kw), clock


def test_a_configured_plan_spaces_requests_evenly():
    pace, clock = limiter(120)
    sent = []
    for _ in range(5):
        pace.acquire()
        sent.append(clock.now - 1000.0)
    assert sent == pytest.approx([0.0, 0.5, 1.0, 1.5, 2.0])
    clock.now += 10  # idle time is not saved up beyond the burst
    start = clock.now
    pace.acquire()
    pace.acquire()
    assert clock.now - start == pytest.approx(0.5)


def test_a_burst_lets_that_many_go_at_once():
    pace, clock = limiter(60, burst=3)
    for _ in range(3):
        assert pace.acquire() == 0.0
    assert pace.acquire() == pytest.approx(1.0)


def test_without_a_plan_the_pace_is_learnt_from_a_429():
    pace, clock = limiter(None)
    assert pace.requests_per_minute is None
    for _ in range(30):  # 30 accepted in 10 s: the service took 180 per minute
        assert pace.acquire() == 0.0
        pace.observe(200)
        clock.now += 10 / 30
    pace.observe(429, retry_after=2.0)
    assert pace.rate_limited == 1
    assert 160 < pace.requests_per_minute < 185
    assert pace.acquire() == pytest.approx(2.0, abs=0.01)  # Retry-After is waited out first
    waits = [pace.acquire() for _ in range(3)]
    assert waits == pytest.approx([60 / pace.requests_per_minute] * 3, rel=0.05)


def test_429s_during_one_pause_lower_the_pace_once_and_pauses_are_not_counted():
    pace, clock = limiter(None)
    for _ in range(30):  # 180 per minute accepted
        pace.acquire()
        pace.observe(200)
        clock.now += 10 / 30
    pace.observe(429, retry_after=2.0)
    learnt = pace.requests_per_minute
    for _ in range(5):  # in-flight requests sent before the pause was known
        clock.now += 0.1
        pace.observe(429, retry_after=2.0)
    assert pace.rate_limited == 6 and pace.requests_per_minute == pytest.approx(learnt)
    for _ in range(10):  # the service keeps accepting at the learnt pace, which holds them
        pace.acquire()
        pace.observe(200)
    pace.observe(429, retry_after=0)
    # the 2.5 s paused are not "time the service accepted nothing in": one more 2% step only
    assert pace.requests_per_minute == pytest.approx(learnt * 0.98, rel=0.03)


def _refused_while_held(pace, clock) -> float:
    """Learn a pace from a 429, then have the service refuse it while it holds requests back."""
    for _ in range(20):
        pace.acquire()
        pace.observe(200)
        clock.now += 0.5
    pace.observe(429, retry_after=0)
    for _ in range(5):
        pace.acquire()  # held back by the learnt pace
        pace.observe(200)
    pace.observe(429, retry_after=0)
    return pace.requests_per_minute


def test_a_quiet_minute_probes_a_refused_pace_faster_but_never_past_the_plan():
    pace, clock = limiter(None)
    learnt = _refused_while_held(pace, clock)
    clock.now += 30
    pace.acquire()
    assert pace.requests_per_minute == pytest.approx(learnt)  # a firm pace waits a minute
    clock.now += 31
    pace.acquire()
    assert pace.requests_per_minute == pytest.approx(learnt * 1.05)

    planned, clock = limiter(100)
    clock.now += 61
    planned.acquire()
    assert planned.requests_per_minute == pytest.approx(100)


def test_a_429_that_came_while_the_batch_was_slow_does_not_pin_it_to_that_pace():
    pace, clock = limiter(None)
    for _ in range(20):  # a slow moment of the batch: one request a second
        pace.acquire()
        pace.observe(200)
        clock.now += 1.0
    pace.observe(429, retry_after=1.0)  # a 429 for some other reason (a full queue)
    assert pace.requests_per_minute == pytest.approx(60 * 0.98, rel=0.05)
    start = clock.now
    for _ in range(60):  # then the batch asks as fast as it can, and everything is accepted
        pace.acquire()
        pace.observe(200)
    # held back, the learnt pace speeds up 25% every 5 quiet seconds: 60 requests in about
    # 25 s, where the pace the 429 set (59 a minute, 5% more a minute) would take a minute
    assert clock.now - start < 35
    assert pace.requests_per_minute > 100
    clock.now += 6  # idle: the pace holds nothing back any more and is dropped
    assert pace.acquire() == 0.0 and pace.requests_per_minute is None


def test_429s_refusing_several_requests_at_once_make_the_learnt_pace_firm():
    pace, clock = limiter(None)
    for _ in range(20):  # a slow moment of the batch, as above
        pace.acquire()
        pace.observe(200)
        clock.now += 1.0
    pace.observe(429, retry_after=1.0)
    clock.now += 0.2
    pace.observe(429, retry_after=1.0)  # another request in flight refused too: the plan
    learnt = pace.requests_per_minute
    for _ in range(10):  # held back by the pace, all accepted, for more than 5 s
        pace.acquire()
        pace.observe(200)
    assert clock.now - 1020 > 6
    assert pace.requests_per_minute == pytest.approx(learnt)  # no fast probe: a firm pace


def test_a_429_below_a_known_pace_steps_it_down_only_2_percent():
    pace, clock = limiter(120)  # the plan allows 120 a minute; the batch sends 30
    for _ in range(10):
        pace.acquire()
        pace.observe(200)
        clock.now += 2.0
    pace.observe(429, retry_after=0)
    assert pace.requests_per_minute == pytest.approx(120 * 0.98)  # not the batch's 30 * 0.98


def test_the_plan_comes_from_the_argument_or_the_environment(monkeypatch):
    monkeypatch.delenv("BGCUT_REQUESTS_PER_MINUTE", raising=False)
    assert resolve_requests_per_minute() is None
    monkeypatch.setenv("BGCUT_REQUESTS_PER_MINUTE", "500")
    assert resolve_requests_per_minute() == 500
    assert resolve_requests_per_minute(120) == 120  # the argument wins
    assert RemoteBackend(KEY, "http://127.0.0.1:9").pacer.configured == 500
    monkeypatch.setenv("BGCUT_REQUESTS_PER_MINUTE", "fast")
    with pytest.raises(ValueError, match="BGCUT_REQUESTS_PER_MINUTE"):
        resolve_requests_per_minute()


def jpeg() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (32, 24), (200, 40, 40)).save(buffer, "JPEG")
    return buffer.getvalue()


def test_the_client_learns_the_plan_and_every_request_gets_through(monkeypatch):
    monkeypatch.delenv("BGCUT_REQUESTS_PER_MINUTE", raising=False)
    spec = SimulatorSpec(process_seconds=(0, 0), plan_rpm=300)  # 5/s, bucket of 5
    with ServerThread({KEY: 100}, simulate=spec) as server:
        with RemoteBackend(KEY, server.base_url) as api:
            for _ in range(20):
                api.upload_image(jpeg())
            seen = api.pressure()["rate_limited"]
            learnt = api.pacer.requests_per_minute
        assert server.stats["upload"] == 20  # every upload got through, after waiting
        assert seen == server.stats["rate_limited"] > 0  # the client saw each 429 the plan sent
        assert learnt is not None and learnt < 2 * 300


def test_a_client_configured_with_the_plan_provokes_no_429(monkeypatch):
    monkeypatch.delenv("BGCUT_REQUESTS_PER_MINUTE", raising=False)
    spec = SimulatorSpec(process_seconds=(0, 0), plan_rpm=300)
    with ServerThread({KEY: 100}, simulate=spec) as server:
        with RemoteBackend(KEY, server.base_url, requests_per_minute=300) as api:
            for _ in range(15):
                api.upload_image(jpeg())
            assert api.pressure() == {"rate_limited": 0, "overloaded": 0}
        assert server.stats["upload"] == 15 and server.stats["rate_limited"] == 0
