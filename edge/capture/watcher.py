"""Notices files in incoming/ once they are completely written.

inotify (where it works) only wakes the scan early; the settle tracker
decides readiness in both modes, because the cart may write in pieces and
network shares send no events for remote writes.
"""
import logging
import os
import re
import stat
import time
from typing import Callable, Dict, List, Optional, Set, Tuple

from edge.capture.inotify import IN_CLOSE_WRITE, IN_CREATE, IN_MODIFY, IN_MOVED_TO, Inotify, InotifyUnavailable
from edge.capture.settle import SettleTracker, is_ignored
from edge.errors import CaptureError
from edge.settings import CaptureSettings

logger = logging.getLogger(__name__)

# Filesystems on which another machine writes: no inotify events reach us.
NETWORK_FILESYSTEMS = frozenset([
    "nfs", "nfs4", "cifs", "smb3", "smbfs", "9p", "ceph", "glusterfs",
    "fuse.glusterfs", "fuse.sshfs", "fuse.rclone", "afs", "ncpfs", "lustre",
    "gpfs", "davfs", "fuse.davfs2", "beegfs",
])

# In inotify mode, rescan this often anyway: a lost event (queue overflow)
# must not leave a file behind for ever.
INOTIFY_RESCAN_S = 30.0
_MIN_WAIT_S = 0.005   # no busy loop when a file is due "now" by float rounding

_OCTAL_ESCAPE = re.compile(r"\\([0-7]{3})")


def filesystem_type(path: str, mounts_text: str) -> Optional[str]:
    """The fstype of the mount holding `path`, from /proc/self/mounts text."""
    path = os.path.realpath(path)
    best, best_len = None, -1
    for line in mounts_text.splitlines():
        fields = line.split()
        if len(fields) < 3:
            continue
        mount_point = _OCTAL_ESCAPE.sub(lambda m: chr(int(m.group(1), 8)), fields[1])
        inside = path == mount_point or path.startswith(mount_point.rstrip("/") + "/")
        if inside and len(mount_point) >= best_len:   # later mounts shadow earlier
            best, best_len = fields[2], len(mount_point)
    return best


def _kind(mode: int) -> str:
    if stat.S_ISLNK(mode):
        return "symbolic link"
    if stat.S_ISDIR(mode):
        return "folder"
    if stat.S_ISFIFO(mode):
        return "FIFO"
    if stat.S_ISSOCK(mode):
        return "socket"
    return "device file" if stat.S_ISCHR(mode) or stat.S_ISBLK(mode) else "special file"


def _local_filesystem_type(path: str) -> Optional[str]:
    try:
        with open("/proc/self/mounts") as f:
            return filesystem_type(path, f.read())
    except OSError:
        return None


