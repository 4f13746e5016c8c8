"""Secrets in the server's logs and in key fingerprints (issue 20 item 6).

Query names in any encoding, header-like and ``name=value`` forms are redacted in what the
server logs; key hashes are HMACs under a secret of the server's own, so a logged or stored
fingerprint cannot be checked against guessed keys without that secret."""

from __future__ import annotations

import hashlib
import hmac
import logging
import sqlite3

import pytest
import requests

from bgcut_nb.backends.remote import UPLOAD_PATH
from bgcut_nb.core.config import ApiKey
from bgcut_nb.server.logs import RedactingFilter, redact
from bgcut_nb.testing.server import ServerThread, wait_until_serving

KEY = "log-key-SECRET-0b7e"
#: Where the server keeps the secret its key hashes are keyed with (in its storage dir).
KEY_SECRET_FILE = "key-secret"
ENCODED_QUERIES = [
    f"api_key={KEY}",
    f"api%5Fkey={KEY}",
    f"api%5fkey={KEY}",
    f"%61pi_key={KEY}",
    f"%61%70%69%5F%6B%65%79={KEY}",
    f"API_KEY={KEY}",
    f"apikey={KEY}",
    f"x-api-key={KEY}",
    f"x%2Dapi%2Dkey={KEY}",
    f"api-key={KEY}",
    f"authorization={KEY}",
    f"Authorization=Bearer%20{KEY}",
    f"access_token={KEY}",
    f"access%5Ftoken={KEY}",
    f"password={KEY}",
    f"client_secret={KEY}",
    f"signature={KEY}",
    f"foo=1&api%5Fkey={KEY}&bar=2",
    f"foo=1;token={KEY}",
]
MESSAGES = [
    f"request with x-api-key: {KEY}",
    f"Authorization: Bearer {KEY}",
    f"authorization=Basic {KEY}",
    f"headers {{'x-api-key': '{KEY}', 'accept': '*/*'}}",
    f'{{"api_key": "{KEY}"}}',
    f"password='{KEY} with spaces'",
    f"retrying with api-key={KEY} now",
    f"token%3D{KEY}",
]


@pytest.mark.parametrize("query", ENCODED_QUERIES)
def test_redact_hides_every_encoding_of_a_secret_query_name(query):
    line = f'127.0.0.1:5000 - "GET /openapi.json?{query} HTTP/1.1" 200'
    assert KEY not in redact(line)
    assert "<redacted>" in redact(line)


@pytest.mark.parametrize("message", MESSAGES)
def test_redact_hides_header_and_name_value_forms(message):
    assert KEY not in redact(message), redact(message)


def test_redact_keeps_harmless_text():
    line = '127.0.0.1 - "GET /v3/files/tok/a.png?expires=17&size=3 HTTP/1.1" 200 keyboard=1'
    assert redact(line) == line


def test_logged_records_are_redacted(caplog):
    logger = logging.getLogger("bgcut_nb.server.test-redaction")
    logger.addFilter(RedactingFilter())
    with caplog.at_level(logging.INFO, logger=logger.name):
        for query in ENCODED_QUERIES:
            logger.info('%s - "%s %s HTTP/%s" %d', "127.0.0.1", "GET", f"/x?{query}", "1.1", 200)
        for message in MESSAGES:
            logger.warning(message)
            logger.warning("%s", message)
    assert len(caplog.records) == len(ENCODED_QUERIES) + 2 * len(MESSAGES)
    assert KEY not in caplog.text


