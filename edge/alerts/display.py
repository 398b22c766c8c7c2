"""The simplest bedside display (`pneumo-edge alerts`): one line a message.

Subscribes to alert, event and status for the sites/devices matched by
topics_filter and prints what a nurse or a test bench needs to see. Alerts
are deduplicated on alert_id, because the publisher may deliver twice.
"""
import sys
import threading
import time
from typing import Any, Dict, Optional, Set, TextIO

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from edge.alerts.credentials import configure_client
from edge.alerts.schema import decode
from edge.alerts.topics import subscription
from edge.errors import AlertError
from edge.settings import MqttSettings


def _clock(payload: Dict[str, Any]) -> str:
    stamp = str(payload.get("created_at") or payload.get("at") or "")
    return stamp[11:19] if len(stamp) >= 19 else time.strftime("%H:%M:%S", time.gmtime())


def _where(payload: Dict[str, Any]) -> str:
    return "%s/%s" % (payload.get("site", "?"), payload.get("device", "?"))


def format_alert(payload: Dict[str, Any]) -> str:
    f = payload.get("finding") or {}
    parts = [_clock(payload), _where(payload),
             "POSITIVE" if f.get("pneumothorax") else "negative"]
    if f.get("pneumothorax"):
        parts.append("side=%s" % (f.get("side") or "?"))
        if f.get("area_cm2") is not None:
            parts.append("area=%.1fcm2" % f["area_cm2"])
        elif f.get("area_fraction") is not None:
            parts.append("area=%.1f%%" % (100.0 * f["area_fraction"]))
    if f.get("probability") is not None:
        parts.append("p=%.2f" % f["probability"])
    if payload.get("intended_use") and payload["intended_use"] != "validated":
        parts.append("[%s]" % payload["intended_use"].upper())
    parts.append("alert_id=%s" % payload.get("alert_id"))
    return "  ".join(parts)


def _one_line(value: Any) -> str:
    """Text from the wire, safe on one terminal line: control characters escaped (a newline in a
    file name must not forge a line) and a value with spaces quoted."""
    text = "".join(c if c.isprintable() else c.encode("unicode_escape").decode("ascii") for c in str(value))
    return '"%s"' % text if " " in text else text


def format_event(payload: Dict[str, Any]) -> str:
    fields = payload.get("fields") or {}
    if not isinstance(fields, dict):
        fields = {}
    parts = [_clock(payload), _where(payload), "EVENT %s" % payload.get("kind")]
    for label, key in (("file", "file_name"), ("code", "code")):
        value = fields.get(key, payload.get(key))
        if value not in (None, ""):
            parts.append("%s=%s" % (label, _one_line(value)))
    message = "".join(c if c.isprintable() else " " for c in str(payload.get("message", "")))
    parts.append(message)
    return "  ".join(parts)


def format_status(payload: Dict[str, Any]) -> str:
    parts = [_clock(payload), _where(payload), "STATUS %s" % payload.get("state")]
    if payload.get("queue_depth") is not None:
        parts.append("queue=%s" % payload["queue_depth"])
    if payload.get("backend"):
        parts.append("backend=%s" % payload["backend"])
    if payload.get("state") == "offline" and payload.get("clean") is False:
        parts.append("(connection lost)")
    return "  ".join(parts)


def run_display(settings: MqttSettings, topics_filter: str = "+/+", out: TextIO = sys.stdout,
                count: Optional[int] = None, timeout: Optional[float] = None) -> int:
    """Print alerts/events/status until `count` distinct alerts or `timeout` s.

    topics_filter: "<site>/<device>" with MQTT wildcards, e.g. "+/+" (all)
    or "ward-3/+". Returns 0, or 2 when the broker refuses the credentials.
    """
    site, _, device = (topics_filter or "+/+").partition("/")
    if not site or not device or "/" in device:
        raise AlertError("topics filter %r must be <site>/<device>, e.g. +/+" % topics_filter)
    filters = {leaf: subscription(settings.topic_prefix, leaf, site, device)
               for leaf in ("alert", "event", "status")}
    seen = set()   # type: Set[str]
    done = threading.Event()
    outcome = {"rc": 0}
    lock = threading.Lock()

    def emit(line: str) -> None:
        with lock:
            out.write(line + "\n")
            out.flush()

    def on_connect(client, userdata, flags, reason_code, properties):
        if reason_code.is_failure:
            emit("broker %s:%d refused the connection: %s" % (settings.host, settings.port,
                                                               reason_code))
            if reason_code.value in (0x86, 0x87, 4, 5):   # bad credentials / not authorised
                outcome["rc"] = 2
                done.set()
            return
        outcome.pop("unreachable", None)
        client.subscribe([(f, 1) for f in filters.values()])

    def on_connect_fail(client, userdata):
        if not outcome.get("unreachable"):      # say it once, not at every retry
            outcome["unreachable"] = True
            emit("cannot connect to %s:%d%s; retrying (Ctrl-C to stop)" % (
                settings.host, settings.port, " (TLS)" if settings.tls.enabled else ""))

    def on_message(client, userdata, msg):
        leaf = msg.topic.rsplit("/", 1)[-1]
        try:
            payload = decode(msg.payload)
        except AlertError as exc:
            emit("unreadable message on %s: %s" % (msg.topic, exc))
            return
        if leaf == "alert":
            alert_id = str(payload.get("alert_id"))
            if alert_id in seen:
                return
            seen.add(alert_id)
            emit(format_alert(payload))
            if count is not None and len(seen) >= count:
                done.set()
        elif leaf == "event":
            emit(format_event(payload))
        elif leaf == "status":
            emit(format_status(payload))

    client = mqtt.Client(CallbackAPIVersion.VERSION2,
                         client_id=settings.client_id and settings.client_id + "-display" or "",
                         protocol=mqtt.MQTTv311)
    configure_client(client, settings)
    # a person is watching: retry at most 5 s apart, not the appliance's long backoff
    client.reconnect_delay_set(min(settings.reconnect_min_s, 1.0), min(settings.reconnect_max_s, 5.0))
    client.on_connect = on_connect
    client.on_connect_fail = on_connect_fail
    client.on_message = on_message
    client.connect_async(settings.host, settings.port, keepalive=settings.keepalive_s)
    client.loop_start()
    try:
        done.wait(timeout)
    except KeyboardInterrupt:
        pass
    finally:
        client.disconnect()
        client.loop_stop()
    return outcome["rc"]
