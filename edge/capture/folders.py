"""The capture folders and every move between them.

    <root>/incoming/    the cart writes here
           processing/  claimed by an atomic rename; left here by a crash
           done/        finished (or deleted, per capture.on_success)
           rejected/    with <name>.reason.json beside each file

Renames stay on one filesystem (checked at start) so each is atomic, and
the directories are fsynced after renames so a power cut cannot undo a
move that the ledger already records. Several threads move files out of
processing/ (intake rejects, each film in flight finishes or rejects), so
choosing a free name and renaming onto it happen under one lock: two files
with the same name cannot both take the free one (a rename would replace the
first). The DICOM receiver writes into incoming/ under its own lock
(edge/intake/spool.py); a file given back to incoming/ meets it only there.

A claim fsyncs processing/ at once (a crash then finds the file there) but
the folder it came from only before that file's next move (done/,
rejected/, back to incoming/): one fsync less before the alert, and a file
still never leaves processing/ while its old name could come back. Until
then a power cut can at worst bring the old name back beside the claimed
file on a filesystem that does not journal a rename as one change (ext4 and
xfs do): it is claimed again and the ledger, keyed by content, calls it a
duplicate. Nothing is lost either way.
"""
import datetime
import errno
import hashlib
import itertools
import json
import logging
import os
import stat
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Set, Tuple

from edge.capture.names import Sight, fit_name, name_bytes, safe_label
from edge.errors import CaptureError
from edge.settings import CaptureSettings

log = logging.getLogger(__name__)


REASON_SUFFIX = ".reason.json"


# Files up to this size are read once, hashed from memory and handed on with
# their bytes, so the decoder does not read them a second time.
KEEP_BYTES_UP_TO = 256 * 1024 * 1024
_CHUNK = 1 << 20
# Opening never follows a link and never blocks on a FIFO swapped in for the file.
_OPEN_FLAGS = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0)
# Room kept for "-NNNN" and the reason file's ".tmp" sibling when fitting names.
_SUFFIX_ROOM = 8
# A neutral label for a file with no content hash (refused unread, strays).
_INDEX = itertools.count(1)


@dataclass
class Claimed:
    path: str          # now in processing/
    name: str          # the file's name as the cart wrote it
    sha256: str        # of the content
    size: int
    claimed_at: float  # epoch seconds
    data: Optional[bytes] = field(default=None, repr=False, compare=False)  # content, when small enough
    claim_ms: float = 0.0  # rename + read + hash (+ directory syncs)
    # (code, message) when the file cannot be used at all (unreadable, too
    # large, not a regular file): it is rejected unread and has no sha256.
    problem: Optional[Tuple[str, str]] = None
    stat_key: Optional[Tuple[int, int]] = None   # (size, mtime_ns) when it was read
    changing: bool = False   # size or mtime moved while it was read: the writer is not done
    # What the content said about showing the name (Job.start looks); None:
    # not looked at, so the name is never shown (names.safe_label).
    sight: Optional[Sight] = None
    index: int = field(default_factory=lambda: next(_INDEX), compare=False)

    @property
    def label(self) -> str:
        """The name as it may appear in logs, payloads, reason files and the ledger."""
        return self.label_for(self.name)

    def label_for(self, name: str) -> str:
        """Another name of this file (its name in rejected/) under the same rule."""
        return safe_label(name, self.sight, self.neutral)

    @property
    def neutral(self) -> str:
        return "file-" + self.sha256[:12] if self.sha256 else "unread-%d" % self.index

    def read(self) -> bytes:
        """The content: kept from the claim, or read now (large files)."""
        if self.data is not None:
            return self.data
        fd = os.open(self.path, _OPEN_FLAGS)
        with os.fdopen(fd, "rb") as fh:
            return fh.read(self.size + 1)


def fsync_dir_quietly(path: str) -> None:
    """fsync_dir after a move that already happened: a failure costs
    durability across a power cut, not this file, so it is logged only."""
    try:
        fsync_dir(path)
    except CaptureError as exc:
        log.warning("%s", exc)


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


def _move(claimed: "Claimed", target: str, failure: str) -> str:
    """Rename the claimed file to `target`, then make both folders' entries durable."""
    _rename(claimed, target, failure)
    return _synced(claimed, target)


def _rename(claimed: "Claimed", target: str, failure: str) -> None:
    try:
        os.rename(claimed.path, target)
    except OSError as exc:
        raise CaptureError("%s: %s" % (failure, exc.strerror))


def _synced(claimed: "Claimed", target: str) -> str:
    fsync_dir_quietly(os.path.dirname(target))
    fsync_dir_quietly(os.path.dirname(claimed.path))
    return target


