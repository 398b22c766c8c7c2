"""End to end: files in the capture folder -> alerts on a real mosquitto.

Tiny ONNX models (tests/tiny_models.py) make the outcome predictable: a
radiograph with a saturated block is positive on the block's side, one
without is negative.
"""
import glob
import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from paho.mqtt.client import topic_matches_sub

from edge.alerts.schema import decode as decode_payload
from edge.app import Appliance
from edge.inference.manifest import load_manifest
from edge.inference.onnxruntime import OnnxRuntimeBackend
from edge.pipeline import Pipeline
from edge.settings import CaptureSettings, ModelSettings, MqttSettings, Settings
from tests.dicom_factory import write_dicom, write_png
from tests.mosquitto import Subscriber
from tests.tiny_models import write_tiny_models

pytestmark = pytest.mark.slow
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ALERT_FIELDS = {"schema_version", "alert_id", "created_at", "site", "device", "source", "finding",
                "thresholds", "models", "timings_ms", "intended_use"}


def radiograph_pixels(seed: int, positive: bool, h: int = 600, w: int = 500) -> np.ndarray:
    """12-bit pixels around 1000 (about 0.25 after the window below); a positive
    image gets a block at 4000 (about 0.98) in the image's left half."""
    rng = np.random.default_rng(seed)
    px = rng.normal(1000, 60, (h, w)).clip(0, 4095).astype(np.uint16)
    if positive:
        px[100:260, 40:200] = 4000
    return px


def drop_dicom(incoming: str, name: str, seed: int, positive: bool, size=(600, 500), **kw) -> str:
    """Write elsewhere, then rename into incoming/, as a careful cart does."""
    tmp = os.path.join(os.path.dirname(incoming), name + ".part")
    write_dicom(tmp, radiograph_pixels(seed, positive, *size), bits_stored=12, window=(2048, 4096),
                sop_instance_uid="1.2.826.0.1.3680043.8.498.%d" % (seed + 1), **kw)
    dest = os.path.join(incoming, name)
    os.rename(tmp, dest)
    return dest


def make_settings(tmp_path, port: int, **mqtt) -> Settings:
    cls, seg = write_tiny_models(str(tmp_path / "models"))
    return Settings(
        site="ward-4", device="cart-7", state_dir=str(tmp_path / "state"),
        # Short settle and grace: tests drop whole files by rename; tests of a pausing writer set their own.
        capture=CaptureSettings(dir=str(tmp_path / "capture"), settle_s=0.1, poll_interval_s=0.05,
                                write_grace_s=1.0),
        models=ModelSettings(classifier=cls, segmenter=seg, threads=1, warmup=1),
        mqtt=MqttSettings(host="127.0.0.1", port=port, reconnect_min_s=0.2, reconnect_max_s=1.0,
                          keepalive_s=5, **mqtt),
    )


