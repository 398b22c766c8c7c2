"""The display's MQTT side: a persistent session feeding DisplayState, and acks out.

Persistent on purpose: a stable client id, clean_session False (MQTT
3.1.1) and QoS 1 subscriptions, so the broker queues what arrives while the
display is away (a restart of the display, a network cut) and hands it over
on reconnect. With `persistence true` in mosquitto the session also
survives a restart of the broker. Reconnects are quick (at most
RECONNECT_MAX_S apart), since the page says "connection lost" meanwhile.
"""
import logging
import re
import threading
import time
from typing import List, Optional, Tuple

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from edge.alerts.credentials import configure_client
from edge.alerts.schema import build_ack, check_ack, decode, encode
from edge.alerts.topics import Topics
from edge.errors import AlertError
from edge.settings import MqttSettings
from edge.web.state import DisplayState

log = logging.getLogger(__name__)

RECONNECT_MAX_S = 5.0
ACK_WAIT_S = 5.0
LEAVES = ("alert", "status", "event", "ack", "overlay/+")


def client_id_for(display_id: str) -> str:
    """Stable across restarts (the broker keys the session on it)."""
    return "pneumo-display-" + re.sub(r"[^A-Za-z0-9_.-]", "-", display_id)[:64]


def filters(prefix: str, sites: List[str]) -> List[str]:
    prefix = prefix.strip("/")
    return ["%s/%s/+/%s" % (prefix, site, leaf) for site in sites for leaf in LEAVES]


def split_topic(prefix: str, topic: str) -> Optional[Tuple[str, str, str, str]]:
    """(site, device, leaf, rest) for a topic under prefix, else None."""
    prefix = prefix.strip("/") + "/"
    if not topic.startswith(prefix):
        return None
    parts = topic[len(prefix):].split("/")
    if len(parts) < 3:
        return None
    return parts[0], parts[1], parts[2], "/".join(parts[3:])


class MqttFeed:
    def __init__(self, settings: MqttSettings, state: DisplayState, display_id: str,
                 sites: List[str]):
        self.settings = settings
        self.state = state
        self.display_id = display_id
        self.client_id = client_id_for(display_id)
        self._filters = filters(settings.topic_prefix, sites)
        client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=self.client_id,
                             clean_session=False, protocol=mqtt.MQTTv311)
        configure_client(client, settings)
        client.reconnect_delay_set(min(settings.reconnect_min_s, 1.0),
                                   min(settings.reconnect_max_s, RECONNECT_MAX_S))
        client.on_connect = self._on_connect
        client.on_connect_fail = self._on_connect_fail
        client.on_disconnect = self._on_disconnect
        client.on_message = self._on_message
        self._client = client
        self._connected = threading.Event()

    def start(self) -> None:
        self.state.set_connection(False, "connecting to %s:%d" % (self.settings.host, self.settings.port))
        self._client.connect_async(self.settings.host, self.settings.port,
                                   keepalive=min(self.settings.keepalive_s, 10))
        self._client.loop_start()

    def stop(self) -> None:
        self._client.disconnect()
        self._client.loop_stop()

    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    # -- paho callbacks ----------------------------------------------------------
    def _on_connect(self, client, userdata, flags, reason_code, properties) -> None:
        if reason_code.is_failure:
            self.state.set_connection(False, "broker refused the connection: %s" % reason_code)
            log.warning("display: broker %s:%d refused the connection: %s", self.settings.host,
                        self.settings.port, reason_code)
            return
        # Subscribing again is harmless when the broker kept the session.
        client.subscribe([(f, 1) for f in self._filters])
        self._connected.set()
        self.state.set_connection(True, "connected to %s:%d" % (self.settings.host, self.settings.port))
        log.info("display connected to %s:%d as %s (session %s)", self.settings.host,
                 self.settings.port, self.client_id,
                 "resumed" if flags.session_present else "new")

    def _on_connect_fail(self, client, userdata) -> None:
        self.state.set_connection(False, "connection lost: cannot reach the broker %s:%d, retrying"
                                  % (self.settings.host, self.settings.port))

    def _on_disconnect(self, client, userdata, flags, reason_code, properties) -> None:
        self._connected.clear()
        self.state.set_connection(False, "connection lost: disconnected from the broker (%s), "
                                  "reconnecting" % reason_code)

    def _on_message(self, client, userdata, msg) -> None:
        where = split_topic(self.settings.topic_prefix, msg.topic)
        if where is None:
            return
        site, device, leaf, rest = where
        try:
            if leaf == "overlay" and rest:
                self.state.on_overlay(rest, msg.payload)
                return
            payload = decode(msg.payload)
            if leaf == "alert":
                self.state.on_alert(payload)
            elif leaf == "status":
                for alert_id in self.state.on_status(site, device, payload, retained=bool(msg.retain)):
                    ack = self.state.my_ack(alert_id)
                    if ack is not None:     # the cart missed our ack (it was away): send again
                        log.info("cart %s/%s still lists %s as unacknowledged; re-sending the ack",
                                 site, device, alert_id)
                        client.publish(Topics(self.settings.topic_prefix, site, device).ack,
                                       encode(ack), qos=1)
            elif leaf == "event":
                self.state.on_event(site, device, payload)
            elif leaf == "ack":
                self.state.on_ack(check_ack(payload))
        except AlertError as exc:
            log.warning("display: unreadable message on %s: %s", msg.topic, exc)
        except Exception as exc:  # noqa: BLE001 - raised into paho, it ends the network thread:
            # the display would stop showing alerts while still reporting itself connected
            log.warning("display: malformed message on %s ignored (%s)", msg.topic, type(exc).__name__)

    # -- acks out ------------------------------------------------------------------
    def acknowledge(self, alert_id: str, initials: str = "") -> Tuple[bool, dict]:
        """Publish an ack at QoS 1 for a known alert. Returns (delivered to the
        broker within ACK_WAIT_S, the ack). Not delivered yet is not lost: paho
        sends it on reconnect, and the cart's status makes us send it again."""
        alert = self.state.alert(alert_id)
        if alert is None:
            raise AlertError("unknown alert %r (not among the alerts this display holds)" % alert_id)
        ack = build_ack(alert_id, self.display_id, initials)
        topic = Topics(self.settings.topic_prefix, str(alert.get("site")), str(alert.get("device"))).ack
        self.state.on_ack(ack, mine=True)
        info = self._client.publish(topic, encode(ack), qos=1)
        deadline = time.monotonic() + ACK_WAIT_S
        while not info.is_published() and time.monotonic() < deadline and self.connected:
            time.sleep(0.02)            # wait_for_publish() returns silently on timeout
        return info.is_published(), ack
