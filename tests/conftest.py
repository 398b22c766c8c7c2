"""Shared fixtures: a real mosquitto broker and MqttSettings pointing at it.

The helpers are modules of the `tests` package (tests.mosquitto,
tests.dicom_factory, tests.tiny_models). A test may also import one by its
short name (`from mosquitto import Subscriber`): that name resolves to the
same module object, so no helper runs twice or exists as two classes.
"""
import importlib
import importlib.abc
import importlib.util
import sys

import pytest

from edge.settings import MqttSettings
from tests.mosquitto import SKIP_REASON, Mosquitto, Subscriber, mosquitto_binary

HELPERS = ("mosquitto", "dicom_factory", "tiny_models")


class _ShortNames(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """`import mosquitto` -> the module tests.mosquitto itself, imported on first use."""

    def __init__(self):
        self._specs = {}

    def find_spec(self, name, path=None, target=None):
        return importlib.util.spec_from_loader(name, self) if name in HELPERS else None

    def create_module(self, spec):
        module = importlib.import_module("tests." + spec.name)
        self._specs[spec.name] = module.__spec__
        return module

    def exec_module(self, module):
        # Already executed as tests.<name>; the import system has just put the
        # short name's spec on it: give the module its own back.
        module.__spec__ = self._specs[module.__name__.rsplit(".", 1)[-1]]


if not any(isinstance(f, _ShortNames) for f in sys.meta_path):
    sys.meta_path.insert(0, _ShortNames())


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
