"""A thin ctypes adapter over Linux inotify (no pip dependency).

Events only wake the watcher's scan; readiness is decided by the settle
tracker. Raises InotifyUnavailable (a CaptureError) wherever inotify
cannot be used: not Linux, no inotify in libc or kernel, limits reached,
or the path cannot be watched.
"""
import ctypes
import ctypes.util
import errno
import os
import select
import struct
import sys
from dataclasses import dataclass
from typing import List, Optional

from edge.errors import CaptureError

IN_MODIFY = 0x00000002
IN_ATTRIB = 0x00000004
IN_CLOSE_WRITE = 0x00000008
IN_MOVED_FROM = 0x00000040
IN_MOVED_TO = 0x00000080
IN_CREATE = 0x00000100
IN_DELETE = 0x00000200
IN_DELETE_SELF = 0x00000400
IN_MOVE_SELF = 0x00000800
IN_Q_OVERFLOW = 0x00004000
IN_IGNORED = 0x00008000
IN_ONLYDIR = 0x01000000

IN_NONBLOCK = os.O_NONBLOCK
IN_CLOEXEC = 0o2000000

# What can make a file in incoming/ appear or change, plus the watched
# directory itself going away.
WATCH_MASK = (IN_CLOSE_WRITE | IN_MOVED_TO | IN_CREATE | IN_ATTRIB | IN_MODIFY
              | IN_DELETE_SELF | IN_MOVE_SELF)

_HEADER = struct.Struct("iIII")  # wd, mask, cookie, len (struct inotify_event)
_READ_SIZE = 64 * 1024

_HINTS = {
    errno.EMFILE: "too many inotify instances; raise fs.inotify.max_user_instances",
    errno.ENFILE: "the system file table is full",
    errno.ENOSPC: "inotify watch limit reached; raise fs.inotify.max_user_watches",
    errno.ENOSYS: "this kernel has no inotify",
    errno.ENOENT: "no such directory",
    errno.ENOTDIR: "not a directory",
    errno.EACCES: "permission denied",
}


class InotifyUnavailable(CaptureError):
    """inotify cannot be used here; the watcher may fall back to polling."""


@dataclass(frozen=True)
class InotifyEvent:
    mask: int
    name: str  # empty for events on the watched directory itself


def _explain(call: str, err: int) -> str:
    return "%s failed: %s" % (call, _HINTS.get(err, os.strerror(err)))


def _libc() -> ctypes.CDLL:
    if not sys.platform.startswith("linux"):
        raise InotifyUnavailable("inotify exists only on Linux (this is %s)" % sys.platform)
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        init1, add_watch = libc.inotify_init1, libc.inotify_add_watch
    except (OSError, AttributeError) as exc:
        raise InotifyUnavailable("libc offers no inotify: %s" % exc)
    init1.argtypes, init1.restype = [ctypes.c_int], ctypes.c_int
    add_watch.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_uint32]
    add_watch.restype = ctypes.c_int
    return libc


class Inotify:
    """One inotify instance watching one directory."""

    def __init__(self, path: str, mask: int = WATCH_MASK):
        libc = _libc()
        fd = libc.inotify_init1(IN_NONBLOCK | IN_CLOEXEC)
        if fd < 0:
            raise InotifyUnavailable(_explain("inotify_init1", ctypes.get_errno()))
        if libc.inotify_add_watch(fd, os.fsencode(path), mask | IN_ONLYDIR) < 0:
            err = ctypes.get_errno()
            os.close(fd)
            raise InotifyUnavailable(_explain("inotify_add_watch(%s)" % path, err))
        self.path = path
        self._fd = fd  # type: Optional[int]

    def fileno(self) -> int:
        if self._fd is None:
            raise CaptureError("inotify watch on %s is closed" % self.path)
        return self._fd

    def read_events(self, timeout: float) -> List[InotifyEvent]:
        """Wait up to `timeout` seconds for events and return all queued."""
        fd = self.fileno()
        readable, _, _ = select.select([fd], [], [], max(0.0, timeout))
        if not readable:
            return []
        try:
            data = os.read(fd, _READ_SIZE)
        except BlockingIOError:
            return []
        except OSError as exc:
            raise CaptureError("reading inotify events for %s: %s" % (self.path, exc))
        return _parse(data)

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing the instance drops its watch
            self._fd = None

    def __enter__(self) -> "Inotify":
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()


def _parse(data: bytes) -> List[InotifyEvent]:
    events = []
    offset = 0
    while offset + _HEADER.size <= len(data):
        _wd, mask, _cookie, length = _HEADER.unpack_from(data, offset)
        start = offset + _HEADER.size
        name = data[start:start + length].rstrip(b"\0")
        events.append(InotifyEvent(mask, os.fsdecode(name)))
        offset = start + length
    return events
