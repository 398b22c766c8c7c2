"""Durable hand-over of a received instance to the capture folder.

Write to a temporary file in receiving/ (a sibling of incoming/ on the same
filesystem), fsync it, rename it into incoming/ and fsync incoming/: once
store() returns, the film survives a power cut, so the C-STORE success
status that follows can never stand for a lost film. The rename is atomic,
so the watcher never sees a half-written file (and, with inotify and
capture.trust_rename, takes it without the settle wait).
"""
import errno
import logging
import os
import re
import threading
import uuid
from typing import Iterable

from edge.capture.folders import CaptureFolders, fsync_dir
from edge.errors import IntakeError

log = logging.getLogger(__name__)

SPOOL_DIR = "receiving"
PART_SUFFIX = ".part"
_SAFE_NAME = re.compile(r"^[0-9.]{1,64}$")   # a UID: digits and dots


class Spool:
    def __init__(self, folders: CaptureFolders):
        self.incoming = folders.incoming
        self.dir = os.path.join(folders.root, SPOOL_DIR)
        try:
            os.makedirs(self.dir, exist_ok=True)
        except OSError as exc:
            raise IntakeError("cannot create %s: %s" % (self.dir, exc))
        if os.stat(self.dir).st_dev != os.stat(self.incoming).st_dev:
            raise IntakeError("%s and %s are on different filesystems; the hand-over must be "
                              "an atomic rename" % (self.dir, self.incoming))
        self._lock = threading.Lock()   # choosing a free name + renaming onto it
        self._clear_leftovers()

    def _clear_leftovers(self) -> None:
        """Partial files from a crash: no success status was sent for them,
        so the sender still has them and will send them again."""
        for name in os.listdir(self.dir):
            if name.endswith(PART_SUFFIX):
                log.info("removing %s left half-received by an earlier run", name)
                try:
                    os.unlink(os.path.join(self.dir, name))
                except OSError:
                    pass

    def store(self, sop_instance_uid: str, chunks: Iterable[bytes]) -> str:
        """Write `chunks` durably as incoming/<uid>.dcm (or <uid>-N.dcm when
        taken); returns the final path. IntakeError when it cannot."""
        tmp = os.path.join(self.dir, uuid.uuid4().hex + PART_SUFFIX)
        try:
            with open(tmp, "wb") as fh:
                for chunk in chunks:
                    fh.write(chunk)
                fh.flush()
                os.fsync(fh.fileno())
            stem = sop_instance_uid if _SAFE_NAME.match(sop_instance_uid or "") else uuid.uuid4().hex
            with self._lock:
                target = self._free(stem)
                os.rename(tmp, target)
            fsync_dir(self.incoming)
            return target
        except OSError as exc:
            _unlink_quietly(tmp)
            full = exc.errno in (errno.ENOSPC, errno.EDQUOT)
            raise IntakeError("cannot store the received instance%s: %s"
                              % (" (disk full)" if full else "", exc))
        except Exception:
            _unlink_quietly(tmp)
            raise

    def _free(self, stem: str) -> str:
        name, n = stem + ".dcm", 0
        while os.path.lexists(os.path.join(self.incoming, name)):
            n += 1
            name = "%s-%d.dcm" % (stem, n)
        return os.path.join(self.incoming, name)


def _unlink_quietly(path: str) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass
