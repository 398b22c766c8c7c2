"""One-shot retained status, for the moments the appliance is not running yet
(e.g. `building-engines` while TensorRT engines are built on first boot), so a
bedside display shows why the cart is not alerting. Best effort: a broker that
is down only costs a log line; the appliance's own status replaces it later."""
import logging
import time

import paho.mqtt.client as mqtt
from paho.mqtt.client import CallbackAPIVersion

from edge import __version__
from edge.alerts.credentials import configure_client
from edge.alerts.schema import build_status, encode
from edge.alerts.topics import Topics
from edge.settings import Settings

log = logging.getLogger(__name__)


def announce_state(settings: Settings, state: str, timeout: float = 5.0, **fields) -> bool:
    """Publish {"state": state, ...} retained on the device's status topic.
    True when the broker acknowledged it."""
    topics = Topics(settings.mqtt.topic_prefix, settings.site, settings.device)
    fields.setdefault("version", __version__)
    payload = build_status(state, site=settings.site, device=settings.device, fields=fields).to_json()
    client = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv311,
                         client_id="pneumo-edge-announce-%s-%s" % (settings.site, settings.device))
    configure_client(client, settings.mqtt)
    try:
        client.connect(settings.mqtt.host, settings.mqtt.port, keepalive=10)
    except OSError as exc:
        log.warning("status %s not announced: broker %s:%d unreachable (%s)", state,
                    settings.mqtt.host, settings.mqtt.port, exc)
        return False
    client.loop_start()
    try:
        info = client.publish(topics.status, encode(payload), qos=1, retain=True)
        deadline = time.monotonic() + timeout
        while not info.is_published() and time.monotonic() < deadline:
            time.sleep(0.02)       # wait_for_publish() returns silently on timeout
        ok = info.is_published()
        if not ok:
            log.warning("status %s not acknowledged by %s:%d within %.0f s", state,
                        settings.mqtt.host, settings.mqtt.port, timeout)
        return ok
    finally:
        client.disconnect()
        client.loop_stop()
