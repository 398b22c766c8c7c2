"""The durable queue between "image done" and "broker has it".

Rows live in the appliance's one SQLite database (edge.store.Store), so the
capture ledger's "done" and the alert's enqueue commit in the same
transaction: enqueue() takes the caller's transaction connection. A row is
"sent" only once the broker acknowledged it (PUBACK); until then it survives
broker outages, network loss and restarts.
"""
import logging
import sqlite3
import time
from dataclasses import dataclass
from typing import Iterable, List, Optional, Tuple

from edge.alerts.messages import Alert, Event
from edge.alerts.schema import encode
from edge.alerts.topics import Topics
from edge.errors import StoreError
from edge.store import Store

log = logging.getLogger(__name__)

KINDS = ("alert", "overlay", "event")
_COLUMNS = "kind, alert_id, topic, payload, qos, retain, created_at"
SALVAGE_MAX_IDS = 1000000   # row-by-row probing of a damaged table stops here

SCHEMA = """
CREATE TABLE IF NOT EXISTS outbox (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    kind        TEXT    NOT NULL CHECK (kind IN ('alert', 'overlay', 'event')),
    alert_id    TEXT,
    topic       TEXT    NOT NULL,
    payload     BLOB    NOT NULL,
    qos         INTEGER NOT NULL DEFAULT 1,
    retain      INTEGER NOT NULL DEFAULT 0,
    created_at  REAL    NOT NULL,
    attempts    INTEGER NOT NULL DEFAULT 0,
    last_error  TEXT,
    sent_at     REAL
);
-- one alert (or its overlay) is queued once per topic; NULL alert_ids
-- (events) are distinct in SQLite, so events are never collapsed
CREATE UNIQUE INDEX IF NOT EXISTS outbox_once ON outbox (kind, alert_id, topic);
CREATE INDEX IF NOT EXISTS outbox_pending ON outbox (sent_at, id);
"""


@dataclass(frozen=True)
class OutboxRow:
    id: int
    kind: str
    alert_id: Optional[str]
    topic: str
    payload: bytes
    qos: int
    retain: bool
    created_at: float
    attempts: int
    last_error: Optional[str]