class Watcher:
    """Reports settled, non-ignored regular files in `incoming_dir`."""

    def __init__(self, incoming_dir: str, settings: CaptureSettings,
                 clock: Callable[[], float] = time.monotonic):
        if not os.path.isdir(incoming_dir):
            raise CaptureError("capture folder %s does not exist or is not a directory"
                               % incoming_dir)
        self.incoming_dir = incoming_dir
        self._settings = settings
        self._clock = clock
        self._tracker = SettleTracker(settings.settle_s)
        self._inotify = None  # type: Optional[Inotify]
        # Names renamed into incoming/ (inotify IN_MOVED_TO) and not written since:
        # an atomic rename means the writer is done, so they skip the settle wait.
        self._moved_in = set()  # type: Set[str]
        # Non-regular entries (FIFO, folder, symlink): name -> (kind, first seen, reported).
        self._strays = {}  # type: Dict[str, List]
        # Names the appliance put back (writer not done): their rename is not a "complete" signal.
        self._returned = set()  # type: Set[str]
        self.mode = self._start(settings.watch)

    def _start(self, watch: str) -> str:
        if watch == "poll":   # else auto or inotify: the field's choices, checked by load_config
            return "poll"
        fstype = _local_filesystem_type(self.incoming_dir)
        remote = fstype in NETWORK_FILESYSTEMS
        if watch == "auto" and remote:
            logger.info("capture: %s is on %s, which sends no inotify events for remote "
                        "writes; polling every %.2f s", self.incoming_dir, fstype,
                        self._settings.poll_interval_s)
            return "poll"
        try:
            self._inotify = Inotify(self.incoming_dir)
        except InotifyUnavailable as exc:
            if watch == "inotify":
                raise
            logger.warning("capture: inotify unavailable (%s); polling %s every %.2f s",
                           exc, self.incoming_dir, self._settings.poll_interval_s)
            return "poll"
        if remote:
            logger.warning("capture: watching %s with inotify although it is on %s; files "
                           "written remotely are found only by the %.0f s rescan",
                           self.incoming_dir, fstype, INOTIFY_RESCAN_S)
        return "inotify"

    @property
    def settle_applies_to_renames(self) -> bool:
        """False when a file renamed into incoming/ is taken at once (inotify + trust_rename)."""
        return not (self.mode == "inotify" and self._settings.trust_rename)

    def wait_ready(self, timeout: float) -> List[str]:
        """Full paths of files that have settled, waiting up to `timeout` s.
        Each file is returned once until it changes again or disappears."""
        deadline = self._clock() + max(0.0, timeout)
        while True:
            now = self._clock()
            listing = self._scan()
            self._moved_in &= set(listing)
            ready = self._tracker.update(listing, now, self._moved_in)
            self._moved_in.difference_update(ready)
            if ready or any(not reported and now - since >= self._tracker.settle_s
                            for _k, since, reported in self._strays.values()):
                return [os.path.join(self.incoming_dir, name) for name in ready]
            remaining = deadline - self._clock()
            if remaining <= 0:
                return []
            self._pause(min(remaining, self._next_scan_in(now)))

    def _next_scan_in(self, now: float) -> float:
        interval = INOTIFY_RESCAN_S if self._inotify else self._settings.poll_interval_s
        due = self._tracker.next_due(now)
        stray_due = [since + self._tracker.settle_s - now for _k, since, reported in self._strays.values()
                     if not reported]
        if stray_due:
            due = max(0.0, min(stray_due + ([due] if due is not None else [])))
        if due is None:
            return interval
        return min(interval, max(due, _MIN_WAIT_S))

    def _pause(self, seconds: float) -> None:
        if self._inotify is not None:
            # Any event triggers a rescan; renames into place also mark the file complete.
            for event in self._inotify.read_events(seconds):
                if not event.name:
                    continue
                if event.mask & IN_MOVED_TO and event.name in self._returned:
                    self._returned.discard(event.name)           # our own rename back: settle as usual
                elif event.mask & IN_MOVED_TO and not self.settle_applies_to_renames:
                    self._moved_in.add(event.name)
                elif event.mask & (IN_MODIFY | IN_CLOSE_WRITE | IN_CREATE):
                    self._moved_in.discard(event.name)   # written after the rename: settle as usual
        else:
            time.sleep(seconds)

    def again(self, path: str, returned: bool = False, hold_s: float = 0.0) -> None:
        """Report `path` again once it has settled anew: its claim failed, or
        the appliance put it back (`returned`) because its writer is not done;
        `hold_s` > 0: not before that many seconds unless it changes."""
        name = os.path.basename(path)
        if hold_s > 0:
            self._tracker.hold(name, self._clock() + hold_s)
        else:
            self._tracker.forget(name)
        self._moved_in.discard(name)
        if returned and self._inotify is not None:     # only an inotify rename event clears it
            self._returned.add(name)

    def strays(self) -> List[Tuple[str, str]]:
        """(path, kind) of non-regular entries (FIFO, folder, symlink ...)
        that have sat in incoming/ for settle_s, each reported once: they
        are not images and must be moved out with a reason, not left."""
        now = self._clock()
        out = []
        for name, seen in sorted(self._strays.items()):
            kind, since, reported = seen
            if not reported and now - since >= self._tracker.settle_s:
                seen[2] = True
                out.append((os.path.join(self.incoming_dir, name), kind))
        return out

    def _scan(self) -> Dict[str, Tuple[int, int]]:
        patterns = self._settings.ignore
        found = {}  # type: Dict[str, Tuple[int, int]]
        strays = {}  # type: Dict[str, str]
        try:
            with os.scandir(self.incoming_dir) as entries:
                for entry in entries:
                    if is_ignored(entry.name, patterns):
                        continue
                    try:
                        st = entry.stat(follow_symlinks=False)
                    except FileNotFoundError:
                        continue       # vanished between listing and stat
                    if not stat.S_ISREG(st.st_mode):
                        strays[entry.name] = _kind(st.st_mode)   # not an image: reported by strays()
                        continue
                    found[entry.name] = (st.st_size, st.st_mtime_ns)
        except OSError as exc:
            raise CaptureError("cannot list capture folder %s: %s" % (self.incoming_dir, exc))
        now = self._clock()
        for name in [n for n in self._strays if n not in strays]:
            del self._strays[name]
        for name, kind in strays.items():
            if name not in self._strays or self._strays[name][0] != kind:
                self._strays[name] = [kind, now, False]
        return found

    def close(self) -> None:
        if self._inotify is not None:
            self._inotify.close()
            self._inotify = None

    def __enter__(self) -> "Watcher":
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()