def wait_until(predicate, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError("timed out after %.0f s waiting for %s" % (timeout, what))


@pytest.fixture
def appliance(tmp_path, mosquitto):
    app = Appliance(make_settings(tmp_path, mosquitto.port))
    yield app
    app.stop()


def received(sub: Subscriber, topic_filter: str):
    """Messages on topics matching an MQTT filter (wildcards allowed)."""
    return [m for m in list(sub.messages) if topic_matches_sub(topic_filter, m.topic)]


def alerts_from(sub: Subscriber, topic: str):
    return [decode_payload(m.payload) for m in received(sub, topic)]


def wait_msgs(sub: Subscriber, predicate, timeout: float, what: str = "messages"):
    if not sub.wait_for(lambda _s: predicate(), timeout):
        raise AssertionError("timed out after %.0f s waiting for %s; got %s" % (timeout, what, sub.messages))


def test_n_files_dropped_give_n_alerts_with_the_documented_fields(appliance, mosquitto):
    topics = appliance.topics
    with Subscriber(mosquitto.port, [topics.alert, topics.base + "/overlay/#", topics.status]) as sub:
        appliance.start()
        incoming = appliance.folders.incoming
        for i in range(4):
            drop_dicom(incoming, "img%d.dcm" % i, seed=i, positive=(i % 2 == 0))
        wait_msgs(sub, lambda: len(received(sub, topics.alert)) >= 4, 30)
        # At-least-once: a message may arrive twice, so count distinct topics.
        wait_msgs(sub, lambda: len({m.topic for m in received(sub, topics.base + "/overlay/#")}) >= 4, 30)
        alerts = {a["source"]["file_name"]: a for a in alerts_from(sub, topics.alert)}
    assert sorted(alerts) == ["img0.dcm", "img1.dcm", "img2.dcm", "img3.dcm"]
    for name, a in alerts.items():
        assert ALERT_FIELDS <= set(a)
        assert a["schema_version"] == 1 and a["site"] == "ward-4" and a["device"] == "cart-7"
        assert a["intended_use"] == "untrained"
        assert {m["name"] for m in a["models"]} == {"tiny-classifier", "tiny-segmenter"}
        assert {"read_ms", "decode_ms", "classify_ms"} <= set(a["timings_ms"])
        assert "overlay_ms" not in a["timings_ms"]     # the alert is queued before its overlay is drawn
    pos, neg = alerts["img0.dcm"]["finding"], alerts["img1.dcm"]["finding"]
    assert pos["pneumothorax"] and pos["side"] == "right" and pos["area_cm2"] > 0
    x, y, w, h = pos["bbox"]
    assert abs(x - 40) <= 10 and abs(y - 100) <= 10 and abs(w - 160) <= 20 and abs(h - 160) <= 20
    assert not neg["pneumothorax"] and neg["side"] is None
    overlays = received(sub, topics.base + "/overlay/#")
    assert all(m.payload[:2] == b"\xff\xd8" for m in overlays)          # JPEG
    assert {m.topic.rsplit("/", 1)[1] for m in overlays} == {a["alert_id"] for a in alerts.values()}
    assert sorted(os.listdir(appliance.folders.done)) == sorted(alerts)
    assert os.listdir(appliance.folders.processing) == []
    status = json.loads(received(sub, topics.status)[-1].payload)
    assert status["state"] == "online" and status["backend"] == "onnxruntime"


def test_garbage_is_rejected_with_a_reason_and_an_event_and_the_next_file_still_alerts(appliance, mosquitto):
    topics = appliance.topics
    with Subscriber(mosquitto.port, [topics.alert, topics.event]) as sub:
        appliance.start()
        incoming = appliance.folders.incoming
        with open(os.path.join(incoming, "garbage.dcm"), "wb") as fh:
            fh.write(os.urandom(5000))
        wait_msgs(sub, lambda: received(sub, topics.event), 30)
        drop_dicom(incoming, "good.dcm", seed=7, positive=True)
        wait_msgs(sub, lambda: received(sub, topics.alert), 30)
    event = decode_payload(received(sub, topics.event)[0].payload)
    assert event["kind"] == "rejected" and event["fields"]["code"] == "not_an_image"
    # Unrecognised content has no header to say whose name it may carry: labelled by its sha256 only.
    assert event["fields"]["file_name"] == "file-" + event["fields"]["sha256"][:12]
    reason = json.load(open(os.path.join(appliance.folders.rejected, "garbage.dcm.reason.json")))
    assert reason["code"] == "not_an_image" and reason["reason"]
    assert alerts_from(sub, topics.alert)[0]["source"]["file_name"] == "good.dcm"


def test_an_identical_file_sent_again_is_not_alerted_twice(appliance, mosquitto):
    topics = appliance.topics
    with Subscriber(mosquitto.port, [topics.alert, topics.event]) as sub:
        appliance.start()
        original = drop_dicom(os.path.dirname(appliance.folders.incoming), "a.dcm", seed=3, positive=True)
        data = open(original, "rb").read()

        def send(name):                         # the very same bytes each time
            dest = os.path.join(appliance.folders.incoming, name)
            with open(dest + ".part", "wb") as fh:
                fh.write(data)
            os.rename(dest + ".part", dest)

        send("a.dcm")
        wait_msgs(sub, lambda: received(sub, topics.alert), 30)
        send("a-again.dcm")
        wait_msgs(sub, lambda: received(sub, topics.event), 30)
        time.sleep(0.5)
    assert len(received(sub, topics.alert)) == 1
    assert decode_payload(received(sub, topics.event)[0].payload)["kind"] == "duplicate"


def test_broker_down_at_start_then_up_delivers_every_alert(tmp_path, mosquitto):
    mosquitto.stop()
    app = Appliance(make_settings(tmp_path, mosquitto.port))
    try:
        app.start()
        for i in range(3):
            drop_dicom(app.folders.incoming, "late%d.dcm" % i, seed=20 + i, positive=bool(i % 2))
        wait_until(lambda: len(os.listdir(app.folders.done)) == 3, 30, "3 files processed")
        assert app.outbox.depth() >= 3          # alerts wait on disk while the broker is down
        mosquitto.start()
        with Subscriber(mosquitto.port, [app.topics.alert]) as sub:
            # QoS 1 messages are not retained: subscribe, then wait for the backlog.
            wait_msgs(sub, lambda: len({decode_payload(m.payload)["alert_id"]
                                      for m in received(sub, app.topics.alert)}) == 3, 30)
        wait_until(lambda: app.outbox.depth() == 0, 30, "the outbox to drain")
    finally:
        app.stop()


def test_patient_name_and_birth_date_never_leave_the_device(tmp_path, mosquitto, caplog):
    caplog.set_level("DEBUG")
    app = Appliance(make_settings(tmp_path, mosquitto.port))
    try:
        with Subscriber(mosquitto.port, [app.topics.base + "/#"]) as sub:
            app.start()
            drop_dicom(app.folders.incoming, "phi.dcm", seed=9, positive=True,
                       patient_name="Smith^Johanna", birth_date="19480213")
            wait_msgs(sub, lambda: received(sub, app.topics.alert), 30)
            everything = b"".join(m.payload for m in received(sub, app.topics.base + "/#"))
    finally:
        app.stop()
    for secret in (b"Smith", b"Johanna", b"19480213"):
        assert secret not in everything
        assert secret.decode() not in caplog.text


# -- the appliance as a process: SIGKILL mid-stream, restart, nothing lost ----------------

def write_config(tmp_path, port: int, more: str = "") -> str:
    """A config file for a real `pneumo-edge run` on tiny models; `more`: further YAML sections."""
    cls, seg = write_tiny_models(str(tmp_path / "models"))
    path = tmp_path / "edge.yaml"
    path.write_text(
        "site: ward-4\ndevice: cart-9\nstate_dir: %s\n"
        "capture:\n  dir: %s\n  settle_s: 0.1\n  write_grace_s: 1\n  poll_interval_s: 0.05\n"
        "models:\n  classifier: %s\n  segmenter: %s\n  threads: 1\n  warmup: 1\n"
        "mqtt:\n  host: 127.0.0.1\n  port: %d\n  reconnect_min_s: 0.2\n  reconnect_max_s: 1.0\n"
        % (tmp_path / "state", tmp_path / "capture", cls, seg, port) + more)
    return str(path)


def start_process(config: str, log_path: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "edge.cli", "run", "--config", config],
                            cwd=ROOT, stdout=open(log_path, "ab"), stderr=subprocess.STDOUT)


