"""The appliance's one SQLite database: ledger (capture) and outbox (alerts).

One file so that "this image is done" and "this alert must be sent" commit
in a single transaction: a power cut leaves either both or neither.
WAL mode lets the publisher read while the worker writes. Each thread gets
its own connection (sqlite3 objects must not cross threads).
"""
import contextlib
import os
import sqlite3
import threading
from typing import Iterator, List

from edge.errors import StoreError

DB_NAME = "pneumo-edge.sqlite3"


class Store:
    def __init__(self, state_dir: str, schemas: List[str] = ()):
        self.path = os.path.join(state_dir, DB_NAME)
        try:
            os.makedirs(state_dir, exist_ok=True)
        except OSError as exc:
            raise StoreError("cannot create state directory %s: %s" % (state_dir, exc))
        self._local = threading.local()
        conn = self.connection()
        try:
            conn.execute("PRAGMA journal_mode=WAL")
            for sql in schemas:
                conn.executescript(sql)
        except sqlite3.Error as exc:
            raise StoreError("cannot initialise %s: %s" % (self.path, exc))

    def connection(self) -> sqlite3.Connection:
        """This thread's connection (autocommit; use transaction() to group writes)."""
        conn = getattr(self._local, "conn", None)
        if conn is None:
            try:
                conn = sqlite3.connect(self.path, timeout=30.0, isolation_level=None)
            except sqlite3.Error as exc:
                raise StoreError("cannot open %s: %s" % (self.path, exc))
            conn.row_factory = sqlite3.Row
            conn.execute("PRAGMA synchronous=FULL")   # an alert must survive a power cut
            conn.execute("PRAGMA busy_timeout=30000")
            self._local.conn = conn
        return conn

    def add_schema(self, sql: str) -> None:
        self.connection().executescript(sql)

    @contextlib.contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """BEGIN IMMEDIATE ... COMMIT, rolled back on any exception."""
        conn = self.connection()
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield conn
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        else:
            conn.execute("COMMIT")

    def close(self) -> None:
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None
