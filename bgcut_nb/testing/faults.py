"""A loopback HTTP proxy that injects faults: the fault drill's weather machine.

:class:`FaultProxy` sits in front of a server and, for a chosen share of requests, answers
``429`` with ``Retry-After``, answers ``503``, resets the connection (TCP RST) before the
request reaches the server or after the server has answered (the answer is lost, the work was
done), or adds latency. Requests are parsed with ``h11``; answers are buffered whole, which
suits the drill's small images.
"""

from __future__ import annotations

import asyncio
import json
import random
import socket
import struct
import threading
from collections import Counter
from dataclasses import dataclass

import h11

__all__ = ["FaultSpec", "FaultProxy", "FAULT_KINDS", "EXTRA_FAULT_KINDS"]

FAULT_KINDS: tuple[str, ...] = ("429", "503", "reset-before", "reset-after", "latency")
#: Kinds only injected when asked for: ``hold-after`` forwards the request, then holds the
#: server's answer for ``latency`` seconds (time to kill a client between charge and answer).
EXTRA_FAULT_KINDS: tuple[str, ...] = ("hold-after",)
_HOP_HEADERS = {b"connection", b"keep-alive", b"transfer-encoding", b"content-length"}


@dataclass(frozen=True)
class FaultSpec:
    """Inject one of ``kinds`` (chosen uniformly) into a ``rate`` share of requests.

    ``paths``: only requests whose path starts with one of these prefixes (default: all).
    """

    rate: float = 0.2
    kinds: tuple[str, ...] = FAULT_KINDS
    retry_after: int = 1
    latency: float = 0.25
    seed: int | None = None
    paths: tuple[str, ...] = ()

    def applies_to(self, target: bytes) -> bool:
        """Whether a request for ``target`` (its path and query) may get a fault."""
        return not self.paths or target.decode("latin-1").startswith(self.paths)

    def __post_init__(self) -> None:
        if not 0.0 <= self.rate <= 1.0:
            raise ValueError(f"fault rate must be within 0..1, got {self.rate}")
        known = (*FAULT_KINDS, *EXTRA_FAULT_KINDS)
        unknown = set(self.kinds) - set(known)
        if unknown or not self.kinds:
            raise ValueError(f"fault kinds must be among {known}, got {self.kinds}")


