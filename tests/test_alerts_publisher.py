"""The MQTT publisher against a real mosquitto and a real SQLite outbox.

Pins: nothing is lost (broker down at start, broker restarted mid-stream,
publisher restarted), rows are sent only on PUBACK, retained status with a
last-will, credentials, TLS, and the display. No timing assertions: the
timeouts are generous ceilings, never the thing under test.
"""
import dataclasses
import io
import json
import logging
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time

import pytest
from mosquitto import Subscriber

from edge.alerts.display import run_display
from edge.alerts.outbox import Outbox
from edge.alerts.publisher import Publisher
from edge.alerts.schema import encode
from edge.alerts.topics import Topics
from edge.settings import MqttSettings, TlsSettings
from edge.store import Store
from tests.alert_factory import make_alert

TOPICS = Topics("pneumo-test", "ward-3", "cart-1")
WAIT = 30.0
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def eventually(check, timeout=WAIT):
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def settings_for(port, **kw):
    base = dict(host="127.0.0.1", port=port, topic_prefix=TOPICS.prefix, keepalive_s=5,
                reconnect_min_s=0.2, reconnect_max_s=1.0)
    base.update(kw)
    return MqttSettings(**base)


class Rig:
    """Store + Outbox + Publisher on one state directory."""

    def __init__(self, state_dir, settings, client_id="pub-test"):
        self.store = Store(state_dir)
        self.outbox = Outbox(self.store)
        self.publisher = Publisher(settings, TOPICS, self.outbox,
                                   lambda: {"backend": "onnxruntime", "models": ["cls@1"]},
                                   client_id=client_id)

    def enqueue(self, start, n):
        ids = ["%032x" % i for i in range(start, start + n)]
        with self.store.transaction() as conn:
            for alert_id in ids:
                self.outbox.enqueue_alert(conn, TOPICS, make_alert(alert_id))
        self.publisher.notify()
        return ids

    def close(self, timeout=5.0):
        self.publisher.stop(timeout)
        self.store.close()


@pytest.fixture
def rigs(tmp_path):
    made = []

    def make(settings, name="state", client_id="pub-test"):
        made.append(Rig(str(tmp_path / name), settings, client_id))
        return made[-1]

    yield make
    for rig in made:
        rig.close(timeout=1.0)


def display_running(settings, topics_filter, count):
    """run_display in a thread; returns (thread, output, result) once the
    retained status shows the display is subscribed."""
    out, result = io.StringIO(), {}
    thread = threading.Thread(target=lambda: result.update(
        rc=run_display(settings, topics_filter, out=out, count=count, timeout=WAIT)))
    thread.start()
    assert eventually(lambda: "STATUS online" in out.getvalue())
    return thread, out, result


def alert_ids(sub):
    return {json.loads(m.payload)["alert_id"] for m in sub.on(TOPICS.alert)}


def statuses(sub):
    return [dict(json.loads(m.payload), retained=m.retain) for m in sub.on(TOPICS.status)]


def test_every_alert_arrives_and_is_marked_sent_only_after_puback(mosquitto, mqtt_settings, rigs):
    rig = rigs(dataclasses.replace(mqtt_settings, inflight=5))
    with Subscriber(mosquitto.port, [TOPICS.prefix + "/#"]) as sub:
        rig.publisher.start()
        assert eventually(lambda: rig.publisher.connected)
        # freeze the broker: it accepts bytes but sends no PUBACK
        mosquitto.proc.send_signal(signal.SIGSTOP)
        try:
            ids = rig.enqueue(0, 12)
            assert eventually(lambda: rig.publisher.stats()["published"] >= 5)
            assert rig.outbox.depth() == 12                       # published is not sent
            assert rig.publisher.stats()["inflight"] == 5          # at most `inflight` unacked
        finally:
            mosquitto.proc.send_signal(signal.SIGCONT)
        assert eventually(lambda: rig.outbox.depth() == 0)
        assert sub.wait_for(lambda s: alert_ids(s) >= set(ids))
    stats = rig.publisher.stats()
    assert stats["acked"] >= 12 and stats["connects"] == 1


