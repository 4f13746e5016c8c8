"""The server's SQLite state: credit balances, upload ownership, signed files and charges.

Only one-way key hashes are stored, never keys. Every processing call is charged in one
transaction that checks the balance, debits it and journals the charge (with the request's
``Idempotency-Key``), so a balance never goes negative and one call is never charged twice.
"""

from __future__ import annotations

import contextlib
import json
import secrets
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NamedTuple

__all__ = ["Ledger", "Charge"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS settings (name TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS accounts (key_hash TEXT PRIMARY KEY, credits REAL NOT NULL);
CREATE TABLE IF NOT EXISTS uploads (
    unique_filename TEXT PRIMARY KEY,
    key_hash TEXT NOT NULL,
    local_name TEXT NOT NULL,
    expires REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS files (token TEXT PRIMARY KEY, local_url TEXT NOT NULL,
                                  expires REAL NOT NULL);
CREATE TABLE IF NOT EXISTS charges (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    key_hash TEXT NOT NULL,
    idempotency_key TEXT NOT NULL,
    request_hash TEXT NOT NULL,
    credits REAL NOT NULL,
    result TEXT NOT NULL,
    created REAL NOT NULL,
    UNIQUE (key_hash, idempotency_key)
);
CREATE INDEX IF NOT EXISTS uploads_expires ON uploads (expires);
CREATE INDEX IF NOT EXISTS files_expires ON files (expires);
"""


class Charge(NamedTuple):
    """A journalled processing call."""

    request_hash: str
    credits: float
    result: dict[str, Any]


class Ledger:
    """Thread-safe access to the server database (one short-lived connection per operation)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self._connect() as db:
            db.execute("PRAGMA journal_mode=WAL")
            db.executescript(_SCHEMA)

    @contextlib.contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        db = sqlite3.connect(self.path, timeout=30.0, isolation_level=None)
        try:
            yield db
        finally:
            db.close()

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        with self._connect() as db:
            db.execute("BEGIN IMMEDIATE")
            try:
                yield db
            except BaseException:
                db.execute("ROLLBACK")
                raise
            db.execute("COMMIT")

    # -- settings -----------------------------------------------------------------------------

    def url_secret(self) -> bytes:
        """The HMAC secret for signed URLs, created once so URLs survive a restart."""
        with self._transaction() as db:
            row = db.execute("SELECT value FROM settings WHERE name='url_secret'").fetchone()
            if row is None:
                value = secrets.token_hex(32)
                db.execute("INSERT INTO settings VALUES ('url_secret', ?)", (value,))
            else:
                value = row[0]
        return bytes.fromhex(value)

    # -- accounts -----------------------------------------------------------------------------

    def provision(self, key_hash: str, credits: float, *, reset: bool = False) -> None:
        """Give a key its starting balance; a known key keeps its balance unless ``reset``."""
        with self._transaction() as db:
            if reset:
                db.execute("INSERT OR REPLACE INTO accounts VALUES (?, ?)", (key_hash, credits))
            else:
                db.execute("INSERT OR IGNORE INTO accounts VALUES (?, ?)", (key_hash, credits))

    def balance(self, key_hash: str) -> float | None:
        """Credits left for a key, ``None`` for an unknown key."""
        with self._connect() as db:
            row = db.execute(
                "SELECT credits FROM accounts WHERE key_hash=?", (key_hash,)
            ).fetchone()
        return None if row is None else float(row[0])

    # -- uploads ------------------------------------------------------------------------------

    def add_upload(self, unique_filename: str, key_hash: str, local_name: str, ttl: float) -> None:
        with self._transaction() as db:
            db.execute(
                "INSERT INTO uploads VALUES (?, ?, ?, ?)",
                (unique_filename, key_hash, local_name, time.time() + ttl),
            )

    def find_upload(self, unique_filename: str, key_hash: str) -> str | None:
        """The engine's name of an upload this key owns and that has not expired."""
        with self._connect() as db:
            row = db.execute(
                "SELECT local_name FROM uploads WHERE unique_filename=? AND key_hash=? "
                "AND expires>?",
                (unique_filename, key_hash, time.time()),
            ).fetchone()
        return None if row is None else row[0]

    # -- files --------------------------------------------------------------------------------

    def add_files(self, entries: dict[str, str], ttl: float) -> None:
        """Register ``{token: engine URL}`` for serving until ``ttl`` seconds from now."""
        expires = time.time() + ttl
        with self._transaction() as db:
            db.executemany(
                "INSERT INTO files VALUES (?, ?, ?)",
                [(token, url, expires) for token, url in entries.items()],
            )

    def find_file(self, token: str) -> str | None:
        with self._connect() as db:
            row = db.execute(
                "SELECT local_url FROM files WHERE token=? AND expires>?", (token, time.time())
            ).fetchone()
        return None if row is None else row[0]

    def purge_expired(self) -> None:
        """Forget expired uploads and file tokens."""
        now = time.time()
        with self._transaction() as db:
            db.execute("DELETE FROM uploads WHERE expires<=?", (now,))
            db.execute("DELETE FROM files WHERE expires<=?", (now,))

    # -- charges ------------------------------------------------------------------------------

    def find_charge(self, key_hash: str, idempotency_key: str) -> Charge | None:
        """The earlier call of this key with this ``Idempotency-Key``, if any."""
        with self._connect() as db:
            row = db.execute(
                "SELECT request_hash, credits, result FROM charges "
                "WHERE key_hash=? AND idempotency_key=?",
                (key_hash, idempotency_key),
            ).fetchone()
        return None if row is None else Charge(row[0], row[1], json.loads(row[2]))

    def charge(
        self,
        key_hash: str,
        credits: float,
        *,
        idempotency_key: str,
        request_hash: str,
        result: dict[str, Any],
    ) -> bool:
        """Debit ``credits`` and journal the call in one transaction; False if too few left."""
        with self._transaction() as db:
            row = db.execute(
                "SELECT credits FROM accounts WHERE key_hash=?", (key_hash,)
            ).fetchone()
            if row is None or row[0] < credits:
                return False
            db.execute(
                "UPDATE accounts SET credits=credits-? WHERE key_hash=?", (credits, key_hash)
            )
            db.execute(
                "INSERT INTO charges (key_hash, idempotency_key, request_hash, credits, result,"
                " created) VALUES (?, ?, ?, ?, ?, ?)",
                (key_hash, idempotency_key, request_hash, credits, json.dumps(result), time.time()),
            )
        return True

    def charges(self, key_hash: str) -> list[tuple[str, float]]:
        """``(request_hash, credits)`` of every charged call of a key, oldest first."""
        with self._connect() as db:
            rows = db.execute(
                "SELECT request_hash, credits FROM charges WHERE key_hash=? ORDER BY id",
                (key_hash,),
            ).fetchall()
        return [(r[0], float(r[1])) for r in rows]
