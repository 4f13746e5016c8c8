"""``bgcut-nb serve``: run the self-hostable v3 API server over the local engine."""

from __future__ import annotations

import argparse
import logging
import os
import sys
import threading
from typing import TYPE_CHECKING

from ..contract.wire import UPLOAD_LIFETIME

if TYPE_CHECKING:
    from ..server.connections import ConnectionLimits

HELP = "serve the BackgroundCut v3 API over the local engine (needs the 'server' extra)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--host", default="127.0.0.1", help="interface to bind (default: %(default)s)"
    )
    parser.add_argument("--port", type=int, default=8000, help="port (default: %(default)s)")
    keys = parser.add_argument_group("keys and credits")
    keys.add_argument("--api-key", help="accept this bearer key (a keys file keeps it out of ps)")
    keys.add_argument(
        "--credits", type=float, default=100.0, help="starting credits of --api-key (default: 100)"
    )
    keys.add_argument(
        "--keys-file", help='JSON file {"KEY": credits, ...} of further keys and their credits'
    )
    keys.add_argument(
        "--reset-credits",
        action="store_true",
        help="set balances to the given credits even for keys the database already knows",
    )
    store = parser.add_argument_group("storage and limits")
    store.add_argument(
        "--storage-dir",
        help="uploads, outputs and the SQLite database (default: ~/.local/share/bgcut-nb/server)",
    )
    store.add_argument("--db", help="SQLite database path (default: STORAGE_DIR/server.sqlite3)")
    store.add_argument("--model-dir", help="where the engine's model files live")
    for tier in ("low", "medium", "high"):
        store.add_argument(
            f"--model-{tier}",
            metavar="NAME",
            help=f"registry model of the {tier} tier (see `bgcut-nb models list`; default: "
            "u2netp for low, u2net for medium and high)",
        )
    store.add_argument(
        "--upload-ttl", type=float, default=UPLOAD_LIFETIME, help="seconds (default: 2 h)"
    )
    store.add_argument("--url-ttl", type=float, default=3600.0, help="output URL lifetime, s")
    store.add_argument(
        "--rate-limit",
        type=float,
        help="requests/s per key (0: off; default 10, off with --simulate)",
    )
    store.add_argument("--burst", type=int, default=20, help="token-bucket size per key")
    store.add_argument("--max-upload-mb", type=float, default=12.0, help="upload size limit, MB")
    store.add_argument("--public-url", help="base URL clients see, when behind a proxy")
    store.add_argument("--workers", type=int, default=0, help="engine threads (0: one per core)")
    store.add_argument(
        "--queue", type=int, default=None, help="calls waiting for a worker (default: 2/worker)"
    )
    store.add_argument(
        "--max-process-mp", type=float, default=16.0, help="processing pixel limit, megapixels"
    )
    store.add_argument("--uploads-per-hour", type=int, default=1000, help="per key (0: off)")
    store.add_argument("--storage-quota-mb", type=float, default=1024.0, help="per key (0: off)")
    store.add_argument("--sweep-interval", type=float, default=60.0, help="seconds (0: off)")
    store.add_argument(
        "--body-timeout",
        type=float,
        default=15.0,
        help="stalled body, seconds; also the whole body's deadline before --min-body-rate",
    )
    _add_connection_arguments(parser)
    _add_drill_arguments(parser)


