"""pneumo-edge doctor on this machine: no GPU, real ONNX Runtime, a real mosquitto when present."""
import io
import os
import shutil
import socket
import subprocess
import time

import pytest

from build_engine.tiny_models import make_classifier, make_segmenter
from edge.doctor import run_doctor
from edge.inference.tensorrt import tensorrt_available
from edge.settings import Settings

pytestmark = pytest.mark.skipif(tensorrt_available()[0], reason="pins the no-TensorRT behaviour")
MOSQUITTO = "/usr/sbin/mosquitto"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def settings(tmp_path):
    s = Settings()
    s.models.classifier = make_classifier(str(tmp_path / "models"), size=32, width=4)
    s.models.segmenter = make_segmenter(str(tmp_path / "models"), size=32, width=4)
    s.models.engine_dir = str(tmp_path / "engines")
    s.capture.dir = str(tmp_path / "capture")
    os.makedirs(os.path.join(s.capture.dir, "incoming"))
    s.state_dir = str(tmp_path / "state")
    s.mqtt.port = free_port()      # nothing listens there
    return s


def doctor(settings):
    out = io.StringIO()
    code = run_doctor(settings, out)
    return code, out.getvalue()


def line(text, name):
    return [l for l in text.splitlines() if l[6:].startswith(name)]


def test_onnxruntime_backend_warns_about_tensorrt_and_checks_the_rest(settings):
    code, text = doctor(settings)
    assert line(text, "gpu/tensorrt")[0].startswith("WARN") and "tensorrt not importable" in text
    assert line(text, "model:classifier")[0].startswith("OK")
    assert line(text, "engines")[0].startswith("OK")          # not needed for onnxruntime
    assert line(text, "capture")[0].startswith("OK")
    assert line(text, "parity:segmenter")[0].startswith("OK") and "generated phantom" in text
    broker = line(text, "broker")[0]
    assert broker.startswith("FAIL") and "cannot connect" in broker and "fix:" in text
    assert code == 1


def test_tensorrt_backend_fails_with_fix_hints(settings):
    settings.models.backend = "tensorrt"
    code, text = doctor(settings)
    assert code == 1
    assert line(text, "gpu/tensorrt")[0].startswith("FAIL")
    eng = line(text, "engine:classifier")[0]
    assert eng.startswith("FAIL") and "no int8 engine" in eng
    assert "python3 -m build_engine --onnx %s --device xavier_nx --precision int8" % settings.models.classifier in text
    assert line(text, "parity:classifier")[0].startswith("FAIL")


def test_unwritable_capture_folder_fails(settings):
    if os.getuid() == 0:
        pytest.skip("root can write anywhere")
    incoming = os.path.join(settings.capture.dir, "incoming")
    os.chmod(incoming, 0o500)
    try:
        _, text = doctor(settings)
    finally:
        os.chmod(incoming, 0o700)
    assert line(text, "capture")[0].startswith("FAIL") and "chown" in text


def test_int8_variant_parity_against_its_fp32_source(settings):
    from build_engine.cpu_variant import build_cpu_int8
    from build_engine.profiles import load_profile
    build_cpu_int8(settings.models.classifier, load_profile("cpu"), progress=None)
    settings.models.classifier = settings.models.classifier[:-5] + ".int8.onnx"
    _, text = doctor(settings)
    assert "onnxruntime int8 vs FP32" in line(text, "parity:classifier")[0]


@pytest.mark.skipif(not os.path.exists(MOSQUITTO), reason="mosquitto not installed")
def test_reachable_broker_is_ok(settings, tmp_path):
    conf = tmp_path / "m.conf"
    conf.write_text("listener %d 127.0.0.1\nallow_anonymous true\n" % settings.mqtt.port)
    proc = subprocess.Popen([MOSQUITTO, "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for _ in range(50):
            try:
                socket.create_connection(("127.0.0.1", settings.mqtt.port), timeout=0.2).close()
                break
            except OSError:
                time.sleep(0.1)
        _, text = doctor(settings)
    finally:
        proc.terminate()
        proc.wait(5)
    assert line(text, "broker")[0].startswith("OK")
