"""The display server over real HTTP: predict, limits, auth, assets, SSE, acks over MQTT."""
import base64
import http.client
import json
import os
import socket
import urllib.error
import urllib.request
import uuid

import cv2
import numpy as np
import pytest

from edge.alerts.schema import decode as decode_payload
from edge.app import build_pipeline
from edge.web.mqtt_feed import MqttFeed
from edge.web.predict import Predictor
from edge.web.server import DisplayServer, STATIC_DIR
from edge.web.state import DisplayState
from tests.dicom_factory import chest_phantom, write_dicom
from tests.mosquitto import Subscriber
from tests.test_appliance import make_settings, wait_until

TOKEN = "s3cret-token-0123456789"


def start(server):
    import threading
    t = threading.Thread(target=server.serve_forever, daemon=True)
    t.start()
    return server


@pytest.fixture(scope="module")
def settings(tmp_path_factory):
    s = make_settings(tmp_path_factory.mktemp("web"), 1)
    s.decode.max_file_mb = 1.0
    return s


@pytest.fixture(scope="module")
def pipeline(settings):
    p = build_pipeline(settings)
    yield p
    p.close()


@pytest.fixture
def server(settings, pipeline):
    srv = start(DisplayServer(("127.0.0.1", 0), DisplayState(history=3), None,
                              Predictor(settings, "upload-test", pipeline), settings))
    yield srv
    srv.shutdown()
    srv.server_close()


def request(srv, method, path, body=None, headers=None):
    req = urllib.request.Request(srv.url.rstrip("/") + path, data=body, method=method,
                                 headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=60) as r:
            return r.status, r.read(), dict(r.headers)
    except urllib.error.HTTPError as e:
        return e.code, e.read(), dict(e.headers)


def multipart(name, data, field="file"):
    boundary = uuid.uuid4().hex
    body = (("--%s\r\nContent-Disposition: form-data; name=\"%s\"; filename=\"%s\"\r\n"
             "Content-Type: application/octet-stream\r\n\r\n" % (boundary, field, name)).encode()
            + data + ("\r\n--%s--\r\n" % boundary).encode())
    return body, {"Content-Type": "multipart/form-data; boundary=" + boundary}


def chest_bytes(tmp_path, positive=True, modality="DX"):
    px = chest_phantom(600, 500, seed=5).astype(np.int64)
    if positive:
        px[100:260, 40:200] = 4095
    path = write_dicom(str(tmp_path / "f.dcm"), px, window=(2048, 4096), modality=modality,
                       patient_name="Smith^Johanna")
    return open(path, "rb").read()


def test_predict_returns_the_alert_document_with_contours_and_the_overlay(server, tmp_path):
    status, body, _ = request(server, "POST", "/api/v1/predict", *multipart("bed3.dcm", chest_bytes(tmp_path)))
    assert status == 200, body
    out = json.loads(body)
    alert = out["alert"]
    assert alert["schema_version"] == 1 and alert["device"] == "upload-test"
    assert alert["source"]["file_name"] == "bed3.dcm"
    f = alert["finding"]
    assert f["pneumothorax"] and f["side"] == "right" and f["contours"]
    xs = [x for poly in f["contours"] for x, _ in poly]
    assert 30 <= min(xs) <= 50 and 190 <= max(xs) <= 210       # the block, in original pixels
    jpeg = cv2.imdecode(np.frombuffer(base64.b64decode(out["overlay_jpeg_base64"]), np.uint8), 1)
    assert jpeg.shape[1] == 500 and jpeg.shape[0] > 600           # radiograph + banner strip
    assert "NOT FOR CLINICAL USE" in out["warning"]
    assert b"Smith" not in body and b"Johanna" not in body


def test_predict_accepts_a_raw_png_body(server):
    px = np.full((400, 400), 60, np.uint8)
    ok, png = cv2.imencode(".png", px)
    status, body, _ = request(server, "POST", "/api/v1/predict?name=film.png", png.tobytes(),
                              {"Content-Type": "image/png"})
    assert status == 200 and json.loads(body)["alert"]["source"]["file_name"] == "film.png"


@pytest.mark.parametrize("what,code", [("mr", "wrong_modality"), ("garbage", "not_an_image")])
def test_bad_files_get_422_with_the_rejected_reason_codes(server, tmp_path, what, code):
    data = chest_bytes(tmp_path, modality="MR") if what == "mr" else os.urandom(3000)
    status, body, _ = request(server, "POST", "/api/v1/predict", *multipart("x.dcm", data))
    assert status == 422
    out = json.loads(body)
    assert out["rejected"] == code and out["reason"]


