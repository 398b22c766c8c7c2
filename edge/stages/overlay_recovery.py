"""What a commit does after its alert: the overlay, and the results for PACS.

The alert goes first: the commit queues it (with ack tracking and the
ledger's "done") in one transaction and the publisher sends it at once;
only then is the overlay rendered and queued, with the PACS results (which
carry the overlay), in a second transaction. The file leaves processing/
after that second transaction, not before.

Crash safety between the two transactions. The first one also writes a
row in `overlay_pending` holding what the overlay needs that the file does
not: the alert as sent and the Finding it came from, exactly. A crash (or a
failed second transaction) leaves that row, and the file, in processing/.
At the next start the file is picked up as a leftover; intake finds its
content "done" in the ledger with a pending row and hands it here instead
of calling it a duplicate: the film is decoded again (the models are not
re-run, so the overlay says exactly what the alert said), the overlay is
rendered from the stored Finding, queued with the PACS results, the row
deleted in the same transaction, and the file moved to done/ (or deleted).
The same path finishes a file whose second transaction failed and is
retried. Both transactions are idempotent (outbox and PACS rows are keyed
by alert id), so recovering twice queues each message once.
"""
import dataclasses
import json
import logging
import sqlite3
import collections
import threading
import time
from dataclasses import dataclass
from typing import Any, Counter, Dict, Optional

from edge.alerts.outbox import Outbox
from edge.alerts.overlay import render_overlay
from edge.alerts.schema import decode, encode
from edge.alerts.topics import Topics
from edge.capture.folders import CaptureFolders, Claimed
from edge.decode import decode_bytes
from edge.errors import DecodeError, StoreError
from edge.hospital import HospitalLinks
from edge.settings import Settings
from edge.stages.job import Job, Outcome
from edge.stages.tally import Tally
from edge.store import Store
from edge.types import Finding, Image

log = logging.getLogger(__name__)

SCHEMA = """
CREATE TABLE IF NOT EXISTS overlay_pending (
    alert_id    TEXT PRIMARY KEY,
    sha256      TEXT NOT NULL,
    alert       BLOB NOT NULL,     -- the alert payload as queued (JSON)
    finding     TEXT NOT NULL,     -- the Finding the overlay is drawn from (JSON, exact)
    label       TEXT NOT NULL,     -- the banner's use warning
    created_at  REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS overlay_pending_sha256 ON overlay_pending (sha256);
"""

_FINDING_FIELDS = tuple(f.name for f in dataclasses.fields(Finding))


@dataclass(frozen=True)
class Pending:
    """An alert queued without its overlay yet."""
    alert_id: str
    alert: Dict[str, Any]
    finding: Finding
    label: str


def finding_to_json(finding: Finding) -> str:
    # Not dataclasses.asdict: it deep-copies every contour point (4.5 ms for
    # 1,000 points against 0.4 ms), inside the transaction the alert waits on.
    return json.dumps({k: getattr(finding, k) for k in _FINDING_FIELDS}, sort_keys=True)


def finding_from_json(text: str) -> Finding:
    raw = json.loads(text)
    values = {k: raw[k] for k in _FINDING_FIELDS if k in raw}
    if values.get("bbox") is not None:
        values["bbox"] = tuple(int(v) for v in values["bbox"])
    values["contours"] = [[(int(x), int(y)) for x, y in c] for c in values.get("contours") or []]
    return Finding(**values)


