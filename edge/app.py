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

Per-file isolation: whatever one file does, it ends in rejected/ with a
reason (undecodable, unreadable, too large, a fault), goes back to incoming/
(its writer is still writing), or waits in processing/ and is retried with
backoff when the cause is the machine (store locked, disk full); the loops
themselves never end because of a file. Below capture.min_free_mb no new
file is claimed until space returns.
"""
import logging
import os
import queue
import socket
import threading
import time
from dataclasses import dataclass, field, replace
from typing import Any, Dict, List, Optional, Union

from edge import __version__
from edge.alerts.acks import Acks
from edge.alerts.outbox import Outbox
from edge.alerts.overlay import render_overlay
from edge.alerts.publisher import Publisher
from edge.alerts.schema import build_alert, build_event, combined_intended_use, use_warning
from edge.alerts.topics import Topics
from edge.capture.diskspace import DiskFloor
from edge.capture.folders import CaptureFolders, Claimed
from edge.capture.ledger import Ledger
from edge.capture.names import display_name
from edge.capture.retry import Deferred, RetryQueue
from edge.capture.watcher import Watcher
from edge.decode import decode_bytes
from edge.errors import CorruptImage, DecodeError, NotAnImage, PneumoEdgeError
from edge.hospital import HospitalLinks
from edge.inference.manifest import load_manifest
from edge.inference.registry import create_backend, resolve_backend_name
from edge.pipeline import Pipeline, Prepared
from edge.resolution import decode_side
from edge.signals import stop_on_signals
from edge.settings import Settings
from edge.store import Store, one_line

log = logging.getLogger(__name__)

DISK_RECHECK_S = 2.0     # how often a paused intake looks at the free space again
LAST_RESORT_AFTER = 6    # machine-type failures of one file while others succeed


@dataclass
class Outcome:
    """What happened to one file (for logs, tests and the bench)."""
    name: str
    state: str                      # "alerted" | "rejected" | "duplicate" | "vanished"
                                    # | "returned" (writer not done) | "deferred" (retried later)
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
        self.hospital = HospitalLinks(settings, self.store, self.folders)   # DICOM in, results to PACS
        self._stop = threading.Event()
        self._threads = []  # type: List[threading.Thread]
        self._handoff = queue.Queue(maxsize=1)  # type: queue.Queue
        self._counts_lock = threading.Lock()
        self._counts = {"alerted": 0, "rejected": 0, "duplicate": 0, "faults": 0,
                        "returned": 0, "deferred": 0}
        self._successes = 0            # files that reached an outcome (for the retry's last resort)
        self._retries = RetryQueue()
        self._max_bytes = int(settings.decode.max_file_mb * 1024 * 1024)
        self.disk = DiskFloor([self.folders.root, settings.state_dir], settings.capture.min_free_mb)
        self._state = "starting"
        client_id = settings.mqtt.client_id or "pneumo-edge-%s-%s" % (settings.site, settings.device)
        self.publisher = Publisher(settings.mqtt, self.topics, self.outbox, self.status, client_id)
        self.acks = Acks(self.store, self.outbox, self.topics, settings.alerts.escalate_after_s)
        self.publisher.on_ack = self.acks.receive
        self.outcomes = queue.Queue()  # type: queue.Queue
        self._decode_side = decode_side(self.pipeline.input_sides, settings.alerts.overlay_max_side
                                        if settings.mqtt.publish_overlay else 0)
        self._report_store_health()

    def _report_store_health(self) -> None:
        """A healed or missing database is logged and published as an event."""
        healed = self.store.healed
        if healed is not None:
            log.error("database %s was corrupt (%s): moved aside to %s, a new one created; "
                      "%s unsent outbox row(s) carried over", self.store.path, healed.reason,
                      healed.moved_to, "no" if healed.unreadable else healed.carried_over)
            self._publish_event("store_corrupt", "database was corrupt and was replaced",
                                moved_to=os.path.basename(healed.moved_to), error=healed.reason,
                                carried_over=healed.carried_over, old_outbox_unreadable=healed.unreadable)
        elif self.store.created:
            try:
                done = len(os.listdir(self.folders.done))
            except OSError:
                done = 0
            if done:
                log.error("database %s was missing but done/ holds %d file(s): their records and "
                          "any alerts not yet sent for them are gone", self.store.path, done)
                self._publish_event("store_missing", "database was missing; a new one was created",
                                    files_in_done=done)

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
            "acks": self.acks.status(),
            "disk": self.disk.status(),
            "waiting_retry": len(self._retries),
            "inference_threads": self.pipeline.thread_report(),
            "hospital": self.hospital.status(),
        }

    # -- lifecycle ------------------------------------------------------
    def start(self) -> None:
        warm = self.pipeline.warmup(self.settings.models.warmup)
        log.info("warm-up (ms): %s", ", ".join("%s first %.0f last %.0f" % (k, v["first_ms"], v["last_ms"])
                                               for k, v in warm.items()))
        self.watcher = Watcher(self.folders.incoming, self.settings.capture)
        self._state = "online"
        self.publisher.start()
        self.acks.start(self.publisher)
        self._threads = [threading.Thread(target=self._intake_loop, name="intake", daemon=True),
                         threading.Thread(target=self._inference_loop, name="inference", daemon=True)]
        for t in self._threads:
            t.start()
        self.hospital.start()
        log.info("watching %s (%s); alerts to %s:%d under %s", self.folders.incoming, self.watcher.mode,
                 self.settings.mqtt.host, self.settings.mqtt.port, self.topics.base)

    def stop(self, timeout: float = 30.0) -> None:
        """Finish the image in hand, then say goodbye on MQTT."""
        self._stop.set()
        self.hospital.stop()
        deadline = time.monotonic() + timeout
        for t in self._threads:
            t.join(max(0.1, deadline - time.monotonic()))
        self._state = "offline"
        self.acks.stop()
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

    # -- intake: every step for one file is guarded --------------------------
    def _intake_loop(self) -> None:
        """Claims and prepares files until stopped. Nothing one file does
        ends this loop: each turn is guarded, and an unexpected error is
        logged and the turn tried again a second later."""
        recovered, last_error = False, None
        try:
            while not self._stop.is_set():
                try:
                    if not recovered:
                        self._recover_leftovers()
                        recovered = True
                    self._intake_turn()
                    last_error = None
                except Exception as exc:   # noqa: BLE001 - the loop must outlive any one failure
                    if one_line(exc) != last_error:     # a traceback once, not every second
                        log.exception("intake: unexpected error; carrying on in 1 s")
                    last_error = one_line(exc)
                    self._stop.wait(1.0)
        finally:
            self._handoff.put(_END)

    def _recover_leftovers(self) -> None:
        for claimed in self.folders.leftovers(self._max_bytes):
            if self._stop.is_set():
                return      # the rest stay in processing/ for the next start
            log.info("recovering %s left in processing/ by an earlier run", claimed.label)
            self._hand_over(self._guarded(self.intake, claimed))

    def _intake_turn(self) -> None:
        for item in self._retries.due():
            if self._stop.is_set():
                return
            self._retry(item)
        if not self._disk_ok():
            self._stop.wait(DISK_RECHECK_S)
            return
        for path in self.watcher.wait_ready(timeout=0.5):
            if self._stop.is_set():
                break   # unclaimed files stay in incoming/ for the next start
            self._take(path)
        for path, kind in self.watcher.strays():
            self._quarantine_stray(path, kind)

    def _take(self, path: str) -> None:
        try:
            claimed = self.folders.claim(path, self._max_bytes)
        except PneumoEdgeError as exc:
            # Still in incoming/ (the rename failed): try again once it settles anew.
            log.warning("cannot claim %s: %s; will try again", display_name(os.path.basename(path)), exc)
            self.watcher.again(path)
            self._stop.wait(1.0)
            return
        if claimed is not None:
            self._hand_over(self._guarded(self.intake, claimed))

    def _retry(self, item: Deferred) -> None:
        claimed = item.claimed
        if (item.attempts >= LAST_RESORT_AFTER and self._successes > item.successes_at_first):
            # Other files went through meanwhile: the trouble is this file, not the machine.
            log.error("%s failed %d times (%s); rejecting it as unprocessable", claimed.label,
                      item.attempts, item.last_error)
            self._hand_over(self._guarded_reject(claimed, "unprocessable",
                                                 "could not be processed after %d attempts: %s"
                                                 % (item.attempts, item.last_error)))
            return
        try:
            fresh = self.folders.describe(claimed.path, claimed.name, claimed.claimed_at, self._max_bytes)
        except FileNotFoundError:
            self._retries.forget(claimed.path)
            self._hand_over(Outcome(claimed.label, "vanished"))
            return
        log.info("retrying %s (attempt %d)", claimed.label, item.attempts + 1)
        self._hand_over(self._guarded(self.intake, fresh))

    def _hand_over(self, item: Union[Outcome, "Decoded", None]) -> None:
        if item is not None:
            self._handoff.put(item)

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
        """Run one step for one file. A DecodeError-family exception from any
        stage (decoder, pipeline) rejects the file with its own code; trouble
        with the machine (store, folders, disk) leaves it in processing/ to
        be retried with backoff; anything else is a fault: rejected, and
        retried if the file is sent again."""
        claimed = item.claimed if isinstance(item, Decoded) else item
        try:
            result = step(item)
        except DecodeError as exc:
            return self._guarded_reject(claimed, exc.code, str(exc))
        except (PneumoEdgeError, OSError) as exc:   # StoreError, CaptureError, ENOSPC ...
            return self._defer(claimed, exc)
        except Exception as exc:  # noqa: BLE001 - one bad image must not stop the appliance
            log.exception("fault while processing %s", claimed.label)
            self._count("faults")
            return self._guarded_reject(claimed, "fault", "internal error while processing: %s: %s"
                                        % (type(exc).__name__, one_line(exc)), kind="fault")
        if isinstance(result, Outcome):
            self._settled(claimed)
        return result

    def _guarded_reject(self, claimed: Claimed, code: str, reason: str,
                        kind: str = "rejected") -> Outcome:
        """A rejection that itself cannot fail: if the event, the ledger or
        the move cannot be written, the file waits in processing/ for a retry."""
        try:
            outcome = self._reject(claimed, code, reason, kind=kind)
        except Exception as exc:  # noqa: BLE001
            return self._defer(claimed, exc)
        self._settled(claimed)
        return outcome

    def _defer(self, claimed: Claimed, exc: BaseException) -> Outcome:
        error = "%s: %s" % (type(exc).__name__, one_line(exc))
        item = self._retries.defer(claimed, error, self._successes)
        log.warning("%s waits in processing/ (attempt %d failed: %s); retrying in %.0f s",
                    claimed.label, item.attempts, error, max(0.0, item.due - time.monotonic()))
        self._count("deferred")
        return Outcome(claimed.label, "deferred", reason=error)

    def _settled(self, claimed: Claimed) -> None:
        self._retries.forget(claimed.path)
        with self._counts_lock:
            self._successes += 1

    def _quarantine_stray(self, path: str, kind: str) -> None:
        """A FIFO, folder or symlink in incoming/ is moved to rejected/ with a
        reason file; one that cannot be moved (a folder owned by another
        user) is reported once and left. Either way an event says so."""
        name = display_name(os.path.basename(path))
        reason = "a %s, not an image file" % kind
        try:
            where = self.folders.quarantine_stray(path, "not_a_file", reason + "; moved out of incoming/")
        except FileNotFoundError:
            return
        except PneumoEdgeError as exc:
            where = None
            reason += "; it cannot be moved out of incoming/ (%s): remove it by hand" % one_line(exc)
        self._count("rejected")
        (log.warning if where else log.error)("%s rejected (not_a_file): %s%s", name, reason,
                                              " -> " + display_name(where) if where else "")
        self._publish_event("not_a_file", reason, kind="rejected", file_name=name, sha256=None)
        self.outcomes.put(Outcome(name, "rejected", reason=reason))

    def _disk_ok(self) -> bool:
        was_paused = self.disk.paused
        ok = self.disk.check()
        if ok == was_paused:       # a change either way: say so once
            info = self.disk.status()
            if ok:
                log.info("disk space is back (%s MB free, floor %.0f MB); claiming again",
                         info["free_mb"], info["floor_mb"])
            else:
                log.error("only %.0f MB free on %s (floor %.0f MB, capture.min_free_mb): new files "
                          "wait in incoming/ until space returns", info["free_mb"] or 0.0,
                          info["lowest_on"], info["floor_mb"])
            self._publish_event("disk_ok" if ok else "disk_low",
                                "claiming resumed" if ok else "free space below the floor; claiming paused",
                                **info)
            self.publisher.publish_status()
        return ok

    def _publish_event(self, code: str, message: str, kind: str = "recovered", **fields: Any) -> None:
        """Queue an event that is not one file's verdict (appliance events,
        strays in incoming/); never raises: if the store cannot take it, the log has it."""
        try:
            event = build_event(kind, message, site=self.settings.site, device=self.settings.device,
                                code=code, **fields)
            with self.store.transaction() as conn:
                self.outbox.enqueue_event(conn, self.topics, event)
        except Exception as exc:  # noqa: BLE001 - e.g. the disk is full: the log has it
            log.warning("cannot queue the %s event: %s", code, one_line(exc))
            return
        self.publisher.notify()

    def process(self, claimed: Claimed) -> Outcome:
        """Both stages, one after the other (for callers without threads)."""
        item = self.intake(claimed)
        return self.complete(item) if isinstance(item, Decoded) else item

    def intake(self, claimed: Claimed) -> Union[Outcome, Decoded]:
        """Dedupe, read, decode and preprocess; an Outcome when it ends here."""
        if claimed.problem is not None:          # unreadable, too large, not a file: refused unread
            code, reason = claimed.problem
            return self._reject(claimed, code, reason)
        if claimed.changing:
            return self._return(claimed)
        entry = self.ledger.lookup(claimed.sha256)
        if entry is not None and entry.state == "done":
            return self._duplicate(claimed, entry.alert_id)
        if entry is not None and entry.state == "rejected" and entry.reason_code != "fault":
            # Rejected before (or a crash between the ledger commit and the move):
            # the same bytes get the same verdict. A fault may be transient: retried.
            self.folders.reject(claimed, entry.reason_code or "rejected", entry.reason or "rejected earlier")
            return Outcome(claimed.label, "rejected", reason=entry.reason)
        self.ledger.record_claim(claimed.sha256, claimed.label)
        t0 = time.perf_counter()
        try:
            data = claimed.read()
            t1 = time.perf_counter()
            image = decode_bytes(data, self.settings.decode, name=claimed.label, min_side=self._decode_side)
        except FileNotFoundError:
            return Outcome(claimed.label, "vanished")
        except DecodeError as exc:
            if self._writer_not_done(claimed, exc):
                return self._return(claimed)
            return self._reject(claimed, exc.code, str(exc))
        t2 = time.perf_counter()
        del data
        claimed.data = None          # the bytes are decoded: do not hold them while the models run
        prepared = self.pipeline.prepare(image)
        return Decoded(claimed, prepared, {"claim_ms": claimed.claim_ms, "read_ms": (t1 - t0) * 1000.0,
                                           "decode_ms": (t2 - t1) * 1000.0})

    def _writer_not_done(self, claimed: Claimed, exc: DecodeError) -> bool:
        """A file that looks cut off may still be being written (a writer that
        paused longer than settle_s). If it changed since it was read, or
        changes within one more settle_s while it is still fresh, it goes
        back to incoming/ instead of being rejected."""
        if not isinstance(exc, (CorruptImage, NotAnImage)):
            return False
        if self.folders.changed(claimed):
            return True
        settle = self.settings.capture.settle_s
        mtime_ns = claimed.stat_key[1] if claimed.stat_key else 0
        if settle > 0 and time.time() - mtime_ns / 1e9 < 4 * settle:
            self._stop.wait(settle)
            return self.folders.changed(claimed)
        return False

    def _return(self, claimed: Claimed) -> Outcome:
        where = self.folders.unclaim(claimed)
        if self.watcher is not None:
            self.watcher.again(where, returned=True)
        self._count("returned")
        log.info("%s is still being written; returned to incoming/ to settle again", claimed.label)
        return Outcome(claimed.label, "returned")

    def complete(self, item: Decoded) -> Outcome:
        """Models, overlay, one transaction (alert queued + file done), then the move."""
        claimed, image = item.claimed, item.prepared.image
        result = self.pipeline.infer(item.prepared)   # a not-a-chest refusal is a DecodeError: _guarded rejects it
        timings = dict(item.timings_ms)
        timings.update(result.timings_ms)
        t3 = time.perf_counter()
        overlay = None
        if self.settings.mqtt.publish_overlay:
            label = use_warning(combined_intended_use(result.models))
            overlay = render_overlay(image, result.finding, label, self.settings.alerts.overlay_max_side,
                                     self.settings.alerts.overlay_quality,
                                     draw_region=self.settings.alerts.overlay_region)
        timings["overlay_ms"] = (time.perf_counter() - t3) * 1000.0
        result = replace(result, timings_ms=timings)
        alert = build_alert(result, image, file_name=claimed.label, file_sha256=claimed.sha256,
                            site=self.settings.site, device=self.settings.device,
                            identify_by=self.settings.alerts.identify_by,
                            topics=self.topics if overlay is not None else None)
        t4 = time.perf_counter()
        pacs = self.hospital.prepare(claimed, image, alert, overlay)
        with self.store.transaction() as conn:
            self.outbox.enqueue_alert(conn, self.topics, alert, overlay)
            self.acks.record_alert(conn, alert)
            self.hospital.enqueue(conn, pacs)
            self.ledger.mark_done(conn, claimed.sha256, alert["alert_id"])
        timings["outbox_ms"] = (time.perf_counter() - t4) * 1000.0
        self.folders.finish(claimed)
        self._count("alerted")
        f = result.finding
        log.info("%s -> alert %s: %s%s p=%s area=%.2f%% (%.0f ms)", claimed.label, alert["alert_id"],
                 "POSITIVE" if f.pneumothorax else "negative", " " + f.side if f.side else "",
                 "%.3f" % f.probability if f.probability is not None else "-",
                 100 * f.area_fraction, sum(timings.values()))
        return Outcome(claimed.label, "alerted", alert_id=alert["alert_id"], timings_ms=timings)

    def _duplicate(self, claimed: Claimed, alert_id: Optional[str]) -> Outcome:
        event = build_event("duplicate", "identical file already processed; no new alert",
                            site=self.settings.site, device=self.settings.device,
                            file_name=claimed.label, sha256=claimed.sha256, alert_id=alert_id)
        with self.store.transaction() as conn:
            self.outbox.enqueue_event(conn, self.topics, event)
        self.folders.finish(claimed)
        self._count("duplicate")
        log.info("%s: duplicate of alert %s, not alerted again", claimed.label, alert_id)
        return Outcome(claimed.label, "duplicate", alert_id=alert_id)

    def _reject(self, claimed: Claimed, code: str, reason: str, kind: str = "rejected") -> Outcome:
        """Event + ledger in one transaction, then the move. A file refused
        unread (no sha256) has no ledger row; one rejected before its claim
        was recorded gets the row here."""
        event = build_event(kind, reason, site=self.settings.site, device=self.settings.device,
                            file_name=claimed.label, sha256=claimed.sha256 or None, code=code)
        with self.store.transaction() as conn:
            self.outbox.enqueue_event(conn, self.topics, event)
            if claimed.sha256:
                self.ledger.record_claim(claimed.sha256, claimed.label)   # joins this transaction
                self.ledger.mark_rejected(conn, claimed.sha256, code, reason)
        where = self.folders.reject(claimed, code, reason)
        self._count("rejected")
        log.warning("%s rejected (%s): %s -> %s", claimed.label, code, reason, display_name(where))
        return Outcome(claimed.label, "rejected", reason=reason)
