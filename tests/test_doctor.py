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
    # the configured model is the FP32 reference: no "max abs 0" for FP32 against itself
    parity = line(text, "parity:segmenter")[0]
    assert parity.startswith("OK") and "nothing to compare" in parity and "max abs" not in parity
    broker = line(text, "broker")[0]
    assert broker.startswith("FAIL") and "cannot connect" in broker and "fix:" in text
    assert code == 1


def test_tensorrt_backend_fails_with_fix_hints(settings):
    settings.models.backend = "tensorrt"
    code, text = doctor(settings)
    assert code == 1
    assert line(text, "gpu/tensorrt")[0].startswith("FAIL")
    eng = line(text, "engine:classifier")[0]
    assert eng.startswith("FAIL") and "no fp16 engine" in eng
    assert "python3 -m build_engine --onnx %s --device xavier_nx --precision fp16" % settings.models.classifier in text
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
    fp32 = settings.models.classifier
    build_cpu_int8(fp32, load_profile("cpu"), progress=None)
    settings.models.classifier = settings.models.classifier[:-5] + ".int8.onnx"
    _, text = doctor(settings)
    parity = line(text, "parity:classifier")[0]
    assert "onnxruntime int8 vs FP32 (%s)" % os.path.basename(fp32) in parity and "generated phantom" in parity
    diff = float(parity.split("max prob diff ")[1].split()[0])
    assert diff > 0          # a real comparison: INT8 is not bit-identical to FP32


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


# -- the broker, as the appliance meets it: TLS, credentials, a publish with PUBACK ----------

needs_passwd = pytest.mark.skipif(shutil.which("mosquitto_passwd") is None, reason="mosquitto_passwd not installed")
needs_openssl = pytest.mark.skipif(shutil.which("openssl") is None, reason="openssl CLI not installed")


def password_file(tmp_path):
    path = tmp_path / "passwd"
    subprocess.run(["mosquitto_passwd", "-b", "-c", str(path), "cart", "s3cret-Pw"], check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return str(path)


def use_broker(settings, broker, tmp_path, password=None, **tls):
    settings.mqtt.port = broker.port
    if password is not None:
        secret = tmp_path / "mqtt.secret"
        secret.write_text(password + "\n")
        settings.mqtt.username, settings.mqtt.password_file = "cart", str(secret)
    if tls:
        settings.mqtt.tls.enabled = True
        settings.mqtt.tls.ca_file = tls["ca_file"]


@needs_passwd
def test_wrong_password_fails_with_the_brokers_reason(settings, make_mosquitto, tmp_path):
    broker = make_mosquitto(password_file=password_file(tmp_path))
    use_broker(settings, broker, tmp_path, password="wrong-Pw")
    code, text = doctor(settings)
    broker_line = line(text, "broker")[0]
    assert broker_line.startswith("FAIL") and "refused the connection" in broker_line
    assert "Not authorized" in broker_line or "Bad user name or password" in broker_line
    assert "user cart" in broker_line and "wrong-Pw" not in text and code == 1
    use_broker(settings, broker, tmp_path, password="s3cret-Pw")
    _, text = doctor(settings)
    assert line(text, "broker")[0].startswith("OK") and "acknowledged" in line(text, "broker")[0]


@needs_passwd
@needs_openssl
def test_tls_with_a_wrong_password_and_with_an_untrusted_ca(settings, make_mosquitto, tmp_path):
    from tests.test_alerts_publisher import _make_certs
    pki = _make_certs(tmp_path)
    broker = make_mosquitto(password_file=password_file(tmp_path), tls=pki)
    use_broker(settings, broker, tmp_path, password="wrong-Pw", ca_file=pki["cafile"])
    _, text = doctor(settings)
    broker_line = line(text, "broker")[0]
    assert broker_line.startswith("FAIL") and "(TLS, user cart)" in broker_line
    assert "refused the connection" in broker_line
    use_broker(settings, broker, tmp_path, password="s3cret-Pw", ca_file=pki["cafile"])
    _, text = doctor(settings)
    assert line(text, "broker")[0].startswith("OK")
    (tmp_path / "other").mkdir()
    other = _make_certs(tmp_path / "other")     # a CA that did not sign the broker's certificate
    use_broker(settings, broker, tmp_path, password="s3cret-Pw", ca_file=other["cafile"])
    _, text = doctor(settings)
    assert line(text, "broker")[0].startswith("FAIL") and "TLS handshake" in line(text, "broker")[0]


def test_a_publish_the_brokers_acl_drops_is_a_failure(settings, make_mosquitto, tmp_path):
    acl = tmp_path / "acl"
    acl.write_text("topic readwrite somewhere/else/#\n")
    broker = make_mosquitto(extra=["acl_file %s" % acl])
    use_broker(settings, broker, tmp_path)
    _, text = doctor(settings)
    broker_line = line(text, "broker")[0]
    assert broker_line.startswith("FAIL") and "refused our publish" in broker_line and "Not authorized" in broker_line
