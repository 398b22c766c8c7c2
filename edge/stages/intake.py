"""Intake of one claimed file: dedupe, read, decode, preprocess. It ends
the file itself (rejected, duplicate, returned to its writer) or leaves the
Job ready for the models."""
import logging
import os
import threading
import time
from typing import Callable, Dict, Optional, Tuple

from edge.capture.folders import CaptureFolders, Claimed
from edge.capture.ledger import Ledger
from edge.capture.watcher import Watcher
from edge.decode import decode_bytes
from edge.errors import DecodeError, NotAnImage, Truncated
from edge.pipeline import Pipeline
from edge.settings import Settings
from edge.stages.job import Job, Outcome
from edge.stages.overlay_recovery import AfterAlert
from edge.stages.rejections import Rejections
from edge.stages.tally import Tally

log = logging.getLogger(__name__)


class Intake:
    def __init__(self, settings: Settings, pipeline: Pipeline, ledger: Ledger, folders: CaptureFolders,
                 rejections: Rejections, tally: Tally,
                 watcher: Callable[[], Optional[Watcher]], decode_side: int, after: AfterAlert):
        self.settings, self.pipeline, self.ledger, self.folders = settings, pipeline, ledger, folders
        self.after = after                 # finishes a file whose overlay a crash took
        self.rejections, self.tally = rejections, tally
        self._watcher = watcher            # made at start(): absent for callers without threads
        self._decode_side = decode_side
        self._cut_off = {}  # type: Dict[Tuple[str, str], float]   # (name, sha256) -> first found cut off
        self._cut_off_lock = threading.Lock()

    def run(self, job: Job) -> Optional[Outcome]:
        """The Outcome when the file ends here; None when job.prepared is ready."""
        claimed = job.claimed
        if claimed.problem is not None:          # unreadable, too large, not a file: refused unread
            code, reason = claimed.problem
            return self.rejections.reject(claimed, code, reason)
        if claimed.changing:
            return self._return(claimed)
        entry = self.ledger.lookup(claimed.sha256)
        if entry is not None and entry.state == "done":
            pending = self.after.pending(claimed.sha256)
            if pending is not None:        # its alert went out, a crash took its overlay
                return self.after.recover(job, pending)
            return self.rejections.duplicate(claimed, entry.alert_id)
        if entry is not None and entry.state == "rejected" and entry.reason_code != "fault":
            # Rejected before (or a crash between the ledger commit and the move):
            # the same bytes get the same verdict. A fault may be transient: retried.
            self.folders.reject(claimed, entry.reason_code or "rejected", entry.reason or "rejected earlier")
            return Outcome(claimed.label, "rejected", reason=entry.reason)
        self.ledger.record_claim(claimed.sha256, claimed.label)
        try:
            with job.timings.measure("read_ms"):
                data = job.read()
            with job.timings.measure("decode_ms"):
                job.image = decode_bytes(data, self.settings.decode, name=claimed.label,
                                         min_side=self._decode_side)
        except FileNotFoundError:
            return Outcome(claimed.label, "vanished")
        except DecodeError as exc:
            hold = self._writer_not_done(claimed, exc)
            if hold is not None:
                return self._return(claimed, hold)
            return self.rejections.reject(claimed, exc.code, str(exc))
        del data
        job.data = None              # the bytes are decoded: do not hold them while the models run
        job.prepared = self.pipeline.prepare(job.image)
        return None

    def _writer_not_done(self, claimed: Claimed, exc: DecodeError) -> Optional[float]:
        """A file that looks cut off may still be being written: a writer that
        paused longer than settle_s (a network share, a busy cart). Until it
        has been unchanged for capture.write_grace_s by our own clock (since we
        first found it cut off: its mtime is the writer's clock, which may be
        hours or years off) it goes back to incoming/, to be read again after
        the returned hold (seconds; 0 when it has already changed). None:
        reject it. An old truncated file also waits the grace once."""
        if not isinstance(exc, (Truncated, NotAnImage)):     # a NaN slope is not a pause
            return None
        if self.folders.changed(claimed):
            return 0.0
        grace = self.settings.capture.write_grace_s
        now = time.monotonic()
        key = (os.path.basename(claimed.name), claimed.sha256)      # two empty files are two files
        with self._cut_off_lock:
            for old in [k for k, t in self._cut_off.items() if now - t > 2 * grace + 60]:
                del self._cut_off[old]                    # a file that changed, or left, long ago
            first = self._cut_off.setdefault(key, now)
            if grace <= 0 or now - first >= grace:
                self._cut_off.pop(key, None)
                return None
        if now == first:
            log.info("%s reads as cut off (%s); its writer may have paused: it is read again until it has "
                     "been unchanged for %g s (capture.write_grace_s), then rejected", claimed.label,
                     exc.code, grace)
        return max(self.settings.capture.settle_s, 1.0)

    def _return(self, claimed: Claimed, hold_s: float = 0.0) -> Outcome:
        where = self.folders.unclaim(claimed)
        watcher = self._watcher()
        if watcher is not None:
            watcher.again(where, returned=True, hold_s=hold_s)
        self.tally.count("returned")
        if hold_s > 0:     # said once, when first found cut off
            log.debug("%s returned to incoming/, read again in %g s", claimed.label, hold_s)
        else:
            log.info("%s is still being written; returned to incoming/ to settle again", claimed.label)
        return Outcome(claimed.label, "returned")
