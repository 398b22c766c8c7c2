"""The site acceptance drill (docs/DEVICE.md "Acceptance"), automated: the
known-positive film from ../shared/data (JPEG Baseline), sent by C-STORE (DCMTK storescu -xy, as
a cart's C++ stack would) to the appliance running the BUNDLED models, gives a
positive alert on the patient's right. Skipped where ../shared/data is absent
(PNEUMO_SHARED_DATA may point elsewhere)."""
import json
import os
import subprocess
from pathlib import Path

import pydicom
import pytest

from edge.alerts.schema import decode as decode_payload
from edge.app import Appliance
from edge.config import load_config
from tests.dicom_net import dcmtk
from tests.mosquitto import Subscriber
from tests.test_appliance import received, wait_msgs
from tests.test_dicom_intake import intake_settings

SHARED = Path(os.environ.get("PNEUMO_SHARED_DATA") or
              Path(__file__).resolve().parents[1].parent / "shared" / "data")
FILM = SHARED / "siim-ptx-dicom" / "dicom" / "1.2.276.0.7230010.3.1.4.8323329.3939.1517875180.226049.dcm"
FILM_SHA256 = "ccf03400b9d907016322368fc9fe95fb8aaad947349f6e44857578fa11cda689"   # as in docs/DEVICE.md

pytestmark = [pytest.mark.shared_data, pytest.mark.slow,
              pytest.mark.skipif(not FILM.is_file(), reason="../shared/data is absent")]


def test_the_film_is_the_one_the_docs_name():
    import hashlib
    assert hashlib.sha256(FILM.read_bytes()).hexdigest() == FILM_SHA256


def test_the_known_positive_film_by_c_store_alerts_positive_on_the_right(tmp_path, mosquitto):
    storescu = dcmtk("storescu")
    if storescu is None:
        pytest.skip("dcmtk is not installed (apt-get install dcmtk)")
    settings = load_config(None, {"state_dir": str(tmp_path / "state"), "capture.dir": str(tmp_path / "capture"),
                                  "mqtt.port": mosquitto.port, "site": "ward-4", "device": "cart-7",
                                  "models.warmup": 1})
    settings.intake.dicom = intake_settings(allowed_calling_aes=["AMX_CART7"])
    app = Appliance(settings)
    try:
        with Subscriber(mosquitto.port, [app.topics.alert]) as sub:
            app.start()
            sent = subprocess.run([storescu, "-xy", "-aet", "AMX_CART7", "-aec", "PNEUMO_EDGE", "127.0.0.1",
                                   str(app.hospital.receiver.port), str(FILM)], capture_output=True, timeout=60)
            assert sent.returncode == 0, sent.stderr
            wait_msgs(sub, lambda: received(sub, app.topics.alert), 60)
    finally:
        app.stop()
    alert = decode_payload(received(sub, app.topics.alert)[0].payload)
    stored = pydicom.dcmread(os.path.join(app.folders.done, os.listdir(app.folders.done)[0]))
    original = pydicom.dcmread(str(FILM))
    assert stored.PixelData == original.PixelData          # the data set as the cart sent it (new file meta)
    assert stored.file_meta.TransferSyntaxUID == original.file_meta.TransferSyntaxUID
    assert alert["source"]["sop_instance_uid"] == original.SOPInstanceUID
    assert alert["finding"]["pneumothorax"] is True and alert["finding"]["side"] == "right"
    assert alert["intended_use"] == "demo"
    print(json.dumps(alert["finding"]))