class Outbox:
    def __init__(self, store: Store):
        self.store = store
        try:
            store.add_schema(SCHEMA)
        except sqlite3.Error as exc:
            raise StoreError("cannot create the outbox table in %s: %s" % (store.path, exc))
        healed = store.healed
        if healed is not None and not healed.outbox_salvaged:
            healed.outbox_salvaged = True
            rows = salvage_unsent(healed.moved_to)
            healed.unreadable = rows is None
            healed.carried_over = self._carry_over(rows or [])

    def _carry_over(self, rows: List[Tuple]) -> int:
        """Queue unsent rows read from a corrupt database's outbox."""
        if not rows:
            return 0
        with self.store.transaction() as conn:
            before = conn.total_changes
            conn.executemany("INSERT OR IGNORE INTO outbox (%s) VALUES (?, ?, ?, ?, ?, ?, ?)"
                             % _COLUMNS, rows)
            return conn.total_changes - before

    def enqueue(self, conn: sqlite3.Connection, kind: str, topic: str, payload: bytes,
                alert_id: Optional[str] = None, qos: int = 1, retain: bool = False) -> int:
        """Queue a message inside the caller's transaction (store.transaction()).
        Returns the row id; an alert/overlay already queued for the same
        alert_id and topic is not queued again (its existing id is returned)."""
        if kind not in KINDS:
            raise StoreError("outbox kind must be one of %s, not %r" % (KINDS, kind))
        if qos not in (0, 1, 2):
            raise StoreError("qos must be 0, 1 or 2")
        try:
            cur = conn.execute(
                "INSERT OR IGNORE INTO outbox (kind, alert_id, topic, payload, qos, retain, created_at)"
                " VALUES (?, ?, ?, ?, ?, ?, ?)",
                (kind, alert_id, topic, sqlite3.Binary(bytes(payload)), qos, int(bool(retain)),
                 time.time()))
            if cur.rowcount == 1:
                return int(cur.lastrowid)
            row = conn.execute("SELECT id FROM outbox WHERE kind = ? AND alert_id = ? AND topic = ?",
                               (kind, alert_id, topic)).fetchone()
        except sqlite3.Error as exc:
            raise StoreError("cannot queue %s for %s: %s" % (kind, topic, exc))
        return int(row[0])

    def enqueue_alert(self, conn: sqlite3.Connection, topics: Topics, alert: Alert,
                      overlay_jpeg: Optional[bytes] = None) -> List[int]:
        """Queue an alert (schema.build_alert) and, if given, its overlay JPEG
        on topics.overlay(alert_id), inside the caller's transaction."""
        alert_id = alert.alert_id
        ids = [self.enqueue(conn, "alert", topics.alert, encode(alert.to_json()), alert_id=alert_id)]
        if overlay_jpeg is not None:
            ids.append(self.enqueue_overlay(conn, topics, alert_id, overlay_jpeg))
        return ids

    def enqueue_overlay(self, conn: sqlite3.Connection, topics: Topics, alert_id: str,
                        overlay_jpeg: bytes) -> int:
        """Queue an alert's overlay JPEG on topics.overlay(alert_id), inside the
        caller's transaction; the appliance queues it after the alert itself
        (edge.stages.overlay_recovery)."""
        return self.enqueue(conn, "overlay", topics.overlay(alert_id), overlay_jpeg, alert_id=alert_id)

    def enqueue_event(self, conn: sqlite3.Connection, topics: Topics, event: Event) -> int:
        """Queue an event (schema.build_event) inside the caller's transaction."""
        return self.enqueue(conn, "event", topics.event, encode(event.to_json()))

    def pending(self, limit: int = 100) -> List[OutboxRow]:
        """Unsent rows, oldest first."""
        try:
            rows = self.store.connection().execute(
                "SELECT id, kind, alert_id, topic, payload, qos, retain, created_at, attempts,"
                " last_error FROM outbox WHERE sent_at IS NULL ORDER BY id LIMIT ?",
                (int(limit),)).fetchall()
        except sqlite3.Error as exc:
            raise StoreError("cannot read the outbox: %s" % exc)
        return [OutboxRow(id=r[0], kind=r[1], alert_id=r[2], topic=r[3], payload=bytes(r[4]),
                          qos=r[5], retain=bool(r[6]), created_at=r[7], attempts=r[8],
                          last_error=r[9]) for r in rows]

    def mark_sent(self, row_id: int) -> None:
        self.mark_sent_many([row_id])

    def mark_sent_many(self, row_ids: Iterable[int]) -> None:
        """Acknowledged by the broker: one transaction for a batch of PUBACKs."""
        now = time.time()
        ids = [(now, int(i)) for i in row_ids]
        if ids:
            self._write("mark rows sent",
                        "UPDATE outbox SET sent_at = ?, last_error = NULL"
                        " WHERE id = ? AND sent_at IS NULL", ids)

    def mark_attempt(self, row_id: int, error: Optional[str] = None) -> None:
        self.mark_attempts([row_id], error)

    def mark_attempts(self, row_ids: Iterable[int], error: Optional[str] = None) -> None:
        """Count a publish attempt (and why it failed, when it did)."""
        ids = [(error, int(i)) for i in row_ids]
        if ids:
            self._write("record a publish attempt",
                        "UPDATE outbox SET attempts = attempts + 1,"
                        " last_error = COALESCE(?, last_error) WHERE id = ?", ids)

    def depth(self) -> int:
        """Rows not yet acknowledged by the broker."""
        try:
            return int(self.store.connection().execute(
                "SELECT COUNT(*) FROM outbox WHERE sent_at IS NULL").fetchone()[0])
        except sqlite3.Error as exc:
            raise StoreError("cannot read the outbox: %s" % exc)

    def prune_sent(self, older_than_s: float) -> int:
        """Forget rows acknowledged more than older_than_s ago; returns how many."""
        cutoff = time.time() - float(older_than_s)
        try:
            with self.store.transaction() as conn:
                cur = conn.execute("DELETE FROM outbox WHERE sent_at IS NOT NULL AND sent_at < ?",
                                   (cutoff,))
                return int(cur.rowcount)
        except sqlite3.Error as exc:
            raise StoreError("cannot prune the outbox: %s" % exc)

    def _write(self, what: str, sql: str, params: list) -> None:
        try:
            with self.store.transaction() as conn:
                conn.executemany(sql, params)
        except sqlite3.Error as exc:
            raise StoreError("cannot %s: %s" % (what, exc))


def salvage_unsent(path: str) -> Optional[List[Tuple]]:
    """Unsent outbox rows still readable in a damaged database file, or None
    when the file cannot be read at all (header destroyed). A whole-table
    read is tried first; if a damaged page stops it, rows are fetched one id
    at a time so every intact page still gives up its rows."""
    try:
        conn = sqlite3.connect("file:%s?mode=ro&immutable=1" % path, uri=True)
    except sqlite3.Error:
        return None
    try:
        try:
            return [tuple(r) for r in conn.execute(
                "SELECT %s FROM outbox WHERE sent_at IS NULL ORDER BY id" % _COLUMNS)]
        except sqlite3.Error as exc:
            log.debug("outbox salvage: table scan failed (%s); probing row by row", exc)
        try:
            top = conn.execute("SELECT seq FROM sqlite_sequence WHERE name = 'outbox'").fetchone()
        except sqlite3.Error:
            return None
        rows = []
        for row_id in range(1, min(int(top[0]) if top else 0, SALVAGE_MAX_IDS) + 1):
            try:
                row = conn.execute("SELECT %s FROM outbox WHERE id = ? AND sent_at IS NULL"
                                   % _COLUMNS, (row_id,)).fetchone()
            except sqlite3.Error:
                continue
            if row is not None:
                rows.append(tuple(row))
        return rows
    finally:
        conn.close()