def test_broker_down_at_start_then_up_and_a_new_publisher_instance(make_mosquitto, tmp_path, rigs):
    broker = make_mosquitto(persistence=True)
    settings = settings_for(broker.port)
    sub = Subscriber(broker.port, [TOPICS.alert], client_id="display-1", clean_session=False)
    try:
        broker.stop()        # the persistent session survives; nothing listens now
        first = rigs(settings)
        first.publisher.start()                       # must not block or raise
        ids = first.enqueue(0, 10)
        assert eventually(lambda: first.publisher.stats()["last_error"] is not None)
        assert first.outbox.depth() == 10 and not first.publisher.connected
        first.close(timeout=0.5)                      # the process "restarts"

        second = rigs(settings)                       # same state dir, new Store/Outbox/Publisher
        assert second.outbox.depth() == 10
        second.publisher.start()
        time.sleep(0.5)                               # still down for a while
        broker.start()
        assert eventually(lambda: second.outbox.depth() == 0)
        assert sub.wait_for(lambda s: alert_ids(s) >= set(ids))
    finally:
        sub.close()


def test_broker_restarted_mid_stream_loses_nothing(make_mosquitto, rigs):
    broker = make_mosquitto(persistence=True)
    sub = Subscriber(broker.port, [TOPICS.alert], client_id="display-2", clean_session=False)
    try:
        rig = rigs(settings_for(broker.port, inflight=3))
        rig.publisher.start()
        ids = rig.enqueue(0, 30)
        assert eventually(lambda: rig.publisher.stats()["acked"] >= 3)
        broker.stop()
        ids += rig.enqueue(100, 20)                   # queued while the broker is gone
        assert eventually(lambda: not rig.publisher.connected)
        assert rig.outbox.depth() >= 20
        broker.start()                                # same port
        assert eventually(lambda: rig.outbox.depth() == 0)
        assert sub.wait_for(lambda s: alert_ids(s) >= set(ids))
        assert rig.publisher.stats()["connects"] >= 2
    finally:
        sub.close()


def test_status_is_retained_online_then_offline_on_clean_stop(mosquitto, mqtt_settings, rigs):
    rig = rigs(mqtt_settings)
    rig.enqueue(0, 0)
    rig.publisher.start()
    assert eventually(lambda: rig.publisher.connected)
    rig.publisher.publish_status()
    # a display that subscribes later still gets the retained status
    with Subscriber(mosquitto.port, [TOPICS.status]) as sub:
        assert sub.wait_for(lambda s: any(st["state"] == "online" for st in statuses(s)))
        online = statuses(sub)[0]
        assert online["retained"] and online["queue_depth"] == 0
        assert online["backend"] == "onnxruntime" and online["site"] == "ward-3"
        rig.publisher.stop(5.0)
        assert sub.wait_for(lambda s: statuses(s)[-1]["state"] == "offline")
        assert statuses(sub)[-1]["clean"] is True
    with Subscriber(mosquitto.port, [TOPICS.status]) as late:
        assert late.wait_for(lambda s: len(statuses(s)) == 1)
        assert statuses(late)[0]["state"] == "offline" and statuses(late)[0]["retained"]


def test_status_carries_the_queue_depth_when_rows_wait(mosquitto, mqtt_settings, rigs):
    rig = rigs(mqtt_settings)
    rig.enqueue(0, 4)
    rig.publisher.publish_status()          # not connected: a no-op, not an error
    rig.publisher.start()
    with Subscriber(mosquitto.port, [TOPICS.status]) as sub:
        assert sub.wait_for(lambda s: any(st["state"] == "online" for st in statuses(s)))
        assert eventually(lambda: rig.outbox.depth() == 0)
        rig.publisher.publish_status()
        assert sub.wait_for(lambda s: statuses(s)[-1]["queue_depth"] == 0)
        assert 0 <= statuses(sub)[0]["queue_depth"] <= 4


WILL_SCRIPT = textwrap.dedent("""
    import sys, time
    from edge.alerts.outbox import Outbox
    from edge.alerts.publisher import Publisher
    from edge.alerts.topics import Topics
    from edge.settings import MqttSettings
    from edge.store import Store
    settings = MqttSettings(port=int(sys.argv[1]), topic_prefix="pneumo-test", keepalive_s=2)
    pub = Publisher(settings, Topics("pneumo-test", "ward-3", "cart-1"),
                    Outbox(Store(sys.argv[2])), lambda: {"backend": "onnxruntime"}, "will-test")
    pub.start()
    time.sleep(120)
""")


