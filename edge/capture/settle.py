"""Settle detection: is a file in incoming/ completely written?

Pure logic fed with observations and a monotonic `now`, so it is tested
with synthetic times. A file is ready once its size and mtime have been
seen unchanged for at least `settle_s`; the cart may write in pieces and a
network share sends no close events, so nothing less is trusted.
"""
import fnmatch
from dataclasses import dataclass
from typing import AbstractSet, Dict, Iterable, List, Mapping, Optional, Tuple


def is_ignored(name: str, patterns: Iterable[str]) -> bool:
    """True if `name` matches any glob. Case-insensitive because carts that
    came from Windows write `X.TMP` as readily as `x.tmp`."""
    lowered = name.lower()
    return any(fnmatch.fnmatchcase(lowered, p.lower()) for p in patterns)


@dataclass
class _Seen:
    size: int
    mtime_ns: int
    since: float          # monotonic time these values were first seen
    handed: bool = False  # already reported ready for these values


class SettleTracker:
    """Tracks files by name; each is reported ready once per (size, mtime)."""

    def __init__(self, settle_s: float):
        self.settle_s = max(0.0, float(settle_s))
        self._seen = {}  # type: Dict[str, _Seen]
        self._holds = {}  # type: Dict[str, float]    # name -> not ready before this time

    def observe(self, name: str, size: int, mtime_ns: int, now: float,
                complete: bool = False) -> bool:
        """Record one observation; True if `name` has just become ready.
        `complete`: the writer is known to be done (renamed into place), so
        the settle wait is skipped."""
        seen = self._seen.get(name)
        if seen is None or seen.size != size or seen.mtime_ns != mtime_ns:
            # New or changed: the settle clock (re)starts from this sighting; a held
            # name's first sighting starts it so that it is ready at the hold's end.
            held = self._holds.pop(name, None)
            since = now if held is None or seen is not None else max(now, held - self.settle_s)
            seen = _Seen(size, mtime_ns, since)
            self._seen[name] = seen
        if seen.handed or (not complete and now - seen.since < self.settle_s):
            return False
        seen.handed = True
        return True

    def forget(self, name: str) -> None:
        self._seen.pop(name, None)

    def hold(self, name: str, until: float) -> None:
        """`name`, forgotten, is not ready before `until` unless it changes
        after it is next seen (a cut-off file whose writer may resume)."""
        self._seen.pop(name, None)
        self._holds[name] = until

    def update(self, observations: Mapping[str, Tuple[int, int]], now: float,
               complete: AbstractSet[str] = frozenset()) -> List[str]:
        """Observe a whole directory listing {name: (size, mtime_ns)}; names
        absent from it are forgotten; names in `complete` need no settle wait.
        Returns the newly ready names, oldest mtime first (the order the cart
        wrote them)."""
        for name in [n for n in self._seen if n not in observations]:
            del self._seen[name]
        for name in [n for n, until in self._holds.items() if until < now and n not in observations]:
            del self._holds[name]
        ready = [name for name, (size, mtime_ns) in observations.items()
                 if self.observe(name, size, mtime_ns, now, name in complete)]
        ready.sort(key=lambda n: (self._seen[n].mtime_ns, n))
        return ready

    def next_due(self, now: float) -> Optional[float]:
        """Seconds until the earliest pending file could be ready (0 if one
        is due now); None when nothing is waiting to settle."""
        pending = [s.since + self.settle_s - now for s in self._seen.values() if not s.handed]
        if not pending:
            return None
        return max(0.0, min(pending))

    def __len__(self) -> int:
        return len(self._seen)