def _free_name(folder: str, name: str, also_free: str = "") -> str:
    """`name`, or `stem-N.ext` with the smallest N making it (and
    name+also_free, e.g. its reason file) unused in `folder`; shortened
    first where name + suffixes would pass the 255-byte limit."""
    name = fit_name(name, reserve=name_bytes(also_free) + _SUFFIX_ROOM)
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
        # settings.on_success is one of ON_SUCCESS: its field rule, checked by load_config
        self.root = root
        self.on_success = settings.on_success
        self._lock = threading.Lock()         # guards _unsynced (held for a set operation only)
        self._sync_lock = threading.Lock()    # a second syncer waits for the fsync in progress
        self._move_lock = threading.Lock()    # a free name is chosen and taken by one thread at a time
        self._unsynced = set()   # type: Set[str]   folders a claim renamed out of, not yet fsynced
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

    def claim(self, path: str, max_bytes: Optional[int] = None) -> Optional[Claimed]:
        """Move `path` into processing/ and hash it; None if it vanished or
        is not a regular file. A file over `max_bytes`, or one that cannot
        be read, is claimed unread with `.problem` set."""
        t0 = time.perf_counter()
        name = os.path.basename(path)
        try:
            if not stat.S_ISREG(os.lstat(path).st_mode):
                return None       # swapped for a link/FIFO/folder since the scan: a stray
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise CaptureError("cannot look at a file in %s: %s" % (os.path.dirname(path), exc.strerror))
        target = os.path.join(self.processing, _free_name(self.processing, name))
        try:
            os.rename(path, target)
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise CaptureError("cannot claim a file from %s into %s: %s"     # its name is not looked at yet
                               % (os.path.dirname(path), self.processing, exc.strerror))
        fsync_dir_quietly(self.processing)
        with self._lock:                  # fsynced before this file moves on (module docstring)
            self._unsynced.add(os.path.dirname(path) or ".")
        try:
            claimed = self.describe(target, name, time.time(), max_bytes)
        except FileNotFoundError:
            return None   # removed from processing/ by someone else meanwhile
        claimed.claim_ms = (time.perf_counter() - t0) * 1000.0
        return claimed

    def unclaim(self, claimed: Claimed) -> str:
        """Put a file whose writer is not done back into incoming/ (it will
        settle again); returns its path there."""
        self._sync_claim_sources()
        with self._move_lock:      # the name is taken by the rename; the syncs need no lock
            name = os.path.basename(claimed.name)       # as the cart wrote it, unless another took it
            if os.path.lexists(os.path.join(self.incoming, name)):
                name = _free_name(self.incoming, name)
            target = os.path.join(self.incoming, name)
            _rename(claimed, target, "cannot return %s to incoming/" % claimed.label)
        return _synced(claimed, target)

    def _sync_claim_sources(self) -> None:
        """fsync the folders claims renamed files out of since the last call:
        before any claimed file moves on, its removal there is durable. A
        caller finding the set just taken by another waits for that fsync to
        end; claims are not held up by it."""
        with self._sync_lock:
            with self._lock:
                folders, self._unsynced = self._unsynced, set()
            for folder in sorted(folders):
                fsync_dir_quietly(folder)

    def changed(self, claimed: Claimed) -> bool:
        """True if the file's size or mtime differ from when it was read."""
        if claimed.stat_key is None:
            return False
        try:
            st = os.lstat(claimed.path)
        except OSError:
            return False
        return (st.st_size, st.st_mtime_ns) != claimed.stat_key

    def finish(self, claimed: Claimed) -> Optional[str]:
        """Move to done/ (returns the new path) or delete (returns None)."""
        self._sync_claim_sources()
        if self.on_success == "delete":
            try:
                os.unlink(claimed.path)
                fsync_dir(self.processing)
            except OSError as exc:
                raise CaptureError("cannot finish %s: %s" % (claimed.label, exc.strerror))
            return None
        with self._move_lock:      # the name is taken by the rename; the syncs need no lock
            target = os.path.join(self.done, _free_name(self.done, os.path.basename(claimed.name)))
            _rename(claimed, target, "cannot finish %s" % claimed.label)
        return _synced(claimed, target)

    def reject(self, claimed: Claimed, code: str, reason: str,
               details: Optional[Dict[str, Any]] = None) -> str:
        """Move to rejected/ with a reason file; returns the file's new path.
        The reason file is written first, so a file in rejected/ never lacks
        one (a crash in between leaves the file in processing/, redone)."""
        self._sync_claim_sources()
        with self._move_lock:
            return self._reject_locked(claimed, code, reason, details)

    def _reject_locked(self, claimed: Claimed, code: str, reason: str,
                       details: Optional[Dict[str, Any]]) -> str:
        name = _free_name(self.rejected, os.path.basename(claimed.name), REASON_SUFFIX)
        target = os.path.join(self.rejected, name)
        record = {
            "code": code,
            "reason": reason,
            "details": details or {},
            "sha256": claimed.sha256 or None,
            "original_name": claimed.label,
            "rejected_at": _utc_iso(time.time()),
        }
        self._write_atomic(target + REASON_SUFFIX,
                           json.dumps(record, indent=2, sort_keys=True, default=str) + "\n")
        try:
            return _move(claimed, target, "cannot move %s to %s" % (claimed.label, self.rejected))
        except CaptureError:
            self._remove_quietly(target + REASON_SUFFIX)
            raise

    @staticmethod
    def stray(path: str) -> Claimed:
        """A non-regular entry (FIFO, folder, symlink) as a Claimed: no
        content, so it is labelled only neutrally."""
        return Claimed(path=path, name=os.path.basename(path), sha256="", size=0, claimed_at=time.time())

    def quarantine_stray(self, stray: Claimed, code: str, reason: str) -> str:
        """Move a stray out of incoming/ into rejected/ with a reason file.
        Renaming moves the entry itself: a link is not followed and a FIFO
        is never opened."""
        return self.reject(stray, code, reason)

    def leftovers(self, max_bytes: Optional[int] = None) -> List[Claimed]:
        """Files a crash left in processing/, re-hashed to be processed again.
        A file that vanishes meanwhile is skipped; one that cannot be read
        comes back with `.problem` set, like a fresh claim."""
        found = []
        try:
            names = sorted(os.listdir(self.processing))
        except OSError as exc:
            raise CaptureError("cannot list %s: %s" % (self.processing, exc.strerror))
        for name in names:
            path = os.path.join(self.processing, name)
            try:
                st = os.lstat(path)
                if not stat.S_ISREG(st.st_mode):
                    continue
                found.append(self.describe(path, name, st.st_ctime, max_bytes))  # the claim's rename set ctime
            except FileNotFoundError:
                continue
        return found

    def describe(self, path: str, name: str, claimed_at: float,
                 max_bytes: Optional[int] = None) -> Claimed:
        """Stat, then read and hash a claimed file. The size is checked
        before a byte is read; a file over `max_bytes` is never opened for
        reading, so a sparse multi-GiB file costs no memory."""
        def unusable(code: str, message: str, size: int = 0) -> Claimed:
            return Claimed(path=path, name=name, sha256="", size=size, claimed_at=claimed_at,
                           problem=(code, message))
        try:
            fd = os.open(path, _OPEN_FLAGS)
        except FileNotFoundError:
            raise
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                return unusable("not_a_file", "a symbolic link, not an image file")
            return unusable("unreadable", "file cannot be read by the appliance's user (%s)"
                            % exc.strerror)
        try:
            with os.fdopen(fd, "rb") as f:
                st = os.fstat(f.fileno())
                if not stat.S_ISREG(st.st_mode):
                    return unusable("not_a_file", "not a regular file")
                if max_bytes is not None and st.st_size > max_bytes:
                    return unusable("too_large", "file is %.1f MB, larger than the %.0f MB limit "
                                    "(decode.max_file_mb); refused unread"
                                    % (st.st_size / 1048576.0, max_bytes / 1048576.0), st.st_size)
                data, sha256, size = _read_and_hash(f, st.st_size, max_bytes)
                after = os.fstat(f.fileno())
        except OSError as exc:
            return unusable("unreadable", "file cannot be read (%s)" % exc.strerror)
        claimed = Claimed(path=path, name=name, sha256=sha256, size=size, claimed_at=claimed_at,
                          data=data, stat_key=(after.st_size, after.st_mtime_ns))
        claimed.changing = (size != st.st_size or (after.st_size, after.st_mtime_ns)
                            != (st.st_size, st.st_mtime_ns))
        if max_bytes is not None and size > max_bytes:
            claimed.problem = ("too_large", "file grew past the %.0f MB limit (decode.max_file_mb) "
                               "while it was read" % (max_bytes / 1048576.0))
        return claimed

    @staticmethod
    def _remove_quietly(path: str) -> None:
        try:
            os.unlink(path)
        except OSError:
            pass

    def _write_atomic(self, path: str, text: str) -> None:
        tmp = os.path.join(os.path.dirname(path), "." + os.path.basename(path) + ".tmp")
        try:
            with open(tmp, "w", encoding="utf-8") as f:
                f.write(text)
                f.flush()
                os.fsync(f.fileno())
            os.rename(tmp, path)
        except OSError as exc:
            self._remove_quietly(tmp)     # a full disk must not leave half files behind
            raise CaptureError("cannot write a reason file in %s: %s" % (os.path.dirname(path), exc.strerror))
        fsync_dir_quietly(os.path.dirname(path))


def _read_and_hash(f, size: int, max_bytes: Optional[int]) -> Tuple[Optional[bytes], str, int]:
    """(content if small enough to keep, sha256, bytes read). Reads at most
    one byte past the limit, so a file that grows while read stays bounded."""
    cap = (max_bytes + 1) if max_bytes is not None else None
    if size <= KEEP_BYTES_UP_TO:
        # Ask for the size the file has plus one byte, not for `cap`: a read
        # allocates what it is asked for before it shrinks the result, and
        # 512 MB asked for an 8 MB film cost 4.8 ms against 0.8. A file that
        # grew while read (it filled size + 1) is read on, still bounded by cap.
        want = size + 1 if cap is None else min(cap, size + 1)
        data = f.read(want)
        if len(data) == want and (cap is None or want < cap):
            data += f.read() if cap is None else f.read(cap - want)
        return data, hashlib.sha256(data).hexdigest(), len(data)
    digest, total = hashlib.sha256(), 0
    while cap is None or total < cap:
        chunk = f.read(_CHUNK if cap is None else min(_CHUNK, cap - total))
        if not chunk:
            break
        digest.update(chunk)
        total += len(chunk)
    return None, digest.hexdigest(), total
