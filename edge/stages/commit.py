"""The models' stage for one Job, and its commit: models, overlay, then ONE
transaction (alert queued + ack tracking + results for PACS + ledger
"done"), then the move to done/."""
import logging
from dataclasses import replace

from edge.alerts.acks import Acks
from edge.alerts.outbox import Outbox
from edge.alerts.overlay import render_overlay
from edge.alerts.schema import build_alert, combined_intended_use, use_warning
from edge.alerts.topics import Topics
from edge.capture.folders import CaptureFolders
from edge.capture.ledger import Ledger
from edge.hospital import HospitalLinks
from edge.pipeline import Pipeline
from edge.settings import Settings
from edge.stages.job import Job, Outcome
from edge.stages.tally import Tally
from edge.store import Store

log = logging.getLogger(__name__)


class Commit:
    def __init__(self, settings: Settings, pipeline: Pipeline, store: Store, ledger: Ledger,
                 outbox: Outbox, acks: Acks, hospital: HospitalLinks, folders: CaptureFolders,
                 topics: Topics, tally: Tally):
        self.settings, self.pipeline, self.store, self.ledger = settings, pipeline, store, ledger
        self.outbox, self.acks, self.hospital, self.folders = outbox, acks, hospital, folders
        self.topics, self.tally = topics, tally

    def run(self, job: Job) -> Outcome:
        claimed, image = job.claimed, job.prepared.image
        # A not-a-chest refusal is a DecodeError: the guard rejects the file with its code.
        job.result = self.pipeline.infer(job.prepared)
        job.timings.update(job.result.timings_ms)
        overlay = None
        alerts = self.settings.alerts
        with job.timings.measure("overlay_ms"):
            if self.settings.mqtt.publish_overlay:
                label = use_warning(combined_intended_use(job.result.models))
                overlay = render_overlay(image, job.result.finding, label, alerts.overlay_max_side,
                                         alerts.overlay_quality, draw_region=alerts.overlay_region)
        job.result = replace(job.result, timings_ms=job.timings.as_dict())
        alert = build_alert(job.result, image, file_name=claimed.label, file_sha256=claimed.sha256,
                            site=self.settings.site, device=self.settings.device,
                            identify_by=alerts.identify_by,
                            topics=self.topics if overlay is not None else None)
        with job.timings.measure("outbox_ms"):
            pacs = self.hospital.prepare(claimed, image, alert.to_json(), overlay)
            with self.store.transaction() as conn:
                self.outbox.enqueue_alert(conn, self.topics, alert, overlay)
                self.acks.record_alert(conn, alert)
                self.hospital.enqueue(conn, pacs)
                self.ledger.mark_done(conn, claimed.sha256, alert.alert_id)
        self.folders.finish(claimed)
        self.tally.count("alerted")
        timings = job.timings.as_dict()
        f = job.result.finding
        log.info("%s -> alert %s: %s%s p=%s area=%.2f%% (%.0f ms)", claimed.label, alert.alert_id,
                 "POSITIVE" if f.pneumothorax else "negative", " " + f.side if f.side else "",
                 "%.3f" % f.probability if f.probability is not None else "-",
                 100 * f.area_fraction, sum(timings.values()))
        return Outcome(claimed.label, "alerted", alert_id=alert.alert_id, timings_ms=timings)
