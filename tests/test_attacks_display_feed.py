"""Attack suite: malformed messages on the broker, read by a bedside display (and the cart)
(edge/web/mqtt_feed.py + state.py), with real mosquitto and a real
DisplayServer. Found by publishing them:
- valid JSON of the wrong shape (an event whose `fields` is a list, a status
  whose `unacknowledged_ids` is a number or holds lists) raised inside paho's
  callback, which ended the network thread: the display showed no alert
  after it while still reporting itself connected;
- an alert holding NaN (Python's json reads it) was kept, and from then on
  /api/v1/state and the event stream could not be serialised: every page
  lost its alerts while that alert stayed in the history."""
import json
import time
import urllib.request

import pytest

from edge.web.mqtt_feed import MqttFeed
from edge.web.server import DisplayServer
from edge.web.state import DisplayState
from tests.mosquitto import Subscriber
from tests.test_web_server import alert, start

BASE = "pneumo-test/ward-4/cart-7/"
HOSTILE = {
    "event_fields_a_list": (BASE + "event", json.dumps({"kind": "rejected", "fields": [1]})),
    "status_ids_a_number": (BASE + "status", json.dumps({"state": "online", "acks": {"unacknowledged_ids": 5}})),
    "status_ids_lists": (BASE + "status", json.dumps({"state": "online", "acks": {"unacknowledged_ids": [[1]]}})),
    "alert_with_nan": (BASE + "alert", '{"schema_version": 1, "alert_id": "%032x", "finding": {"probability": NaN}}'
                       % 2),
    "alert_nested_deep": (BASE + "alert", "[" * 100000 + "]" * 100000),
}


@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_one_malformed_message_neither_stops_the_feed_nor_breaks_the_page(case, mqtt_settings):
    state = DisplayState()
    feed = MqttFeed(mqtt_settings, state, "ward monitor/2", ["+"])
    srv = start(DisplayServer(("127.0.0.1", 0), state, feed, None, None))
    good = "%032x" % 9
    try:
        with Subscriber(mqtt_settings.port, [BASE + "#"]) as sub:
            feed.start()
            deadline = time.monotonic() + 20
            while not feed.connected and time.monotonic() < deadline:
                time.sleep(0.05)
            topic, payload = HOSTILE[case]
            sub.client.publish(topic, payload, qos=1)
            sub.client.publish(BASE + "alert", json.dumps(alert(9, True)), qos=1)    # after it, in order
            deadline = time.monotonic() + 10
            while state.alert(good) is None and time.monotonic() < deadline:
                time.sleep(0.05)
        assert state.alert(good) is not None, "the feed stopped at the malformed message"
        with urllib.request.urlopen(srv.url + "api/v1/state", timeout=10) as reply:
            snapshot = json.loads(reply.read(), parse_constant=lambda word: pytest.fail("not JSON: " + word))
        assert [v["alert"]["alert_id"] for v in snapshot["alerts"]] == [good]
    finally:
        srv.shutdown()
        srv.server_close()
        feed.stop()


def test_the_carts_ack_reader_survives_a_deeply_nested_ack(tmp_path):
    """The cart reads acks off the broker too: json raised RecursionError, which
    the acks thread did not expect, and it ended (no ack recorded, no
    re-announcement) for the rest of the run."""
    from edge.alerts.schema import build_ack, encode
    from tests.test_alerts_acks import POS, make
    store, _, acks = make(tmp_path)
    acks.start(None)
    try:
        acks.receive(b"[" * 100000 + b"]" * 100000)
        acks.receive(b'{"alert_id": NaN}')
        acks.receive(encode(build_ack(POS, "monitor-1")))
        deadline = time.monotonic() + 10
        while acks.unacknowledged() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert acks.unacknowledged() == []
    finally:
        acks.stop()
        store.close()
