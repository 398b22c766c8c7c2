"""The one-shot retained status used before the appliance runs (engine builds)."""
import json

from edge.alerts.announce import announce_state
from edge.settings import MqttSettings, Settings
from tests.mosquitto import Subscriber


def test_building_engines_is_retained_on_the_status_topic(mosquitto):
    settings = Settings(site="w1", device="c1", mqtt=MqttSettings(port=mosquitto.port))
    assert announce_state(settings, "building-engines", models=["classifier"])
    # A display that connects later still sees it: it is retained.
    with Subscriber(mosquitto.port, ["pneumo/w1/c1/status"]) as sub:
        assert sub.wait_for(lambda s: s.on("pneumo/w1/c1/status"), 10)
        msg = sub.on("pneumo/w1/c1/status")[0]
    body = json.loads(msg.payload)
    assert msg.retain and body["state"] == "building-engines" and body["models"] == ["classifier"]


def test_an_unreachable_broker_is_reported_not_raised(mosquitto):
    port = mosquitto.port
    mosquitto.stop()
    assert announce_state(Settings(mqtt=MqttSettings(port=port)), "building-engines") is False
