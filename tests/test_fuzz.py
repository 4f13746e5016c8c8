"""Schema-driven fuzzing of the server with schemathesis: no 5xx, no undocumented status.

The server runs on 127.0.0.1 (ServerThread); every operation of its OpenAPI document gets a
small, bounded number of generated requests (valid and invalid), with and without a key.
"""

from __future__ import annotations

import tempfile

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import (
    content_type_conformance,
    negative_data_rejection,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)

from bgcut_nb.backends.local import LocalBackend
from bgcut_nb.server import create_app
from bgcut_nb.testing.server import ServerThread

KEY = "fuzz-key"
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
    negative_data_rejection,
]


@pytest.fixture(scope="module")
def fuzz_server(bgcut_engine, tmp_path_factory):
    with ServerThread(
        {KEY: 1000.0}, tmp_path_factory.mktemp("fuzz"), backend=bgcut_engine, rate_limit=0
    ) as server:
        yield server


def _openapi_document() -> dict:
    """The server's OpenAPI document (it does not depend on the backend or the keys)."""
    with tempfile.TemporaryDirectory() as tmp:
        app = create_app(LocalBackend(tmp), api_keys={KEY: 1.0}, storage_dir=tmp)
        try:
            return app.openapi()
        finally:  # its sweeper thread must not outlive the folder it sweeps
            app.state.service.close()


schema = schemathesis.openapi.from_dict(_openapi_document())


@schema.parametrize()
@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=list(HealthCheck),
    derandomize=True,
)
def test_server_answers_within_its_documented_statuses(case, fuzz_server):
    headers = {"Authorization": f"Bearer {KEY}"} if case.operation.method == "post" else None
    case.call_and_validate(base_url=fuzz_server.base_url, headers=headers, checks=CHECKS)


def test_openapi_declares_the_real_statuses(fuzz_server):
    import requests

    doc = requests.get(fuzz_server.base_url + "/openapi.json", timeout=30).json()
    statuses = {
        path: sorted(doc["paths"][path]["post"]["responses"])
        for path in ("/v3/remove-bg/upload-image/", "/v3/remove-bg/process-image/")
    }
    assert statuses == {
        "/v3/remove-bg/upload-image/": ["200", "400", "401", "413", "429"],
        "/v3/remove-bg/process-image/": ["200", "400", "401", "402", "404", "413", "429"],
    }
    assert "422" not in str(doc)