def _add_drill_arguments(parser: argparse.ArgumentParser) -> None:
    """The test rigs' flags (:mod:`bgcut_nb.testing`), listed last under their own heading."""
    drills = parser.add_argument_group(
        "testing and drills",
        "not for production: a fault-injecting proxy in front of the server (--fault-*) and a "
        "service simulator that does no segmentation work (--simulate, --sim-*, --plan-*), "
        "for the fault drill and benchmarks",
    )
    drills.add_argument(
        "--fault-rate", type=float, default=0.0, help="share of requests given a fault, 0..1"
    )
    drills.add_argument(
        "--fault-kinds",
        default="429,503,reset-before,reset-after,latency",
        help="comma-separated kinds (default: %(default)s)",
    )
    drills.add_argument("--fault-retry-after", type=int, default=1, help="Retry-After of 429s")
    drills.add_argument("--fault-latency", type=float, default=0.25, help="added latency, s")
    drills.add_argument("--fault-seed", type=int, help="random seed for reproducible drills")
    drills.add_argument(
        "--simulate",
        action="store_true",
        help="answer like the service without using this machine's CPU (sleep, flat outputs)",
    )
    drills.add_argument(
        "--sim-process-seconds", default="1-3", help="processing time LOW-HIGH, s (default 1-3)"
    )
    drills.add_argument("--sim-latency", type=float, default=0.0, help="added to every request, s")
    drills.add_argument("--sim-seed", type=int, default=0, help="seed of drawn processing times")
    drills.add_argument(
        "--plan-rpm",
        type=float,
        default=0.0,
        help="the plan's upload+process requests per minute per key; 429 beyond (0: off)",
    )
    drills.add_argument("--plan-burst", type=int, help="plan bucket depth (default: 1 s worth)")


