"""Attack suite: the store heals. A corrupt database is moved aside, a new
one created, the event logged and queued, and what the old outbox still
holds is carried over; a missing database with films in done/ is reported;
every store failure is a one-line StoreError."""
import glob
import json
import os
import sqlite3
import subprocess
import sys

import pytest

import edge.store
from edge.app import Appliance
from edge.errors import StoreError
from edge.store import Store
from tests.attack_kit import dicom_bytes, drop, settings_for
from tests.mosquitto import free_port

pytestmark = pytest.mark.slow


def offline_settings(tmp_path):
    """No broker on this port: alerts stay unsent in the outbox."""
    return settings_for(tmp_path, free_port())


def process_films(settings, n: int) -> int:
    """Alert n films without threads or broker; returns the outbox depth."""
    app = Appliance(settings)
    try:
        for i in range(n):
            path = drop(app.folders.incoming, "film%d.dcm" % i, dicom_bytes(40 + i))
            assert app.process(app.folders.claim(os.fsdecode(path))).state == "alerted"
        return app.outbox.depth()
    finally:
        app.stop()


def outbox_events(app):
    return [json.loads(r.payload) for r in app.outbox.pending(1000) if r.kind == "event"]


def test_random_bytes_over_the_database_header_heal_at_start(tmp_path):
    settings = offline_settings(tmp_path)
    process_films(settings, 2)
    path = os.path.join(settings.state_dir, edge.store.DB_NAME)
    with open(path, "r+b") as f:
        f.write(os.urandom(4096))
    app = Appliance(settings)                 # used to be a raw DatabaseError and exit 1, every restart
    try:
        events = outbox_events(app)
        assert app.store.healed is not None and app.store.healed.unreadable
        assert glob.glob(path + ".corrupt-*")
        assert [e["fields"]["code"] for e in events] == ["store_corrupt"]
        path2 = drop(app.folders.incoming, "after.dcm", dicom_bytes(49))
        assert app.process(app.folders.claim(os.fsdecode(path2))).state == "alerted"
    finally:
        app.stop()


def _page_of(path: str, table: str):
    conn = sqlite3.connect(path)
    try:
        page_size = conn.execute("PRAGMA page_size").fetchone()[0]
        root = conn.execute("SELECT rootpage FROM sqlite_master WHERE name = ?", (table,)).fetchone()[0]
    finally:
        conn.close()
    return page_size, root


def test_a_damaged_page_elsewhere_heals_and_carries_the_unsent_outbox_over(tmp_path):
    settings = offline_settings(tmp_path)
    unsent = process_films(settings, 3)
    assert unsent >= 3
    path = os.path.join(settings.state_dir, edge.store.DB_NAME)
    page_size, root = _page_of(path, "capture_ledger")
    with open(path, "r+b") as f:
        f.seek((root - 1) * page_size)
        f.write(b"\xa5" * page_size)
    app = Appliance(settings)
    try:
        healed = app.store.healed
        assert healed is not None and not healed.unreadable
        assert healed.carried_over == unsent
        kinds = sorted(r.kind for r in app.outbox.pending(1000))
        assert kinds.count("alert") == 3 and kinds.count("event") == 1
    finally:
        app.stop()


def test_a_missing_database_with_films_in_done_is_reported(tmp_path, caplog):
    settings = offline_settings(tmp_path)
    process_films(settings, 2)
    for p in glob.glob(os.path.join(settings.state_dir, edge.store.DB_NAME + "*")):
        os.unlink(p)
    caplog.set_level("ERROR")
    app = Appliance(settings)
    try:
        events = outbox_events(app)
    finally:
        app.stop()
    assert [(e["fields"]["code"], e["fields"]["files_in_done"]) for e in events] == [("store_missing", 2)]
    assert "database" in caplog.text and "missing" in caplog.text


HOLD = """
import sqlite3, sys, time
c = sqlite3.connect(sys.argv[1], isolation_level=None); c.execute("BEGIN IMMEDIATE")
print("locked", flush=True); time.sleep(5)
"""


def test_a_locked_store_is_a_one_line_store_error_not_a_sqlite_traceback(tmp_path, monkeypatch):
    monkeypatch.setattr(edge.store, "BUSY_TIMEOUT_S", 0.2, raising=False)
    store = Store(str(tmp_path / "state"))
    locker = subprocess.Popen([sys.executable, "-c", HOLD, store.path], stdout=subprocess.PIPE)
    try:
        assert locker.stdout.readline().strip() == b"locked"
        fresh = Store(str(tmp_path / "state"))
        with pytest.raises(StoreError) as info:
            with fresh.transaction() as conn:
                conn.execute("SELECT 1")
    finally:
        locker.kill()
        locker.wait()
    assert "locked" in str(info.value) and "\n" not in str(info.value)


def test_a_database_that_is_a_folder_is_a_one_line_store_error(tmp_path):
    os.makedirs(str(tmp_path / "state" / edge.store.DB_NAME))
    with pytest.raises(StoreError) as info:
        Store(str(tmp_path / "state"))
    assert "\n" not in str(info.value) and edge.store.DB_NAME in str(info.value)
