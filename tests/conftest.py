"""Shared fixtures: a real mosquitto broker and MqttSettings pointing at it."""
import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(__file__))   # so tests can `from mosquitto import ...`

from mosquitto import SKIP_REASON, Mosquitto, Subscriber, mosquitto_binary  # noqa: E402

from edge.settings import MqttSettings  # noqa: E402


@pytest.fixture
def mosquitto(tmp_path):
    """A started broker on a free loopback port (function-scoped: tests may stop it)."""
    if mosquitto_binary() is None:
        pytest.skip(SKIP_REASON)
    broker = Mosquitto(str(tmp_path / "mosquitto"))
    broker.start()
    yield broker
    broker.stop()


@pytest.fixture
def make_mosquitto(tmp_path):
    """Factory for brokers with options (password_file=, tls=, persistence=);
    each is started, and stopped after the test."""
    if mosquitto_binary() is None:
        pytest.skip(SKIP_REASON)
    brokers = []

    def make(**options):
        broker = Mosquitto(str(tmp_path / ("mosquitto-%d" % len(brokers))), **options)
        brokers.append(broker)
        return broker.start()

    yield make
    for broker in brokers:
        broker.stop()


@pytest.fixture
def mqtt_settings(mosquitto):
    """MqttSettings for the test broker, with quick reconnects."""
    return MqttSettings(host="127.0.0.1", port=mosquitto.port, topic_prefix="pneumo-test",
                        keepalive_s=5, reconnect_min_s=0.2, reconnect_max_s=1.0)


__all__ = ["Subscriber"]
