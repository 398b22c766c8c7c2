"""The one record that follows a file through the appliance, from claim to
commit, and the Outcome each file ends with.

Job.start looks at the content before anything about the file is said: its
label (claimed.label, the one name used in logs, events, alerts, reason
files, the ledger and Outcomes from then on) has a DICOM film's own patient
name and birth date masked (edge.capture.names.safe_label)."""
import os
import time
from dataclasses import dataclass, field, replace
from typing import Dict, Iterator, Mapping, Optional
from contextlib import contextmanager

from edge.capture.folders import Claimed
from edge.capture.names import Sight
from edge.decode.header_words import HEAD_BYTES, sight_of
from edge.pipeline import Prepared
from edge.settings import DecodeSettings
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
    def start(cls, claimed: Claimed, max_bytes: Optional[int] = None) -> "Job":
        """max_bytes: decode.max_file_mb in bytes, the most a deflated header may inflate to."""
        sight = claimed.sight if claimed.sight is not None else look(claimed, max_bytes)
        job = cls(replace(claimed, data=None, sight=sight), data=claimed.data)
        job.timings.set("claim_ms", claimed.claim_ms)
        return job

    @property
    def label(self) -> str:
        return self.claimed.label

    def read(self) -> bytes:
        """The content: kept from the claim, or read now (large files)."""
        return self.data if self.data is not None else self.claimed.read()


def look(claimed: Claimed, max_bytes: Optional[int] = None) -> Optional[Sight]:
    """What the content says about showing the file's name; None for a file
    refused unread (its name is never shown). Never raises."""
    if claimed.problem is not None:
        return None
    data = claimed.data
    if data is None:
        try:
            fd = os.open(claimed.path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0))
            with os.fdopen(fd, "rb") as fh:
                data = fh.read(HEAD_BYTES)
        except OSError:
            return None
    if max_bytes is None:
        max_bytes = int(DecodeSettings().max_file_mb * 1048576)
    return sight_of(data, max_bytes)



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
