"""Counts of what happened to files, shared by the intake and inference threads."""
import threading
from typing import Dict

KEYS = ("alerted", "rejected", "duplicate", "faults", "returned", "deferred", "recovered")


class Tally:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts = {k: 0 for k in KEYS}
        self._successes = 0     # files that reached an outcome (for the retry's last resort)

    def count(self, key: str) -> None:
        with self._lock:
            self._counts[key] += 1

    def settled(self) -> None:
        with self._lock:
            self._successes += 1

    @property
    def successes(self) -> int:
        with self._lock:
            return self._successes

    def snapshot(self) -> Dict[str, int]:
        with self._lock:
            return dict(self._counts)
