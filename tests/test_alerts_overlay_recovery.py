"""The alert goes out before its overlay; a crash between the two commits
loses neither. A real appliance process is SIGKILLed after the alert's
transaction and before the overlay's (tests/stall_after_alert.py), then
restarted: the overlay (and the results for PACS) are rendered from the
file left in processing/ and match what an uncrashed run queues, byte for
byte."""
import os
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys

import pytest

from edge.app import Appliance
from edge.config import load_config
from edge.stages.overlay_recovery import finding_from_json, finding_to_json
from edge.store import DB_NAME
from edge.types import Finding
from tests.mosquitto import Subscriber
from tests.test_appliance import ROOT, drop_dicom, received, start_process, wait_msgs, wait_until
from tests.test_appliance import write_config as appliance_config


def test_a_finding_survives_its_pending_row_exactly():
    f = Finding(pneumothorax=True, probability=0.123456789012, seg_max_probability=0.98765,
                area_px=1234, area_fraction=0.0123456789, area_cm2=None, side="right",
                bbox=(40, 100, 160, 161), contours=[[(40, 100), (199, 100), (199, 260)], [(1, 2), (3, 4), (5, 6)]],
                segmenter_skipped=False, reasons=["mask"], classifier_probability=0.5)
    back = finding_from_json(finding_to_json(f))
    assert back == f and isinstance(back.bbox, tuple)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def write_config(tmp_path, port: int) -> str:
    """Overlays on, results for PACS on (to a port nobody listens on: they stay queued)."""
    return appliance_config(tmp_path, port, "pacs:\n  enabled: true\n  host: 127.0.0.1\n  port: %d\n"
                            "  called_ae: NOBODY\n  retry_min_s: 60\n  timeout_s: 2\n" % free_port())


def db_rows(tmp_path, sql, *args):
    conn = sqlite3.connect(str(tmp_path / "state" / DB_NAME))
    try:
        return conn.execute(sql, args).fetchall()
    finally:
        conn.close()


def uncrashed_overlay(tmp_path, config: str, film: str):
    """What a run without a crash queues for the same film: (alert_id, overlay JPEG)."""
    settings = load_config(config)
    settings.state_dir = str(tmp_path / "ref-state")
    settings.capture.dir = str(tmp_path / "ref-capture")
    settings.pacs.enabled = False
    app = Appliance(settings)
    try:
        target = os.path.join(app.folders.incoming, os.path.basename(film))
        shutil.copy(film, target)
        outcome = app.process(app.folders.claim(target))
        assert outcome.state == "alerted"
        (jpeg,), = app.store.connection().execute(
            "SELECT payload FROM outbox WHERE kind = 'overlay' AND alert_id = ?", (outcome.alert_id,)).fetchall()
        return outcome.alert_id, bytes(jpeg)
    finally:
        app.stop()


@pytest.mark.slow
def test_sigkill_between_the_alert_and_its_overlay_then_restart_queues_the_overlay_and_pacs_results(
        tmp_path, mosquitto):
    config = write_config(tmp_path, mosquitto.port)
    capture = tmp_path / "capture"
    incoming, processing, done = capture / "incoming", capture / "processing", capture / "done"
    incoming.mkdir(parents=True)
    staged = tmp_path / "staged"
    staged.mkdir()
    film = drop_dicom(str(staged), "bed3.dcm", seed=7, positive=True)
    keep = str(tmp_path / "bed3-copy.dcm")
    shutil.copy(film, keep)
    flag = str(tmp_path / "stalled")
    log = str(tmp_path / "run.log")
    topics = "pneumo/ward-4/cart-9/"
    with Subscriber(mosquitto.port, [topics + "alert", topics + "overlay/#"]) as sub:
        proc = subprocess.Popen([sys.executable, "-m", "tests.stall_after_alert", flag, "run", "--config", config],
                                cwd=ROOT, stdout=open(log, "ab"), stderr=subprocess.STDOUT)
        try:
            wait_until(lambda: os.path.exists(str(processing)), 60, "the appliance to start")
            os.rename(film, str(incoming / "bed3.dcm"))
            wait_until(lambda: os.path.exists(flag), 60, "the alert's transaction")
            alert_id = open(flag).read().split()[0]
            # the alert is out while the overlay's transaction has not even begun
            wait_msgs(sub, lambda: received(sub, topics + "alert"), 30, "the alert")
            assert not received(sub, topics + "overlay/#")
            proc.send_signal(signal.SIGKILL)
            proc.wait(10)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait(10)
        # What the crash left: the file in processing/, the alert queued, its overlay and results not.
        assert os.listdir(str(processing)) == ["bed3.dcm"] and os.listdir(str(done)) == []
        assert db_rows(tmp_path, "SELECT alert_id FROM overlay_pending") == [(alert_id,)]
        assert db_rows(tmp_path, "SELECT kind FROM outbox WHERE alert_id = ?", alert_id) == [("alert",)]
        assert db_rows(tmp_path, "SELECT COUNT(*) FROM pacs_outbox") == [(0,)]

        proc = start_process(config, log)
        try:
            wait_msgs(sub, lambda: received(sub, topics + "overlay/" + alert_id), 60, "the recovered overlay")
            wait_until(lambda: os.listdir(str(done)) == ["bed3.dcm"], 30, "the file in done/")
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(30)
    assert proc.returncode == 0, open(log).read()[-2000:]
    assert os.listdir(str(processing)) == []
    overlay = received(sub, topics + "overlay/" + alert_id)[0].payload
    assert {m.payload for m in received(sub, topics + "alert")} and len(
        {m.topic for m in received(sub, topics + "overlay/#")}) == 1
    # the same picture an uncrashed run draws: decoded again, drawn from the stored Finding
    ref_id, ref_jpeg = uncrashed_overlay(tmp_path, config, keep)
    assert ref_id == alert_id and overlay == ref_jpeg
    assert db_rows(tmp_path, "SELECT COUNT(*) FROM overlay_pending") == [(0,)]
    pacs = dict(db_rows(tmp_path, "SELECT kind, overlay FROM pacs_outbox WHERE alert_id = ?", alert_id))
    assert set(pacs) == {"overlay_sc", "report_sr"} and bytes(pacs["overlay_sc"]) == overlay
    assert "without its overlay; rendering it now" in open(log).read()


def test_a_pending_overlay_is_not_recovered_while_this_process_has_it_in_hand(tmp_path):
    settings = load_config(write_config(tmp_path, 1883))
    settings.pacs.enabled = False
    app = Appliance(settings)
    after = app._after
    alert = {"alert_id": "a" * 32, "finding": {"pneumothorax": False}}
    f = Finding(pneumothorax=False, probability=0.1, seg_max_probability=None, area_px=0, area_fraction=0.0,
                area_cm2=None, side=None, bbox=None)
    try:
        for _ in range(2):                               # two copies in flight on two threads
            with app.store.transaction() as conn:
                after.remember(conn, "c0ffee", alert, f, "DEMO")
        assert after.pending("c0ffee") is None          # a copy arriving now is a duplicate
        after.release("c0ffee")
        assert after.pending("c0ffee") is None          # the other copy still has it in hand
        after.release("c0ffee")
        got = after.pending("c0ffee")                    # as after a crash: recoverable
        assert (got.alert_id, got.alert, got.finding, got.label) == ("a" * 32, alert, f, "DEMO")
        assert db_rows(tmp_path, "SELECT COUNT(*) FROM overlay_pending") == [(1,)]   # committed, on disk
    finally:
        app.stop()
