"""Many carts, one hospital broker: real mosquitto brokers (one per cart, each
bridged to a hospital broker), the real appliance on one cart and two
simulated carts, one display on the hospital side; the hospital broker is
stopped and started mid-stream and nothing is lost."""
import json
import os
import threading
import time

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from edge.alerts.topics import Topics
from edge.app import Appliance
from edge.fleet.bridge import bridge_lines, broker_lines, main as bridge_main
from tests.mosquitto import Subscriber
from tests.test_appliance import drop_dicom, make_settings, wait_until

pytestmark = pytest.mark.slow


def cart_broker(make_mosquitto, hospital, topics: Topics):
    extra = broker_lines()[1:] + bridge_lines(topics, "127.0.0.1", hospital.port, restart_min_s=1,
                                              restart_max_s=2)
    return make_mosquitto(persistence=True, extra=extra)


class SimulatedCart:
    """A paho publisher on its cart's local broker, QoS 1, waiting for each PUBACK."""

    def __init__(self, port: int, topics: Topics):
        self.topics = topics
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="sim-" + topics.device,
                                  protocol=mqtt.MQTTv311)
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        self.sent = []

    def publish(self, n: int) -> None:
        for _ in range(n):
            alert_id = "%s-%04d" % (self.topics.device, len(self.sent))
            info = self.client.publish(self.topics.alert, json.dumps({"alert_id": alert_id}), qos=1)
            info.wait_for_publish(10)
            assert info.is_published()
            self.sent.append(alert_id)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def alert_ids(sub: Subscriber):
    return {json.loads(m.payload)["alert_id"] for m in list(sub.messages) if m.topic.endswith("/alert")}


def appliance_ids(sub: Subscriber):
    return {a for a in alert_ids(sub) if "-" not in a}     # the simulated carts' ids have a dash


def test_three_carts_through_bridges_lose_nothing_across_a_hospital_broker_outage(tmp_path, make_mosquitto):
    hospital = make_mosquitto(persistence=True)
    real = Topics("pneumo", "ward-4", "cart-7")
    sims = [Topics("pneumo", "ward-5", "cart-%d" % i) for i in (1, 2)]
    cart_a = cart_broker(make_mosquitto, hospital, real)
    sim_brokers = [cart_broker(make_mosquitto, hospital, t) for t in sims]
    app = Appliance(make_settings(tmp_path, cart_a.port))
    carts = [SimulatedCart(b.port, t) for b, t in zip(sim_brokers, sims)]
    # The ward display: a persistent session on the hospital broker.
    display = Subscriber(hospital.port, ["pneumo/+/+/alert"], client_id="ward-display", clean_session=False)
    try:
        app.start()
        for i in range(3):
            drop_dicom(app.folders.incoming, "a%d.dcm" % i, seed=300 + i, positive=bool(i % 2))
        for c in carts:
            c.publish(20)
        assert display.wait_for(lambda s: len(alert_ids(s)) == 43, 30), len(alert_ids(display))

        hospital.stop()                                     # the hospital side goes away
        for i in range(3, 6):
            drop_dicom(app.folders.incoming, "a%d.dcm" % i, seed=300 + i, positive=bool(i % 2))
        for c in carts:
            c.publish(30)                                   # each PUBACKed by the cart's own broker
        wait_until(lambda: len(os.listdir(app.folders.done)) == 6, 30, "the appliance to process 6 films")
        wait_until(lambda: app.outbox.depth() == 0, 30, "the appliance's outbox to drain into its broker")
        time.sleep(1.0)
        assert len(alert_ids(display)) == 43                # nothing got through meanwhile
        hospital.start()                                    # back: the bridges deliver their queues
        want = {a for c in carts for a in c.sent}
        assert display.wait_for(lambda s: len(appliance_ids(s)) == 6 and want <= alert_ids(s), 60), \
            (len(alert_ids(display)), hospital.log_tail())
    finally:
        display.close()
        for c in carts:
            c.close()
        app.stop()
    got = alert_ids(display)
    assert want <= got and len(got) == len(want) + 6        # every alert, from every cart
    # The appliance's retained status reached the hospital through the bridge, and an ack goes back.
    with Subscriber(hospital.port, [real.status]) as late:
        assert late.wait_for(lambda s: s.on(real.status), 10)
        assert late.on(real.status)[-1].retain


def test_an_ack_published_at_the_hospital_reaches_the_cart(make_mosquitto):
    hospital = make_mosquitto(persistence=True)
    topics = Topics("pneumo", "ward-4", "cart-7")
    cart = cart_broker(make_mosquitto, hospital, topics)
    with Subscriber(cart.port, [topics.ack]) as on_cart:
        with Subscriber(hospital.port, [topics.base + "/bridge"]) as watch:   # the bridge is up
            assert watch.wait_for(lambda s: any(m.payload == b"1" for m in s.messages), 20)
        client = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv311)
        client.connect("127.0.0.1", hospital.port)
        client.loop_start()
        client.publish(topics.ack, b'{"alert_id": "abc123"}', qos=1).wait_for_publish(10)
        client.disconnect()
        client.loop_stop()
        assert on_cart.wait_for(lambda s: s.on(topics.ack), 20)


def test_the_bridge_config_printed_for_a_cart(tmp_path, capsys):
    cfg = tmp_path / "edge.yaml"
    cfg.write_text("site: ward-4\ndevice: cart-7\n")
    assert bridge_main(["--config", str(cfg), "--remote", "mqtt.hospital:8883",
                        "--remote-cafile", "/etc/mosquitto/ca.crt"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert "connection pneumo-ward-4-cart-7" in out and "cleansession false" in out
    assert "topic pneumo/ward-4/cart-7/alert out 1" in out and "topic pneumo/ward-4/cart-7/ack in 1" in out
    assert "bridge_cafile /etc/mosquitto/ca.crt" in out and "max_queued_messages 100000" in out
    assert not any(line.startswith("topic pneumo/ward-4/cart-7/# ") for line in out)   # no echo loop
