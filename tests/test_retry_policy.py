"""The retry rules without sockets: ``RetryPolicy.decide`` on a table of outcomes, then
``RemoteBackend`` driven end to end through retries by an in-memory transport.

The transport below is a fake (canned ``requests.Response`` objects and ``requests``' own
exceptions, requests prepared by ``requests`` itself), not a mock library; the loopback tests
against the real server (test_remote.py, test_lost_answers.py, ...) stay as they are.
"""

from __future__ import annotations

import io
import json

import pytest
import requests
import urllib3.exceptions

from bgcut_nb import APIConnectionError, NotFoundError, RateLimitError
from bgcut_nb.backends.remote import IDEMPOTENCY_HEADER, RemoteBackend, Timeouts
from bgcut_nb.backends.retry import (
    GiveUp,
    Retry,
    RetryPolicy,
    request_was_sent,
    retry_after_seconds,
)
from bgcut_nb.contract.wire import IDEMPOTENCY_SUPPORT_HEADER

KEY = "sk-retry-SECRET-51c3"
POLICY = RetryPolicy(retries=3, backoff=0.5, backoff_max=8.0, retry_after_max=60.0)


def refused() -> requests.ConnectionError:
    """What requests raises for a refused connection (nothing was sent)."""
    reason = urllib3.exceptions.NewConnectionError(None, "Connection refused")
    return requests.ConnectionError(urllib3.exceptions.MaxRetryError(None, "/", reason))


def reset() -> requests.ConnectionError:
    """What requests raises when the connection drops after the request went out."""
    reason = urllib3.exceptions.ProtocolError("Connection aborted.", ConnectionResetError())
    return requests.ConnectionError(reason)


NEVER_SENT = {"refused": refused, "connect timeout": requests.ConnectTimeout}
SENT = {
    "reset": reset,
    "read timeout": requests.ReadTimeout,
    "truncated": requests.exceptions.ChunkedEncodingError,
}

# (what ended the attempt, headers, op, attempt, server_dedups, policy, expected)
# expected: ("retry", low, high) for the delay's bounds, or ("give up", sent).
CASES = [
    (429, {}, "upload-image", 0, False, POLICY, ("retry", 0.25, 0.5)),
    (502, {}, "upload-image", 1, False, POLICY, ("retry", 0.5, 1.0)),
    (503, {}, "process-image", 2, False, POLICY, ("retry", 1.0, 2.0)),
    (504, {}, "fetch", 0, False, POLICY, ("retry", 0.25, 0.5)),
    (503, {}, "fetch", 6, False, RetryPolicy(retries=9), ("retry", 4.0, 8.0)),  # capped at 8 s
    (429, {"Retry-After": "7"}, "process-image", 0, False, POLICY, ("retry", 7.0, 7.0)),
    (503, {"Retry-After": "0"}, "upload-image", 0, False, POLICY, ("retry", 0.0, 0.0)),
    (429, {"Retry-After": "60"}, "upload-image", 0, False, POLICY, ("retry", 60.0, 60.0)),
    (429, {"Retry-After": "61"}, "upload-image", 0, False, POLICY, ("give up", True)),
    (429, {"Retry-After": "soon"}, "upload-image", 0, False, POLICY, ("retry", 0.25, 0.5)),
    (429, {}, "upload-image", 3, False, POLICY, ("give up", True)),  # out of retries
    (503, {}, "upload-image", 0, False, RetryPolicy(retries=0), ("give up", True)),
    *[(s, {}, "upload-image", 0, False, POLICY, ("give up", True)) for s in (400, 401, 402)],
    *[(s, {}, "fetch", 0, False, POLICY, ("give up", True)) for s in (404, 413, 500)],
    (503, {}, "fetch", 0, False, RetryPolicy(statuses=frozenset({429})), ("give up", True)),
    # failures to connect: nothing was sent, so every operation is repeated
    *[(make, {}, op, 0, False, POLICY, ("retry", 0.25, 0.5)) for make in NEVER_SENT.values()
      for op in ("upload-image", "process-image", "fetch")],
    (refused, {}, "process-image", 3, False, POLICY, ("give up", False)),
    # sent, answer lost: free operations are repeated ...
    *[(make, {}, op, 1, False, POLICY, ("retry", 0.5, 1.0)) for make in SENT.values()
      for op in ("upload-image", "fetch")],
    # ... a paid one only when the server deduplicates, or the policy says so
    *[(make, {}, "process-image", 0, False, POLICY, ("give up", True)) for make in SENT.values()],
    (reset, {}, "process-image", 0, True, POLICY, ("retry", 0.25, 0.5)),
    (reset, {}, "process-image", 3, True, POLICY, ("give up", True)),
    (
        reset, {}, "process-image", 0, False,
        RetryPolicy(retry_ambiguous_process=True), ("retry", 0.25, 0.5),
    ),
    (
        reset, {}, "process-image", 0, True,
        RetryPolicy(retry_ambiguous_process=False), ("give up", True),
    ),
]  # fmt: skip


@pytest.mark.parametrize(
    ("outcome", "headers", "op", "attempt", "dedups", "policy", "expected"), CASES
)
def test_decide(outcome, headers, op, attempt, dedups, policy, expected):
    made = outcome() if callable(outcome) else outcome
    decision = policy.decide(attempt, made, headers, op=op, server_dedups=dedups)
    if expected[0] == "retry":
        assert isinstance(decision, Retry), decision
        assert expected[1] <= decision.after <= expected[2]
    else:
        assert isinstance(decision, GiveUp), decision
        assert decision.sent is expected[1] and decision.reason