def _add_connection_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of :class:`~bgcut_nb.server.connections.ConnectionLimits` (same defaults)."""
    conn = parser.add_argument_group(
        "connections (see docs/operations.md before exposing the server)"
    )
    conn.add_argument(
        "--head-timeout",
        type=float,
        default=10.0,
        help="seconds from connecting (or a kept-alive request's first byte) to the end of the "
        "headers (default: %(default)s)",
    )
    conn.add_argument(
        "--keep-alive",
        type=float,
        default=5.0,
        help="idle seconds before a kept-alive connection is closed (default: %(default)s)",
    )
    conn.add_argument(
        "--min-body-rate",
        type=float,
        default=50.0,
        help="kB/s a body must keep up: its deadline is --body-timeout + size / rate "
        "(default: %(default)s)",
    )
    conn.add_argument(
        "--max-connections-per-ip",
        type=int,
        default=32,
        help="open connections per client address, then 429 (0: no cap; default: %(default)s)",
    )
    conn.add_argument(
        "--max-connections",
        type=int,
        default=1000,
        help="open connections in all; new ones beyond are closed (default: %(default)s)",
    )
    conn.add_argument(
        "--limit-concurrency",
        type=int,
        default=256,
        help="requests handled at once, then 503; idle connections do not count "
        "(default: %(default)s)",
    )
    conn.add_argument(
        "--forwarded-allow-ips",
        default=os.environ.get("FORWARDED_ALLOW_IPS", "127.0.0.1,::1"),
        help="trusted proxies (comma-separated addresses or networks, '*': any): their "
        "X-Forwarded-For is believed and their connections are not capped per address "
        "(default: $FORWARDED_ALLOW_IPS or %(default)s)",
    )


def _connection_limits(args: argparse.Namespace) -> ConnectionLimits:
    from ..server.connections import ConnectionLimits

    return ConnectionLimits(
        head_timeout=args.head_timeout,
        keep_alive=args.keep_alive,
        body_timeout=args.body_timeout,
        min_body_rate=args.min_body_rate * 1000,
        max_connections_per_ip=args.max_connections_per_ip,
        max_connections=args.max_connections,
        limit_concurrency=args.limit_concurrency,
        forwarded_allow_ips=args.forwarded_allow_ips,
    )


def _api_keys(args: argparse.Namespace) -> dict[str, float]:
    from ..server.keys import load_keys_file

    keys: dict[str, float] = {}
    if args.keys_file:
        keys.update(load_keys_file(args.keys_file))
    if args.api_key:
        keys[args.api_key] = args.credits
    return keys


def _tier_models(args: argparse.Namespace) -> dict[str, str]:
    """The ``--model-TIER`` choices, names checked against the registry (``ValueError``)."""
    from ..contract.errors import ModelUnavailableError
    from ..engine.matting import tier_models

    tiers = ("low", "medium", "high")
    chosen = {t: getattr(args, f"model_{t}") for t in tiers if getattr(args, f"model_{t}")}
    try:
        tier_models(chosen)
    except ModelUnavailableError as exc:
        raise ValueError(str(exc)) from None
    return chosen


def run(args: argparse.Namespace) -> int:
    try:
        import uvicorn

        from ..server import create_app
        from ..server.connections import uvicorn_config
        from ..server.logs import log_config
        from ..testing.faults import FaultProxy, FaultSpec
        from ..testing.simulator import SIMULATED_WORKERS, SimulatedBackend, SimulatorSpec, install
    except ImportError as exc:
        print(
            "bgcut-nb serve needs the server extra: run "
            f"`.venv/bin/pip install -e '.[server]'` in the bgcut-nb checkout ({exc})",
            file=sys.stderr,
        )
        return 2
    try:
        keys = _api_keys(args)
        models = _tier_models(args)
        faults = (
            FaultSpec(
                rate=args.fault_rate,
                kinds=tuple(k.strip() for k in args.fault_kinds.split(",") if k.strip()),
                retry_after=args.fault_retry_after,
                latency=args.fault_latency,
                seed=args.fault_seed,
            )
            if args.fault_rate > 0
            else None
        )
        simulate = None
        if args.simulate or args.plan_rpm > 0 or args.sim_latency > 0:
            simulate = SimulatorSpec(
                process_seconds=args.sim_process_seconds,
                latency=args.sim_latency,
                plan_rpm=args.plan_rpm,
                plan_burst=args.plan_burst,
                seed=args.sim_seed,
            )
    except (OSError, ValueError) as exc:
        print(f"bgcut-nb serve: {exc}", file=sys.stderr)
        return 2
    if not keys:
        print("bgcut-nb serve: give --api-key KEY or --keys-file FILE", file=sys.stderr)
        return 2

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    backend = None
    if args.simulate:
        backend = SimulatedBackend(simulate, upload_ttl=args.upload_ttl)
    app = create_app(
        backend,
        model_dir=args.model_dir,
        models=models,
        api_keys=keys,
        storage_dir=args.storage_dir,
        db_path=args.db,
        reset_credits=args.reset_credits,
        upload_ttl=args.upload_ttl,
        url_ttl=args.url_ttl,
        rate_limit=args.rate_limit if args.rate_limit is not None else (0 if args.simulate else 10),
        burst=args.burst,
        max_upload_bytes=int(args.max_upload_mb * 1024 * 1024),
        public_url=args.public_url,
        workers=args.workers or (SIMULATED_WORKERS if args.simulate else 0),
        queue=args.queue,
        process_max_pixels=int(args.max_process_mp * 1_000_000),
        uploads_per_hour=args.uploads_per_hour,
        storage_bytes=int(args.storage_quota_mb * 1024 * 1024),
        sweep_interval=args.sweep_interval,
        body_timeout=args.body_timeout,
    )
    if simulate is not None:
        install(app, simulate)
        print(f"bgcut-nb serve: simulating {simulate}", file=sys.stderr)
    limits = _connection_limits(args)
    print(
        f"bgcut-nb serve: {len(keys)} key(s); point clients at "
        f"BGCUT_API_BASE=http://{args.host}:{args.port}",
        file=sys.stderr,
    )
    if faults is None:
        config = uvicorn_config(
            app, limits, host=args.host, port=args.port, log_level="info", log_config=log_config()
        )
        uvicorn.Server(config).run()
        return 0
    # Faults: the server listens on a private loopback port, the proxy on --port.
    import socket

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn_config(app, limits, log_level="info", log_config=log_config()))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    print(f"bgcut-nb serve: injecting faults {faults}", file=sys.stderr)
    proxy = FaultProxy(sock.getsockname(), faults, host=args.host, port=args.port)
    try:
        proxy.serve_forever()
    finally:
        server.should_exit = True
        thread.join(10)
    return 0