def test_sigkill_mid_stream_and_restart_loses_nothing(tmp_path, mosquitto):
    config = write_config(tmp_path, mosquitto.port)
    capture = tmp_path / "capture"
    incoming, processing, done = capture / "incoming", capture / "processing", capture / "done"
    incoming.mkdir(parents=True)
    n = 12
    staged = tmp_path / "staged"
    staged.mkdir()
    for i in range(n):   # large films, so each takes long enough to be caught in flight
        drop_dicom(str(staged), "k%02d.dcm" % i, seed=100 + i, positive=bool(i % 3 == 0), size=(2500, 2500))
    with Subscriber(mosquitto.port, ["pneumo/ward-4/cart-9/alert"]) as sub:
        proc = start_process(config, str(tmp_path / "run.log"))
        try:
            wait_until(lambda: os.path.exists(str(processing)), 60, "the appliance to start")
            for name in sorted(os.listdir(str(staged))):
                os.rename(str(staged / name), str(incoming / name))
            # Kill while a file is in processing/ and some are already done.
            wait_until(lambda: len(os.listdir(str(done))) >= 2 and os.listdir(str(processing)), 60,
                       "a file in flight after 2 done")
            proc.send_signal(signal.SIGKILL)
            proc.wait(10)
            in_flight = os.listdir(str(processing)) + os.listdir(str(incoming))
            proc = start_process(config, str(tmp_path / "run.log"))
            wait_msgs(sub, lambda: len({decode_payload(m.payload)["source"]["file_name"]
                                        for m in received(sub, "pneumo/ward-4/cart-9/alert")}) == n, 90)
            # The alerts can all be out before the first process is killed (its overlays
            # follow them on the after-alert thread): every file still ends in done/.
            wait_until(lambda: len(os.listdir(str(done))) == n, 90, "every file in done/ after the restart")
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(30)
    assert in_flight, "the kill came after every file was through; nothing was recovered"
    alerts = [decode_payload(m.payload) for m in received(sub, "pneumo/ward-4/cart-9/alert")]
    assert {a["source"]["file_name"] for a in alerts} == {"k%02d.dcm" % i for i in range(n)}
    assert len({a["alert_id"] for a in alerts}) == n         # duplicates allowed, none missing
    assert os.listdir(str(processing)) == []
    assert os.listdir(str(incoming)) == []
    assert len(os.listdir(str(done))) == n
    assert proc.returncode == 0, open(str(tmp_path / "run.log")).read()[-2000:]


