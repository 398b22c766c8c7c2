"""The durable queue of results for PACS, in the appliance's SQLite database.

enqueue() runs inside the transaction that marks the image done and queues
its MQTT alert, so a crash cannot keep one and lose the other. A row is done
only when PACS answered a C-STORE with a success (or warning) status; until
then it is retried with exponential backoff, across restarts.
"""
import json
import sqlite3
import time
from dataclasses import dataclass
from typing import Any, Dict, List, Optional

from pydicom.dataset import Dataset

from edge.errors import StoreError
from edge.store import Store

SCHEMA = """
CREATE TABLE IF NOT EXISTS pacs_outbox (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    alert_id        TEXT    NOT NULL,
    kind            TEXT    NOT NULL CHECK (kind IN ('overlay_sc', 'report_sr')),
    study_uid       TEXT    NOT NULL,
    source          TEXT    NOT NULL,      -- DICOM JSON of the copied source attributes
    alert           BLOB    NOT NULL,      -- the alert payload (JSON)
    overlay         BLOB,                  -- the overlay JPEG (overlay_sc rows)
    refs_overlay    INTEGER NOT NULL DEFAULT 0,
    created_at      REAL    NOT NULL,
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_at REAL    NOT NULL,
    last_status     INTEGER,
    last_error      TEXT,
    sent_at         REAL,
    UNIQUE (alert_id, kind)
);
CREATE INDEX IF NOT EXISTS pacs_outbox_due ON pacs_outbox (sent_at, next_attempt_at);
"""


@dataclass(frozen=True)
class PacsRow:
    id: int
    alert_id: str
    kind: str
    source: Dataset
    alert: Dict[str, Any]
    overlay: Optional[bytes]
    refs_overlay: bool
    attempts: int


def backoff_s(attempts: int, low: float, high: float) -> float:
    """Wait before the next try after `attempts` failures: low, 2 low, 4 low ... capped at high."""
    return min(high, low * (2.0 ** max(0, min(attempts - 1, 30))))


class PacsQueue:
    def __init__(self, store: Store):
        self.store = store
        try:
            store.add_schema(SCHEMA)
        except sqlite3.Error as exc:
            raise StoreError("cannot create the pacs_outbox table in %s: %s" % (store.path, exc))

    def enqueue(self, conn: sqlite3.Connection, kinds: List[str], source: Dataset,
                alert: Dict[str, Any], overlay: Optional[bytes]) -> None:
        """Queue one row per kind inside the caller's transaction (once per alert and kind)."""
        now = time.time()
        src = source.to_json()
        body = json.dumps(alert, sort_keys=True).encode("utf-8")
        refs = int("overlay_sc" in kinds)
        try:
            for kind in kinds:
                conn.execute(
                    "INSERT OR IGNORE INTO pacs_outbox (alert_id, kind, study_uid, source, alert, overlay,"
                    " refs_overlay, created_at, next_attempt_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (alert["alert_id"], kind, str(source.StudyInstanceUID), src, sqlite3.Binary(body),
                     sqlite3.Binary(overlay) if kind == "overlay_sc" and overlay else None, refs, now, now))
        except sqlite3.Error as exc:
            raise StoreError("cannot queue results for PACS: %s" % exc)

    def due(self, now: float, limit: int = 20) -> List[PacsRow]:
        try:
            rows = self.store.connection().execute(
                "SELECT id, alert_id, kind, source, alert, overlay, refs_overlay, attempts FROM pacs_outbox"
                " WHERE sent_at IS NULL AND next_attempt_at <= ? ORDER BY id LIMIT ?",
                (now, int(limit))).fetchall()
        except sqlite3.Error as exc:
            raise StoreError("cannot read the PACS queue: %s" % exc)
        return [PacsRow(id=r[0], alert_id=r[1], kind=r[2], source=Dataset.from_json(r[3]),
                        alert=json.loads(bytes(r[4]).decode("utf-8")),
                        overlay=bytes(r[5]) if r[5] is not None else None,
                        refs_overlay=bool(r[6]), attempts=r[7]) for r in rows]

    def next_due_in(self, now: float) -> Optional[float]:
        """Seconds until the earliest pending row is due (0 if one is due now), None if none pend."""
        row = self.store.connection().execute(
            "SELECT MIN(next_attempt_at) FROM pacs_outbox WHERE sent_at IS NULL").fetchone()
        return None if row[0] is None else max(0.0, row[0] - now)

    def mark_sent(self, row_id: int, status: int) -> None:
        self._write("UPDATE pacs_outbox SET sent_at = ?, last_status = ?, last_error = NULL,"
                    " attempts = attempts + 1 WHERE id = ? AND sent_at IS NULL",
                    (time.time(), status, row_id))

    def mark_failed(self, row_id: int, attempts: int, error: str, status: Optional[int],
                    retry_min_s: float, retry_max_s: float) -> None:
        wait = backoff_s(attempts + 1, retry_min_s, retry_max_s)
        self._write("UPDATE pacs_outbox SET attempts = attempts + 1, last_error = ?, last_status = ?,"
                    " next_attempt_at = ? WHERE id = ? AND sent_at IS NULL",
                    (error[:500], status, time.time() + wait, row_id))

    def depth(self) -> int:
        try:
            return int(self.store.connection().execute(
                "SELECT COUNT(*) FROM pacs_outbox WHERE sent_at IS NULL").fetchone()[0])
        except sqlite3.Error as exc:
            raise StoreError("cannot read the PACS queue: %s" % exc)

    def last_error(self) -> Optional[str]:
        row = self.store.connection().execute(
            "SELECT last_error FROM pacs_outbox WHERE sent_at IS NULL AND last_error IS NOT NULL"
            " ORDER BY id LIMIT 1").fetchone()
        return row[0] if row else None

    def _write(self, sql: str, params: tuple) -> None:
        try:
            with self.store.transaction() as conn:
                conn.execute(sql, params)
        except sqlite3.Error as exc:
            raise StoreError("cannot update the PACS queue: %s" % exc)
