"""The after-alert thread: a commit's overlay and PACS step, off the models' threads.

Once a film's alert is queued (its first transaction), what is left for it
(render the overlay JPEG, queue it with the PACS results, move the file)
serves the display and PACS, not the alert. Done on the inference thread,
it holds that thread off the next film: 5-8 CPU ms per film on a 2-core
machine whose models take about 100, which is most of what a burst loses
against the models' own limit. Here it runs on one thread of its own at a
lower scheduling priority (nice + AFTER_NICE): while films keep arriving the
models get the cores first and overlays follow when the cores have a gap;
a film that arrives alone finds idle cores and its overlay follows its
alert by a few milliseconds, as before.

Nothing is lost by waiting here: the alert's transaction also wrote the
overlay's pending row, and the file stays in processing/ until the step is
done, so a crash with steps still queued is recovered at restart exactly
like a crash on the inference thread (edge.stages.overlay_recovery).
Memory is bounded: a step holds its decoded film, and the queue takes at
most MAX_QUEUED steps and MAX_QUEUED_BYTES of pixels; a step that does not
fit runs on the inference thread as before (back-pressure, never a drop).
The Outcome of a film is published when its step is over (its file is in
done/), so Outcomes still mean "this file is finished".
"""
import logging
import os
import queue
import sys
import threading
import time
from typing import Callable, Optional

from edge.stages.job import Outcome

log = logging.getLogger(__name__)

AFTER_NICE = 10                      # added to the process's nice value, for this thread only
MAX_QUEUED = 64                      # steps waiting at most
MAX_QUEUED_BYTES = 256 * 1024 * 1024  # their decoded films' pixels at most

_END = object()


class AfterThread:
    """Runs queued after-alert steps in order, each through `guard` (the same
    per-file isolation as the models' stage), and hands each Outcome to `publish`."""

    def __init__(self, guard: Callable, publish: Callable[[Optional[Outcome]], None],
                 max_queued: int = MAX_QUEUED, max_bytes: int = MAX_QUEUED_BYTES,
                 nice: int = AFTER_NICE):
        self._guard, self._publish, self._nice = guard, publish, nice
        self._max_queued, self._max_bytes = max_queued, max_bytes
        self._queue = queue.Queue()  # type: queue.Queue
        self._lock = threading.Lock()
        self._queued, self._queued_bytes = 0, 0
        self._thread = None  # type: Optional[threading.Thread]
        self._closing = False
        self.ran = self.inline = 0          # steps run here / run on the caller's thread instead
        self.priority = None  # type: Optional[str]

    # -- the models' side ---------------------------------------------------
    def offer(self, claimed, step: Callable[[], Optional[Outcome]], nbytes: int) -> bool:
        """Queue one file's step; False when it must run on the caller's thread
        (the thread is not running, or the queue is full)."""
        with self._lock:     # one lock with stop(): nothing lands behind its end marker
            if (not self.alive or self._closing or self._queued >= self._max_queued
                    or (self._queued and self._queued_bytes + nbytes > self._max_bytes)):
                self.inline += 1
                return False
            self._queued += 1
            self._queued_bytes += nbytes
            self._queue.put((claimed, step, nbytes))
        return True

    def status(self) -> dict:
        """queued: waiting or running now; ran_inline: handed back (full, not running or closing)."""
        with self._lock:
            return {"queued": self._queued, "queued_mb": round(self._queued_bytes / 2 ** 20, 1),
                    "ran": self.ran, "ran_inline": self.inline, "priority": self.priority}

    # -- lifecycle ------------------------------------------------------------
    def start(self, warm: Callable[[], None] = lambda: None) -> None:
        """`warm`: run first on the thread (the warm-up film's overlay)."""
        self._closing = False
        self._thread = threading.Thread(target=self._loop, args=(warm,), name="after-alert", daemon=True)
        self._thread.start()

    def stop(self, timeout: float) -> bool:
        """Finish what is queued within `timeout`; True when the thread ended. A
        step still queued after that keeps its pending row and its file in
        processing/: the next start recovers it."""
        if self._thread is None:
            return True
        with self._lock:
            self._closing = True
            self._queue.put(_END)
        waited = max(0.1, timeout)
        self._thread.join(waited)
        ended = not self._thread.is_alive()
        if not ended:
            log.warning("after-alert thread: %d overlay step(s) still queued after %.1f s; their files "
                        "stay in processing/ and are finished at the next start", self._queued, waited)
        return ended

    @property
    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def _loop(self, warm: Callable[[], None]) -> None:
        self.priority = lower_priority(self._nice)
        try:
            warm()
        except Exception:  # noqa: BLE001 - a cold first overlay, not a dead thread
            log.exception("after-alert thread: warm-up failed; carrying on")
        while True:
            item = self._queue.get()
            if item is _END:
                return
            claimed, step, nbytes = item
            outcome = None
            try:
                outcome = self._guard(claimed, step)
            except Exception:  # noqa: BLE001 - guard already isolates the file; this keeps the thread
                log.exception("after-alert thread: unexpected error for %s; carrying on", claimed.label)
                time.sleep(0.1)
            finally:
                with self._lock:     # before the Outcome: whoever sees it sees the step counted
                    self._queued -= 1
                    self._queued_bytes -= nbytes
                    self.ran += 1
            try:
                self._publish(outcome)
            except Exception:  # noqa: BLE001
                log.exception("after-alert thread: cannot publish the outcome of %s", claimed.label)
            item = step = outcome = None    # not the last film's pixels held while waiting for the next


def lower_priority(step: int) -> str:
    """Raise the calling thread's nice value by `step` (Linux: a thread's own
    priority; lowering one's own priority needs no privilege). What it is
    now, in words, for status; never raises."""
    if not sys.platform.startswith("linux"):     # elsewhere a native thread id is no process id
        return "unchanged (not Linux)"
    try:
        tid = threading.get_native_id()
        now = os.getpriority(os.PRIO_PROCESS, tid)
        os.setpriority(os.PRIO_PROCESS, tid, min(19, now + step))
        return "nice %d" % os.getpriority(os.PRIO_PROCESS, tid)
    except (AttributeError, OSError) as exc:     # not Linux, or a sandbox that refuses it
        log.info("after-alert thread keeps the process's priority (%s)", exc)
        return "unchanged (%s)" % type(exc).__name__
