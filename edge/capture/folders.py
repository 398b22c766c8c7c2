"""The capture folders and every move between them.

    <root>/incoming/    the cart writes here
           processing/  claimed by an atomic rename; left here by a crash
           done/        finished (or deleted, per capture.on_success)
           rejected/    with <name>.reason.json beside each file

Renames stay on one filesystem (checked at start) so each is atomic, and
the directories are fsynced after renames so a power cut cannot undo a
move that the ledger already records. Only the one capture worker moves
files, so choosing a free name and renaming onto it cannot race.
"""
import datetime
import errno
import hashlib
import json
import os
import time
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional

from edge.errors import CaptureError
from edge.hashing import sha256_file
from edge.settings import CaptureSettings


REASON_SUFFIX = ".reason.json"


# Files up to this size are read once, hashed from memory and handed on with
# their bytes, so the decoder does not read them a second time.
KEEP_BYTES_UP_TO = 256 * 1024 * 1024


@dataclass
class Claimed:
    path: str          # now in processing/
    name: str          # the file's name as the cart wrote it
    sha256: str        # of the content
    size: int
    claimed_at: float  # epoch seconds
    data: Optional[bytes] = field(default=None, repr=False, compare=False)  # content, when small enough
    claim_ms: float = 0.0  # rename + read + hash (+ directory syncs)

    def read(self) -> bytes:
        """The content: kept from the claim, or read now (large files)."""
        if self.data is not None:
            return self.data
        with open(self.path, "rb") as fh:
            return fh.read()


