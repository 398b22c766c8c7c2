"""Sends the PACS queue by C-STORE, one association per batch of due rows.

At least once: a row is marked sent only on a success or warning status
(warnings, e.g. 0xB000 "coercion of data elements", mean PACS stored it).
Anything else (no association, a refusal, a failure status, a timeout)
leaves the row pending with a backoff. PACS dedupes by SOP Instance UID,
which results.py derives from the alert id.
"""
import logging
import threading
import time
from typing import Optional

from edge.errors import PacsError, StoreError
from edge.pacs.queue import PacsQueue, PacsRow
from edge.pacs.results import ENHANCED_SR, SECONDARY_CAPTURE, build
from edge.settings import PacsSettings

log = logging.getLogger(__name__)

EXPLICIT_LE = "1.2.840.10008.1.2.1"
IDLE_POLL_S = 1.0


def stored(status: int) -> bool:
    """Success (0x0000) or a warning (0x0001, 0xB000-0xBFFF): PACS has the instance."""
    return status == 0x0000 or status == 0x0001 or 0xB000 <= status <= 0xBFFF


class PacsSender:
    def __init__(self, settings: PacsSettings, queue: PacsQueue):
        self.settings = settings
        self.queue = queue
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread = None  # type: Optional[threading.Thread]

    def start(self) -> None:
        logging.getLogger("pynetdicom").setLevel(logging.WARNING)
        self._thread = threading.Thread(target=self._loop, name="pacs", daemon=True)
        self._thread.start()
        s = self.settings
        log.info("results to PACS %s at %s:%d (as %s)", s.called_ae, s.host, s.port, s.calling_ae)

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                sent_any = self.send_due()
                wait = 0.0 if sent_any else (self.queue.next_due_in(time.time()) or IDLE_POLL_S)
            except (StoreError, PacsError) as exc:
                log.error("PACS sender: %s", exc)
                wait = IDLE_POLL_S
            if wait > 0:
                self._wake.wait(min(wait, IDLE_POLL_S))
                self._wake.clear()

    def send_due(self) -> bool:
        """Send what is due now over one association; True if anything was stored."""
        rows = self.queue.due(time.time())
        if not rows:
            return False
        from pynetdicom import AE   # imported only when results go to PACS
        s = self.settings
        ae = AE(ae_title=s.calling_ae)
        ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = s.timeout_s
        for sop_class in (SECONDARY_CAPTURE, ENHANCED_SR):
            ae.add_requested_context(sop_class, [EXPLICIT_LE])
        try:
            assoc = ae.associate(s.host, s.port, ae_title=s.called_ae)
        except Exception as exc:   # socket errors surface in several types
            assoc, why = None, "%s: %s" % (type(exc).__name__, exc)
        else:
            why = "association %s" % ("rejected" if assoc.is_rejected else "aborted"
                                      if assoc.is_aborted else "failed")
        if assoc is None or not assoc.is_established:
            self._failed(rows, "PACS %s:%d unreachable (%s)" % (s.host, s.port, why), None)
            return False
        stored_any = False
        try:
            for i, row in enumerate(rows):
                if self._stop.is_set() or not assoc.is_established:
                    self._failed(rows[i:], "association ended before this was sent", None)
                    break
                stored_any |= self._send(assoc, row)
        finally:
            if assoc.is_established:
                assoc.release()
        return stored_any

    def _send(self, assoc, row: PacsRow) -> bool:
        try:
            ds = build(row.kind, row.source, row.alert, row.overlay, row.refs_overlay)
        except PacsError as exc:
            self._failed([row], str(exc), None)
            return False
        try:
            rsp = assoc.send_c_store(ds)
        except Exception as exc:   # no accepted context for the class, or the link broke
            self._failed([row], "C-STORE not sent: %s: %s" % (type(exc).__name__, exc), None)
            return False
        status = int(rsp.Status) if rsp is not None and "Status" in rsp else None
        if status is not None and stored(status):
            self.queue.mark_sent(row.id, status)
            log.info("PACS stored %s of alert %s (status 0x%04X)", row.kind, row.alert_id, status)
            return True
        self._failed([row], "PACS answered %s" % ("0x%04X" % status if status is not None
                                                 else "nothing (timeout or abort)"), status)
        return False

    def _failed(self, rows, error: str, status: Optional[int]) -> None:
        for row in rows:
            self.queue.mark_failed(row.id, row.attempts, error, status,
                                   self.settings.retry_min_s, self.settings.retry_max_s)
        log.warning("PACS: %d result(s) wait for a retry: %s", len(rows), error)
