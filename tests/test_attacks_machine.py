"""Attack suite: the machine misbehaves (store locked, disk full, a film the
service user cannot read). Files wait and are retried, or are rejected with
a reason; the process never exits and restarts never loop."""
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time

import pytest

import edge.store
from edge.alerts.schema import decode as decode_payload
from edge.app import Appliance
from tests.attack_kit import collect, dicom_bytes, drop, settings_for, wait_until
from tests.mosquitto import Subscriber
from tests.test_appliance import ROOT, received
from tests.tiny_models import write_tiny_models

pytestmark = pytest.mark.slow
NOBODY = 65534


# -- a film the service user cannot read, run as an unprivileged user ------------

def _unprivileged_prefix():
    """Root reads mode-000 files, so as root the appliance is run as
    `nobody` (setpriv); as any other user it runs as that user."""
    if os.geteuid() != 0:
        return []
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        pytest.skip("running as root without setpriv: cannot make a file unreadable")
    return [setpriv, "--reuid=%d" % NOBODY, "--regid=%d" % NOBODY, "--clear-groups"]


@pytest.fixture
def open_tmp():
    """A temp dir that `nobody` can reach (pytest's tmp_path is root-only)."""
    path = tempfile.mkdtemp(prefix="pneumo-attack-")
    os.chmod(path, 0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


def test_unreadable_films_as_an_unprivileged_user_are_rejected_and_the_process_lives(open_tmp, mosquitto):
    prefix = _unprivileged_prefix()
    cls, seg = write_tiny_models(os.path.join(open_tmp, "models"))
    capture, state = os.path.join(open_tmp, "capture"), os.path.join(open_tmp, "state")
    for sub in ("incoming", "processing", "done", "rejected"):
        os.makedirs(os.path.join(capture, sub))
    os.makedirs(state)
    if prefix:
        for d in [capture, state] + [os.path.join(capture, s) for s in os.listdir(capture)]:
            os.chown(d, NOBODY, NOBODY)
    # a crash left an unreadable film in processing/: every restart used to die on it
    left = os.path.join(capture, "processing", "left.dcm")
    with open(left, "wb") as f:
        f.write(dicom_bytes(11))
    os.chmod(left, 0)
    config = os.path.join(open_tmp, "edge.yaml")
    with open(config, "w") as f:
        f.write("site: ward-4\ndevice: cart-9\nstate_dir: %s\ncapture:\n  dir: %s\n  settle_s: 0.1\n  write_grace_s: 1\n"
                "  poll_interval_s: 0.05\nmodels:\n  classifier: %s\n  segmenter: %s\n  threads: 1\n"
                "  warmup: 1\nmqtt:\n  host: 127.0.0.1\n  port: %d\n  reconnect_min_s: 0.2\n"
                "  reconnect_max_s: 1.0\n" % (state, capture, cls, seg, mosquitto.port))
    log_path = os.path.join(open_tmp, "run.log")
    base = "pneumo/ward-4/cart-9/"
    with Subscriber(mosquitto.port, [base + "alert", base + "event"]) as sub:
        proc = subprocess.Popen(prefix + [sys.executable, "-m", "edge.cli", "run", "--config", config],
                                cwd=ROOT, stdout=open(log_path, "wb"), stderr=subprocess.STDOUT,
                                env=dict(os.environ, PYTHONPATH=ROOT, HOME=open_tmp))
        try:
            locked = os.path.join(open_tmp, "locked.dcm")
            with open(locked, "wb") as f:
                f.write(dicom_bytes(12))
            os.chmod(locked, 0)
            os.rename(locked, os.path.join(capture, "incoming", "locked.dcm"))
            drop(os.path.join(capture, "incoming"), "good.dcm", dicom_bytes(13))
            os.mkdir(os.path.join(capture, "incoming", "cart-folder.dcm"))   # as root: not ours to move
            ok = sub.wait_for(lambda s: received(s, base + "alert") and len(received(s, base + "event")) >= 3, 90)
            alive = proc.poll() is None
        finally:
            proc.send_signal(signal.SIGTERM)
            rc = proc.wait(30)
    log = open(log_path, errors="replace").read()
    assert ok, log[-3000:]
    assert alive and rc == 0, log[-3000:]
    codes = {decode_payload(m.payload)["fields"]["file_name"]: decode_payload(m.payload)["fields"]["code"]
             for m in received(sub, base + "event")}
    # Refused unread, or not a file: no content to look at, so named neutrally (names.safe_label).
    assert sorted(codes.values()) == ["not_a_file", "unreadable", "unreadable"]
    assert all(name.startswith("unread-") for name in codes)
    assert [decode_payload(m.payload)["source"]["file_name"] for m in received(sub, base + "alert")] == ["good.dcm"]
    assert os.listdir(os.path.join(capture, "processing")) == []
    # a folder the service user may not move is reported once and left; everything else is gone
    assert os.listdir(os.path.join(capture, "incoming")) == (["cart-folder.dcm"] if prefix else [])
    assert len([m for m in received(sub, base + "event") if b"not_a_file" in m.payload]) == 1
    assert "Traceback" not in log, log[-3000:]


# -- the store's write lock held by another process past the busy timeout ---------

HOLD_LOCK = """
import sqlite3, sys, time
conn = sqlite3.connect(sys.argv[1], isolation_level=None)
conn.execute("BEGIN IMMEDIATE")
print("locked", flush=True)
time.sleep(float(sys.argv[2]))
conn.execute("COMMIT")
"""


def test_a_store_locked_past_the_busy_timeout_defers_the_file_then_alerts_it(tmp_path, mosquitto, monkeypatch):
    if hasattr(edge.store, "BUSY_TIMEOUT_S"):
        monkeypatch.setattr(edge.store, "BUSY_TIMEOUT_S", 0.5)
    hold_s = getattr(edge.store, "BUSY_TIMEOUT_S", 30.0) + 3.0     # longer than any writer waits
    app = Appliance(settings_for(tmp_path, mosquitto.port))
    try:
        app.start()
        locker = subprocess.Popen([sys.executable, "-c", HOLD_LOCK, app.store.path, str(hold_s)],
                                  stdout=subprocess.PIPE)
        assert locker.stdout.readline().strip() == b"locked"
        drop(app.folders.incoming, "during-lock.dcm", dicom_bytes(14))
        outcomes = collect(app, 1, timeout=hold_s + 90)
        locker.wait(hold_s + 10)
        assert all(t.is_alive() for t in app._threads)
    finally:
        app.stop()
    assert outcomes[0].state == "alerted"
    assert app.counts()["deferred"] >= 1
    assert os.listdir(app.folders.done) == ["during-lock.dcm"]


# -- the free-space floor -------------------------------------------------------

def test_below_the_free_space_floor_nothing_is_claimed_and_it_resumes_by_itself(tmp_path, mosquitto):
    app = Appliance(settings_for(tmp_path, mosquitto.port, min_free_mb=1e12))   # more than any disk has
    try:
        with Subscriber(mosquitto.port, [app.topics.event, app.topics.status]) as sub:
            app.start()
            drop(app.folders.incoming, "waits.dcm", dicom_bytes(15))
            time.sleep(1.5)
            assert os.listdir(app.folders.incoming) == ["waits.dcm"]
            assert app.status()["disk"]["paused"] is True
            app.disk.floor_mb = 0.0                           # space "returns"
            (outcome,) = collect(app, 1)
            wait_until(lambda: len(received(sub, app.topics.event)) >= 2, 20, "disk events")
            codes = [decode_payload(m.payload)["fields"]["code"] for m in received(sub, app.topics.event)]
            statuses = [json.loads(m.payload) for m in received(sub, app.topics.status)]
    finally:
        app.stop()
    assert outcome.state == "alerted"
    assert codes[:2] == ["disk_low", "disk_ok"]
    assert any(s.get("disk", {}).get("paused") for s in statuses)
    assert app.status()["disk"]["floor_mb"] == 0.0


@pytest.fixture
def small_tmpfs(tmp_path):
    """A 16 MiB tmpfs (root only); skips where mounting is not allowed."""
    mnt = tmp_path / "small"
    mnt.mkdir()
    if os.geteuid() != 0 or subprocess.call(["mount", "-t", "tmpfs", "-o", "size=16m", "tmpfs", str(mnt)],
                                            stderr=subprocess.DEVNULL) != 0:
        pytest.skip("cannot mount a small tmpfs here (needs root and CAP_SYS_ADMIN)")
    yield mnt
    subprocess.call(["umount", "-l", str(mnt)])


def _fill(folder) -> str:
    path = os.path.join(str(folder), "filler")
    with open(path, "wb") as f:
        try:
            while True:
                f.write(b"\0" * 65536)
                f.flush()
        except OSError:
            pass
    return path


def test_a_full_disk_under_a_rejection_defers_it_until_space_returns(small_tmpfs, tmp_path, mosquitto):
    settings = settings_for(tmp_path, mosquitto.port, dir=str(small_tmpfs / "capture"), min_free_mb=0)
    settings.state_dir = str(small_tmpfs / "state")
    app = Appliance(settings)
    try:
        app.start()
        staged = os.path.join(str(small_tmpfs), "capture", "garbage.dcm.part")
        with open(staged, "wb") as f:
            f.write(os.urandom(3000))
        filler = _fill(small_tmpfs)
        os.rename(staged, os.path.join(app.folders.incoming, "garbage.dcm"))
        first = collect(app, 1, final=False)[0]
        assert first.state == "deferred"                      # reason file / ledger cannot be written
        assert all(t.is_alive() for t in app._threads)
        os.unlink(filler)
        (outcome,) = collect(app, 1, timeout=90)
    finally:
        app.stop()
    assert outcome.state == "rejected"
    assert sorted(os.listdir(app.folders.rejected)) == ["garbage.dcm", "garbage.dcm.reason.json"]
    assert os.listdir(app.folders.processing) == []


# -- a file that fails like the machine while other files go through ---------------

class CursedAppliance(Appliance):
    """Completing one particular film always fails with a folder error, as a
    file the store or folders choke on would; every other film is fine."""

    def complete(self, item, worker=-1):
        if item.claimed.name == "cursed.dcm":
            from edge.errors import CaptureError
            raise CaptureError("cannot finish cursed.dcm: Invalid argument")
        return super().complete(item, worker)


def test_a_file_that_keeps_failing_while_others_pass_ends_rejected_not_retried_for_ever(tmp_path, mosquitto,
                                                                                       monkeypatch):
    import edge.capture.retry
    monkeypatch.setattr(edge.capture.retry, "BACKOFF_MIN_S", 0.05)
    app = CursedAppliance(settings_for(tmp_path, mosquitto.port))
    try:
        app.start()
        drop(app.folders.incoming, "cursed.dcm", dicom_bytes(16))
        assert collect(app, 1, final=False)[0].state == "deferred"
        drop(app.folders.incoming, "fine.dcm", dicom_bytes(17))
        outcomes = {o.name: o for o in collect(app, 2, timeout=60)}
    finally:
        app.stop()
    assert outcomes["fine.dcm"].state == "alerted"
    assert outcomes["cursed.dcm"].state == "rejected"
    record = json.load(open(os.path.join(app.folders.rejected, "cursed.dcm.reason.json")))
    assert record["code"] == "unprocessable" and "Invalid argument" in record["reason"]
    assert os.listdir(app.folders.processing) == []
