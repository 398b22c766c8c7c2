"""Attack suite: one hostile file must never stop the appliance.

Each test is a break found against an earlier version (the intake thread
died and the process exited, or a file sat in incoming/ or processing/ for
ever). Real folders, SQLite and mosquitto; inputs made at test time.
"""
import json
import os
import threading
import time

import psutil
import pytest

from edge.alerts.schema import decode as decode_payload
from edge.app import Appliance
from edge.errors import UnsupportedImage
from edge.app import build_pipeline
from edge.settings import CaptureSettings
from edge.decode.sniff import PNG_SIGNATURE
from edge.pipeline import Pipeline
from tests.attack_kit import collect, dicom_bytes, drop, reason_files, settings_for, wait_until
from tests.mosquitto import Subscriber
from tests.test_appliance import received

pytestmark = pytest.mark.slow


@pytest.fixture
def app(tmp_path, mosquitto):
    appliance = Appliance(settings_for(tmp_path, mosquitto.port))
    yield appliance
    appliance.stop()


def events(sub, app):
    return [decode_payload(m.payload) for m in received(sub, app.topics.event)]


def assert_alive_and_empty(app):
    assert all(t.is_alive() for t in app._threads), "an appliance thread died"
    assert os.listdir(app.folders.processing) == []
    assert os.listdir(app.folders.incoming) == []


def test_undecodable_newline_and_backslash_names_end_with_a_reason_and_escaped(app, mosquitto, caplog):
    caplog.set_level("INFO")
    with Subscriber(mosquitto.port, [app.topics.base + "/#"]) as sub:
        app.start()
        incoming = app.folders.incoming
        # A PNG signature, then garbage: content whose name may be shown (an
        # unrecognised file is labelled by its sha256 only, names.safe_label).
        drop(incoming, b"bad\xff.dcm", PNG_SIGNATURE + os.urandom(3000))
        drop(incoming, b"good\xfe.dcm", dicom_bytes(1))
        drop(incoming, "forged\n2030-01-01T00:00:00.000Z ERROR edge: fake.dcm", PNG_SIGNATURE + os.urandom(2000))
        drop(incoming, "ward\\4.dcm", dicom_bytes(2))
        outcomes = collect(app, 4)
        wait_until(lambda: len(received(sub, app.topics.alert)) >= 2 and len(events(sub, app)) >= 2, 20,
                   "2 alerts and 2 events")
    assert sorted(o.state for o in outcomes) == ["alerted", "alerted", "rejected", "rejected"]
    names = {a["source"]["file_name"] for a in (decode_payload(m.payload) for m in received(sub, app.topics.alert))}
    assert names == {"good\\xfe.dcm", "ward\\\\4.dcm"}          # escaped, not cut at the backslash
    assert {e["fields"]["file_name"] for e in events(sub, app)} == {
        "bad\\xff.dcm", "forged\\x0a***T00:00:00.000Z ERROR edge: fake.dcm"}   # a PNG's date-like run masked
    assert not any("\n" in r.getMessage() for r in caplog.records)   # no forged log line
    assert len(reason_files(app.folders.rejected)) == 2
    assert_alive_and_empty(app)


def test_250_byte_bad_name_and_255_byte_name_sent_twice(app, mosquitto):
    app.start()
    bad = "b" * 246 + ".dcm"                                    # its reason file would be 263 bytes
    long_name = "L" * 251 + ".dcm"                              # 255 bytes; a second copy needs "-1"
    drop(app.folders.incoming, bad, PNG_SIGNATURE + os.urandom(4000))
    assert collect(app, 1)[0].state == "rejected"
    drop(app.folders.incoming, long_name, dicom_bytes(3))
    assert collect(app, 1)[0].state == "alerted"
    drop(app.folders.incoming, long_name, dicom_bytes(4))      # same name, other film
    assert collect(app, 1)[0].state == "alerted"
    done = os.listdir(app.folders.done)
    assert len(done) == 2 and all(len(os.fsencode(n)) <= 255 for n in done)
    (reason,) = reason_files(app.folders.rejected)
    record = json.load(open(os.path.join(app.folders.rejected, reason)))
    assert record["original_name"] == bad and record["code"] == "corrupt"
    assert_alive_and_empty(app)


def test_non_regular_entries_are_moved_out_with_a_reason(app, mosquitto, tmp_path):
    outside = tmp_path / "outside.dcm"
    outside.write_bytes(dicom_bytes(5))
    with Subscriber(mosquitto.port, [app.topics.event]) as sub:
        app.start()
        incoming = app.folders.incoming
        os.mkfifo(os.path.join(incoming, "pipe.dcm"))
        os.mkdir(os.path.join(incoming, "folder.dcm"))
        os.symlink("/dev/zero", os.path.join(incoming, "zero.dcm"))
        os.symlink(str(outside), os.path.join(incoming, "outside.dcm"))
        outcomes = collect(app, 4)
        wait_until(lambda: len(events(sub, app)) >= 4, 20, "4 events")
    assert {o.state for o in outcomes} == {"rejected"}
    assert {e["fields"]["code"] for e in events(sub, app)} == {"not_a_file"}
    assert len(reason_files(app.folders.rejected)) == 4
    assert outside.read_bytes()[:4] != b""                     # the link's target is untouched
    assert os.path.islink(os.path.join(app.folders.rejected, "outside.dcm"))
    assert_alive_and_empty(app)