def test_what_counts_as_sent_and_how_retry_after_reads():
    assert not any(request_was_sent(make()) for make in NEVER_SENT.values())
    assert all(request_was_sent(make()) for make in SENT.values())
    assert retry_after_seconds({"Retry-After": "12"}) == 12
    assert retry_after_seconds({"Retry-After": "Wed, 21 Oct 2015 07:28:00 GMT"}) == 0  # past
    assert retry_after_seconds({"Retry-After": "later"}) is None
    assert retry_after_seconds({}) is None and retry_after_seconds(None) is None


class CannedTransport:
    """An in-memory transport: answers each request with the next canned answer, a
    ``(status, headers, body)`` or a ``requests`` exception to raise. Requests are prepared by
    ``requests`` (auth applied, bodies encoded) and kept in ``sent``."""

    def __init__(self, *answers: tuple[int, dict[str, str], object] | requests.RequestException):
        self.answers = list(answers)
        self.sent: list[requests.PreparedRequest] = []
        self.closed = False

    def request(self, method: str, url: str, **kwargs) -> requests.Response:
        known = {k: kwargs[k] for k in ("headers", "files", "json", "auth") if k in kwargs}
        self.sent.append(requests.Request(method, url, **known).prepare())
        answer = self.answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        status, headers, body = answer
        response = requests.Response()
        response.status_code, response.url = status, url
        response.headers.update(headers)
        raw = body if isinstance(body, bytes) else json.dumps(body).encode()
        response.raw = io.BytesIO(raw)
        return response

    def close(self) -> None:
        self.closed = True


FAST = RetryPolicy(retries=3, backoff=0.001, backoff_max=0.002)


@pytest.fixture
def no_plan(monkeypatch):
    monkeypatch.delenv("BGCUT_REQUESTS_PER_MINUTE", raising=False)


def test_remote_backend_retries_through_a_transport(no_plan):
    transport = CannedTransport(
        (503, {}, {"detail": "busy"}),
        (429, {"Retry-After": "0"}, {"detail": "Rate limit exceeded"}),
        reset(),  # upload-image is free: repeated even though it was sent
        (200, {}, {"unique_filename": "u1"}),
        reset(),  # process-image: not repeated, the server has not said it deduplicates
    )
    with RemoteBackend(KEY, "http://api.test", retry=FAST, transport=transport) as api:
        assert api.upload_image(b"\x89PNG-bytes").unique_filename == "u1"
        assert len(transport.sent) == 4
        assert api.pressure() == {"rate_limited": 1, "overloaded": 1}
        assert all(r.headers["Authorization"] == f"Bearer {KEY}" for r in transport.sent)
        with pytest.raises(APIConnectionError, match="may or may not") as caught:
            api.process_image("u1", [{"variant_name": "a"}])
        assert caught.value.maybe_processed and len(transport.sent) == 5
        assert caught.value.__context__ is None and KEY not in str(caught.value)
    assert transport.closed


def test_a_deduplicating_server_gets_the_same_key_on_a_repeat(no_plan):
    urls = {"a": "http://cdn.test/a.png?signature=s"}
    transport = CannedTransport(
        (200, {IDEMPOTENCY_SUPPORT_HEADER: "process-image"}, {"unique_filename": "u1"}),
        reset(),
        (200, {}, {"unique_filename": "u1", "input_url": "", "output_urls": urls}),
        (404, {}, {"detail": "Image not found or has expired."}),
    )
    api = RemoteBackend(KEY, "http://api.test", retry=FAST, transport=transport)
    api.upload_image(b"\x89PNG-bytes")
    assert api.process_image("u1", [{"variant_name": "a"}]).output_urls == urls
    first, repeat = transport.sent[1:3]
    assert first.headers[IDEMPOTENCY_HEADER] == repeat.headers[IDEMPOTENCY_HEADER]
    with pytest.raises(NotFoundError):  # 404 is never retried; outputs go without the key
        api.fetch(urls["a"])
    assert len(transport.sent) == 4 and "Authorization" not in transport.sent[3].headers


def test_a_long_retry_after_is_raised_at_once(no_plan):
    transport = CannedTransport((429, {"Retry-After": "3600"}, {"detail": "Rate limit exceeded"}))
    api = RemoteBackend(KEY, "http://api.test", retry=FAST, transport=transport)
    with pytest.raises(RateLimitError) as caught:
        api.upload_image(b"\x89PNG-bytes")
    assert caught.value.retry_after == 3600 and len(transport.sent) == 1


def test_grouped_options_and_the_single_ones_agree(no_plan):
    single = RemoteBackend(
        KEY,
        "http://api.test",
        connect_timeout=1.0,
        upload_timeout=2.0,
        retry_ambiguous_process=True,
        requests_per_minute=120,
    )
    assert single.timeouts == Timeouts(connect=1.0, upload=2.0)
    assert single.retry == RetryPolicy(retry_ambiguous_process=True)
    assert single.retry_ambiguous_process is True and single.pacer.configured == 120
    grouped = RemoteBackend(
        KEY,
        "http://api.test",
        timeouts=Timeouts(connect=1.0, upload=2.0),
        retry=RetryPolicy(retry_ambiguous_process=True),
    )
    assert (grouped.timeouts, grouped.retry) == (single.timeouts, single.retry)
    grouped.retry_ambiguous_process = False  # the attribute it always was, kept in the policy
    assert grouped.retry == RetryPolicy(retry_ambiguous_process=False)
    with pytest.raises(TypeError, match="unexpected keyword argument 'retries'"):
        RemoteBackend(KEY, "http://api.test", retries=3)
    with pytest.raises(TypeError, match="not both"):
        RemoteBackend(KEY, "http://api.test", pacer=single.pacer, requests_per_minute=60)
