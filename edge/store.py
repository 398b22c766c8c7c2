"""The appliance's one SQLite database: ledger (capture) and outbox (alerts).

One file so that "this image is done" and "this alert must be sent" commit
in a single transaction: a power cut leaves either both or neither.
WAL mode lets the publisher read while the worker writes. Each thread gets
its own connection (sqlite3 objects must not cross threads).

The store heals: a database SQLite calls corrupt (or not a database at all)
is moved aside as `<name>.corrupt-<UTC time>` with its -wal/-shm, a new one
is created, and `healed` says so; the outbox then carries over what it can
still read from the old file (edge.alerts.outbox). Every failure leaves as a
StoreError with a one-line message, never a raw sqlite3 traceback.
"""
import contextlib
import os
import sqlite3
import threading
import time
from dataclasses import dataclass
from typing import Iterator, Optional

from edge.errors import StoreError

DB_NAME = "pneumo-edge.sqlite3"
BUSY_TIMEOUT_S = 30.0    # a writer waits this long for another's lock, then gets a StoreError

# Errors that mean "this file is damaged", as opposed to locked, full or unwritable.
_CORRUPT_HINTS = ("malformed", "not a database", "file is encrypted", "disk image",
                  "unsupported file format")


@dataclass
class Healed:
    """A corrupt database was replaced by a new one."""
    moved_to: str               # where the damaged file now lies
    reason: str                 # SQLite's one-line complaint
    carried_over: int = 0       # unsent outbox rows copied into the new database
    unreadable: bool = False    # nothing could be read from the old outbox
    outbox_salvaged: bool = False


def one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__


def is_corruption(exc: BaseException) -> bool:
    text = str(exc).lower()
    return isinstance(exc, sqlite3.DatabaseError) and any(h in text for h in _CORRUPT_HINTS)


class Store:
    def __init__(self, state_dir: str):
        self.path = os.path.join(state_dir, DB_NAME)
        try:
            os.makedirs(state_dir, exist_ok=True)
        except OSError as exc:
            raise StoreError("cannot create state directory %s: %s" % (state_dir, exc.strerror))
        self._local = threading.local()
        self.created = not os.path.exists(self.path)   # no database before: a first start, or lost
        self.healed = None  # type: Optional[Healed]
        try:
            self._open_and_check()
        except sqlite3.DatabaseError as exc:
            if not is_corruption(exc):
                raise StoreError("cannot open %s: %s" % (self.path, one_line(exc)))
            self.close()
            self.healed = Healed(self._move_aside(), one_line(exc))
            try:
                self._open_and_check()
            except sqlite3.Error as again:
                raise StoreError("cannot create a new database at %s: %s" % (self.path, one_line(again)))

    def _open_and_check(self) -> None:
        conn = self.connection()
        conn.execute("PRAGMA journal_mode=WAL")
        row = conn.execute("PRAGMA quick_check").fetchone()
        if row is None or row[0] != "ok":
            raise sqlite3.DatabaseError("database disk image is malformed (quick_check: %s)"
                                        % (row[0] if row else "no answer"))

    def _move_aside(self) -> str:
        stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
        moved = "%s.corrupt-%s" % (self.path, stamp)
        n = 1
        while os.path.lexists(moved):
            n += 1
            moved = "%s.corrupt-%s-%d" % (self.path, stamp, n)
        try:
            os.rename(self.path, moved)
            for suffix in ("-wal", "-shm"):
                if os.path.lexists(self.path + suffix):
                    os.rename(self.path + suffix, moved + suffix)
        except OSError as exc:
            raise StoreError("database %s is corrupt and cannot be moved aside: %s"
                             % (self.path, exc.strerror))
        return moved

    def connection(self) -> sqlite3.Connection:
        """This thread's connection (autocommit; use transaction() to group writes)."""
        conn = getattr(self._local, "conn", None)
        if conn is None:
            try:
                conn = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_S, isolation_level=None)
                conn.row_factory = sqlite3.Row
                conn.execute("PRAGMA synchronous=FULL")   # an alert must survive a power cut
                conn.execute("PRAGMA busy_timeout=%d" % int(BUSY_TIMEOUT_S * 1000))
            except sqlite3.DatabaseError as exc:
                if is_corruption(exc):
                    raise                              # __init__ heals it
                raise StoreError("cannot open %s: %s" % (self.path, one_line(exc)))
            self._local.conn = conn
        return conn

    def add_schema(self, sql: str) -> None:
        try:
            self.connection().executescript(sql)
        except sqlite3.Error as exc:
            raise StoreError("cannot create tables in %s: %s" % (self.path, one_line(exc)))

    @contextlib.contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """BEGIN IMMEDIATE ... COMMIT, rolled back on any exception. A lock
        held past the busy timeout, a full disk or an I/O error is a StoreError."""
        conn = self.connection()
        try:
            conn.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as exc:
            raise StoreError("cannot write to %s: %s" % (self.path, one_line(exc)))
        try:
            yield conn
        except BaseException:
            try:
                conn.execute("ROLLBACK")
            except sqlite3.Error:
                pass    # SQLite already rolled back (e.g. after SQLITE_FULL)
            raise
        try:
            conn.execute("COMMIT")
        except sqlite3.Error as exc:
            try:
                conn.execute("ROLLBACK")
            except sqlite3.Error:
                pass
            raise StoreError("cannot commit to %s: %s" % (self.path, one_line(exc)))

    def close(self) -> None:
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            try:
                conn.close()
            except sqlite3.Error:
                pass
            self._local.conn = None
