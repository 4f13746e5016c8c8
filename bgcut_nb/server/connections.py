"""Connection-level limits of the v3 server: what uvicorn's own settings leave open.

uvicorn closes an idle keep-alive connection ``timeout_keep_alive`` seconds after a response,
but a connection that never completes a request head, or that trickles its body, stays open
for ever, and its ``limit_concurrency`` counts open connections, so idle sockets turn every
request into a 503. :func:`uvicorn_config` runs the app with a small subclass of uvicorn's h11
protocol that adds, per :class:`ConnectionLimits`:

* a deadline for the request head, from the connection (or a kept-alive connection's next
  first byte) to the end of the headers; a fresh connection that sends nothing is closed by it;
* a deadline for the whole body: ``body_timeout + Content-Length / min_body_rate`` (a chunked
  body must keep up ``min_body_rate`` on average), answered 408 and closed;
* a cap on open connections per client address (429 with ``Retry-After`` on the request,
  then closed), except for the trusted proxies of ``forwarded_allow_ips``, plus a cap on all
  open connections (beyond it new ones are closed at once);
* ``limit_concurrency`` counted on requests being handled (503), never on idle connections;
  the engine's own queue (429) is the work limit.

Everything else (the header size limit, keep-alive, proxy headers) is uvicorn's.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
from collections import Counter
from dataclasses import dataclass
from typing import Any, ClassVar

import h11
import uvicorn
from uvicorn.protocols.http.h11_impl import H11Protocol

__all__ = ["ConnectionLimits", "uvicorn_config"]


@dataclass(frozen=True)
class ConnectionLimits:
    """Per-connection deadlines and caps (seconds, bytes per second, connections)."""

    #: From the connection, or a kept-alive connection's first byte, to the end of the head.
    head_timeout: float = 10.0
    #: Idle time after a response before a kept-alive connection is closed (uvicorn's).
    keep_alive: float = 5.0
    #: The whole body's deadline is ``body_timeout + length / min_body_rate`` seconds.
    body_timeout: float = 15.0
    min_body_rate: float = 50_000.0
    #: Open connections per client address (0: no cap); trusted proxies are not capped.
    max_connections_per_ip: int = 32
    #: Open connections in all; beyond it new connections are closed at once.
    max_connections: int = 1000
    #: Requests being handled at once (then 503); idle connections do not count.
    limit_concurrency: int = 256
    #: Proxies whose ``X-Forwarded-For`` uvicorn believes ("*": any), comma-separated
    #: addresses or networks; their connections carry many clients, so are not capped.
    forwarded_allow_ips: str = "127.0.0.1,::1"
    #: The largest request head h11 buffers (uvicorn's setting; h11's default).
    max_head_bytes: int = 16 * 1024

    def body_deadline(self, length: int | None, received: int) -> float:
        """Seconds a body may take: ``length`` bytes announced, ``received`` so far."""
        size = max(length or 0, received)
        return self.body_timeout + (size / self.min_body_rate if self.min_body_rate > 0 else 0)

    def is_trusted_proxy(self, host: str) -> bool:
        """Whether ``host`` is one of ``forwarded_allow_ips`` (so not capped per address)."""
        entries = [e.strip() for e in self.forwarded_allow_ips.split(",") if e.strip()]
        if "*" in entries:
            return True
        try:
            address = ipaddress.ip_address(host)
        except ValueError:
            return False
        for entry in entries:
            try:
                if address in ipaddress.ip_network(entry, strict=False):
                    return True
            except ValueError:  # a unix socket path or a host name: not an address
                continue
        return False


def uvicorn_config(app: Any, limits: ConnectionLimits, **options: Any) -> uvicorn.Config:
    """A ``uvicorn.Config`` serving ``app`` under ``limits``; ``options`` go to uvicorn
    (``host``, ``port``, ``log_level``, ...). One per server: the per-address counts live in
    its protocol class."""
    return uvicorn.Config(
        app,
        http=_protocol_class(limits),
        ws="none",  # no websocket routes: an upgrade would leave the connection uncounted
        timeout_keep_alive=limits.keep_alive,  # type: ignore[arg-type]  # a float works
        limit_concurrency=None,  # counted on requests instead (see _LimitedH11._guarded)
        forwarded_allow_ips=limits.forwarded_allow_ips,
        h11_max_incomplete_event_size=limits.max_head_bytes,
        **options,
    )


def _protocol_class(limits: ConnectionLimits) -> type[H11Protocol]:
    return type(
        "LimitedH11Protocol",
        (_LimitedH11,),
        {"limits": limits, "open_per_address": Counter(), "handling": _Handling()},
    )


def _raw_response(status: int, reason: str, detail: str) -> bytes:
    """A complete JSON error answer that closes the connection, written past uvicorn."""
    body = json.dumps({"detail": detail}).encode()
    head = [
        f"HTTP/1.1 {status} {reason}",
        "content-type: application/json",
        f"content-length: {len(body)}",
        "connection: close",
    ]
    return ("\r\n".join(head) + "\r\n\r\n").encode() + body


async def _refuse(send: Any, status: int, detail: str, retry_after: int) -> None:
    body = json.dumps({"detail": detail}).encode()
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        (b"retry-after", str(retry_after).encode()),
        (b"connection", b"close"),
    ]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


class _Handling:
    """Requests admitted to the app and not yet finished, across one server's connections.

    Counted when a request is admitted, not from uvicorn's task set: tasks are created for
    every request whose head arrived in one loop turn before any of them runs, so counting
    them would refuse requests that were all within the limit."""

    def __init__(self) -> None:
        self.count = 0


class _LimitedH11(H11Protocol):
    """uvicorn's h11 protocol with the deadlines and caps of :class:`ConnectionLimits`."""

    limits: ClassVar[ConnectionLimits]
    open_per_address: ClassVar[Counter[str]]
    handling: ClassVar[_Handling]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.limit_concurrency = None  # uvicorn's check counts idle connections: ours does not
        self._inner_app = self.app
        self.app = self._guarded
        self._address: str | None = None
        self._over_cap = False
        self._head_timer: asyncio.TimerHandle | None = None
        self._body_timer: asyncio.TimerHandle | None = None
        self._body_started = 0.0
        self._body_length: int | None = None
        self._body_received = 0

    # Connection bookkeeping

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        if len(self.connections) > self.limits.max_connections:
            transport.close()
            return
        host = self.client[0] if self.client else None
        if host is not None and not self.limits.is_trusted_proxy(host):
            self._address = host
            self.open_per_address[host] += 1
            cap = self.limits.max_connections_per_ip
            self._over_cap = cap > 0 and self.open_per_address[host] > cap
        self._arm_head_timer()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_timers()
        if self._address is not None:
            self.open_per_address[self._address] -= 1
            if self.open_per_address[self._address] <= 0:
                del self.open_per_address[self._address]
            self._address = None
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self.conn.their_state is h11.IDLE and self._head_timer is None:
            self._arm_head_timer()  # the first byte of a kept-alive connection's next request
        elif self._body_timer is not None:
            self._body_received += len(data)
        super().data_received(data)

    def handle_events(self) -> None:
        cycle = self.cycle
        super().handle_events()
        if self.cycle is not cycle:  # a request head was parsed: its body's deadline starts
            self._cancel_head_timer()
            if self.conn.their_state is h11.SEND_BODY:
                self._start_body_deadline()
        if self.conn.their_state is not h11.SEND_BODY and self._body_timer is not None:
            self._body_timer.cancel()
            self._body_timer = None

    def on_response_complete(self) -> None:
        if self._body_timer is not None:
            # Answered before the body was read (401, 413, 404...): the rest, which uvicorn
            # reads only to discard, must keep up the minimum rate from now, whatever
            # Content-Length promised.
            self._body_timer.cancel()
            self._body_length, self._body_received = 0, 0
            self._body_started = self.loop.time()
            self._body_timer = self.loop.call_later(self.limits.body_timeout, self._body_expired)
        super().on_response_complete()

    # Deadlines

    def _arm_head_timer(self) -> None:
        self._cancel_head_timer()
        self._head_timer = self.loop.call_later(self.limits.head_timeout, self._head_expired)

    def _cancel_head_timer(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _cancel_timers(self) -> None:
        self._cancel_head_timer()
        if self._body_timer is not None:
            self._body_timer.cancel()
            self._body_timer = None

    def _head_expired(self) -> None:
        self._head_timer = None
        if self.transport.is_closing() or self.conn.their_state is not h11.IDLE:
            return
        if self.conn.trailing_data[0]:  # part of a head arrived: say why it is closed
            detail = f"Request timeout: the request head took over {self.limits.head_timeout:g} s"
            self.transport.write(_raw_response(408, "Request Timeout", detail))
        self.transport.close()

    def _start_body_deadline(self) -> None:
        length = dict(self.headers).get(b"content-length", b"")
        self._body_length = int(length) if length.isdigit() else None
        self._body_received = 0
        self._body_started = self.loop.time()
        self._body_timer = self.loop.call_later(
            self.limits.body_deadline(self._body_length, 0), self._body_expired
        )

    def _body_expired(self) -> None:
        self._body_timer = None
        if self.transport.is_closing() or self.conn.their_state is not h11.SEND_BODY:
            return
        allowed = self.limits.body_deadline(self._body_length, self._body_received)
        elapsed = self.loop.time() - self._body_started
        if elapsed < allowed:  # a chunked body that has kept up the minimum rate so far
            self._body_timer = self.loop.call_later(allowed - elapsed, self._body_expired)
            return
        cycle = self.cycle
        if cycle is not None and not cycle.response_started:
            cycle.disconnected = True  # the app sees a disconnect; its answer goes nowhere
            detail = (
                f"Request timeout: the request body took over {elapsed:.0f} s (at least "
                f"{self.limits.min_body_rate:g} bytes/s after the first "
                f"{self.limits.body_timeout:g} s)"
            )
            self.transport.write(_raw_response(408, "Request Timeout", detail))
        self.transport.close()

    # The app, behind the per-address cap and the request limit

    async def _guarded(self, scope: Any, receive: Any, send: Any) -> None:
        if self._over_cap:
            cap = self.limits.max_connections_per_ip
            detail = f"Too many open connections from your address (at most {cap})"
            await _refuse(send, 429, detail, retry_after=1)
            return
        limit = self.limits.limit_concurrency
        if limit and self.handling.count >= limit:
            detail = f"Server busy: {limit} requests are being handled"
            await _refuse(send, 503, detail, retry_after=1)
            return
        self.handling.count += 1  # one event loop: no other request runs between check and count
        try:
            await self._inner_app(scope, receive, send)
        finally:
            self.handling.count -= 1