def test_last_will_offline_when_the_process_dies(mosquitto, tmp_path):
    script = tmp_path / "publisher_proc.py"
    script.write_text(WILL_SCRIPT)
    proc = subprocess.Popen([sys.executable, str(script), str(mosquitto.port), str(tmp_path / "st")],
                            cwd=REPO)
    try:
        with Subscriber(mosquitto.port, [TOPICS.status]) as sub:
            assert sub.wait_for(lambda s: any(st["state"] == "online" and st["client_id"] == "will-test"
                                              for st in statuses(s)))
            proc.send_signal(signal.SIGKILL)    # no DISCONNECT, no offline status of its own
            proc.wait(10)
            assert sub.wait_for(lambda s: statuses(s)[-1]["state"] == "offline")
            will = statuses(sub)[-1]
            assert will["clean"] is False and will["client_id"] == "will-test"
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)


def _password_broker(make_mosquitto, tmp_path):
    pwfile = tmp_path / "passwd"
    subprocess.run(["mosquitto_passwd", "-b", "-c", str(pwfile), "cart", "s3cret-Pw"], check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return make_mosquitto(password_file=str(pwfile))


@pytest.mark.skipif(not any(os.access(os.path.join(p, "mosquitto_passwd"), os.X_OK)
                            for p in os.environ.get("PATH", "").split(os.pathsep)),
                    reason="mosquitto_passwd not installed")
def test_username_password_accepted_and_refused(make_mosquitto, tmp_path, rigs, monkeypatch, caplog):
    caplog.set_level(logging.DEBUG)
    broker = _password_broker(make_mosquitto, tmp_path)
    secret_file = tmp_path / "mqtt.secret"
    secret_file.write_text("s3cret-Pw\n")
    good = rigs(settings_for(broker.port, username="cart", password_file=str(secret_file)),
                name="good", client_id="good")
    monkeypatch.setenv("PNEUMO_MQTT_PW", "wrong-Pw")
    bad = rigs(settings_for(broker.port, username="cart", password_env="PNEUMO_MQTT_PW"),
               name="bad", client_id="bad")
    with Subscriber(broker.port, [TOPICS.alert], username="cart", password="s3cret-Pw") as sub:
        ids = good.enqueue(0, 3)
        bad.enqueue(10, 3)
        good.publisher.start()
        bad.publisher.start()
        assert sub.wait_for(lambda s: alert_ids(s) >= set(ids))
        assert eventually(lambda: good.outbox.depth() == 0)
        assert eventually(lambda: bad.publisher.stats()["refused"] >= 1)
        assert bad.outbox.depth() == 3 and not bad.publisher.connected
        wrong = settings_for(broker.port, username="cart", password_env="PNEUMO_MQTT_PW")
        assert run_display(wrong, "+/+", out=io.StringIO(), timeout=WAIT) == 2   # gives up at once
    text = caplog.text + repr(good.publisher) + repr(bad.publisher) + \
        json.dumps(good.publisher.stats()) + json.dumps(bad.publisher.stats())
    assert "refused" in caplog.text
    assert "s3cret-Pw" not in text and "wrong-Pw" not in text


def _make_certs(tmp_path):
    """A throw-away CA and a server certificate for 127.0.0.1 (openssl CLI)."""
    d = tmp_path / "pki"
    d.mkdir()

    def ssl(*args):
        subprocess.run(["openssl"] + list(args), cwd=str(d), check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    ssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
        "-keyout", "ca.key", "-out", "ca.crt", "-days", "2", "-subj", "/CN=pneumo test CA")
    ssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
        "-keyout", "server.key", "-out", "server.csr", "-subj", "/CN=127.0.0.1")
    (d / "ext.cnf").write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    ssl("x509", "-req", "-in", "server.csr", "-CA", "ca.crt", "-CAkey", "ca.key",
        "-CAcreateserial", "-out", "server.crt", "-days", "2", "-extfile", "ext.cnf")
    return {k: str(d / v) for k, v in
            [("cafile", "ca.crt"), ("certfile", "server.crt"), ("keyfile", "server.key")]}


@pytest.mark.skipif(subprocess.run(["which", "openssl"], stdout=subprocess.DEVNULL).returncode != 0,
                    reason="openssl CLI not installed")