def test_sigterm_finishes_cleanly_and_says_offline(tmp_path, mosquitto):
    config = write_config(tmp_path, mosquitto.port)
    with Subscriber(mosquitto.port, ["pneumo/ward-4/cart-9/status"]) as sub:
        proc = start_process(config, str(tmp_path / "run.log"))
        wait_msgs(sub, lambda: any(json.loads(m.payload)["state"] == "online"
                                 for m in received(sub, "pneumo/ward-4/cart-9/status")), 60)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0
        wait_msgs(sub, lambda: json.loads(received(sub, "pneumo/ward-4/cart-9/status")[-1].payload)["state"]
                     == "offline", 30)


def test_png_is_alerted_too(appliance, mosquitto):
    with Subscriber(mosquitto.port, [appliance.topics.alert]) as sub:
        appliance.start()
        px = np.full((400, 400), 60, np.uint8)
        px[50:150, 300:380] = 255                       # image right half -> patient's left
        write_png(os.path.join(appliance.folders.incoming, "film.png"), px)
        wait_msgs(sub, lambda: received(sub, appliance.topics.alert), 30)
    f = alerts_from(sub, appliance.topics.alert)[0]["finding"]
    assert f["pneumothorax"] and f["side"] == "left" and f["area_cm2"] is None


class FailingOnceBackend(OnnxRuntimeBackend):
    """A real ONNX Runtime backend whose Nth call fails, as a GPU fault would."""

    def __init__(self, manifest, fail_on_call: int):
        super().__init__(manifest, threads=1)
        self.calls, self.fail_on_call = 0, fail_on_call

    def run(self, tensor):
        self.calls += 1
        if self.calls == self.fail_on_call:
            raise RuntimeError("CUDA error 700: an illegal memory access was encountered")
        return super().run(tensor)


def test_a_fault_on_one_image_rejects_it_and_the_next_image_is_alerted(tmp_path, mosquitto):
    settings = make_settings(tmp_path, mosquitto.port)
    cls = FailingOnceBackend(load_manifest(settings.models.classifier), fail_on_call=2)
    seg = OnnxRuntimeBackend(load_manifest(settings.models.segmenter), threads=1)
    app = Appliance(settings, pipeline=Pipeline(cls, seg))
    try:
        with Subscriber(mosquitto.port, [app.topics.alert, app.topics.event]) as sub:
            app.start()
            cls.calls = 0                       # count from the first real image, after warm-up
            for i in range(3):
                drop_dicom(app.folders.incoming, "f%d.dcm" % i, seed=40 + i, positive=True)
                assert app.outcomes.get(timeout=30).name == "f%d.dcm" % i   # one at a time, in order
            wait_msgs(sub, lambda: len(received(sub, app.topics.alert)) >= 2 and received(sub, app.topics.event), 30)
    finally:
        app.stop()
    assert sorted(a["source"]["file_name"] for a in alerts_from(sub, app.topics.alert)) == ["f0.dcm", "f2.dcm"]
    event = decode_payload(received(sub, app.topics.event)[0].payload)
    assert event["kind"] == "fault" and "CUDA error 700" in event["message"]
    reason = json.load(open(os.path.join(app.folders.rejected, "f1.dcm.reason.json")))
    assert reason["code"] == "fault"
    assert app.counts()["faults"] == 1