def fsync_dir(path: str) -> None:
    """Make renames into/out of `path` durable. Filesystems that cannot
    fsync a directory (some network shares) are tolerated."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError as exc:
        raise CaptureError("cannot open folder %s to sync it: %s" % (path, exc))
    try:
        os.fsync(fd)
    except OSError as exc:
        if exc.errno not in (errno.EINVAL, errno.ENOTSUP, errno.EBADF):
            raise CaptureError("cannot sync folder %s: %s" % (path, exc))
    finally:
        os.close(fd)


def _free_name(folder: str, name: str, also_free: str = "") -> str:
    """`name`, or `stem-N.ext` with the smallest N making it (and
    name+also_free, e.g. its reason file) unused in `folder`."""
    stem, ext = os.path.splitext(name)
    candidate, n = name, 0
    while (os.path.lexists(os.path.join(folder, candidate))
           or (also_free and os.path.lexists(os.path.join(folder, candidate + also_free)))):
        n += 1
        candidate = "%s-%d%s" % (stem, n, ext)
    return candidate


def _utc_iso(epoch: float) -> str:
    moment = datetime.datetime.fromtimestamp(epoch, tz=datetime.timezone.utc)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


class CaptureFolders:
    def __init__(self, root: str, settings: CaptureSettings):
        if settings.on_success not in ("move", "delete"):
            raise CaptureError("capture.on_success must be move or delete, not %r"
                               % settings.on_success)
        self.root = root
        self.on_success = settings.on_success
        self.incoming = os.path.join(root, "incoming")
        self.processing = os.path.join(root, "processing")
        self.done = os.path.join(root, "done")
        self.rejected = os.path.join(root, "rejected")
        for folder in (self.incoming, self.processing, self.done, self.rejected):
            try:
                os.makedirs(folder, exist_ok=True)
            except OSError as exc:
                raise CaptureError("cannot create capture folder %s: %s (check capture.dir "
                                   "and the folder's owner and permissions)" % (folder, exc))
            if not os.access(folder, os.W_OK | os.X_OK):
                raise CaptureError("capture folder %s is not writable by this user" % folder)
        devices = {os.stat(f).st_dev for f in (self.incoming, self.processing,
                                               self.done, self.rejected)}
        if len(devices) > 1:
            raise CaptureError("capture folders under %s span several filesystems; moves "
                               "must be atomic renames, so mount the share at %s itself, "
                               "not at one of its subfolders" % (root, root))

    def claim(self, path: str) -> Optional[Claimed]:
        """Move `path` into processing/ and hash it; None if it vanished."""
        t0 = time.perf_counter()
        name = os.path.basename(path)
        target = os.path.join(self.processing, _free_name(self.processing, name))
        try:
            os.rename(path, target)
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise CaptureError("cannot claim %s into %s: %s" % (path, self.processing, exc))
        fsync_dir(self.processing)
        fsync_dir(os.path.dirname(path) or ".")
        try:
            claimed = self._describe(target, name, time.time())
        except FileNotFoundError:
            return None   # removed from processing/ by someone else meanwhile
        claimed.claim_ms = (time.perf_counter() - t0) * 1000.0
        return claimed

    def finish(self, claimed: Claimed) -> Optional[str]:
        """Move to done/ (returns the new path) or delete (returns None)."""
        try:
            if self.on_success == "delete":
                os.unlink(claimed.path)
                fsync_dir(self.processing)
                return None
            target = os.path.join(self.done, _free_name(self.done, os.path.basename(claimed.name)))
            os.rename(claimed.path, target)
        except OSError as exc:
            raise CaptureError("cannot finish %s: %s" % (claimed.path, exc))
        fsync_dir(self.done)
        fsync_dir(self.processing)
        return target

    def reject(self, claimed: Claimed, code: str, reason: str,
               details: Optional[Dict[str, Any]] = None) -> str:
        """Move to rejected/ with a reason file; returns the file's new path.
        The reason file is written first, so a file in rejected/ never lacks
        one (a crash in between leaves the file in processing/, redone)."""
        name = _free_name(self.rejected, os.path.basename(claimed.name), REASON_SUFFIX)
        target = os.path.join(self.rejected, name)
        record = {
            "code": code,
            "reason": reason,
            "details": details or {},
            "sha256": claimed.sha256,
            "original_name": claimed.name,
            "rejected_at": _utc_iso(time.time()),
        }
        self._write_atomic(target + REASON_SUFFIX,
                           json.dumps(record, indent=2, sort_keys=True, default=str) + "\n")
        try:
            os.rename(claimed.path, target)
        except OSError as exc:
            raise CaptureError("cannot move %s to %s: %s" % (claimed.path, self.rejected, exc))
        fsync_dir(self.rejected)
        fsync_dir(self.processing)
        return target

    def leftovers(self) -> List[Claimed]:
        """Files a crash left in processing/, re-hashed to be processed again."""
        found = []
        for name in sorted(os.listdir(self.processing)):
            path = os.path.join(self.processing, name)
            if not os.path.isfile(path) or os.path.islink(path):
                continue
            try:
                claimed_at = os.stat(path).st_ctime   # the claim's rename set ctime
                found.append(self._describe(path, name, claimed_at))
            except FileNotFoundError:
                continue
        return found

    def _describe(self, path: str, name: str, claimed_at: float) -> Claimed:
        data = None
        try:
            if os.path.getsize(path) <= KEEP_BYTES_UP_TO:
                with open(path, "rb") as f:
                    data = f.read()
                sha256, size = hashlib.sha256(data).hexdigest(), len(data)
            else:
                sha256, size = sha256_file(path)
        except FileNotFoundError:
            raise   # the caller decides whether a vanished file matters
        except OSError as exc:
            raise CaptureError("cannot read %s: %s" % (path, exc))
        return Claimed(path=path, name=name, sha256=sha256, size=size, claimed_at=claimed_at, data=data)

    def _write_atomic(self, path: str, text: str) -> None:
        tmp = os.path.join(os.path.dirname(path), "." + os.path.basename(path) + ".tmp")
        try:
            with open(tmp, "w", encoding="utf-8") as f:
                f.write(text)
                f.flush()
                os.fsync(f.fileno())
            os.rename(tmp, path)
        except OSError as exc:
            raise CaptureError("cannot write %s: %s" % (path, exc))
        fsync_dir(os.path.dirname(path))