def test_tls_with_a_private_ca(make_mosquitto, tmp_path, rigs):
    pki = _make_certs(tmp_path)
    broker = make_mosquitto(tls=pki)
    trusted = settings_for(broker.port, tls=TlsSettings(enabled=True, ca_file=pki["cafile"]))
    untrusted = settings_for(broker.port, tls=TlsSettings(enabled=True))   # system CAs only
    rig = rigs(trusted)
    stranger = rigs(untrusted, name="stranger", client_id="stranger")
    stranger.enqueue(0, 2)
    stranger.publisher.start()
    rig.publisher.start()
    assert eventually(lambda: rig.publisher.connected)
    rig.publisher.publish_status()
    thread, out, result = display_running(trusted, "ward-3/+", count=1)   # the display is in, over TLS
    ids = rig.enqueue(0, 1)
    thread.join(WAIT + 5)
    assert result.get("rc") == 0 and ids[0] in out.getvalue()
    assert eventually(lambda: rig.outbox.depth() == 0)
    # a client that does not trust the broker's CA never sends anything
    assert eventually(lambda: stranger.publisher.stats()["last_error"] is not None)
    assert stranger.outbox.depth() == 2 and stranger.publisher.stats()["connects"] == 0


def test_display_prints_one_line_per_alert_and_dedupes(mosquitto, mqtt_settings, rigs):
    rig = rigs(mqtt_settings)
    rig.publisher.start()
    assert eventually(lambda: rig.publisher.connected)
    rig.publisher.publish_status()

    thread, out, result = display_running(mqtt_settings, "+/+", count=2)
    first = {"schema_version": 1, "alert_id": "a" * 32, "site": "ward-3", "device": "cart-1",
             "created_at": "2024-05-01T08:30:00.000Z", "intended_use": "demo",
             "finding": {"pneumothorax": True, "side": "right", "area_cm2": 6.2,
                         "probability": 0.93}}
    second = dict(first, alert_id="b" * 32, finding={"pneumothorax": False, "probability": 0.02})
    with rig.store.transaction() as conn:   # the same alert twice (e.g. re-sent after a reconnect)
        rig.outbox.enqueue(conn, "alert", TOPICS.alert, encode(first), alert_id=None)
        rig.outbox.enqueue(conn, "alert", TOPICS.alert, encode(first), alert_id=None)
        rig.outbox.enqueue(conn, "alert", TOPICS.alert, encode(second), alert_id="b" * 32)
    rig.publisher.notify()
    thread.join(WAIT + 5)
    assert result.get("rc") == 0
    lines = out.getvalue().splitlines()
    alerts = [line for line in lines if "alert_id=" in line]
    assert len(alerts) == 2
    assert "ward-3/cart-1" in alerts[0] and "POSITIVE" in alerts[0] and "side=right" in alerts[0]
    assert "area=6.2cm2" in alerts[0] and "p=0.93" in alerts[0] and "a" * 32 in alerts[0]
    assert "negative" in alerts[1] and "b" * 32 in alerts[1]


def test_password_from_file_or_env_and_clear_errors(tmp_path, monkeypatch):
    from edge.alerts.credentials import resolve_key_password, resolve_password
    from edge.errors import AlertError
    secret = tmp_path / "pw"
    secret.write_text("top-secret\n")
    assert resolve_password(MqttSettings(password_file=str(secret))) == "top-secret"
    monkeypatch.setenv("PNEUMO_PW", "env-secret")
    assert resolve_password(MqttSettings(password_env="PNEUMO_PW")) == "env-secret"
    assert resolve_password(MqttSettings()) is None
    with pytest.raises(AlertError, match="cannot read the MQTT password file .*missing"):
        resolve_password(MqttSettings(password_file=str(tmp_path / "missing")))
    monkeypatch.delenv("PNEUMO_PW")
    with pytest.raises(AlertError, match="PNEUMO_PW is not set"):
        resolve_password(MqttSettings(password_env="PNEUMO_PW"))
    monkeypatch.setenv("PNEUMO_KEY_PW", "key-secret")
    assert resolve_key_password(TlsSettings(key_password_env="PNEUMO_KEY_PW")) == "key-secret"
    # a bad password file stops start-up, before any connection attempt
    with pytest.raises(AlertError):
        Publisher(MqttSettings(username="u", password_file=str(tmp_path / "missing")), TOPICS,
                  Outbox(Store(str(tmp_path / "st"))), dict, "x")


def test_a_tls_file_gone_after_the_config_check_is_a_clear_error(tmp_path):
    # load_config checks the files exist; one removed before start-up still stops it, named
    import paho.mqtt.client as mqtt
    from paho.mqtt.enums import CallbackAPIVersion
    from edge.alerts.credentials import configure_client
    from edge.errors import AlertError
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="t")
    gone = str(tmp_path / "ca.crt")
    with pytest.raises(AlertError, match="cannot set up MQTT TLS \\(ca %s, cert none, key none\\)" % gone):
        configure_client(client, MqttSettings(tls=TlsSettings(enabled=True, ca_file=gone)))
