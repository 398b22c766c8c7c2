"""Wiring and lifecycle of the appliance: capture -> decode -> pipeline -> outbox -> MQTT.

Threads: the main thread waits for signals; the intake thread claims files,
decodes and preprocesses them (edge.stages.intake); one inference thread per
film in flight (models.films_in_flight, edge.stages.models) runs the models
with its own sessions and commits the alert (edge.stages.commit); the
after-alert thread (edge.stages.after_thread), at a lower priority, renders
the overlay, queues it with the PACS results and moves the file;
a film that finds no other in flight runs on the one-film pipeline, every
core's threads, for the shortest latency; the publisher
(edge.alerts.publisher) owns MQTT. One Job (edge.stages.job) carries
each file from claim to commit; a file that ends without an alert gets its
verdict from edge.stages.rejections, on the thread where it ended.
Intake hands over at most one prepared Job at a time, so decoding the next
film overlaps the models' work without piling images up in memory: with N
films in flight at most N + 2 decoded films are held (N in the models, one
handed over, one being decoded), plus the films whose overlays wait on
the after-alert thread (at most 64 films or 256 MB of pixels, AfterThread).
The threads meet in SQLite (ledger + outbox in one database), so
"image done" and "alert queued" commit together and survive a power cut.

Crash safety, step by step for one file:
  claim (rename into processing/) -> ledger "claimed" -> decode + models
  -> ONE transaction: alert in the outbox + ledger "done" (or "rejected")
     + a pending-overlay row; the alert is sent from here on
  -> overlay rendered -> second transaction: overlay + PACS results queued,
     pending row deleted -> move to done/ or rejected/.
A crash before the first transaction reprocesses the file on restart (alert
ids are deterministic, so a re-run queues the same alert once); a crash
between the two leaves the file in processing/ with its pending row, and
the restart renders and queues its overlay from it (edge.stages.
overlay_recovery); a crash after the second only repeats the final move.

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
from typing import Any, Dict, List, Optional

from edge import __version__
from edge.allocator import keep_large_blocks
from edge.alerts.acks import Acks
from edge.alerts.outbox import Outbox
from edge.alerts.publisher import Publisher
from edge.alerts.schema import combined_intended_use, use_warning
from edge.alerts.topics import Topics
from edge.capture.diskspace import DiskFloor
from edge.capture.folders import CaptureFolders, Claimed
from edge.capture.ledger import Ledger
from edge.capture.retry import Deferred, RetryQueue
from edge.capture.watcher import Watcher
from edge.errors import PneumoEdgeError
from edge.hospital import HospitalLinks
from edge.inference.layout import Layout
from edge.pipeline import Pipeline
from edge.resolution import decode_side
from edge.signals import stop_on_signals
from edge.settings import Settings
from edge.stages.after_thread import AfterThread
from edge.stages.commit import Commit
from edge.stages.events import Events, report_store_health
from edge.stages.intake import Intake
from edge.stages.job import Job, Outcome
from edge.stages.models import build_pipeline, build_pipelines
from edge.stages.overlay_recovery import AfterAlert
from edge.stages.rejections import Rejections
from edge.stages.tally import Tally
from edge.stages.warmup import warm_film_path
from edge.store import Store, one_line

__all__ = ["Appliance", "Outcome", "build_pipeline"]

log = logging.getLogger(__name__)

DISK_RECHECK_S = 2.0     # how often a paused intake looks at the free space again
LAST_RESORT_AFTER = 6    # machine-type failures of one file while others succeed
WARM_WAIT_S = 30.0       # start() waits this long at most for the threads' warm-up films

_END = object()


class Appliance:
    def __init__(self, settings: Settings, pipeline: Optional[Pipeline] = None, after_thread: bool = True):
        """`pipeline`: run the models with this one (one film at a time);
        otherwise models.films_in_flight decides how many are built.
        `after_thread` False: overlays on the models' threads (the bench's comparison)."""
        self.settings = settings
        self._allocator = keep_large_blocks()      # before the first film's buffers
        if pipeline is not None:
            self.pipelines, alone, self.layout = [pipeline], None, Layout(1, settings.models.threads, "given")
        else:
            self.pipelines, alone, self.layout = build_pipelines(settings)
        self.pipeline = alone or self.pipelines[0]   # its preprocessing, thresholds and models stand for all
        self._alone = alone            # for a film that arrives while no other is in flight
        self.store = Store(settings.state_dir)
        self.ledger = Ledger(self.store)
        self.outbox = Outbox(self.store)
        self.folders = CaptureFolders(settings.capture.dir, settings.capture)
        self.topics = Topics(settings.mqtt.topic_prefix, settings.site, settings.device)
        self.watcher = None  # type: Optional[Watcher]
        self.hospital = HospitalLinks(settings, self.store, self.folders)   # DICOM in, results to PACS
        self._stop = threading.Event()
        self._threads = []  # type: List[threading.Thread]
        self._warm_intake = threading.Event()
        self._warm_inference = []  # type: List[threading.Event]
        self._handoff = queue.Queue(maxsize=1)  # type: queue.Queue   # Jobs ready for the models
        self._tally = Tally()
        self._retries = RetryQueue()
        self._max_bytes = int(settings.decode.max_file_mb * 1024 * 1024)
        self.disk = DiskFloor([self.folders.root, settings.state_dir], settings.capture.min_free_mb)
        self._state = "starting"
        client_id = settings.mqtt.client_id or "pneumo-edge-%s-%s" % (settings.site, settings.device)
        self.publisher = Publisher(settings.mqtt, self.topics, self.outbox, self.status, client_id)
        self.acks = Acks(self.store, self.outbox, self.topics, settings.alerts.escalate_after_s)
        self.publisher.on_ack = self.acks.receive
        self.outcomes = queue.Queue()  # type: queue.Queue
        self._events = Events(settings, self.store, self.outbox, self.topics, self.publisher.notify)
        self._rejections = Rejections(self.store, self.ledger, self.folders, self._events,
                                      self._tally, self._retries)
        side = decode_side(self.pipeline.input_sides, settings.alerts.overlay_max_side
                           if settings.mqtt.publish_overlay else 0)
        self._decode_side = side
        self._after = AfterAlert(settings, self.store, self.outbox, self.hospital, self.folders,
                                 self.topics, self._tally, side)   # overlay + PACS after the alert; crash recovery
        self._intake = Intake(settings, self.pipeline, self.ledger, self.folders, self._rejections,
                              self._tally, lambda: self.watcher, side, self._after)
        # One Commit per film in flight: each runs its own pipeline's sessions.
        self._commits = [Commit(settings, p, self.store, self.ledger, self.outbox, self.acks,
                                self._after, self.folders, self.topics, self._tally,
                                notify=self.publisher.notify) for p in self.pipelines + [alone] if p is not None]
        # The overlay and PACS step off the models' threads (threads only: process() runs it inline).
        self._later = AfterThread(self._rejections.guard, self._publish)
        self._after_thread = after_thread
        self._in_flight = 0                    # films in the models' stage now
        self._alone_busy = False
        self._flight_lock = threading.Lock()
        report_store_health(self.store, self.folders.done, self._events)

    # -- status ---------------------------------------------------------
    def status(self) -> Dict[str, Any]:
        models = self.pipeline.models
        return {
            "state": self._state,
            "version": __version__,
            "host": socket.gethostname(),
            "backend": models[0].backend,
            "backend_reason": self.pipeline.backend_reason,
            "graphs": self.pipeline.graphs,          # one joined graph or two, and why
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
            "inference_threads": self.pipelines[0].thread_report(),   # each film in flight's sessions
            "films_in_flight": dict(self.layout.as_dict(), **(
                {"alone": self._alone.thread_report()} if self._alone is not None else {})),
            "allocator": self._allocator,
            "after_alert": self._later.status(),
            "hospital": self.hospital.status(),
        }

    def _all_pipelines(self) -> List[Pipeline]:
        """self.pipeline first, then every other one (films in flight, the lone film's)."""
        rest = [p for p in self.pipelines + [self._alone] if p is not None and p is not self.pipeline]
        return [self.pipeline] + rest

    def counts(self) -> Dict[str, int]:
        return self._tally.snapshot()

    # -- lifecycle ------------------------------------------------------
    def start(self) -> None:
        warm = [p.warmup(self.settings.models.warmup) for p in self._all_pipelines()][0]   # logged: the first
        log.info("warm-up (ms): %s", ", ".join("%s first %.0f last %.0f" % (k, v["first_ms"], v["last_ms"])
                                               for k, v in warm.items()))
        self.watcher = Watcher(self.folders.incoming, self.settings.capture)
        self._state = "online"
        self.publisher.start()
        self.acks.start(self.publisher)
        self._warm_inference = [threading.Event() for _ in self.pipelines]
        self._threads = [threading.Thread(target=self._intake_loop, name="intake", daemon=True)] + [
            threading.Thread(target=self._inference_loop, args=(i,), daemon=True,
                             name="inference" if len(self.pipelines) == 1 else "inference-%d" % (i + 1))
            for i in range(len(self.pipelines))]
        for t in self._threads:
            t.start()
        for warmed in [self._warm_intake] + self._warm_inference:   # a film now finds them warm
            warmed.wait(WARM_WAIT_S)
        # After the others' warm-ups: a pool thread it starts (OpenCV's) would inherit its lower priority.
        if self._after_thread:      # not started: every step is handed back (AfterThread.offer)
            after_warmed = threading.Event()
            self._later.start(warm=lambda: self._warm_thread(("decode", "overlay"), after_warmed))
            after_warmed.wait(WARM_WAIT_S)
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
        self._later.stop(deadline - time.monotonic())   # after the films: their steps come last (it warns if late)
        self._state = "offline"
        self.acks.stop()
        self.publisher.stop(timeout=min(timeout, 10.0))
        if self.watcher is not None:
            self.watcher.close()
        if any(t.is_alive() for t in self._threads):
            # A thread still in a film would find its sessions gone and fault a good
            # file: leave them to the process's exit; the file is redone at restart.
            log.warning("an appliance thread is still busy after %.0f s; models left open", timeout)
        else:
            for pipeline in self._all_pipelines():
                pipeline.close()
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
                dead = [t.name for t in self._threads if not t.is_alive()] + (
                    [] if self._later.alive or not self._after_thread else ["after-alert"])
                if dead:
                    log.error("%s thread died; stopping", ", ".join(dead))
                    self.stop()
                    return 1
            self.stop()
            return 0
        finally:
            if restore is not None:
                restore()

    # -- one file, top to bottom (callers without threads) ------------------
    def process(self, claimed: Claimed) -> Outcome:
        """Intake, then the models and the commit, one after the other."""
        job = Job.start(claimed, self._max_bytes)
        return self.intake(job) or self.complete(job)

    def intake(self, job: Job) -> Optional[Outcome]:
        """Dedupe, read, decode and preprocess; the Outcome when the file ends here."""
        return self._intake.run(job)

    def complete(self, job: Job, worker: int = -1) -> Optional[Outcome]:
        """Models, the alert's transaction (queued + file done), the overlay's, then the move.
        `worker`: the film-in-flight's own pipeline, its overlay step handed to
        the after-alert thread (None returned: the Outcome comes from there);
        -1 (callers without threads): the one-film pipeline, every step here."""
        if worker < 0:
            return self._commits[-1].run(job)
        with self._flight_lock:
            alone = (self._alone is not None and not self._alone_busy and self._in_flight == 0
                     and self._handoff.empty())
            self._in_flight += 1
            self._alone_busy = self._alone_busy or alone
        try:
            return self._commits[-1 if alone else worker].run(job, self._later)
        finally:
            with self._flight_lock:
                self._in_flight -= 1
                if alone:
                    self._alone_busy = False

    # -- the intake thread: every step for one file is guarded ---------------
    def _intake_loop(self) -> None:
        """Claims and prepares files until stopped. Nothing one file does
        ends this loop: each turn is guarded, and an unexpected error is
        logged and the turn tried again a second later."""
        recovered, last_error = False, None
        try:
            self._warm_thread(("decode", "prepare"), self._warm_intake)
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
            self._take_in(claimed)

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
            self._publish(self._rejections.quarantine_stray(path, kind))

    def _take(self, path: str) -> None:
        try:
            claimed = self.folders.claim(path, self._max_bytes)
        except PneumoEdgeError as exc:
            # Still in incoming/ (the rename failed): try again once it settles anew.
            log.warning("cannot claim a file: %s; will try again", exc)     # its name: not looked at yet
            self.watcher.again(path)
            self._stop.wait(1.0)
            return
        if claimed is not None:
            self._take_in(claimed)

    def _take_in(self, claimed: Claimed) -> None:
        """Intake one file: its final Outcome is published here, or its Job
        waits for the models (at most one: decoding the next film overlaps
        the models' work on this one without piling images up)."""
        job = Job.start(claimed, self._max_bytes)
        outcome = self._rejections.guard(job.claimed, lambda: self.intake(job))
        if outcome is not None:
            self._publish(outcome)
        else:
            self._handoff.put(job)

    def _retry(self, item: Deferred) -> None:
        claimed = item.claimed
        if item.attempts >= LAST_RESORT_AFTER and self._tally.successes > item.successes_at_first:
            # Other files went through meanwhile: the trouble is this file, not the machine.
            log.error("%s failed %d times (%s); rejecting it as unprocessable", claimed.label,
                      item.attempts, item.last_error)
            self._publish(self._rejections.guarded_reject(
                claimed, "unprocessable", "could not be processed after %d attempts: %s"
                % (item.attempts, item.last_error)))
            return
        try:
            fresh = self.folders.describe(claimed.path, claimed.name, claimed.claimed_at, self._max_bytes)
        except FileNotFoundError:
            self._retries.forget(claimed.path)
            self._publish(Outcome(claimed.label, "vanished"))
            return
        log.info("retrying %s (attempt %d)", claimed.label, item.attempts + 1)
        self._take_in(fresh)

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
            self._events.publish("disk_ok" if ok else "disk_low",
                                 "claiming resumed" if ok else "free space below the floor; claiming paused",
                                 **info)
            self.publisher.publish_status()
        return ok

    # -- the inference thread ---------------------------------------------
    def _warm_thread(self, steps, done: threading.Event, pipeline: Optional[Pipeline] = None) -> None:
        """The film path once on this thread, before its first real film (edge/stages/warmup.py)."""
        try:
            if self.settings.models.warmup > 0:
                path = warm_film_path(pipeline or self.pipeline, self.settings, self._decode_side, steps)
                log.info("warm-up film on the %s thread (ms): %s", threading.current_thread().name,
                         ", ".join("%s %.0f" % (k[:-3], v) for k, v in path.items()))
        finally:
            done.set()

    def _inference_loop(self, worker: int = 0) -> None:
        """One film in flight: takes prepared Jobs until intake ends."""
        if self._alone is not None:     # a lone film may come to any of these threads
            self._warm_thread(("decode", "prepare", "infer"), threading.Event(), self._alone)
        self._warm_thread(("decode", "prepare", "infer", "overlay"), self._warm_inference[worker],
                          self.pipelines[worker])      # sets the event start() waits for (overlay: see AfterThread.offer)
        while True:
            job = self._handoff.get()
            if job is _END:
                self._handoff.put(_END)     # for the other films' threads
                return
            self._publish(self._rejections.guard(job.claimed, lambda: self.complete(job, worker)))

    def _publish(self, outcome: Optional[Outcome]) -> None:
        if outcome is not None:
            self.outcomes.put(outcome)
            self.publisher.notify()