class FaultProxy:
    """Forward ``http://host:port`` to ``upstream`` with faults; runs in its own thread.

    Use as a context manager; ``base_url`` is where clients connect, ``stats`` counts each
    injected fault kind and ``"forwarded"`` requests.
    """

    def __init__(
        self,
        upstream: tuple[str, int],
        spec: FaultSpec = FaultSpec(),
        *,
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        self.upstream = upstream
        self.spec = spec
        self.stats: Counter[str] = Counter()
        self._host = host
        self._port = port
        self._rng = random.Random(spec.seed)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server: asyncio.AbstractServer | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self.port = 0

    @property
    def base_url(self) -> str:
        return f"http://{self._host}:{self.port}"

    # -- lifecycle ----------------------------------------------------------------------------

    def start(self) -> FaultProxy:
        self._thread = threading.Thread(target=self._run, name="fault-proxy", daemon=True)
        self._thread.start()
        self._ready.wait(10)
        if self._error is not None:
            raise self._error
        return self

    def serve_forever(self) -> None:
        """Run in the calling thread until interrupted."""
        asyncio.run(self._main())

    def stop(self) -> None:
        if self._loop is not None and self._server is not None:
            self._loop.call_soon_threadsafe(self._server.close)
        if self._thread is not None:
            self._thread.join(10)

    def __enter__(self) -> FaultProxy:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _run(self) -> None:
        try:
            asyncio.run(self._main())
        except BaseException as exc:  # reported to start()
            self._error = exc
            self._ready.set()

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._server = await asyncio.start_server(self._handle, self._host, self._port)
        self.port = self._server.sockets[0].getsockname()[1]
        self._ready.set()
        try:
            await self._server.serve_forever()
        except asyncio.CancelledError:
            pass

    # -- one client connection ----------------------------------------------------------------

    def _choose(self, target: bytes = b"/") -> str | None:
        if not self.spec.applies_to(target) or self._rng.random() >= self.spec.rate:
            return None
        return self._rng.choice(self.spec.kinds)

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        conn = h11.Connection(h11.SERVER)
        try:
            while True:
                request = await _read_message(conn, reader)
                if request is None:
                    return
                head, body = request
                fault = self._choose(head.target)
                if fault is not None:
                    self.stats[fault] += 1
                if fault == "reset-before":
                    _reset(writer)
                    return
                if fault in ("429", "503"):
                    status, headers, payload = self._canned(int(fault))
                else:
                    if fault == "latency":
                        await asyncio.sleep(self.spec.latency)
                    status, headers, payload = await self._forward(head, body)
                    self.stats["forwarded"] += 1
                    if fault == "reset-after":
                        _reset(writer)
                        return
                    if fault == "hold-after":
                        await asyncio.sleep(self.spec.latency)
                headers = [(k, v) for k, v in headers if k.lower() not in _HOP_HEADERS]
                headers.append((b"content-length", str(len(payload)).encode()))
                for event in (
                    h11.Response(status_code=status, headers=headers),
                    h11.Data(data=payload),
                    h11.EndOfMessage(),
                ):
                    writer.write(conn.send(event))
                await writer.drain()
                if conn.our_state is h11.MUST_CLOSE or conn.their_state is h11.MUST_CLOSE:
                    return
                conn.start_next_cycle()
        except (ConnectionError, h11.ProtocolError, asyncio.IncompleteReadError):
            return
        finally:
            if not writer.is_closing():
                writer.close()

    def _canned(self, status: int) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
        detail = "Rate limit exceeded (injected)" if status == 429 else "Service unavailable"
        headers = [(b"content-type", b"application/json")]
        if status == 429:
            headers.append((b"retry-after", str(self.spec.retry_after).encode()))
        return status, headers, json.dumps({"detail": detail + " (fault drill)"}).encode()

    async def _forward(
        self, head: h11.Request, body: bytes
    ) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
        reader, writer = await asyncio.open_connection(*self.upstream)
        try:
            conn = h11.Connection(h11.CLIENT)
            headers = [(k, v) for k, v in head.headers if k.lower() not in _HOP_HEADERS]
            headers += [(b"content-length", str(len(body)).encode()), (b"connection", b"close")]
            for event in (
                h11.Request(method=head.method, target=head.target, headers=headers),
                h11.Data(data=body),
                h11.EndOfMessage(),
            ):
                writer.write(conn.send(event))
            await writer.drain()
            answer = await _read_message(conn, reader)
            if answer is None:
                raise ConnectionError("upstream closed without answering")
            response, payload = answer
            return response.status_code, list(response.headers), payload
        finally:
            writer.close()


async def _read_message(
    conn: h11.Connection, reader: asyncio.StreamReader
) -> tuple[h11.Request | h11.Response, bytes] | None:
    """Read one whole request or response; ``None`` on a clean close before it began."""
    head = None
    body = bytearray()
    while True:
        event = conn.next_event()
        if event is h11.NEED_DATA:
            data = await reader.read(65536)
            conn.receive_data(data)
            continue
        if isinstance(event, (h11.Request, h11.Response)):
            head = event
        elif isinstance(event, h11.Data):
            body += event.data
        elif isinstance(event, h11.EndOfMessage):
            return head, bytes(body)
        elif isinstance(event, h11.ConnectionClosed):
            return None
        elif isinstance(event, h11.InformationalResponse):
            continue


def _reset(writer: asyncio.StreamWriter) -> None:
    """Abort the connection with a TCP RST (SO_LINGER 0), like a crashed peer."""
    sock = writer.get_extra_info("socket")
    if sock is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()
