"""The server's SQLite state: credit balances, upload ownership, signed files and charges.

Only one-way key hashes are stored, never keys. Every processing call first **reserves** its
credits in one transaction that checks the balance, debits it and journals the call (with the
request's ``Idempotency-Key``) as ``reserved``; the work runs only after that, and is then
``charged`` (with its result) or refunded. So a balance never goes negative, a call that cannot
be paid never runs, one call is never charged twice, and a failed call costs nothing (calls
still reserved when the server stopped are refunded when it starts again). Charged calls and
their answers are never purged, so an answer outlives its upload (the service replays it
only while the upload lives).

Uploads are journalled with their size and time, and each rendered output with its size, for
the per-key quotas: a key's stored bytes are its live uploads plus their outputs.
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

from ..contract.errors import QuotaExceeded

__all__ = ["Ledger", "Charge", "QuotaExceeded"]

#: Columns added since the first release, added to an older database on open.
_MIGRATIONS = {
    "uploads": {
        "created": "REAL NOT NULL DEFAULT 0",
        "size": "INTEGER NOT NULL DEFAULT 0",
    },
    "charges": {"state": "TEXT NOT NULL DEFAULT 'charged'"},
}
#: Seconds an upload is still counted for the uploads-per-hour quota.
QUOTA_WINDOW = 3600.0

_SCHEMA = """
CREATE TABLE IF NOT EXISTS settings (name TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS accounts (key_hash TEXT PRIMARY KEY, credits REAL NOT NULL);
CREATE TABLE IF NOT EXISTS uploads (
    unique_filename TEXT PRIMARY KEY,
    key_hash TEXT NOT NULL,
    local_name TEXT NOT NULL,
    expires REAL NOT NULL,
    created REAL NOT NULL DEFAULT 0,
    size INTEGER NOT NULL DEFAULT 0
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
    state TEXT NOT NULL DEFAULT 'charged',
    UNIQUE (key_hash, idempotency_key)
);
CREATE INDEX IF NOT EXISTS uploads_expires ON uploads (expires);
CREATE INDEX IF NOT EXISTS uploads_key ON uploads (key_hash, created);
CREATE INDEX IF NOT EXISTS files_expires ON files (expires);
CREATE TABLE IF NOT EXISTS outputs (url TEXT PRIMARY KEY, unique_filename TEXT NOT NULL,
                                    size INTEGER NOT NULL);
CREATE INDEX IF NOT EXISTS outputs_upload ON outputs (unique_filename);
"""
#: Bytes a key holds: its live uploads and the outputs rendered from them.
_STORED_BYTES = """
SELECT COALESCE(SUM(u.size), 0)
     + COALESCE((SELECT SUM(o.size) FROM outputs o JOIN uploads l
                 ON o.unique_filename = l.unique_filename
                 WHERE l.key_hash = ? AND l.expires > ?), 0)
FROM uploads u WHERE u.key_hash = ? AND u.expires > ?
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
            for table, columns in _MIGRATIONS.items():
                have = {row[1] for row in db.execute(f"PRAGMA table_info({table})")}
                if have:  # an older database: add what it lacks before the indexes
                    for name, kind in columns.items():
                        if name not in have:
                            db.execute(f"ALTER TABLE {table} ADD COLUMN {name} {kind}")
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

    def rekey(self, old_hash: str, new_hash: str) -> bool:
        """Move an account with its uploads and charges from ``old_hash`` to ``new_hash`` (a
        database made with unkeyed hashes); ``False`` when there is nothing to move or the new
        hash already has an account (that one is kept as it is)."""
        with self._transaction() as db:
            have = {
                row[0]
                for row in db.execute(
                    "SELECT key_hash FROM accounts WHERE key_hash IN (?, ?)", (old_hash, new_hash)
                )
            }
            if have != {old_hash}:
                return False
            for table in ("accounts", "uploads", "charges"):
                db.execute(f"UPDATE {table} SET key_hash=? WHERE key_hash=?", (new_hash, old_hash))
        return True

    def balance(self, key_hash: str) -> float | None:
        """Credits left for a key, ``None`` for an unknown key."""
        with self._connect() as db:
            row = db.execute(
                "SELECT credits FROM accounts WHERE key_hash=?", (key_hash,)
            ).fetchone()
        return None if row is None else float(row[0])

    # -- uploads ------------------------------------------------------------------------------

    def add_upload(
        self,
        unique_filename: str,
        key_hash: str,
        local_name: str,
        ttl: float,
        *,
        size: int = 0,
        max_per_hour: int = 0,
        max_bytes: int = 0,
    ) -> None:
        """Journal an upload; :class:`QuotaExceeded` (and nothing stored) when it would take
        the key past ``max_per_hour`` uploads in the last hour or ``max_bytes`` stored (live
        uploads and their outputs; 0: no limit). ``local_name`` may be filled in later with
        :meth:`set_local_name`."""
        now = time.time()
        with self._transaction() as db:
            if max_per_hour > 0:
                recent = db.execute(
                    "SELECT COUNT(*), MIN(created) FROM uploads WHERE key_hash=? AND created>?",
                    (key_hash, now - QUOTA_WINDOW),
                ).fetchone()
                if recent[0] >= max_per_hour:
                    retry_after = max(1.0, recent[1] + QUOTA_WINDOW - now)
                    raise QuotaExceeded("uploads", max_per_hour, retry_after)
            if max_bytes > 0:
                stored = db.execute(_STORED_BYTES, (key_hash, now, key_hash, now)).fetchone()[0]
                if stored + size > max_bytes:
                    raise QuotaExceeded("bytes", max_bytes)
            db.execute(
                "INSERT INTO uploads (unique_filename, key_hash, local_name, expires, created, "
                "size) VALUES (?, ?, ?, ?, ?, ?)",
                (unique_filename, key_hash, local_name, now + ttl, now, size),
            )

    def set_local_name(self, unique_filename: str, local_name: str) -> None:
        """Point a journalled upload at the engine's stored copy."""
        with self._transaction() as db:
            db.execute(
                "UPDATE uploads SET local_name=? WHERE unique_filename=?",
                (local_name, unique_filename),
            )

    def void_upload(self, unique_filename: str) -> None:
        """An upload whose storing failed (invalid image): it expires now and holds no bytes,
        but still counts for the hourly quota."""
        with self._transaction() as db:
            db.execute(
                "UPDATE uploads SET expires=?, size=0, local_name='' WHERE unique_filename=?",
                (time.time(), unique_filename),
            )

    def stored_bytes(self, key_hash: str) -> int:
        """Bytes of this key's live uploads and of the outputs rendered from them."""
        now = time.time()
        with self._connect() as db:
            return int(db.execute(_STORED_BYTES, (key_hash, now, key_hash, now)).fetchone()[0])

    def add_outputs(self, unique_filename: str, sizes: dict[str, int]) -> None:
        """Journal the rendered outputs ``{engine URL: bytes}`` of an upload (a file rendered
        again is counted once); they count for its key until the upload expires."""
        with self._transaction() as db:
            db.executemany(
                "INSERT OR REPLACE INTO outputs VALUES (?, ?, ?)",
                [(url, unique_filename, size) for url, size in sizes.items()],
            )

    def find_upload(self, unique_filename: str, key_hash: str) -> str | None:
        """The engine's name of an upload this key owns and that has not expired."""
        with self._connect() as db:
            row = db.execute(
                "SELECT local_name FROM uploads WHERE unique_filename=? AND key_hash=? "
                "AND expires>? AND local_name!=''",
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

    def purge_expired(self) -> list[str]:
        """Forget expired uploads and file tokens; returns the engine names of the uploads
        that expired (rows stay for the hourly quota's window, without a local name)."""
        now = time.time()
        with self._transaction() as db:
            expired = [
                row[0]
                for row in db.execute(
                    "SELECT local_name FROM uploads WHERE expires<=? AND local_name!=''", (now,)
                )
            ]
            db.execute("UPDATE uploads SET local_name='' WHERE expires<=?", (now,))
            db.execute(
                "DELETE FROM outputs WHERE unique_filename NOT IN "
                "(SELECT unique_filename FROM uploads WHERE expires>?)",
                (now,),
            )
            db.execute(
                "DELETE FROM uploads WHERE expires<=? AND created<=?", (now, now - QUOTA_WINDOW)
            )
            db.execute("DELETE FROM files WHERE expires<=?", (now,))
        return expired

    # -- charges ------------------------------------------------------------------------------

    def find_charge(self, key_hash: str, idempotency_key: str) -> Charge | None:
        """The earlier, charged call of this key with this ``Idempotency-Key``, if any."""
        with self._connect() as db:
            row = db.execute(
                "SELECT request_hash, credits, result FROM charges "
                "WHERE key_hash=? AND idempotency_key=? AND state='charged'",
                (key_hash, idempotency_key),
            ).fetchone()
        return None if row is None else Charge(row[0], row[1], json.loads(row[2]))

    def update_result(self, key_hash: str, idempotency_key: str, result: dict[str, Any]) -> None:
        """Replace a charged call's journalled answer (its outputs were rendered again)."""
        with self._transaction() as db:
            db.execute(
                "UPDATE charges SET result=? WHERE key_hash=? AND idempotency_key=? "
                "AND state='charged'",
                (json.dumps(result), key_hash, idempotency_key),
            )

    def reserve(
        self, key_hash: str, credits: float, *, idempotency_key: str, request_hash: str
    ) -> int | None:
        """Debit ``credits`` and journal the call as reserved, in one transaction; returns the
        reservation's id, or ``None`` (nothing debited) when too few credits are left."""
        with self._transaction() as db:
            row = db.execute(
                "SELECT credits FROM accounts WHERE key_hash=?", (key_hash,)
            ).fetchone()
            if row is None or row[0] < credits:
                return None
            db.execute(
                "UPDATE accounts SET credits=credits-? WHERE key_hash=?", (credits, key_hash)
            )
            cursor = db.execute(
                "INSERT INTO charges (key_hash, idempotency_key, request_hash, credits, result,"
                " created, state) VALUES (?, ?, ?, ?, '{}', ?, 'reserved')",
                (key_hash, idempotency_key, request_hash, credits, time.time()),
            )
            return int(cursor.lastrowid)

    def settle(self, reservation: int, result: dict[str, Any]) -> None:
        """The reserved call succeeded: keep the debit and journal its result."""
        with self._transaction() as db:
            db.execute(
                "UPDATE charges SET state='charged', result=? WHERE id=? AND state='reserved'",
                (json.dumps(result), reservation),
            )

    def refund(self, reservation: int) -> None:
        """The reserved call failed: give the credits back and forget the call."""
        with self._transaction() as db:
            self._refund(db, reservation)

    def refund_reserved(self) -> int:
        """Refund every call still reserved (the server stopped mid-work); returns how many."""
        with self._transaction() as db:
            ids = [r[0] for r in db.execute("SELECT id FROM charges WHERE state='reserved'")]
            for reservation in ids:
                self._refund(db, reservation)
        return len(ids)

    @staticmethod
    def _refund(db: sqlite3.Connection, reservation: int) -> None:
        row = db.execute(
            "SELECT key_hash, credits FROM charges WHERE id=? AND state='reserved'",
            (reservation,),
        ).fetchone()
        if row is not None:
            db.execute("UPDATE accounts SET credits=credits+? WHERE key_hash=?", (row[1], row[0]))
            db.execute("DELETE FROM charges WHERE id=?", (reservation,))

    def charges(self, key_hash: str) -> list[tuple[str, float]]:
        """``(request_hash, credits)`` of every charged call of a key, oldest first."""
        with self._connect() as db:
            rows = db.execute(
                "SELECT request_hash, credits FROM charges WHERE key_hash=? AND state='charged' "
                "ORDER BY id",
                (key_hash,),
            ).fetchall()
        return [(r[0], float(r[1])) for r in rows]
