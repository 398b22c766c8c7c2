"""Wiring and lifecycle of the appliance: capture -> decode -> pipeline -> outbox -> MQTT.

Threads: the main thread waits for signals; the intake thread claims files,
decodes and preprocesses them; the inference thread runs the models, renders
the overlay and commits; the publisher (edge.alerts.publisher) owns MQTT.
Intake hands over at most one prepared image at a time, so decoding the next
film overlaps the models' work on this one without piling images up in
memory. The threads meet in SQLite (ledger + outbox in one database), so
"image done" and "alert queued" commit together and survive a power cut.

Crash safety, step by step for one file:
  claim (rename into processing/) -> ledger "claimed" -> decode + models
  -> ONE transaction: outbox rows + ledger "done"/"rejected"
  -> move to done/ or rejected/.
A crash before the transaction reprocesses the file on restart (alert ids
are deterministic, so a re-run queues the same alert once); a crash after it
only repeats the final move.
"""
import logging
import queue
import socket
import threading
import time
from dataclasses import dataclass, field, replace
from typing import Any, Dict, List, Optional, Union

from edge import __version__
from edge.alerts.outbox import Outbox
from edge.alerts.overlay import render_overlay
from edge.alerts.publisher import Publisher
from edge.alerts.schema import build_alert, build_event, combined_intended_use, use_warning
from edge.alerts.topics import Topics
from edge.capture.folders import CaptureFolders, Claimed
from edge.capture.ledger import Ledger
from edge.capture.watcher import Watcher
from edge.decode import decode_bytes
from edge.errors import DecodeError
from edge.inference.manifest import load_manifest
from edge.inference.registry import create_backend, resolve_backend_name
from edge.pipeline import Pipeline, Prepared
from edge.signals import stop_on_signals
from edge.settings import Settings
from edge.store import Store

log = logging.getLogger(__name__)


@dataclass
class Outcome:
    """What happened to one file (for logs, tests and the bench)."""
    name: str
    state: str                      # "alerted" | "rejected" | "duplicate" | "vanished"
    alert_id: Optional[str] = None
    reason: Optional[str] = None
    timings_ms: Optional[Dict[str, float]] = None


@dataclass
class Decoded:
    """A claimed file, decoded and preprocessed, waiting for the models."""
    claimed: Claimed
    prepared: Prepared
    timings_ms: Dict[str, float] = field(default_factory=dict)


_END = object()


def build_pipeline(settings: Settings) -> Pipeline:
    backend, why = resolve_backend_name(settings.models)
    log.info("inference backend: %s (%s)", backend, why)
    cls = create_backend(load_manifest(settings.models.classifier), settings.models, backend)
    seg = create_backend(load_manifest(settings.models.segmenter), settings.models, backend)
    pipeline = Pipeline(cls, seg, settings.decision)
    pipeline.backend_reason = why
    for info in pipeline.models:
        if info.intended_use != "validated":
            log.warning("MODEL %s %s is intended_use=%s: %s", info.name, info.version,
                        info.intended_use, use_warning(info.intended_use))
    return pipeline