def test_too_large_is_refused_from_content_length_before_the_body_is_read(server):
    host, port = server.server_address[:2]
    with socket.create_connection((host, port), timeout=10) as s:
        s.sendall(b"POST /api/v1/predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/octet-stream\r\n"
                  b"Content-Length: 900000000000\r\n\r\n")       # and no body at all
        reply = b""
        while True:                                              # would time out if it waited for the body
            chunk = s.recv(65536)
            if not chunk:
                break
            reply += chunk
    head, _, rest = reply.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.0 413")
    assert json.loads(rest)["rejected"] == "too_large"


def test_malformed_uploads_get_400(server):
    body, headers = multipart("a.dcm", b"abc", field="other")
    headers["Content-Type"] = "multipart/form-data; boundary=wrong"
    status, out, _ = request(server, "POST", "/api/v1/predict", body, headers)
    assert status == 400 and json.loads(out)["rejected"] == "bad_request"
    status, out, _ = request(server, "POST", "/api/v1/predict", b"", {"Content-Type": "image/png"})
    assert status == 400


def test_openapi_and_the_page_assets_come_from_the_package(server):
    status, body, _ = request(server, "GET", "/api/v1/openapi.json")
    spec = json.loads(body)
    assert status == 200 and spec["openapi"].startswith("3.") and "/api/v1/predict" in spec["paths"]
    for path in ("/", "/upload", "/static/app.js", "/static/common.js", "/static/style.css"):
        status, body, headers = request(server, "GET", path)
        assert status == 200 and body
    for name in os.listdir(STATIC_DIR):                         # nothing from a CDN / the internet
        text = open(os.path.join(STATIC_DIR, name)).read().replace("http://www.w3.org/2000/svg", "")
        assert "http://" not in text and "https://" not in text, name
    assert request(server, "GET", "/static/../server.py")[0] == 404
    assert request(server, "GET", "/overlay/" + "0" * 32 + ".jpg")[0] == 404


def test_token_is_required_when_configured(settings):
    srv = start(DisplayServer(("127.0.0.1", 0), DisplayState(), None, None, settings, token=TOKEN))
    try:
        assert request(srv, "GET", "/api/v1/state")[0] == 401
        assert request(srv, "GET", "/")[0] == 401
        assert request(srv, "POST", "/api/v1/predict", b"x")[0] == 401
        assert request(srv, "GET", "/api/v1/state", headers={"Authorization": "Bearer wrong"})[0] == 401
        assert request(srv, "GET", "/api/v1/state", headers={"Authorization": "Bearer " + TOKEN})[0] == 200
        assert request(srv, "GET", "/healthz")[0] == 200
        host, port = srv.server_address[:2]
        conn = http.client.HTTPConnection(host, port, timeout=10)
        conn.request("GET", "/?token=" + TOKEN)
        r = conn.getresponse()
        cookie = r.getheader("Set-Cookie").split(";")[0]
        assert r.status == 303 and r.getheader("Location") == "/" and "HttpOnly" in r.getheader("Set-Cookie")
        conn.close()
        assert request(srv, "GET", "/", headers={"Cookie": cookie})[0] == 200
        assert request(srv, "POST", "/api/v1/predict", b"x", {"Cookie": cookie})[0] == 503   # predict off
    finally:
        srv.shutdown()
        srv.server_close()


def alert(n, positive=False):
    return {"alert_id": "%032x" % n, "site": "ward-4", "device": "cart-7", "created_at": "2024-05-01T08:30:00.000Z",
            "finding": {"pneumothorax": positive}, "source": {"file_name": "f%d.dcm" % n}}