class AfterAlert:
    """The overlay and PACS step of a commit, and its recovery after a crash."""

    def __init__(self, settings: Settings, store: Store, outbox: Outbox, hospital: HospitalLinks,
                 folders: CaptureFolders, topics: Topics, tally: Tally, decode_side: int):
        self.settings, self.store, self.outbox, self.hospital = settings, store, outbox, hospital
        self.folders, self.topics, self.tally, self._decode_side = folders, topics, tally, decode_side
        try:
            store.add_schema(SCHEMA)
        except sqlite3.Error as exc:
            raise StoreError("cannot create the overlay_pending table in %s: %s" % (store.path, exc))
        # Content whose second step this process has in hand, with how many
        # holders (two copies of one film can be in flight on two threads): a
        # copy arriving meanwhile is a duplicate, not a crash to recover from.
        self._lock = threading.Lock()
        self._in_hand = collections.Counter()  # type: Counter[str]

    @property
    def wanted(self) -> bool:
        """Whether anything follows the alert (an overlay, or results for PACS)."""
        return bool(self.settings.mqtt.publish_overlay) or self.hospital.queue is not None

    # -- the commit's side ------------------------------------------------
    def remember(self, conn: sqlite3.Connection, sha256: str, alert: Dict[str, Any],
                 finding: Finding, label: str) -> None:
        """Inside the alert's transaction: what recovery needs if the second one never comes."""
        with self._lock:
            self._in_hand[sha256] += 1
        try:
            conn.execute("INSERT OR REPLACE INTO overlay_pending (alert_id, sha256, alert, finding, label,"
                         " created_at) VALUES (?, ?, ?, ?, ?, ?)",
                         (alert["alert_id"], sha256, sqlite3.Binary(encode(alert)),
                          finding_to_json(finding), label, time.time()))
        except sqlite3.Error as exc:
            raise StoreError("cannot record the pending overlay of %s: %s" % (alert["alert_id"], exc))

    def release(self, sha256: str) -> None:
        """The commit is over (or failed and will be retried): recovery may take it."""
        with self._lock:
            if self._in_hand[sha256] > 1:
                self._in_hand[sha256] -= 1
            else:
                del self._in_hand[sha256]

    def render(self, image: Image, finding: Finding, label: str, name: str) -> Optional[bytes]:
        """The overlay JPEG, or None when overlays are off or this film cannot
        have one: the alert is already out and must not be undone by its picture."""
        if not self.settings.mqtt.publish_overlay:
            return None
        a = self.settings.alerts
        try:
            return render_overlay(image, finding, label, a.overlay_max_side, a.overlay_quality,
                                  draw_region=a.overlay_region)
        except MemoryError:
            raise                        # the machine, not the film: the file is retried
        except Exception:  # noqa: BLE001 - see the docstring
            log.exception("%s: the overlay cannot be rendered; its alert stands without one", name)
            return None

    def queue(self, claimed: Claimed, image: Image, alert: Dict[str, Any],
              overlay: Optional[bytes]) -> None:
        """The second transaction: overlay + PACS results queued, pending row gone."""
        pacs = self.hospital.prepare(claimed, image, alert, overlay)
        alert_id = alert["alert_id"]
        with self.store.transaction() as conn:
            if overlay is not None:
                self.outbox.enqueue_overlay(conn, self.topics, alert_id, overlay)
            self.hospital.enqueue(conn, pacs)
            conn.execute("DELETE FROM overlay_pending WHERE alert_id = ?", (alert_id,))

    # -- recovery -----------------------------------------------------------
    def pending(self, sha256: str) -> Optional[Pending]:
        """The alert of this content still waiting for its overlay, unless this
        process is producing it right now."""
        with self._lock:
            if sha256 in self._in_hand:
                return None
        try:
            row = self.store.connection().execute(
                "SELECT alert_id, alert, finding, label FROM overlay_pending WHERE sha256 = ?"
                " ORDER BY created_at DESC LIMIT 1", (sha256,)).fetchone()
        except sqlite3.Error as exc:
            raise StoreError("cannot read the pending overlays: %s" % exc)
        if row is None:
            return None
        return Pending(row[0], decode(bytes(row[1])), finding_from_json(row[2]), row[3])

    def recover(self, job: Job, pending: Pending) -> Outcome:
        """Finish a file whose alert was queued but whose overlay was not: decode
        it again, draw the overlay from the stored Finding, queue it with the
        PACS results, then the file's final move."""
        claimed = job.claimed
        log.info("%s: alert %s was queued before a crash without its overlay; rendering it now",
                 claimed.label, pending.alert_id)
        image = None
        try:
            with job.timings.measure("decode_ms"):
                image = decode_bytes(job.read(), self.settings.decode, name=claimed.label,
                                     min_side=self._decode_side)
        except FileNotFoundError:
            return Outcome(claimed.label, "vanished")
        except DecodeError as exc:     # it decoded before the crash; a new decoder may disagree
            log.error("%s: cannot decode it again (%s); alert %s stays without an overlay",
                      claimed.label, exc, pending.alert_id)
        job.data = None
        overlay = None
        if image is not None:
            with job.timings.measure("overlay_ms"):
                overlay = self.render(image, pending.finding, pending.label, claimed.label)
        with job.timings.measure("outbox_ms"):
            if image is not None:
                self.queue(claimed, image, pending.alert, overlay)
            else:
                self._forget(pending.alert_id)
        self.folders.finish(claimed)
        self.tally.count("recovered")
        return Outcome(claimed.label, "recovered", alert_id=pending.alert_id,
                       timings_ms=job.timings.as_dict())

    def _forget(self, alert_id: str) -> None:
        with self.store.transaction() as conn:
            conn.execute("DELETE FROM overlay_pending WHERE alert_id = ?", (alert_id,))