def test_the_access_log_of_serve_never_shows_an_encoded_key(tmp_path):
    """``bgcut-nb serve`` in a subprocess: every encoded form sent in a query is refused or
    ignored, and the access log (which is on) shows none of them in clear."""
    import socket
    import subprocess
    import sys

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    command = [
        sys.executable, "-m", "bgcut_nb", "serve", "--port", str(port), "--api-key", KEY,
        "--storage-dir", str(tmp_path / "store"),
    ]  # fmt: skip
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    base = f"http://127.0.0.1:{port}"
    try:
        assert wait_until_serving(proc, base), "serve did not start"
        for query in ENCODED_QUERIES:
            assert requests.get(f"{base}/openapi.json?{query}", timeout=30).status_code == 200
            refused = requests.post(f"{base}{UPLOAD_PATH}?{query}", files={"image": b"x"})
            assert refused.status_code == 401
    finally:
        proc.terminate()
        output = proc.communicate(timeout=30)[0]
    assert "/openapi.json?" in output  # the access log is on
    assert KEY not in output


def _legacy_hash(key: str) -> str:
    return hashlib.sha256(b"bgcut-nb:" + key.encode()).hexdigest()


def _db_hashes(server: ServerThread) -> set[str]:
    with sqlite3.connect(server.storage_dir / "server.sqlite3") as db:
        return {row[0] for row in db.execute("SELECT key_hash FROM accounts")}


def test_key_hashes_are_keyed_by_the_servers_own_secret(tmp_path, caplog, bgcut_photo):
    """The stored and logged fingerprints are HMACs under a random secret in the storage
    dir: not the plain SHA-256, different for another server, the same after a restart."""
    store = tmp_path / "srv"
    with caplog.at_level(logging.INFO, logger="bgcut_nb.server"):
        with ServerThread({KEY: 5.0}, store, rate_limit=0) as s:
            answer = requests.post(
                s.base_url + UPLOAD_PATH,
                headers={"Authorization": f"Bearer {KEY}"},
                files={"image": bgcut_photo(64, 48)},
            )
            assert answer.status_code == 200, answer.text
            stored = _db_hashes(s)
    secret = (store / KEY_SECRET_FILE).read_bytes()
    assert len(secret) >= 32
    assert (store / KEY_SECRET_FILE).stat().st_mode & 0o077 == 0  # owner only
    expected = hmac.new(secret, KEY.encode(), hashlib.sha256).hexdigest()
    assert stored == {expected}
    assert _legacy_hash(KEY) not in stored
    logged = [r.getMessage() for r in caplog.records if "upload key_id=" in r.getMessage()]
    assert logged and all(_legacy_hash(KEY)[:16] not in m for m in logged)
    assert all(expected[:16] in m for m in logged)
    with ServerThread({KEY: 5.0}, store, rate_limit=0) as again:
        assert _db_hashes(again) == stored and again.credits(KEY) == 5.0
    with ServerThread({KEY: 5.0}, tmp_path / "other", rate_limit=0) as other:
        assert _db_hashes(other).isdisjoint(stored)


def test_an_old_ledger_keeps_its_balances(tmp_path):
    """A database made with the old plain hashes is migrated on start: the balance stays."""
    from bgcut_nb.server.ledger import Ledger

    store = tmp_path / "srv"
    old = Ledger(store / "server.sqlite3")
    old.provision(_legacy_hash(KEY), 7.5)
    with ServerThread({KEY: 100.0}, store, rate_limit=0) as s:
        assert s.credits(KEY) == 7.5
        assert _legacy_hash(KEY) not in _db_hashes(s)


def test_client_fingerprints_are_not_plain_hashes():
    """A weak key cannot be found from its client fingerprint (cache keys, reprs) by hashing
    guesses with SHA-256: the fingerprint is a slow, salted derivation."""
    weak = "k-3f9a1c"
    fingerprint = ApiKey(weak).fingerprint
    assert fingerprint == ApiKey(weak).fingerprint  # stable: cache keys keep working
    assert fingerprint != ApiKey(weak + "x").fingerprint
    for prefix in (b"", b"bgcut-nb:"):
        for algorithm in ("sha256", "sha1", "md5", "sha512", "blake2b"):
            plain = hashlib.new(algorithm, prefix + weak.encode()).hexdigest()
            assert fingerprint not in plain
    assert weak not in repr(ApiKey(weak))