def test_sparse_multi_gib_file_is_refused_unread_without_memory_growth(app):
    app.start()
    path = os.path.join(os.path.dirname(app.folders.incoming), "huge.dcm")
    with open(path, "wb") as f:
        f.write(dicom_bytes(6)[:4096])
        f.truncate(3 * 1024 ** 3)                               # 3 GiB, nearly all holes
    proc = psutil.Process()
    peak = [proc.memory_info().rss]
    done = threading.Event()

    def sample():
        while not done.wait(0.01):
            peak[0] = max(peak[0], proc.memory_info().rss)
    sampler = threading.Thread(target=sample)
    before = proc.memory_info().rss
    sampler.start()
    try:
        os.rename(path, os.path.join(app.folders.incoming, "huge.dcm"))
        (outcome,) = collect(app, 1)
    finally:
        done.set()
        sampler.join()
    assert outcome.state == "rejected" and "refused unread" in outcome.reason
    record = json.load(open(os.path.join(app.folders.rejected, "huge.dcm.reason.json")))
    assert record["code"] == "too_large"
    assert peak[0] - before < 100 * 2 ** 20, "RSS grew by %.0f MB" % ((peak[0] - before) / 2 ** 20)


def test_a_writer_pausing_longer_than_settle_gets_its_file_returned_then_alerted(tmp_path, mosquitto):
    app = Appliance(settings_for(tmp_path, mosquitto.port, settle_s=0.3, watch="poll",
                                 write_grace_s=CaptureSettings().write_grace_s))
    data = dicom_bytes(7)
    try:
        app.start()
        path = os.path.join(app.folders.incoming, "slow.dcm")
        with open(path, "wb") as f:                             # a writer that does not rename
            f.write(data[:len(data) // 2])
            f.flush()
            # the appliance claims the half file after settle_s, finds it cut off, puts it back ...
            states = [collect(app, 1, final=False, timeout=10)[0].state]
            threading.Event().wait(0.15)
            f.write(data[len(data) // 2:])                      # ... and the writer resumes
            f.flush()
        while states[-1] not in ("alerted", "rejected"):
            states.append(collect(app, 1, final=False)[0].state)
    finally:
        app.stop()
    assert "returned" in states and states[-1] == "alerted", states
    assert os.listdir(app.folders.rejected) == []


def test_a_writer_pausing_for_seconds_mid_file_still_gets_its_alert(tmp_path, mosquitto):
    # Attack campaign, session 9: a pause of a few settle_s got the half file rejected as
    # corrupt; the writer then finished it inside rejected/ and no alert ever went out.
    app = Appliance(settings_for(tmp_path, mosquitto.port, settle_s=0.3, watch="poll",
                                 write_grace_s=CaptureSettings().write_grace_s))      # the default, 15 s
    data = dicom_bytes(8)
    try:
        app.start()
        path = os.path.join(app.folders.incoming, "paused.dcm")
        with open(path, "wb") as f:
            f.write(data[:len(data) // 3])
            f.flush()
            states = [collect(app, 1, final=False, timeout=10)[0].state]     # claimed, cut off, put back
            threading.Event().wait(4.0)                         # 13 x settle_s, well inside write_grace_s
            f.write(data[len(data) // 3:])
            f.flush()
        while states[-1] not in ("alerted", "rejected"):
            states.append(collect(app, 1, final=False, timeout=30)[0].state)
    finally:
        app.stop()
    assert states[-1] == "alerted" and "returned" in states, states
    assert os.listdir(app.folders.rejected) == []


def test_a_cut_off_file_is_rejected_once_unchanged_for_the_grace(tmp_path, mosquitto):
    app = Appliance(settings_for(tmp_path, mosquitto.port, settle_s=0.2, watch="poll", write_grace_s=2.0))
    data = dicom_bytes(9)
    old = os.path.join(tmp_path, "old.dcm")
    with open(old, "wb") as f:
        f.write(data[:len(data) // 2])
    os.utime(old, (time.time() - 3600, time.time() - 3600))    # an hour ago, by the writer's clock
    try:
        app.start()
        started = time.monotonic()
        os.rename(old, os.path.join(app.folders.incoming, "old.dcm"))
        first = collect(app, 1, timeout=30)[0]
        old_s = time.monotonic() - started
        with open(os.path.join(app.folders.incoming, "fresh.dcm"), "wb") as f:
            f.write(data[:len(data) // 2 + 1])                  # other bytes: not the ledger's verdict
        started = time.monotonic()
        second = collect(app, 1, timeout=30)[0]
        fresh_s = time.monotonic() - started
    finally:
        app.stop()
    # the grace is on the appliance's clock: an mtime an hour old (a cart's clock may be off) waits it too
    assert (first.name, first.state) == ("old.dcm", "rejected") and old_s >= 2.0
    assert (second.name, second.state) == ("fresh.dcm", "rejected") and fresh_s >= 2.0
    assert json.load(open(os.path.join(app.folders.rejected, "fresh.dcm.reason.json")))["code"] == "corrupt"


class NotAChestRadiograph(UnsupportedImage):
    code = "not_a_chest_radiograph"


class RefusingPipeline(Pipeline):
    """The real pipeline, refusing every image after the models ran, as a
    check that an image is not a chest radiograph would."""

    def infer(self, prepared):
        super().infer(prepared)
        raise NotAChestRadiograph("not a chest radiograph (test)")


def test_a_decode_error_raised_by_the_pipeline_is_a_rejection_with_its_own_code(tmp_path, mosquitto):
    settings = settings_for(tmp_path, mosquitto.port)
    real = build_pipeline(settings)
    app = Appliance(settings, pipeline=RefusingPipeline(real.classifier, real.segmenter, settings.decision))
    try:
        app.start()
        drop(app.folders.incoming, "lateralish.dcm", dicom_bytes(8))
        (outcome,) = collect(app, 1)
    finally:
        app.stop()
    assert outcome.state == "rejected"
    record = json.load(open(os.path.join(app.folders.rejected, "lateralish.dcm.reason.json")))
    assert record["code"] == "not_a_chest_radiograph"
    assert app.counts()["faults"] == 0
