"""The FastAPI application speaking the BackgroundCut v3 API: :func:`create_app`.

Two endpoints exactly as the spec describes them (``upload-image``, ``process-image``) plus
``GET /v3/files/...`` serving the signed, expiring ``input_url`` and ``output_urls``, one router
each (:mod:`bgcut_nb.server.routes`). Every error, including malformed JSON, a missing multipart
field and schema violations, is answered as JSON ``{"detail": "..."}`` with the spec's status
(400, never FastAPI's 422; :mod:`bgcut_nb.server.handlers`). The app's lifespan starts the
service's sweeper and engine pool and stops them.
"""

from __future__ import annotations

import contextlib
import os
from collections import Counter
from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from typing import Any

from fastapi import FastAPI
from starlette.concurrency import run_in_threadpool

from ..contract.backend import Backend
from ..contract.pricing import DEFAULT_COSTS, CostTable
from ..contract.wire import PROCESS_PATH, UPLOAD_PATH
from ..core.config import resolve_server_dir
from ..core.version import __version__
from .bodylimit import BodyLimit
from .handlers import install_error_handlers
from .keys import load_key_secret
from .ledger import Ledger
from .logs import install_redaction
from .openapi import document
from .routes import files, processing, uploads
from .service import ServerSettings, V3Service

__all__ = ["create_app"]


@contextlib.asynccontextmanager
async def _lifespan(app: FastAPI) -> AsyncIterator[None]:
    """Start the sweeper and the engine pool; at shutdown stop them (once the admitted calls
    are done)."""
    service: V3Service = app.state.service
    service.start()
    try:
        yield
    finally:
        await run_in_threadpool(service.close)


def create_app(
    backend: Backend | None = None,
    *,
    api_keys: Mapping[str, float],
    storage_dir: str | os.PathLike[str] | None = None,
    model_dir: str | os.PathLike[str] | None = None,
    db_path: str | os.PathLike[str] | None = None,
    costs: CostTable = DEFAULT_COSTS,
    reset_credits: bool = False,
    stats: Counter | None = None,
    process_max_pixels: int | None = None,
    models: Mapping[str, str] | None = None,
    **settings: Any,
) -> FastAPI:
    """Build the v3 API server over ``backend`` (default: a :class:`LocalBackend` in
    ``<storage_dir>/engine`` using the models in ``model_dir``; ``models`` chooses its
    registry model per quality tier, e.g. ``{"high": "isnet-general-use"}``).

    ``api_keys`` maps each bearer key to its starting credits (a key already in the database
    keeps its balance unless ``reset_credits``). State lives in SQLite at ``db_path``
    (default ``<storage_dir>/server.sqlite3``). ``settings`` are :class:`ServerSettings`
    fields: ``upload_ttl``, ``url_ttl``, ``rate_limit``, ``burst``, ``max_upload_bytes``,
    ``public_url``, ``workers``, ``queue``, ``uploads_per_hour``, ``storage_bytes``,
    ``sweep_interval``, ``body_timeout``. ``process_max_pixels`` is the default engine's
    processing pixel limit. ``stats`` (a Counter) counts handled ``upload``/``process``/``file``
    requests and the service's ``engine_calls``, ``refunds``, ``busy`` and ``swept``.

    The sweeper and the engine pool run from the app's lifespan: an ASGI server running it
    (uvicorn's default) starts and stops them; :meth:`V3Service.close` (``app.state.service``)
    stops them otherwise.
    """
    options = ServerSettings(**settings)
    install_redaction()  # access logs never show ?api_key=, ?token= or URL signatures
    storage = resolve_server_dir(storage_dir)
    if backend is None:
        backend = _local_backend(storage, options, model_dir, costs, models, process_max_pixels)
    counts = stats if stats is not None else Counter()
    service = V3Service(
        backend,
        Ledger(Path(db_path) if db_path else storage / "server.sqlite3"),
        api_keys,
        options,
        costs=costs,
        reset_credits=reset_credits,
        stats=counts,
        key_secret=load_key_secret(storage),
    )
    app = FastAPI(
        title="bgcut-nb v3 server",
        version=__version__,
        description="The BackgroundCut v3 remove-background API over the local engine.",
        lifespan=_lifespan,
    )
    app.state.service = service
    app.state.stats = counts
    app.add_middleware(
        BodyLimit,
        rules={UPLOAD_PATH: uploads.body_rule(options), PROCESS_PATH: processing.BODY_RULE},
        timeout=options.body_timeout,
    )
    install_error_handlers(app)
    for module in (uploads, processing, files):
        app.include_router(module.router)
    app.openapi = lambda: _cached_document(app)  # type: ignore[method-assign]
    return app


def _local_backend(
    storage: Path,
    options: ServerSettings,
    model_dir: str | os.PathLike[str] | None,
    costs: CostTable,
    models: Mapping[str, str] | None,
    process_max_pixels: int | None,
) -> Backend:
    from ..backends.local import LocalBackend

    return LocalBackend(
        storage / "engine",
        model_dir=model_dir,
        upload_ttl=options.upload_ttl,
        costs=costs,
        models=models,
        **({"process_max_pixels": process_max_pixels} if process_max_pixels else {}),
    )


def _cached_document(app: FastAPI) -> dict[str, Any]:
    if app.openapi_schema is None:
        app.openapi_schema = document(app)
    return app.openapi_schema
