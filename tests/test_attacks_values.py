"""Attack suite: header numbers that are well-formed DICOM but not usable
numbers. A Rescale Slope or Window Center of "NaN" (DS accepts it in
pydicom) made every pixel NaN; the models then gave a NaN probability, the
alert could not be written as JSON, and the file was retried six times as
an internal fault (the `process` command printed invalid JSON saying
"no pneumothorax"). An infinite Pixel Spacing did the same through the
area. These must end as a `corrupt` rejection, or decode with the
number ignored, on the first attempt."""
import io
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from edge.app import Appliance
from edge.decode import decode_bytes
from edge.errors import DecodeError
from tests.attack_kit import collect, dicom_with, drop, settings_for
from tests.mosquitto import Subscriber
from tests.test_appliance import alerts_from

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def no_nan(word: str):
    raise AssertionError("not JSON: %s" % word)


@pytest.mark.parametrize("elements", [
    dict(RescaleSlope="NaN"), dict(RescaleSlope="inf"), dict(RescaleSlope="-inf"),
    dict(RescaleIntercept="nan"), dict(RescaleSlope="1e300"),
    dict(RescaleSlope="0"), dict(RescaleSlope="0.0"),        # read as 1 before (attack campaign, session 9)
], ids=lambda e: "-".join("%s=%s" % kv for kv in e.items()))
def test_a_rescale_that_is_not_a_finite_usable_number_is_corrupt(elements):
    with pytest.raises(DecodeError) as info:
        decode_bytes(dicom_with(**elements))
    assert info.value.code == "corrupt"


@pytest.mark.parametrize("elements", [
    dict(WindowCenter="nan"), dict(WindowWidth="inf"), dict(WindowCenter="inf"),
    dict(WindowCenter="-inf", WindowWidth="nan"),
], ids=lambda e: "-".join("%s=%s" % kv for kv in e.items()))
def test_a_window_that_is_not_finite_is_ignored_and_the_film_still_reads(elements):
    """The window is only a display hint: the percentile window takes over."""
    pixels = decode_bytes(dicom_with(**elements)).pixels
    assert np.isfinite(pixels).all()
    assert pixels.max() - pixels.min() > 0.5       # not a blank (all-0 / all-0.5) picture


@pytest.mark.parametrize("spacing", [["inf", "inf"], ["nan", "0.2"], ["1e30", "1e30"], ["1e-300", "1e-300"]])
def test_an_impossible_pixel_spacing_is_unknown_not_an_infinite_area(spacing):
    image = decode_bytes(dicom_with(PixelSpacing=spacing))
    assert image.pixel_spacing_mm is None
    assert decode_bytes(dicom_with(PixelSpacing=["0.143", "0.143"])).pixel_spacing_mm == (0.143, 0.143)


def test_in_the_appliance_they_are_rejected_once_or_alerted_with_valid_json(tmp_path, mosquitto):
    app = Appliance(settings_for(tmp_path, mosquitto.port))
    try:
        with Subscriber(mosquitto.port, [app.topics.alert]) as sub:
            app.start()
            drop(app.folders.incoming, "slope-nan.dcm", dicom_with(1, RescaleSlope="NaN"))
            drop(app.folders.incoming, "center-nan.dcm", dicom_with(2, WindowCenter="nan"))
            drop(app.folders.incoming, "spacing-inf.dcm", dicom_with(3, PixelSpacing=["inf", "inf"]))
            outcomes = {o.name: o for o in collect(app, 3, timeout=60, final=False)}
            sub.wait_for(lambda s: len(s.messages) >= 2, 30)
            alerts = {a["source"]["file_name"]: a for a in alerts_from(sub, app.topics.alert)}
    finally:
        app.stop()
    assert outcomes["slope-nan.dcm"].state == "rejected"
    assert "RescaleSlope" in outcomes["slope-nan.dcm"].reason
    reason = json.load(open(os.path.join(app.folders.rejected, "slope-nan.dcm.reason.json")))
    assert reason["code"] == "corrupt"
    assert outcomes["center-nan.dcm"].state == outcomes["spacing-inf.dcm"].state == "alerted"
    assert sorted(alerts) == ["center-nan.dcm", "spacing-inf.dcm"]
    assert alerts["spacing-inf.dcm"]["finding"]["area_cm2"] is None
    assert 0.0 <= alerts["center-nan.dcm"]["finding"]["probability"] <= 1.0


def test_process_prints_a_rejection_not_invalid_json_for_a_nan_film(tmp_path):
    from tests.tiny_models import write_tiny_models
    cls, seg = write_tiny_models(str(tmp_path / "models"))
    config = tmp_path / "edge.yaml"
    config.write_text("models:\n  classifier: %s\n  segmenter: %s\n" % (cls, seg))
    bad = tmp_path / "nan.dcm"
    bad.write_bytes(dicom_with(4, RescaleIntercept="NaN"))
    proc = subprocess.run([sys.executable, "-m", "edge.cli", "process", "--compact", "--config", str(config),
                           str(bad)], cwd=ROOT, env=dict(os.environ, PYTHONPATH=ROOT),
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=120)
    lines = [json.loads(line, parse_constant=no_nan) for line in proc.stdout.decode().splitlines()]
    assert lines == [{"file": str(bad), "rejected": "corrupt", "reason": lines[0]["reason"]}]
    assert proc.returncode != 0


def test_process_names_a_file_as_the_appliance_does_escaped(tmp_path):
    """An undecodable byte and a newline in the name: the alert's file_name is
    display_name's escaped form (valid UTF-8, one line), not a lone surrogate."""
    from tests.tiny_models import write_tiny_models
    cls, seg = write_tiny_models(str(tmp_path / "models"))
    config = tmp_path / "edge.yaml"
    config.write_text("models:\n  classifier: %s\n  segmenter: %s\n" % (cls, seg))
    path = os.path.join(os.fsencode(str(tmp_path)), b"cart\xff\nfilm.dcm")
    with open(path, "wb") as fh:
        fh.write(dicom_with(5))
    proc = subprocess.run([os.fsencode(sys.executable), b"-m", b"edge.cli", b"process", b"--compact",
                           b"--config", os.fsencode(str(config)), path], cwd=ROOT,
                          env=dict(os.environ, PYTHONPATH=ROOT), stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, timeout=120)
    alert = json.loads(proc.stdout.decode("utf-8"))
    assert alert["source"]["file_name"] == "cart\\xff\\x0afilm.dcm"
    assert alert["source"]["file_name"].encode("utf-8")


def test_pixels_the_decoder_does_not_read_are_named_not_called_damage():
    # Attack campaign, session 9: these read "pixel data is missing" and "corrupt (ValueError)".
    import pydicom
    ds = pydicom.dcmread(io.BytesIO(dicom_with(2)))
    del ds.PixelData
    ds.FloatPixelData = np.zeros(300 * 300, np.float32).tobytes()
    out = io.BytesIO()
    ds.save_as(out)
    with pytest.raises(DecodeError) as info:
        decode_bytes(out.getvalue())
    assert info.value.code == "unsupported" and "FloatPixelData" in str(info.value)
    with pytest.raises(DecodeError) as info:
        decode_bytes(dicom_with(2, BitsAllocated=12, BitsStored=12, HighBit=11))
    assert info.value.code == "unsupported" and "BitsAllocated is 12" in str(info.value)