def test_events_stream_a_snapshot_then_each_new_alert_once(server):
    host, port = server.server_address[:2]
    conn = http.client.HTTPConnection(host, port, timeout=10)
    conn.request("GET", "/api/v1/events")
    r = conn.getresponse()
    assert r.getheader("Content-Type") == "text/event-stream"

    def next_event():
        while True:
            line = r.fp.readline().decode()
            if line.startswith("data: "):
                return json.loads(line[6:])
    assert next_event()["type"] == "hello"
    assert next_event()["type"] == "snapshot"
    state = server.state
    assert state.on_alert(alert(1)) and not state.on_alert(alert(1))      # deduplicated
    state.on_alert(alert(2))
    assert [next_event()["view"]["alert"]["alert_id"] for _ in range(2)] == ["%032x" % 1, "%032x" % 2]
    conn.close()
    for n in range(3, 8):
        state.on_alert(alert(n))
    snap = state.snapshot()
    assert [v["alert"]["alert_id"] for v in snap["alerts"]] == ["%032x" % n for n in (7, 6, 5)]  # history=3
    assert snap["counts"]["duplicates"] == 1


def test_acknowledge_publishes_the_ack_at_qos1_and_re_sends_it_when_the_cart_missed_it(tmp_path, mqtt_settings):
    state = DisplayState()
    feed = MqttFeed(mqtt_settings, state, "ward monitor/1", ["+"])
    srv = start(DisplayServer(("127.0.0.1", 0), state, feed, None, None))
    topic = "pneumo-test/ward-4/cart-7/ack"
    try:
        with Subscriber(mqtt_settings.port, [topic]) as sub:
            feed.start()
            wait_until(lambda: feed.connected, 20, "the display to connect")
            assert feed.client_id == "pneumo-display-ward-monitor-1"
            status, body, _ = request(srv, "POST", "/api/v1/ack", json.dumps({"alert_id": "%032x" % 9}).encode(),
                                      {"Content-Type": "application/json"})
            assert status == 404                                  # unknown to this display
            sub.client.publish("pneumo-test/ward-4/cart-7/alert", json.dumps(alert(9, True)), qos=1)
            wait_until(lambda: state.alert("%032x" % 9), 20, "the alert to arrive")
            status, body, _ = request(srv, "POST", "/api/v1/ack",
                                      json.dumps({"alert_id": "%032x" % 9, "initials": "JD"}).encode(),
                                      {"Content-Type": "application/json"})
            assert status == 200 and json.loads(body)["delivered"]
            sub.wait_for(lambda s: s.on(topic), 10)
            ack = decode_payload(sub.on(topic)[0].payload)
            assert ack["alert_id"] == "%032x" % 9 and ack["display_id"] == "ward monitor/1" and ack["initials"] == "JD"
            assert sub.on(topic)[0].qos == 1
            # the cart's status still lists it as unacknowledged (it was away): the display sends it again
            sub.client.publish("pneumo-test/ward-4/cart-7/status", json.dumps(
                {"state": "online", "acks": {"unacknowledged": 1, "unacknowledged_ids": ["%032x" % 9]}}), qos=1)
            assert sub.wait_for(lambda s: len(s.on(topic)) >= 2, 10)
            assert state.snapshot()["alerts"][0]["ack"]["initials"] == "JD"
    finally:
        srv.shutdown()
        srv.server_close()
        feed.stop()


def test_the_persistent_session_hands_over_what_arrived_while_the_display_was_away(mqtt_settings):
    first = DisplayState()
    feed = MqttFeed(mqtt_settings, first, "monitor-2", ["ward-4"])
    feed.start()
    wait_until(lambda: feed.connected, 20, "the display to connect")
    feed.stop()                                          # the display goes away (its session stays)
    with Subscriber(mqtt_settings.port, ["unused/#"]) as pub:
        pub.client.publish("pneumo-test/ward-4/cart-7/alert", json.dumps(alert(21, True)), qos=1).wait_for_publish(5)
        pub.client.publish("pneumo-test/ward-9/cart-1/alert", json.dumps(alert(22)), qos=1).wait_for_publish(5)
    again = DisplayState()
    feed = MqttFeed(mqtt_settings, again, "monitor-2", ["ward-4"])       # same display id
    try:
        feed.start()
        wait_until(lambda: again.alert("%032x" % 21), 20, "the alert sent while the display was away")
        assert again.alert("%032x" % 22) is None               # another site: not followed
    finally:
        feed.stop()


