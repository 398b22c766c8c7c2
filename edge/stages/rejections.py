"""Verdicts that end a file without an alert (rejected, duplicate), the
retry of files the machine could not take, and the guard that turns any
one file's exception into one of those."""
import logging
import os
import time
from typing import Callable, Optional

from edge.capture.folders import CaptureFolders, Claimed
from edge.capture.ledger import Ledger
from edge.capture.retry import RetryQueue
from edge.errors import DecodeError, PneumoEdgeError
from edge.stages.events import Events
from edge.stages.job import Outcome
from edge.stages.tally import Tally
from edge.store import Store, one_line

log = logging.getLogger(__name__)


class Rejections:
    def __init__(self, store: Store, ledger: Ledger, folders: CaptureFolders, events: Events,
                 tally: Tally, retries: RetryQueue):
        self.store, self.ledger, self.folders, self.events = store, ledger, folders, events
        self.tally, self.retries = tally, retries

    def guard(self, claimed: Claimed, step: Callable[[], Optional[Outcome]]) -> Optional[Outcome]:
        """Run one step for one file. A DecodeError-family exception from any
        stage (decoder, pipeline) rejects the file with its own code; trouble
        with the machine (store, folders, disk) leaves it in processing/ to
        be retried with backoff; anything else is a fault: rejected, and
        retried if the file is sent again. None: the step handed the file on."""
        try:
            outcome = step()
        except DecodeError as exc:
            return self.guarded_reject(claimed, exc.code, str(exc))
        except (PneumoEdgeError, OSError, MemoryError) as exc:   # StoreError, CaptureError, ENOSPC, RAM ...
            return self.defer(claimed, exc)
        except Exception as exc:  # noqa: BLE001 - one bad image must not stop the appliance
            log.exception("fault while processing %s", claimed.label)
            self.tally.count("faults")
            return self.guarded_reject(claimed, "fault", "internal error while processing: %s: %s"
                                       % (type(exc).__name__, one_line(exc)), kind="fault")
        if outcome is not None:
            self.settled(claimed)
        return outcome

    def guarded_reject(self, claimed: Claimed, code: str, reason: str,
                       kind: str = "rejected") -> Outcome:
        """A rejection that itself cannot fail: if the event, the ledger or
        the move cannot be written, the file waits in processing/ for a retry."""
        try:
            outcome = self.reject(claimed, code, reason, kind=kind)
        except Exception as exc:  # noqa: BLE001
            return self.defer(claimed, exc)
        self.settled(claimed)
        return outcome

    def reject(self, claimed: Claimed, code: str, reason: str, kind: str = "rejected") -> Outcome:
        """Event + ledger in one transaction, then the move. A file refused
        unread (no sha256) has no ledger row; one rejected before its claim
        was recorded gets the row here."""
        event = self.events.build(kind, reason, file_name=claimed.label, sha256=claimed.sha256 or None,
                                  code=code)
        with self.store.transaction() as conn:
            self.events.queue(conn, event)
            if claimed.sha256:
                self.ledger.record_claim(claimed.sha256, claimed.label)   # joins this transaction
                self.ledger.mark_rejected(conn, claimed.sha256, code, reason)
        where = self.folders.reject(claimed, code, reason)
        self.tally.count("rejected")
        log.warning("%s rejected (%s): %s -> %s", claimed.label, code, reason, _shown(claimed, where))
        return Outcome(claimed.label, "rejected", reason=reason)

    def duplicate(self, claimed: Claimed, alert_id: Optional[str]) -> Outcome:
        event = self.events.build("duplicate", "identical file already processed; no new alert",
                                  file_name=claimed.label, sha256=claimed.sha256, alert_id=alert_id)
        with self.store.transaction() as conn:
            self.events.queue(conn, event)
        self.folders.finish(claimed)
        self.tally.count("duplicate")
        log.info("%s: duplicate of alert %s, not alerted again", claimed.label, alert_id)
        return Outcome(claimed.label, "duplicate", alert_id=alert_id)

    def defer(self, claimed: Claimed, exc: BaseException) -> Outcome:
        error = "%s: %s" % (type(exc).__name__, one_line(exc))
        item = self.retries.defer(claimed, error, self.tally.successes)
        log.warning("%s waits in processing/ (attempt %d failed: %s); retrying in %.0f s",
                    claimed.label, item.attempts, error, max(0.0, item.due - time.monotonic()))
        self.tally.count("deferred")
        return Outcome(claimed.label, "deferred", reason=error)

    def settled(self, claimed: Claimed) -> None:
        self.retries.forget(claimed.path)
        self.tally.settled()

    def quarantine_stray(self, path: str, kind: str) -> Optional[Outcome]:
        """A FIFO, folder or symlink in incoming/ is moved to rejected/ with a
        reason file; one that cannot be moved (a folder owned by another
        user) is reported once and left. Either way an event says so."""
        stray = self.folders.stray(path)
        name = stray.label            # no content to look at: a neutral label, never its name
        reason = "a %s, not an image file" % kind
        try:
            where = self.folders.quarantine_stray(stray, "not_a_file", reason + "; moved out of incoming/")
        except FileNotFoundError:
            return None
        except PneumoEdgeError as exc:
            where = None
            reason += "; it cannot be moved out of incoming/ (%s): remove it by hand" % one_line(exc)
        self.tally.count("rejected")
        (log.warning if where else log.error)("%s rejected (not_a_file): %s%s", name, reason,
                                              " -> " + _shown(stray, where) if where else "")
        self.events.publish("not_a_file", reason, kind="rejected", file_name=name, sha256=None)
        return Outcome(name, "rejected", reason=reason)


def _shown(claimed: Claimed, where: str) -> str:
    """A path the file was moved to, its name under the file's label rule."""
    return os.path.join(os.path.dirname(where), claimed.label_for(os.path.basename(where)))
