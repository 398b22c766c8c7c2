"""Acknowledgements from bedside displays, and escalation of positives nobody acknowledged.

A display publishes {alert_id, display_id, acked_at, initials} on
`<prefix>/<site>/<device>/ack` (docs/ALERTS.md). The publisher hands each
payload to `Acks.receive` on paho's network thread, which only queues it;
the "acks" thread writes SQLite (its own connection, tables beside the
outbox in the appliance's one database), refreshes the retained status so
every display sees the alert acknowledged, and re-announces positives that
stay unacknowledged: an `escalated` event every `alerts.escalate_after_s`,
queued in the outbox so it survives a broker outage like any alert.

Positives are recorded in the same transaction that queues the alert
(`record_alert(conn, alert)`), so a power cut cannot leave an alert sent
but never escalated.
"""
import logging
import queue
import sqlite3
import threading
import time
from typing import Any, Dict, List, Optional

from edge.alerts.outbox import Outbox
from edge.alerts.messages import Alert
from edge.alerts.schema import build_event, check_ack, decode
from edge.alerts.topics import Topics
from edge.errors import AlertError, PneumoEdgeError, StoreError
from edge.store import Store

log = logging.getLogger(__name__)

SCHEMA = """
CREATE TABLE IF NOT EXISTS positives (
    alert_id       TEXT PRIMARY KEY,
    file_name      TEXT,
    created_at     REAL NOT NULL,
    announced_at   REAL NOT NULL,
    announcements  INTEGER NOT NULL DEFAULT 1
);
CREATE TABLE IF NOT EXISTS acks (
    alert_id     TEXT PRIMARY KEY,
    display_id   TEXT NOT NULL,
    initials     TEXT,
    acked_at     TEXT NOT NULL,
    received_at  REAL NOT NULL
);
"""

CHECK_INTERVAL_S = 1.0          # how often the escalation rule is evaluated
ESCALATE_FOR_S = 86400.0        # a positive unacknowledged for a day is no longer re-announced
KEEP_S = 7 * 86400.0            # positives and acks older than this are forgotten
STATUS_IDS = 20                 # unacknowledged ids listed in the status (the count is exact)


