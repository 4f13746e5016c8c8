"""Run the project's own v3 server in a background thread, for tests and benchmarks.

::

    from bgcut_nb.testing.server import ServerThread

    with ServerThread(api_keys={"test-key": 100}) as server:
        backend = RemoteBackend("test-key", server.base_url)
        ...
        assert server.stats["upload"] == 1
        print(server.credits("test-key"))

Only ever binds 127.0.0.1, on a random free port.
"""

from __future__ import annotations

import os
import shutil
import socket
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ..contract.backend import Backend
from ..server.connections import ConnectionLimits
from .faults import FaultProxy, FaultSpec
from .simulator import SIMULATED_WORKERS, SimulatedBackend, SimulatorSpec, install

__all__ = ["ServerThread"]


class ServerThread:
    """The v3 server (uvicorn) on ``127.0.0.1:<random port>`` in a daemon thread.

    ``api_keys`` maps keys to starting credits; ``backend`` defaults to a fresh
    :class:`~bgcut_nb.backends.local.LocalBackend` in ``storage_dir`` (default: a temporary
    directory removed on exit). Other keyword arguments go to :func:`bgcut_nb.server.create_app`
    (``upload_ttl``, ``url_ttl``, ``rate_limit``, ``burst``, ``max_upload_bytes``, ``costs``,
    ...). With ``faults``, ``base_url`` points at a :class:`FaultProxy` in front of the server.
    With ``simulate``, the backend is a :class:`~bgcut_nb.testing.simulator.SimulatedBackend`
    (no segmentation work) behind the spec's plan limit and latency, and the server's own
    per-second limiter is off unless ``rate_limit`` is given. ``limits`` are the connection
    deadlines and caps, as ``bgcut-nb serve`` applies them (default: its defaults).
    """

    def __init__(
        self,
        api_keys: Mapping[str, float] | None = None,
        storage_dir: str | os.PathLike[str] | None = None,
        *,
        backend: Backend | None = None,
        faults: FaultSpec | None = None,
        simulate: SimulatorSpec | None = None,
        limits: ConnectionLimits | None = None,
        **options: Any,
    ) -> None:
        self.api_keys = dict(api_keys if api_keys is not None else {"test-key": 100.0})
        self._own_dir = storage_dir is None
        self.storage_dir = Path(storage_dir or tempfile.mkdtemp(prefix="bgcut-server-"))
        self.stats: Counter[str] = Counter()
        self._backend = backend
        self._faults = faults
        self._simulate = simulate
        if simulate is not None:
            options.setdefault("rate_limit", 0)
            options.setdefault("workers", SIMULATED_WORKERS)
            if backend is None:
                ttl = options.get("upload_ttl")
                self._backend = SimulatedBackend(simulate, **({"upload_ttl": ttl} if ttl else {}))
        self._options = options
        self.limits = limits or ConnectionLimits()
        self.proxy: FaultProxy | None = None
        self._server: Any = None
        self._thread: threading.Thread | None = None
        self.port = 0

    @property
    def base_url(self) -> str:
        """Where clients connect (the fault proxy when faults are on)."""
        if self.proxy is not None:
            return self.proxy.base_url
        return f"http://127.0.0.1:{self.port}"

    @property
    def server_url(self) -> str:
        """The server itself, bypassing any fault proxy."""
        return f"http://127.0.0.1:{self.port}"

    @property
    def backend(self) -> Backend:
        """The backend the server works on (a ``SimulatedBackend`` with ``simulate``)."""
        return self.app.state.service.backend

    def credits(self, key: str) -> float:
        """Credits left for ``key`` (as stored in the server's SQLite database)."""
        balance = self.app.state.service.credits(key)
        if balance is None:
            raise KeyError("unknown API key")
        return balance

    def start(self) -> ServerThread:
        import uvicorn

        from ..server.app import create_app
        from ..server.connections import uvicorn_config

        self.app = create_app(
            self._backend,
            api_keys=self.api_keys,
            storage_dir=self.storage_dir,
            stats=self.stats,
            **self._options,
        )
        if self._simulate is not None:
            install(self.app, self._simulate)
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", 0))
        self.port = sock.getsockname()[1]
        config = uvicorn_config(
            self.app, self.limits, log_level="warning", lifespan="on", access_log=False
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(
            target=self._server.run, kwargs={"sockets": [sock]}, name="bgcut-server", daemon=True
        )
        self._thread.start()
        deadline = time.monotonic() + 30
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the test server did not start")
            time.sleep(0.01)
        if self._faults is not None:
            self.proxy = FaultProxy(("127.0.0.1", self.port), self._faults).start()
        return self

    def stop(self) -> None:
        if self.proxy is not None:
            self.proxy.stop()
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(15)
        if self._server is not None:
            self.app.state.service.close()
        if self._own_dir:
            shutil.rmtree(self.storage_dir, ignore_errors=True)

    def __enter__(self) -> ServerThread:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def wait_until_serving(proc: Any, base_url: str, timeout: float = 60.0) -> bool:
    """Poll ``base_url``'s OpenAPI document until a ``bgcut-nb serve`` subprocess answers;
    ``False`` if it exits or ``timeout`` seconds pass first."""
    import urllib.error
    import urllib.request

    deadline = time.monotonic() + timeout
    while proc.poll() is None and time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(base_url + "/openapi.json", timeout=1):
                return True
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            time.sleep(0.2)
    return False
