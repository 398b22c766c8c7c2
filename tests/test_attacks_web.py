"""Attack suite: the display's HTTP API (edge/web/) from a hostile client.
Found by driving a real DisplayServer over raw sockets:
- an ack of 5,000 nested JSON arrays raised RecursionError: no reply, the
  connection dropped, a traceback on stderr;
- an ack with Content-Length -1 read until the client closed (a thread held);
- a predict body shorter than its Content-Length held a thread for ever
  (no socket timeout);
- a film the not-a-chest gate refuses came back as 413 "too large";
- an unexpected exception in predict dropped the connection unanswered and
  socketserver printed its traceback, message included, to stderr."""
import io
import json
import logging
import socket
import threading
import time
import urllib.parse

import pydicom
import pytest

from edge import logsetup
from edge.app import build_pipeline
from edge.web import server as web_server
from edge.web.predict import Predictor
from edge.web.server import DisplayServer
from edge.web.state import DisplayState
from tests.attack_kit import PATIENT_NAME, SECRETS, dicom_bytes
from tests.test_appliance import make_settings


@pytest.fixture(scope="module")
def settings(tmp_path_factory):
    return make_settings(tmp_path_factory.mktemp("web-attacks"), 1)


@pytest.fixture(scope="module")
def pipeline(settings):
    p = build_pipeline(settings)
    yield p
    p.close()


def serve(settings, pipeline):
    srv = DisplayServer(("127.0.0.1", 0), DisplayState(history=3), None,
                        Predictor(settings, "web-attack", pipeline), settings)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    return srv


@pytest.fixture
def server(settings, pipeline):
    srv = serve(settings, pipeline)
    yield srv
    srv.shutdown()
    srv.server_close()


@pytest.fixture
def logged():
    buf = io.StringIO()
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    logsetup.setup_logging("INFO", stream=buf)
    yield buf
    for h in root.handlers[:]:
        if h not in saved[0]:
            root.removeHandler(h)
    root.setLevel(saved[1])


def exchange(srv, raw: bytes, timeout: float = 10.0) -> bytes:
    """Send raw bytes, read until the server closes; b"<silence>" if it does not in time."""
    with socket.create_connection(srv.server_address[:2], timeout=timeout) as conn:
        conn.sendall(raw)
        out = b""
        try:
            while True:
                chunk = conn.recv(65536)
                if not chunk:
                    return out
                out += chunk
        except socket.timeout:
            return out + b"<silence>"


def post(path: str, body: bytes, content_type: str, length=None) -> bytes:
    return (("POST %s HTTP/1.1\r\nHost: x\r\nContent-Type: %s\r\nContent-Length: %s\r\n"
             "Connection: close\r\n\r\n" % (path, content_type, len(body) if length is None else length))
            .encode() + body)


def status_and_json(reply: bytes):
    head, _, body = reply.partition(b"\r\n\r\n")
    return int(head.split()[1]), json.loads(body)


def test_an_ack_nested_thousands_deep_is_a_400(server, capfd):
    reply = exchange(server, post("/api/v1/ack", b"[" * 5000 + b"]" * 5000, "application/json"))
    status, body = status_and_json(reply)
    assert status == 400 and body["rejected"] == "bad_request"
    assert "Traceback" not in capfd.readouterr().err


def test_an_ack_with_a_negative_length_is_a_400_at_once(server):
    reply = exchange(server, post("/api/v1/ack", b"{}", "application/json", length=-1), timeout=5)
    assert b"<silence>" not in reply
    assert status_and_json(reply)[0] == 400


def test_a_body_shorter_than_its_length_does_not_hold_a_thread_for_ever(settings, pipeline, monkeypatch):
    assert web_server.Handler.timeout is not None and web_server.Handler.timeout <= 60
    monkeypatch.setattr(web_server.Handler, "timeout", 1.0)     # the same path, quicker
    srv = serve(settings, pipeline)
    try:
        t0 = time.monotonic()
        reply = exchange(srv, post("/api/v1/predict", b"DICM", "application/dicom", length=5000), timeout=10)
        assert b"<silence>" not in reply, "the server still holds the connection after 10 s"
        assert time.monotonic() - t0 < 8
    finally:
        srv.shutdown()
        srv.server_close()


def test_a_film_the_gate_refuses_is_422_with_its_code(server):
    ds = pydicom.dcmread(io.BytesIO(dicom_bytes(7)))
    ds.BodyPartExamined = "HAND"
    out = io.BytesIO()
    ds.save_as(out)
    status, body = status_and_json(exchange(server, post("/api/v1/predict", out.getvalue(), "application/dicom")))
    assert status == 422 and body["rejected"] == "not_a_chest_radiograph"


class BrokenPipeline:
    """A pipeline fault whose message quotes a file value (as numpy/pydicom errors do)."""

    def run(self, image):
        raise ValueError("invalid literal for int() with base 10: %r" % PATIENT_NAME)

    def close(self):
        pass


def test_an_unexpected_fault_in_predict_is_a_500_reply_without_the_message(settings, logged, capfd):
    srv = serve(settings, BrokenPipeline())
    try:
        reply = exchange(srv, post("/api/v1/predict", dicom_bytes(8), "application/dicom"))
    finally:
        srv.shutdown()
        srv.server_close()
    status, body = status_and_json(reply)
    assert status == 500 and body["rejected"] == "fault"
    everything = (reply + capfd.readouterr().err.encode() + logged.getvalue().encode())
    assert b"Traceback" not in everything
    for secret in SECRETS[:2]:
        assert secret not in everything


def test_an_upload_name_with_a_newline_cannot_forge_a_log_line(server, logged):
    forged = "film.dcm\n2030-01-01T00:00:00.000Z ERROR edge.app: forged"
    reply = exchange(server, post("/api/v1/predict?name=" + urllib.parse.quote(forged), dicom_bytes(10),
                                  "application/dicom"))
    status, body = status_and_json(reply)
    assert status == 200
    # escaped, and its date-like run masked as in any file name
    assert body["alert"]["source"]["file_name"] == "film.dcm\\x0a***T00:00:00.000Z ERROR edge.app: forged"
    assert not [line for line in logged.getvalue().splitlines() if line.startswith("2030-")]