def test_a_retained_status_counts_from_the_carts_own_time(mqtt_settings):
    state = DisplayState()
    with Subscriber(mqtt_settings.port, ["unused/#"]) as pub:
        pub.client.publish("pneumo-test/ward-4/cart-7/status", json.dumps(
            {"state": "online", "at": "2024-05-01T08:30:00.000Z", "queue_depth": 3}), qos=1,
            retain=True).wait_for_publish(5)
    feed = MqttFeed(mqtt_settings, state, "monitor-3", ["+"])
    try:
        feed.start()
        wait_until(lambda: state.snapshot()["carts"], 20, "the retained status")
        cart = state.snapshot()["carts"][0]
        assert cart["key"] == "ward-4/cart-7" and cart["queue_depth"] == 3
        assert cart["heartbeat_ms"] == 1714552200000          # old: the page shows it stale at once
    finally:
        feed.stop()


def test_display_serves_https_and_wants_its_token(settings, tmp_path, mosquitto):
    import ssl
    from tests.test_alerts_publisher import _make_certs
    from edge.errors import ConfigError
    from edge.web.run import Display
    if subprocess_missing("openssl"):
        pytest.skip("openssl CLI not installed")
    pki = _make_certs(tmp_path)
    token_file = tmp_path / "token"
    token_file.write_text("short\n")
    s = make_settings(tmp_path / "d", mosquitto.port)
    s.display.port, s.display.predict = 0, False
    s.display.token_file = str(token_file)
    s.display.tls.cert_file, s.display.tls.key_file = pki["certfile"], pki["keyfile"]
    with pytest.raises(ConfigError, match="at least 16"):
        Display(s)
    token_file.write_text(TOKEN + "\n")
    display = Display(s)
    display.start()
    try:
        assert display.url.startswith("https://")
        ctx = ssl.create_default_context(cafile=pki["cafile"])
        url = display.url + "api/v1/state"
        with pytest.raises(urllib.error.HTTPError) as err:
            urllib.request.urlopen(url, context=ctx, timeout=10)
        assert err.value.code == 401
        req = urllib.request.Request(url, headers={"Authorization": "Bearer " + TOKEN})
        with urllib.request.urlopen(req, context=ctx, timeout=10) as r:
            assert json.loads(r.read())["display_id"].startswith("display-")
    finally:
        display.stop()


def subprocess_missing(tool):
    import shutil
    return shutil.which(tool) is None


def test_a_file_just_over_the_limit_inside_a_form_is_still_too_large(server):
    body, headers = multipart("big.dcm", b"\0" * (1024 * 1024 + 1000))      # limit: 1 MB (fixture)
    status, out, _ = request(server, "POST", "/api/v1/predict", body, headers)
    assert status == 413 and json.loads(out)["rejected"] == "too_large"


def test_ack_wants_json_and_a_busy_port_is_a_clear_error(server, settings):
    from edge.errors import ConfigError
    from edge.web.run import Display
    status, out, _ = request(server, "POST", "/api/v1/ack", b'{"alert_id": "%s"}' % (b"0" * 32),
                             {"Content-Type": "text/plain"})
    assert status == 415
    settings.display.port = server.server_address[1]
    try:
        with pytest.raises(ConfigError, match="cannot serve the display"):
            Display(settings)
    finally:
        settings.display.port = 8080


@pytest.mark.slow
@pytest.mark.parametrize("command", ["display", "run"])
def test_the_cli_serves_the_display_and_ctrl_c_stops_everything(tmp_path, mosquitto, command):
    import signal
    import subprocess
    import sys
    from tests.test_appliance import ROOT, write_config
    from tests.mosquitto import free_port
    port = free_port()
    args = ["display", "--no-predict"] if command == "display" else ["run", "--with-display"]
    log = open(str(tmp_path / "cli.log"), "wb")
    proc = subprocess.Popen([sys.executable, "-m", "edge.cli"] + args +
                            ["--config", write_config(tmp_path, mosquitto.port), "--display-port", str(port)],
                            cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
    try:
        def healthy():
            try:
                with urllib.request.urlopen("http://127.0.0.1:%d/healthz" % port, timeout=1) as r:
                    return json.loads(r.read())["mqtt_connected"]
            except OSError:
                return False
        wait_until(healthy, 60, "the display to serve and connect")
        proc.send_signal(signal.SIGINT)
        assert proc.wait(30) == 0, open(str(tmp_path / "cli.log")).read()
    finally:
        if proc.poll() is None:
            proc.kill()
        log.close()
    out = open(str(tmp_path / "cli.log")).read()
    assert "open http://127.0.0.1:%d/" % port in out
    with pytest.raises(OSError):                                  # nothing left listening
        urllib.request.urlopen("http://127.0.0.1:%d/healthz" % port, timeout=1)
