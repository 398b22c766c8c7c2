"""The one record that follows a file through the appliance, from claim to
commit, and the Outcome each file ends with."""
import time
from dataclasses import dataclass, field, replace
from typing import Dict, Iterator, Mapping, Optional
from contextlib import contextmanager

from edge.capture.folders import Claimed
from edge.pipeline import Prepared
from edge.types import Image, Result


class Timings:
    """Milliseconds per step for one file, in the order the steps ran."""

    def __init__(self) -> None:
        self._ms = {}  # type: Dict[str, float]

    def set(self, name: str, ms: float) -> None:
        self._ms[name] = ms

    def update(self, more: Mapping[str, float]) -> None:
        self._ms.update(more)

    @contextmanager
    def measure(self, name: str) -> Iterator[None]:
        t0 = time.perf_counter()
        try:
            yield
        finally:
            self._ms[name] = (time.perf_counter() - t0) * 1000.0

    def as_dict(self) -> Dict[str, float]:
        return dict(self._ms)


@dataclass
class Job:
    """One claimed file on its way through intake and the models. The
    content moves here from the claim, and is dropped once decoded."""
    claimed: Claimed
    data: Optional[bytes] = field(default=None, repr=False)
    image: Optional[Image] = None
    prepared: Optional[Prepared] = None
    result: Optional[Result] = None
    timings: Timings = field(default_factory=Timings)

    @classmethod
    def start(cls, claimed: Claimed) -> "Job":
        job = cls(replace(claimed, data=None), data=claimed.data)
        job.timings.set("claim_ms", claimed.claim_ms)
        return job

    def read(self) -> bytes:
        """The content: kept from the claim, or read now (large files)."""
        return self.data if self.data is not None else self.claimed.read()


@dataclass
class Outcome:
    """What happened to one file (for logs, tests and the bench)."""
    name: str
    state: str                      # "alerted" | "rejected" | "duplicate" | "vanished"
                                    # | "returned" (writer not done) | "deferred" (retried later)
                                    # | "recovered" (its overlay, lost to a crash, queued now)
    alert_id: Optional[str] = None
    reason: Optional[str] = None
    timings_ms: Optional[Dict[str, float]] = None
