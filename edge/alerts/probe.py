"""Can this cart publish to its broker? Connect exactly as the appliance does
(TLS, client certificate, credentials from edge.alerts.credentials), publish
one QoS 1 message on the device's own topic tree and wait for its PUBACK.

For `pneumo-edge doctor`. It asks over MQTT 5 because an MQTT 3.1.1 broker
acknowledges a publish its ACL drops, and says nothing; over MQTT 5 the
PUBACK carries "Not authorized". A broker without MQTT 5 is asked over 3.1.1
and the result says the ACL could not be checked. It uses its own client id
(a running appliance is not kicked off), no last will, and no retained
message, so the displays see nothing.
"""
import ssl
import threading
import time
from dataclasses import dataclass
from typing import Any, Dict, Optional

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from edge.alerts.credentials import configure_client
from edge.alerts.schema import SCHEMA_VERSION, encode, utc_iso
from edge.errors import AlertError
from edge.settings import MqttSettings

UNSUPPORTED_PROTOCOL = (1, 0x84)      # 3.1.1 CONNACK 1, MQTT 5 reason 0x84


@dataclass
class ProbeResult:
    ok: bool
    step: str            # "setup" | "connect" | "tls" | "session" | "publish" | "done"
    detail: str          # what happened, in words (never a secret)
    fix: str = ""
    refused_code: Optional[int] = None   # the CONNACK code when the broker refused the session


def _describe(settings: MqttSettings) -> str:
    how = ["TLS" if settings.tls.enabled else "plain TCP"]
    if settings.tls.enabled and settings.tls.cert_file:
        how.append("client certificate")
    how.append("user %s" % settings.username if settings.username else "anonymous")
    return "%s:%d (%s)" % (settings.host, settings.port, ", ".join(how))


def probe_broker(settings: MqttSettings, topic: str, client_id: str, timeout_s: float = 5.0) -> ProbeResult:
    result = _probe(settings, topic, client_id, timeout_s, mqtt.MQTTv5)
    if result.step == "session" and result.refused_code in UNSUPPORTED_PROTOCOL:
        result = _probe(settings, topic, client_id, timeout_s, mqtt.MQTTv311)
        if result.ok:
            result.detail += "; the broker has no MQTT 5, so an ACL that drops our messages cannot be seen"
    return result


def _probe(settings: MqttSettings, topic: str, client_id: str, timeout_s: float, protocol: int) -> ProbeResult:
    where = _describe(settings)
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=protocol)
    try:
        configure_client(client, settings)
    except AlertError as exc:
        return ProbeResult(False, "setup", str(exc), "fix the mqtt settings named above")
    state = {}  # type: Dict[str, Any]
    connected, acked = threading.Event(), threading.Event()

    def on_connect(c, userdata, flags, reason_code, properties):
        state["connack"] = reason_code
        connected.set()

    def on_disconnect(c, userdata, flags, reason_code, properties):
        state.setdefault("dropped", reason_code)
        connected.set()

    def on_publish(c, userdata, mid, reason_code, properties):
        state["puback"] = reason_code
        acked.set()

    client.on_connect, client.on_disconnect, client.on_publish = on_connect, on_disconnect, on_publish
    try:
        client.connect(settings.host, settings.port, keepalive=max(5, int(timeout_s) * 2))
    except ssl.SSLError as exc:
        return ProbeResult(False, "tls", "TLS handshake with %s failed: %s" % (where, exc.reason or exc),
                           "check mqtt.tls.ca_file (the CA that signed the broker's certificate), the client "
                           "certificate and that mqtt.host is the name in the broker's certificate")
    except (OSError, ValueError) as exc:
        return ProbeResult(False, "connect", "cannot connect to %s: %s" % (where, exc),
                           "start mosquitto (systemctl start mosquitto) or fix mqtt.host/port; alerts wait "
                           "in the outbox meanwhile")
    client.loop_start()
    try:
        t0 = time.monotonic()
        if not connected.wait(timeout_s):
            return ProbeResult(False, "session", "%s accepted the connection but sent no CONNACK within %.0f s"
                               % (where, timeout_s), "is this an MQTT broker, and TLS on both sides or neither?")
        connack = state.get("connack")
        if connack is None:
            return ProbeResult(False, "session", "%s closed the connection before CONNACK (%s)"
                               % (where, state.get("dropped")),
                               "the broker may want TLS or a client certificate: see its log")
        if connack.is_failure:
            return ProbeResult(False, "session", "%s refused the connection: %s" % (where, connack),
                               "check mqtt.username and the password (mqtt.password_file / mqtt.password_env) "
                               "against the broker's password file", refused_code=connack.value)
        payload = encode({"schema_version": SCHEMA_VERSION, "probe": "pneumo-edge doctor", "at": utc_iso()})
        info = client.publish(topic, payload, qos=1, retain=False)
        if info.rc != mqtt.MQTT_ERR_SUCCESS:
            return ProbeResult(False, "publish", "publish on %s failed: %s" % (topic, mqtt.error_string(info.rc)))
        # wait_for_publish() returns silently on a timeout: wait on our own event, then ask the handle
        acked.wait(max(0.1, timeout_s - (time.monotonic() - t0)))
        if not info.is_published():
            return ProbeResult(False, "publish", "connected to %s, but no PUBACK for a QoS 1 publish on %s within "
                               "%.0f s" % (where, topic, timeout_s), "see the broker's log")
        puback = state.get("puback")
        if puback is not None and getattr(puback, "is_failure", False):
            return ProbeResult(False, "publish", "%s refused our publish on %s: %s" % (where, topic, puback),
                               "the broker's ACL must let this user write %s/#" % topic.rsplit("/", 1)[0])
        return ProbeResult(True, "done", "%s: connected, QoS 1 publish on %s acknowledged in %.0f ms"
                           % (where, topic, (time.monotonic() - t0) * 1000.0))
    finally:
        client.disconnect()
        client.loop_stop()
