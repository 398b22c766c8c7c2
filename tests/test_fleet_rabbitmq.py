"""The appliance and a display, unchanged, against a clustering broker: RabbitMQ's
MQTT plugin (QoS 1 alerts, the retained status, the last will on a SIGKILL).
Marked `rabbitmq` (about 15 s to start RabbitMQ): run with `pytest -m rabbitmq`."""
import json
import signal

import pytest

from edge.alerts.schema import decode as decode_payload
from tests.mosquitto import Subscriber
from tests.rabbitmq import SKIP_REASON, RabbitMQ, rabbitmq_available
from tests.test_appliance import drop_dicom, received, start_process, wait_msgs, wait_until, write_config

pytestmark = [pytest.mark.rabbitmq, pytest.mark.slow]


@pytest.fixture(scope="module")
def rabbit(tmp_path_factory):
    if not rabbitmq_available():
        pytest.skip(SKIP_REASON)
    broker = RabbitMQ(str(tmp_path_factory.mktemp("rabbitmq")))
    broker.start()
    yield broker
    broker.stop()


def test_alerts_retained_status_and_last_will_through_rabbitmq(tmp_path, rabbit):
    config = write_config(tmp_path, rabbit.port)
    base = "pneumo/ward-4/cart-9"
    incoming = tmp_path / "capture" / "incoming"
    with Subscriber(rabbit.port, [base + "/alert", base + "/status"]) as sub:
        proc = start_process(config, str(tmp_path / "run.log"))
        try:
            wait_until(lambda: incoming.exists(), 60, "the appliance to start")
            for i in range(3):
                drop_dicom(str(incoming), "r%d.dcm" % i, seed=500 + i, positive=bool(i % 2))
            wait_msgs(sub, lambda: len({decode_payload(m.payload)["alert_id"]
                                        for m in received(sub, base + "/alert")}) == 3, 60)
            with Subscriber(rabbit.port, [base + "/status"]) as late:      # retained
                assert late.wait_for(lambda s: s.on(base + "/status"), 20)
                first = late.on(base + "/status")[0]
                assert first.retain and json.loads(first.payload)["state"] == "online"
            proc.send_signal(signal.SIGKILL)                                # no goodbye: the will speaks
            proc.wait(10)
            wait_msgs(sub, lambda: any(json.loads(m.payload).get("state") == "offline"
                                       for m in received(sub, base + "/status")), 60)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait(10)
    alerts = [decode_payload(m.payload) for m in received(sub, base + "/alert")]
    assert {a["source"]["file_name"] for a in alerts} == {"r0.dcm", "r1.dcm", "r2.dcm"}
