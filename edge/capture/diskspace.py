"""The free-space floor: below it no new file is claimed.

A full disk under the capture or state folder makes every step fail (the
ledger cannot commit, a reason file cannot be written), so the appliance
stops taking new films before that, says so, and resumes by itself once
space returns. Files wait in incoming/, untouched.
"""
import os
from typing import Any, Dict, Optional, Sequence, Tuple

from edge.errors import CaptureError


def free_mb(path: str) -> float:
    """Space available to this (unprivileged) user on `path`'s file system."""
    try:
        st = os.statvfs(path)
    except OSError as exc:
        raise CaptureError("cannot read free space of %s: %s" % (path, exc.strerror))
    return st.f_bavail * st.f_frsize / 1048576.0


class DiskFloor:
    """Checks each folder's file system against `floor_mb` (0 = never pause)."""

    def __init__(self, paths: Sequence[str], floor_mb: float):
        self.paths = list(paths)
        self.floor_mb = float(floor_mb)
        self.paused = False
        self.lowest = None  # type: Optional[Tuple[float, str]]

    def check(self) -> bool:
        """True if every folder has at least floor_mb free; updates .paused
        and returns whether claiming may go on."""
        readings = []
        for path in self.paths:
            try:
                readings.append((free_mb(path), path))
            except CaptureError:
                continue   # a folder we cannot stat is reported by whoever uses it
        self.lowest = min(readings) if readings else None
        self.paused = self.lowest is not None and self.lowest[0] < self.floor_mb
        return not self.paused

    def status(self) -> Dict[str, Any]:
        free, path = self.lowest if self.lowest else (None, None)
        return {"free_mb": round(free, 1) if free is not None else None, "lowest_on": path,
                "floor_mb": self.floor_mb, "paused": self.paused}