class Appliance:
    def __init__(self, settings: Settings, pipeline: Optional[Pipeline] = None):
        self.settings = settings
        self.pipeline = pipeline or build_pipeline(settings)
        self.store = Store(settings.state_dir)
        self.ledger = Ledger(self.store)
        self.outbox = Outbox(self.store)
        self.folders = CaptureFolders(settings.capture.dir, settings.capture)
        self.topics = Topics(settings.mqtt.topic_prefix, settings.site, settings.device)
        self.watcher = None  # type: Optional[Watcher]
        self._stop = threading.Event()
        self._threads = []  # type: List[threading.Thread]
        self._handoff = queue.Queue(maxsize=1)  # type: queue.Queue
        self._counts_lock = threading.Lock()
        self._counts = {"alerted": 0, "rejected": 0, "duplicate": 0, "faults": 0}
        self._state = "starting"
        client_id = settings.mqtt.client_id or "pneumo-edge-%s-%s" % (settings.site, settings.device)
        self.publisher = Publisher(settings.mqtt, self.topics, self.outbox, self.status, client_id)
        self.outcomes = queue.Queue()  # type: queue.Queue

    # -- status ---------------------------------------------------------
    def status(self) -> Dict[str, Any]:
        models = self.pipeline.models
        return {
            "state": self._state,
            "version": __version__,
            "host": socket.gethostname(),
            "backend": models[0].backend,
            "backend_reason": getattr(self.pipeline, "backend_reason", ""),
            "models": [{"name": m.name, "version": m.version, "precision": m.precision,
                        "intended_use": m.intended_use, "sha256": m.sha256} for m in models],
            "intended_use": combined_intended_use(models),
            "queue_depth": self.outbox.depth(),
            "capture_mode": self.watcher.mode if self.watcher else None,
            "counts": self.counts(),
            "thresholds": self.pipeline.thresholds.as_dict(),
        }

    # -- lifecycle ------------------------------------------------------
    def start(self) -> None:
        warm = self.pipeline.warmup(self.settings.models.warmup)
        log.info("warm-up (ms): %s", ", ".join("%s first %.0f last %.0f" % (k, v["first_ms"], v["last_ms"])
                                               for k, v in warm.items()))
        self.watcher = Watcher(self.folders.incoming, self.settings.capture)
        self._state = "online"
        self.publisher.start()
        self._threads = [threading.Thread(target=self._intake_loop, name="intake", daemon=True),
                         threading.Thread(target=self._inference_loop, name="inference", daemon=True)]
        for t in self._threads:
            t.start()
        log.info("watching %s (%s); alerts to %s:%d under %s", self.folders.incoming, self.watcher.mode,
                 self.settings.mqtt.host, self.settings.mqtt.port, self.topics.base)

    def stop(self, timeout: float = 30.0) -> None:
        """Finish the image in hand, then say goodbye on MQTT."""
        self._stop.set()
        deadline = time.monotonic() + timeout
        for t in self._threads:
            t.join(max(0.1, deadline - time.monotonic()))
        self._state = "offline"
        self.publisher.stop(timeout=min(timeout, 10.0))
        if self.watcher is not None:
            self.watcher.close()
        self.pipeline.close()
        self.store.close()

    def run_forever(self, stop: Optional[threading.Event] = None) -> int:
        """Block until SIGTERM/SIGINT (or `stop` is set); return the exit code.
        Pass the event from stop_on_signals() when the signals must be caught
        from the very start of the process (model loading can take seconds)."""
        restore = None
        if stop is None:
            stop, restore = stop_on_signals()
        try:
            if stop.is_set():
                log.info("stop requested during start-up; exiting")
                return 0
            self.start()
            while not stop.wait(0.5):
                dead = [t.name for t in self._threads if not t.is_alive()]
                if dead:
                    log.error("%s thread died; stopping", ", ".join(dead))
                    self.stop()
                    return 1
            self.stop()
            return 0
        finally:
            if restore is not None:
                restore()

    # -- work -----------------------------------------------------------
    def counts(self) -> Dict[str, int]:
        with self._counts_lock:
            return dict(self._counts)

    def _count(self, key: str) -> None:
        with self._counts_lock:
            self._counts[key] += 1

    def _intake_loop(self) -> None:
        try:
            for claimed in self.folders.leftovers():
                log.info("recovering %s left in processing/ by an earlier run", claimed.name)
                self._handoff.put(self._guarded(self.intake, claimed))
            while not self._stop.is_set():
                for path in self.watcher.wait_ready(timeout=0.5):
                    if self._stop.is_set():
                        break   # unclaimed files stay in incoming/ for the next start
                    claimed = self.folders.claim(path)
                    if claimed is not None:
                        self._handoff.put(self._guarded(self.intake, claimed))
        finally:
            self._handoff.put(_END)

    def _inference_loop(self) -> None:
        while True:
            item = self._handoff.get()
            if item is _END:
                return
            if isinstance(item, Decoded):
                item = self._guarded(self.complete, item)
            self.outcomes.put(item)
            self.publisher.notify()

    def _guarded(self, step, item) -> Union[Outcome, Decoded]:
        """Run one step; a fault rejects that file and the appliance carries on."""
        claimed = item.claimed if isinstance(item, Decoded) else item
        try:
            return step(item)
        except Exception as exc:  # one bad image must not stop the appliance
            log.exception("fault while processing %s", claimed.name)
            self._count("faults")
            return self._reject(claimed, "fault", "internal error while processing: %s: %s"
                                % (type(exc).__name__, exc), kind="fault")

    def process(self, claimed: Claimed) -> Outcome:
        """Both stages, one after the other (for callers without threads)."""
        item = self.intake(claimed)
        return self.complete(item) if isinstance(item, Decoded) else item

    def intake(self, claimed: Claimed) -> Union[Outcome, Decoded]:
        """Dedupe, read, decode and preprocess; an Outcome when it ends here."""
        entry = self.ledger.lookup(claimed.sha256)
        if entry is not None and entry.state == "done":
            return self._duplicate(claimed, entry.alert_id)
        if entry is not None and entry.state == "rejected" and entry.reason_code != "fault":
            # Rejected before (or a crash between the ledger commit and the move):
            # the same bytes get the same verdict. A fault may be transient: retried.
            self.folders.reject(claimed, entry.reason_code or "rejected", entry.reason or "rejected earlier")
            return Outcome(claimed.name, "rejected", reason=entry.reason)
        self.ledger.record_claim(claimed.sha256, claimed.name)
        t0 = time.perf_counter()
        try:
            data = claimed.read()
            t1 = time.perf_counter()
            image = decode_bytes(data, self.settings.decode, name=claimed.name)
        except DecodeError as exc:
            return self._reject(claimed, exc.code, str(exc))
        t2 = time.perf_counter()
        del data
        claimed.data = None          # the bytes are decoded: do not hold them while the models run
        prepared = self.pipeline.prepare(image)
        return Decoded(claimed, prepared, {"claim_ms": claimed.claim_ms, "read_ms": (t1 - t0) * 1000.0,
                                           "decode_ms": (t2 - t1) * 1000.0})

    def complete(self, item: Decoded) -> Outcome:
        """Models, overlay, one transaction (alert queued + file done), then the move."""
        claimed, image = item.claimed, item.prepared.image
        try:
            result = self.pipeline.infer(item.prepared)
        except DecodeError as exc:       # the not-a-chest gate refuses in the models' stage
            return self._reject(claimed, exc.code, str(exc))
        timings = dict(item.timings_ms)
        timings.update(result.timings_ms)
        t3 = time.perf_counter()
        overlay = None
        if self.settings.mqtt.publish_overlay:
            label = use_warning(combined_intended_use(result.models))
            overlay = render_overlay(image, result.finding, label, self.settings.alerts.overlay_max_side,
                                     self.settings.alerts.overlay_quality)
        timings["overlay_ms"] = (time.perf_counter() - t3) * 1000.0
        result = replace(result, timings_ms=timings)
        alert = build_alert(result, image, file_name=claimed.name, file_sha256=claimed.sha256,
                            site=self.settings.site, device=self.settings.device,
                            identify_by=self.settings.alerts.identify_by,
                            topics=self.topics if overlay is not None else None)
        t4 = time.perf_counter()
        with self.store.transaction() as conn:
            self.outbox.enqueue_alert(conn, self.topics, alert, overlay)
            self.ledger.mark_done(conn, claimed.sha256, alert["alert_id"])
        timings["outbox_ms"] = (time.perf_counter() - t4) * 1000.0
        self.folders.finish(claimed)
        self._count("alerted")
        f = result.finding
        log.info("%s -> alert %s: %s%s p=%s area=%.2f%% (%.0f ms)", claimed.name, alert["alert_id"],
                 "POSITIVE" if f.pneumothorax else "negative", " " + f.side if f.side else "",
                 "%.3f" % f.probability if f.probability is not None else "-",
                 100 * f.area_fraction, sum(timings.values()))
        return Outcome(claimed.name, "alerted", alert_id=alert["alert_id"], timings_ms=timings)

    def _duplicate(self, claimed: Claimed, alert_id: Optional[str]) -> Outcome:
        event = build_event("duplicate", "identical file already processed; no new alert",
                            site=self.settings.site, device=self.settings.device,
                            file_name=claimed.name, sha256=claimed.sha256, alert_id=alert_id)
        with self.store.transaction() as conn:
            self.outbox.enqueue_event(conn, self.topics, event)
        self.folders.finish(claimed)
        self._count("duplicate")
        log.info("%s: duplicate of alert %s, not alerted again", claimed.name, alert_id)
        return Outcome(claimed.name, "duplicate", alert_id=alert_id)

    def _reject(self, claimed: Claimed, code: str, reason: str, kind: str = "rejected") -> Outcome:
        event = build_event(kind, reason, site=self.settings.site, device=self.settings.device,
                            file_name=claimed.name, sha256=claimed.sha256, code=code)
        with self.store.transaction() as conn:
            self.outbox.enqueue_event(conn, self.topics, event)
            self.ledger.mark_rejected(conn, claimed.sha256, code, reason)
        where = self.folders.reject(claimed, code, reason)
        self._count("rejected")
        log.warning("%s rejected (%s): %s -> %s", claimed.name, code, reason, where)
        return Outcome(claimed.name, "rejected", reason=reason)
