"""The models' stage for one Job, and its commit: models, then ONE
transaction (alert queued + ack tracking + ledger "done" + a pending-overlay
row), the publisher woken so the alert goes out at once; then the overlay
and, in a second transaction, the overlay and the results for PACS queued
(edge.stages.overlay_recovery, which also says how a crash between the two
is recovered); then the move to done/."""
import logging
from dataclasses import replace
from typing import Callable, Optional

from edge.alerts.acks import Acks
from edge.alerts.outbox import Outbox
from edge.alerts.schema import build_alert, combined_intended_use, use_warning
from edge.alerts.topics import Topics
from edge.capture.folders import CaptureFolders
from edge.capture.ledger import Ledger
from edge.pipeline import Pipeline
from edge.settings import Settings
from edge.stages.after_thread import AfterThread
from edge.stages.job import Job, Outcome
from edge.stages.overlay_recovery import AfterAlert
from edge.stages.tally import Tally
from edge.store import Store

log = logging.getLogger(__name__)


class Commit:
    def __init__(self, settings: Settings, pipeline: Pipeline, store: Store, ledger: Ledger,
                 outbox: Outbox, acks: Acks, after: AfterAlert, folders: CaptureFolders,
                 topics: Topics, tally: Tally, notify: Callable[[], None] = lambda: None):
        self.settings, self.pipeline, self.store, self.ledger = settings, pipeline, store, ledger
        self.outbox, self.acks, self.after, self.folders = outbox, acks, after, folders
        self.topics, self.tally, self.notify = topics, tally, notify

    def run(self, job: Job, later: Optional[AfterThread] = None) -> Optional[Outcome]:
        """The models, the alert's transaction, then the overlay's step: here,
        or on `later` (the after-alert thread) when it takes it, in which case
        the Outcome comes from there once the file is finished (None here)."""
        claimed, image = job.claimed, job.prepared.image
        # A not-a-chest refusal is a DecodeError: the guard rejects the file with its code.
        job.result = self.pipeline.infer(job.prepared)
        job.timings.update(job.result.timings_ms)
        job.result = replace(job.result, timings_ms=job.timings.as_dict())
        job.prepared = replace(job.prepared, cls_in=None, seg_in=None)   # only the film is needed now
        alerts = self.settings.alerts
        alert = build_alert(job.result, image, file_name=claimed.label, file_sha256=claimed.sha256,
                            site=self.settings.site, device=self.settings.device,
                            identify_by=alerts.identify_by,
                            topics=self.topics if self.settings.mqtt.publish_overlay else None)
        wire = alert.to_json()     # what the broker gets; recovery and PACS read it back
        label = use_warning(combined_intended_use(job.result.models))
        remembered = handed = False
        try:
            # The alert first: nothing about the overlay delays it (a crash before
            # the overlay's transaction is recovered at restart, overlay_recovery).
            with job.timings.measure("outbox_ms"):
                with self.store.transaction() as conn:
                    self.outbox.enqueue_alert(conn, self.topics, alert)
                    self.acks.record_alert(conn, alert)
                    self.ledger.mark_done(conn, claimed.sha256, alert.alert_id)
                    if self.after.wanted:
                        remembered = True     # counted in hand from here, even if the commit fails
                        self.after.remember(conn, claimed.sha256, wire, job.result.finding, label)
            self.notify()

            def finish_and_release() -> Outcome:      # the after-alert thread's: it owns the hold now
                try:
                    return self._finish(job, alert.alert_id, wire, label)
                finally:
                    self.after.release(claimed.sha256)
            if later is not None and remembered:
                handed = True                 # before the offer: the step may run before it returns
                handed = later.offer(claimed, finish_and_release, image.pixels.nbytes)
                if handed:
                    return None
            return self._finish(job, alert.alert_id, wire, label)
        finally:
            if remembered and not handed:
                self.after.release(claimed.sha256)

    def _finish(self, job: Job, alert_id: str, wire: dict, label: str) -> Outcome:
        """The overlay and PACS step (after_alert), the file's move, the Outcome."""
        claimed, image = job.claimed, job.prepared.image
        if self.after.wanted:
            with job.timings.measure("overlay_ms"):
                overlay = self.after.render(image, job.result.finding, label, claimed.label)
            with job.timings.measure("after_alert_ms"):
                self.after.queue(claimed, image, wire, overlay)
        self.folders.finish(claimed)
        self.tally.count("alerted")
        timings = job.timings.as_dict()
        f = job.result.finding
        log.info("%s -> alert %s: %s%s p=%s area=%.2f%% (%.0f ms)", claimed.label, alert_id,
                 "POSITIVE" if f.pneumothorax else "negative", " " + f.side if f.side else "",
                 "%.3f" % f.probability if f.probability is not None else "-",
                 100 * f.area_fraction, sum(timings.values()))
        return Outcome(claimed.label, "alerted", alert_id=alert_id, timings_ms=timings)
