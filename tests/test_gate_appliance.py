"""End to end: a DICOM of another body part and an image far from every chest
film are rejected with `not_a_chest_radiograph` (event + reason file, no
alert), and the next chest film is still alerted."""
import json
import os

import numpy as np
import pytest

from edge.alerts.schema import decode as decode_payload
from edge.app import Appliance
from edge.settings import CaptureSettings, ModelSettings, MqttSettings, Settings
from tests.dicom_factory import write_dicom
from tests.mosquitto import Subscriber
from tests.test_appliance import drop_dicom, received, wait_msgs
from tests.tiny_models import write_tiny_models

pytestmark = pytest.mark.slow


def test_not_a_chest_is_rejected_with_its_code_and_the_next_film_alerts(tmp_path, mosquitto):
    cls, seg = write_tiny_models(str(tmp_path / "models"), gate=True)
    app = Appliance(Settings(
        site="ward-4", device="cart-7", state_dir=str(tmp_path / "state"),
        capture=CaptureSettings(dir=str(tmp_path / "capture"), settle_s=0.1, poll_interval_s=0.05),
        models=ModelSettings(classifier=cls, segmenter=seg, threads=1, warmup=1),
        mqtt=MqttSettings(host="127.0.0.1", port=mosquitto.port, reconnect_min_s=0.2, reconnect_max_s=1.0,
                          keepalive_s=5)))
    topics = app.topics
    try:
        with Subscriber(mosquitto.port, [topics.alert, topics.event]) as sub:
            app.start()
            incoming = app.folders.incoming
            drop_dicom(incoming, "tibia.dcm", seed=1, positive=False, body_part="EXTREMITY")
            # uniformly bright: the tiny classifier's "feature distance" is 10 x mean > ood_max 5
            tmp = str(tmp_path / "white.part")
            write_dicom(tmp, np.full((400, 400), 3900, np.uint16),
                        bits_stored=12, window=(2048, 4096))
            os.rename(tmp, os.path.join(incoming, "white.dcm"))
            wait_msgs(sub, lambda: len(received(sub, topics.event)) >= 2, 30, "two rejections")
            drop_dicom(incoming, "chest.dcm", seed=7, positive=True, body_part="CHEST")
            wait_msgs(sub, lambda: received(sub, topics.alert), 30, "the chest film's alert")
        events = [decode_payload(m.payload) for m in received(sub, topics.event)]
        assert sorted(e["fields"]["file_name"] for e in events) == ["tibia.dcm", "white.dcm"]
        assert all(e["kind"] == "rejected" and e["fields"]["code"] == "not_a_chest_radiograph" for e in events)
        for name in ("tibia.dcm", "white.dcm"):
            reason = json.load(open(os.path.join(app.folders.rejected, name + ".reason.json")))
            assert reason["code"] == "not_a_chest_radiograph"
        alerts = [decode_payload(m.payload) for m in received(sub, topics.alert)]
        assert [a["source"]["file_name"] for a in alerts] == ["chest.dcm"]
        assert alerts[0]["finding"]["pneumothorax"] is True
        assert alerts[0]["finding"]["probability"] >= alerts[0]["thresholds"]["probability"]
    finally:
        app.stop()
