"""Soak (item 6): concurrent uploads and processes through injected faults, on loopback, in
well under a minute. Asserts bounds on counts, memory and descriptors, never on speed."""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor

import psutil
from notebook_support import local_backend

from bgcut_nb import APIError
from bgcut_nb.backends.remote import APIConnectionError, RemoteBackend, RetryPolicy
from bgcut_nb.testing.faults import FaultSpec
from bgcut_nb.testing.server import ServerThread

KEY = "soak-key-0b7e"
START = 120.0
CALLS = 80
VARIANTS = [
    {"variant_name": "cut", "quality": "low", "max_resolution": 20_000},
    {"variant_name": "jpg", "quality": "low", "format": "jpg", "max_resolution": 20_000},
]


def test_soak_under_faults(tmp_path, bgcut_photo):
    process = psutil.Process()
    engine = local_backend(tmp_path / "engine")
    # No injected 429s: each one rightly slows the client's learnt pace (tests/test_throttle.py,
    # the fault drill), which would make this a test of waiting; the server's own 429s (queue
    # full) still happen.
    faults = FaultSpec(rate=0.3, kinds=("503", "reset-before", "reset-after"), seed=3)
    retry = RetryPolicy(retries=4, backoff=0.02, backoff_max=0.2, retry_after_max=2)
    with ServerThread(
        {KEY: START}, tmp_path / "srv", backend=engine, rate_limit=0, faults=faults,
        workers=2, queue=6,
    ) as server:  # fmt: skip
        backend = RemoteBackend(KEY, server.base_url, retry=retry, pool_size=8)
        backend.process_image(  # warm up: models loaded, pools and connections made
            backend.upload_image(bgcut_photo(96, 64)).unique_filename, VARIANTS[:1]
        )
        fds, rss = process.num_fds(), process.memory_info().rss
        photos = [bgcut_photo(96 + i % 5 * 8, 64) for i in range(CALLS)]

        def one(data: bytes) -> str:
            try:
                name = backend.upload_image(data).unique_filename
                result = backend.process_image(name, VARIANTS)
                for url in result.output_urls.values():
                    assert backend.fetch(url)[:2] in (b"\x89P", b"\xff\xd8")
                return "ok"
            except APIConnectionError:
                return "connection"
            except APIError as exc:
                if "(fault drill)" in str(exc):  # injected faults outlasted the retries
                    return "gave up"
                return str(exc.status)

        with ThreadPoolExecutor(8) as pool:
            outcomes = list(pool.map(one, photos))
        service = server.app.state.service
        charges = service.ledger.charges(service.key_hash(KEY))
        balance = server.credits(KEY)
        backend.close()
    statuses = set(outcomes)
    assert not {s for s in statuses if s.startswith("5")}, outcomes  # the server sent no 5xx
    assert outcomes.count("ok") >= CALLS // 2, outcomes
    assert balance + sum(c for _, c in charges) == START  # every credit accounted for
    assert len({h for h, _ in charges}) == len(charges)  # no request charged twice
    assert server.stats["refunds"] == 0
    growth = (process.memory_info().rss - rss) / 2**20
    assert growth < 400, f"RSS grew {growth:.0f} MiB"
    assert process.num_fds() <= fds + 2, (fds, process.num_fds())
    assert os.listdir(tmp_path / "engine" / "uploads")  # the uploads were really stored
