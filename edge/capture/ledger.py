"""What happened to each image, keyed by content sha256.

Lives in the Store's one SQLite file beside the alert outbox, so the
worker marks an image done and queues its alert in one transaction:
mark_done/mark_rejected take the connection from `store.transaction()`.
A re-sent identical file finds its row already done and is not alerted
twice. `duplicates` counts claims of content already done or rejected (the
key is the content, so a separate "duplicate" row cannot exist).
"""
import sqlite3
import time
from dataclasses import dataclass
from typing import Optional

from edge.errors import StoreError
from edge.store import Store

STATES = ("claimed", "done", "rejected")

SCHEMA = """
CREATE TABLE IF NOT EXISTS capture_ledger (
    sha256      TEXT PRIMARY KEY,
    name        TEXT NOT NULL,
    state       TEXT NOT NULL CHECK (state IN ('claimed', 'done', 'rejected')),
    alert_id    TEXT,
    reason_code TEXT,
    reason      TEXT,
    duplicates  INTEGER NOT NULL DEFAULT 0,
    first_seen  REAL NOT NULL,
    last_seen   REAL NOT NULL,
    updated_at  REAL NOT NULL
);
"""


@dataclass(frozen=True)
class LedgerEntry:
    sha256: str
    name: str              # original file name when first seen
    state: str             # claimed | done | rejected
    alert_id: Optional[str]
    reason_code: Optional[str]
    reason: Optional[str]
    duplicates: int        # identical files received after the first
    first_seen: float      # epoch seconds
    last_seen: float
    updated_at: float


def _entry(row: sqlite3.Row) -> LedgerEntry:
    return LedgerEntry(**{k: row[k] for k in row.keys()})


class Ledger:
    def __init__(self, store: Store):
        self._store = store
        try:
            store.add_schema(SCHEMA)
        except sqlite3.Error as exc:
            raise StoreError("cannot create the capture ledger in %s: %s" % (store.path, exc))

    def record_claim(self, sha256: str, name: str) -> LedgerEntry:
        """Record a claimed file. A new content gets a `claimed` row; content
        seen before keeps its row and state (a crash left it `claimed`, or it
        is a re-send of a `done`/`rejected` one, counted as a duplicate).
        Returns the row as it now stands."""
        now = time.time()
        conn = self._store.connection()
        try:
            # One statement, so atomic on its own; inside a caller's
            # transaction it simply joins it. Upsert needs SQLite >= 3.24.
            conn.execute(
                "INSERT INTO capture_ledger (sha256, name, state, first_seen, last_seen,"
                " updated_at) VALUES (?, ?, 'claimed', ?, ?, ?)"
                " ON CONFLICT(sha256) DO UPDATE SET last_seen = excluded.last_seen,"
                " duplicates = duplicates + (state != 'claimed')",
                (sha256, name, now, now, now))
            row = conn.execute("SELECT * FROM capture_ledger WHERE sha256 = ?",
                               (sha256,)).fetchone()
        except sqlite3.Error as exc:
            raise StoreError("cannot record claim of %s: %s" % (sha256, exc))
        return _entry(row)

    def lookup(self, sha256: str) -> Optional[LedgerEntry]:
        try:
            row = self._store.connection().execute(
                "SELECT * FROM capture_ledger WHERE sha256 = ?", (sha256,)).fetchone()
        except sqlite3.Error as exc:
            raise StoreError("cannot read the capture ledger: %s" % exc)
        return _entry(row) if row is not None else None

    def mark_done(self, conn: sqlite3.Connection, sha256: str, alert_id: str) -> None:
        """Inside the caller's transaction, with the outbox insert beside it."""
        self._finish(conn, sha256, "done", alert_id=alert_id, reason_code=None, reason=None)

    def mark_rejected(self, conn: sqlite3.Connection, sha256: str, code: str,
                      reason: str) -> None:
        """A content whose alert is already queued stays done (a fault after the
        alert's transaction, or on another copy of it): its alert stands, and
        the same bytes sent again are a duplicate, not a new alert."""
        try:
            row = conn.execute("SELECT state FROM capture_ledger WHERE sha256 = ?", (sha256,)).fetchone()
        except sqlite3.Error as exc:
            raise StoreError("cannot read the capture ledger: %s" % exc)
        if row is not None and row[0] == "done":
            return
        self._finish(conn, sha256, "rejected", alert_id=None, reason_code=code, reason=reason)

    def _finish(self, conn: sqlite3.Connection, sha256: str, state: str,
                alert_id: Optional[str], reason_code: Optional[str],
                reason: Optional[str]) -> None:
        try:
            cursor = conn.execute(
                "UPDATE capture_ledger SET state = ?, alert_id = ?, reason_code = ?,"
                " reason = ?, updated_at = ? WHERE sha256 = ?",
                (state, alert_id, reason_code, reason, time.time(), sha256))
        except sqlite3.Error as exc:
            raise StoreError("cannot mark %s %s: %s" % (sha256, state, exc))
        if cursor.rowcount != 1:
            raise StoreError("cannot mark %s %s: it was never claimed (record_claim first)"
                             % (sha256, state))