class Acks:
    def __init__(self, store: Store, outbox: Outbox, topics: Topics, escalate_after_s: float):
        self.store = store
        self.outbox = outbox
        self.topics = topics
        self.escalate_after_s = float(escalate_after_s)
        try:
            store.add_schema(SCHEMA)
        except sqlite3.Error as exc:
            raise StoreError("cannot create the ack tables in %s: %s" % (store.path, exc))
        self._inbox = queue.Queue(maxsize=1000)   # type: queue.Queue
        self._stop = threading.Event()
        self._thread = None                       # type: Optional[threading.Thread]
        self._publisher = None                    # type: Any

    # -- called by the appliance ------------------------------------------
    def record_alert(self, conn: sqlite3.Connection, alert: Alert) -> None:
        """Inside the caller's transaction: remember a positive so it can be escalated."""
        if not alert.finding.pneumothorax:
            return
        now = time.time()
        conn.execute("INSERT OR IGNORE INTO positives (alert_id, file_name, created_at, announced_at)"
                     " VALUES (?, ?, ?, ?)", (alert.alert_id, alert.source.file_name, now, now))

    def receive(self, payload: bytes) -> None:
        """paho's network thread: queue only, never SQLite."""
        try:
            self._inbox.put_nowait(payload)
        except queue.Full:
            log.warning("ack inbox full; an acknowledgement was dropped (the display re-sends it)")

    def start(self, publisher: Any) -> None:
        self._publisher = publisher
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="acks", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    # -- reads (any thread) --------------------------------------------------
    def unacknowledged(self, limit: int = STATUS_IDS) -> List[str]:
        """Positive alert ids without an ack, newest first."""
        try:
            rows = self.store.connection().execute(
                "SELECT p.alert_id FROM positives p LEFT JOIN acks a USING (alert_id)"
                " WHERE a.alert_id IS NULL ORDER BY p.created_at DESC LIMIT ?", (int(limit),)).fetchall()
        except sqlite3.Error as exc:
            raise StoreError("cannot read unacknowledged positives: %s" % exc)
        return [r[0] for r in rows]

    def ack_of(self, alert_id: str) -> Optional[Dict[str, Any]]:
        row = self.store.connection().execute(
            "SELECT display_id, initials, acked_at FROM acks WHERE alert_id = ?", (alert_id,)).fetchone()
        return None if row is None else {"display_id": row[0], "initials": row[1], "acked_at": row[2]}

    def status(self) -> Dict[str, Any]:
        """Fields for the retained status topic."""
        try:
            count = int(self.store.connection().execute(
                "SELECT COUNT(*) FROM positives p LEFT JOIN acks a USING (alert_id)"
                " WHERE a.alert_id IS NULL").fetchone()[0])
            return {"unacknowledged": count, "unacknowledged_ids": self.unacknowledged()}
        except (sqlite3.Error, StoreError) as exc:
            log.warning("cannot read unacknowledged positives for the status: %s", exc)
            return {}

    # -- writes (the acks thread) ---------------------------------------------
    def record_ack(self, payload: bytes) -> bool:
        """Store one ack; True when it is the first for that alert."""
        try:
            ack = check_ack(decode(payload))
        except AlertError as exc:
            log.warning("ignoring an ack on %s: %s", self.topics.ack, exc)
            return False
        with self.store.transaction() as conn:
            cur = conn.execute("INSERT OR IGNORE INTO acks (alert_id, display_id, initials, acked_at,"
                               " received_at) VALUES (?, ?, ?, ?, ?)",
                               (ack["alert_id"], ack["display_id"], ack.get("initials"),
                                ack["acked_at"], time.time()))
        if cur.rowcount == 1:
            log.info("alert %s acknowledged by %s%s", ack["alert_id"], ack["display_id"],
                     " (%s)" % ack["initials"] if ack.get("initials") else "")
            return True
        return False

    def escalate(self, now: Optional[float] = None) -> List[str]:
        """Queue an `escalated` event for each positive due; returns their ids."""
        if self.escalate_after_s <= 0:
            return []
        now = time.time() if now is None else now
        due = []
        with self.store.transaction() as conn:
            rows = conn.execute(
                "SELECT p.alert_id, p.file_name, p.created_at, p.announcements FROM positives p"
                " LEFT JOIN acks a USING (alert_id) WHERE a.alert_id IS NULL"
                " AND p.announced_at <= ? AND p.created_at >= ?",
                (now - self.escalate_after_s, now - ESCALATE_FOR_S)).fetchall()
            for alert_id, file_name, created_at, n in rows:
                waited = now - created_at
                event = build_event(
                    "escalated", "positive alert not acknowledged for %d min (%s)"
                    % (waited // 60, file_name or alert_id),
                    site=self.topics.site, device=self.topics.device, alert_id=alert_id,
                    file_name=file_name, unacknowledged_s=round(waited, 1), announcement=n + 1)
                self.outbox.enqueue_event(conn, self.topics, event)
                conn.execute("UPDATE positives SET announced_at = ?, announcements = announcements + 1"
                             " WHERE alert_id = ?", (now, alert_id))
                due.append(alert_id)
        for alert_id in due:
            log.warning("alert %s still unacknowledged: re-announced", alert_id)
        return due

    def prune(self, older_than_s: float = KEEP_S) -> None:
        cutoff = time.time() - older_than_s
        with self.store.transaction() as conn:
            conn.execute("DELETE FROM positives WHERE created_at < ?", (cutoff,))
            conn.execute("DELETE FROM acks WHERE received_at < ?", (cutoff,))

    def _run(self) -> None:
        last_check = last_prune = 0.0
        last_count = None
        try:
            while not self._stop.is_set():
                try:
                    payload = self._inbox.get(timeout=CHECK_INTERVAL_S)
                except queue.Empty:
                    payload = None
                try:
                    changed = payload is not None and self.record_ack(payload)
                    now = time.monotonic()
                    if now - last_check >= CHECK_INTERVAL_S:
                        last_check = now
                        if self.escalate() and self._publisher is not None:
                            self._publisher.notify()
                        count = self.status().get("unacknowledged")
                        changed = changed or count != last_count     # a new positive, or acked
                        last_count = count
                    if changed and self._publisher is not None:
                        self._publisher.publish_status()      # displays see it now, not at the next heartbeat
                    if now - last_prune > 3600.0:
                        last_prune = now
                        self.prune()
                except (PneumoEdgeError, sqlite3.Error) as exc:
                    log.error("acks: %s", exc)              # retried on the next round
        finally:
            self.store.close()        # this thread's connection
