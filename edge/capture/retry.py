"""Files whose processing failed because of the machine (store locked, disk
full, a folder unwritable): they stay in processing/ and are tried again
with exponential backoff, while other files go on.

Thread-safe: the inference thread defers files too; the intake thread
takes the due ones.
"""
import threading
import time
from dataclasses import dataclass
from typing import Callable, List, Tuple

from edge.capture.folders import Claimed

BACKOFF_MIN_S = 1.0
BACKOFF_MAX_S = 60.0


@dataclass
class Deferred:
    claimed: Claimed
    attempts: int
    due: float                 # monotonic
    successes_at_first: int    # other files finished before this one's first failure
    last_error: str


class RetryQueue:
    def __init__(self, clock: Callable[[], float] = time.monotonic):
        self._clock = clock
        self._lock = threading.Lock()
        self._items = {}  # type: dict  path -> Deferred

    def defer(self, claimed: Claimed, error: str, successes: int) -> Deferred:
        """Schedule `claimed` again; the wait doubles with each failure."""
        claimed.data = None      # do not hold the bytes while waiting
        with self._lock:
            old = self._items.get(claimed.path)
            attempts = old.attempts + 1 if old else 1
            first = old.successes_at_first if old else successes
            wait = min(BACKOFF_MAX_S, BACKOFF_MIN_S * 2 ** (attempts - 1))
            item = Deferred(claimed, attempts, self._clock() + wait, first, error)
            self._items[claimed.path] = item
        return item

    def due(self) -> List[Deferred]:
        """Items whose wait is over (oldest first). They stay listed, not
        due again, until forget() (it worked) or defer() (it failed again)."""
        now = self._clock()
        with self._lock:
            ready = sorted((d for d in self._items.values() if d.due <= now), key=lambda d: d.due)
            for d in ready:
                d.due = float("inf")
            return ready

    def forget(self, path: str) -> None:
        """The file at `path` reached an outcome: no more retries."""
        with self._lock:
            self._items.pop(path, None)

    def attempts(self, path: str) -> int:
        with self._lock:
            item = self._items.get(path)
            return item.attempts if item else 0

    def pending(self) -> List[Tuple[str, int, str]]:
        """(name, attempts, last error) of every waiting file, for the status."""
        with self._lock:
            return [(d.claimed.label, d.attempts, d.last_error) for d in self._items.values()]

    def __len__(self) -> int:
        with self._lock:
            return len(self._items)
