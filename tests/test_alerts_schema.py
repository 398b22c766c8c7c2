"""The alert/event payloads: identity, determinism, privacy, topics."""
import json
from datetime import datetime, timezone

import numpy as np
import pydicom
import pytest
from pydicom.dataset import FileDataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

from edge.alerts import schema
from edge.alerts.schema import (SCHEMA_VERSION, alert_id_for, build_alert, build_event, build_status,
                                combined_intended_use, decode, encode, image_identity)
from edge.alerts.topics import Topics, subscription
from edge.errors import AlertError
from edge.types import Finding, Image, ModelInfo, Result

SHA = "ab" * 32


def model(name="classifier", task="classification", intended_use="demo", version="1.0",
          precision="fp32"):
    return ModelInfo(name=name, version=version, sha256="cd" * 32, task=task,
                     precision=precision, backend="onnxruntime", intended_use=intended_use)


def positive_finding():
    return Finding(pneumothorax=True, probability=0.93, seg_max_probability=0.97, area_px=5200,
                   area_fraction=0.0127, area_cm2=6.24, side="right", bbox=(40, 60, 80, 100),
                   contours=[[(40, 60), (120, 60), (120, 160), (40, 160)]],
                   reasons=["mask_area>=min"], classifier_probability=0.881234)


def result(finding=None, models=None):
    return Result(finding=finding or positive_finding(),
                  models=models or [model(), model("segmenter", "segmentation")],
                  timings_ms={"decode": 12.345, "classifier": 20.0},
                  thresholds={"pixel_high": 0.75, "min_area_fraction": 0.001})


def image(**kw):
    fields = dict(pixels=np.zeros((400, 300), np.float32), source_format="dicom", modality="DX",
                  view_position="PA", pixel_spacing_mm=(0.2, 0.2),
                  sop_instance_uid="1.2.3.4", study_instance_uid="1.2.3",
                  accession_number="ACC123")
    fields.update(kw)
    return Image(**fields)


def alert(res=None, img=None, **kw):
    """The alert's JSON, as the wire carries it."""
    args = dict(file_name="/capture/processing/img1.dcm", file_sha256=SHA, site="ward-3",
                device="cart-1")
    args.update(kw)
    return build_alert(res or result(), img or image(), **args).to_json()


def test_alert_carries_every_documented_field():
    payload = alert(created_at=datetime(2024, 5, 1, 8, 30, tzinfo=timezone.utc),
                    topics=Topics("pneumo", "ward-3", "cart-1"))
    assert payload["schema_version"] == SCHEMA_VERSION == 1
    assert payload["created_at"] == "2024-05-01T08:30:00.000Z"
    assert payload["source"] == {"file_name": "img1.dcm", "sha256": SHA,
                                 "sop_instance_uid": "1.2.3.4", "study_instance_uid": "1.2.3"}
    assert payload["finding"] == {
        "pneumothorax": True, "probability": 0.93, "seg_max_probability": 0.97,
        "classifier_probability": 0.8812, "area_px": 5200, "area_fraction": 0.0127, "area_cm2": 6.24, "side": "right",
        "bbox": [40, 60, 80, 100], "contours": [[[40, 60], [120, 60], [120, 160], [40, 160]]],
        "segmenter_skipped": False, "reasons": ["mask_area>=min"]}
    assert payload["image"] == {"width": 300, "height": 400, "pixel_spacing_mm": [0.2, 0.2],
                                "view_position": "PA", "modality": "DX"}
    assert payload["overlay_topic"] == "pneumo/ward-3/cart-1/overlay/" + payload["alert_id"]
    assert [m["name"] for m in payload["models"]] == ["classifier", "segmenter"]
    assert set(payload["models"][0]) == {"name", "version", "sha256", "precision", "backend", "task"}
    assert payload["thresholds"] == {"min_area_fraction": 0.001, "pixel_high": 0.75}
    assert payload["timings_ms"]["decode"] == 12.35
    assert decode(encode(payload)) == payload


def test_negative_without_spacing_or_classifier_uses_nulls():
    finding = Finding(pneumothorax=False, probability=None, seg_max_probability=None, area_px=0,
                      area_fraction=0.0, area_cm2=None, side=None, bbox=None,
                      segmenter_skipped=True, reasons=["classifier<skip"])
    payload = alert(res=result(finding), img=image(pixel_spacing_mm=None, view_position=None))
    assert payload["finding"]["bbox"] is None and payload["finding"]["area_cm2"] is None
    assert payload["finding"]["probability"] is None
    assert payload["image"]["pixel_spacing_mm"] is None
    assert payload["overlay_topic"] is None
    json.loads(encode(payload).decode())   # nulls, not NaN


def test_alert_id_is_deterministic_and_tied_to_image_and_models():
    a, b = alert(), alert(file_name="renamed.dcm", file_sha256="ef" * 32)
    assert a["alert_id"] == b["alert_id"]            # same SOP Instance UID: same image
    assert len(a["alert_id"]) == 32 and int(a["alert_id"], 16) >= 0
    other_image = alert(img=image(sop_instance_uid="1.2.3.5"))
    other_model = alert(res=result(models=[model(version="1.1"), model("segmenter")]))
    int8 = alert(res=result(models=[model(precision="int8"), model("segmenter")]))
    assert len({a["alert_id"], other_image["alert_id"], other_model["alert_id"],
                int8["alert_id"]}) == 4
    ms = [model(), model("segmenter")]
    assert alert_id_for("x", ms) == alert_id_for("x", list(reversed(ms)))


def test_identity_falls_back_to_file_hash_without_sop_uid():
    img = image(sop_instance_uid=None)
    assert image_identity(img, SHA) == "sha256:" + SHA
    assert image_identity(image(), SHA) == "sop:1.2.3.4"
    assert alert(img=img)["alert_id"] != alert(img=img, file_sha256="ef" * 32)["alert_id"]


def test_accession_number_only_when_the_site_enables_it():
    assert "accession_number" not in alert()["source"]
    assert "ACC123" not in encode(alert()).decode()
    assert alert(identify_by=["accession_number"])["source"]["accession_number"] == "ACC123"
    with pytest.raises(AlertError, match="patient_name"):
        alert(identify_by=["patient_name"])


@pytest.mark.parametrize("uses, expected", [
    (["validated", "validated"], "validated"),
    (["validated", "demo"], "demo"),
    (["demo", "untrained"], "untrained"),
    (["validated", "something-else"], "untrained"),
])
def test_intended_use_is_the_least_validated_model(uses, expected):
    models = [model(name="m%d" % i, intended_use=u) for i, u in enumerate(uses)]
    assert combined_intended_use(models) == expected
    assert alert(res=result(models=models))["intended_use"] == expected


def _dicom_with_patient(path):
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.1.1"
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = FileDataset(str(path), {}, file_meta=meta, preamble=b"\0" * 128)
    ds.PatientName = "Doe^Jane"
    ds.PatientBirthDate = "19700215"
    ds.PatientID = "PID-42"
    ds.AccessionNumber = "ACC-9"
    ds.Modality, ds.ViewPosition = "DX", "PA"
    ds.SOPClassUID = meta.MediaStorageSOPClassUID
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.StudyInstanceUID, ds.SeriesInstanceUID = generate_uid(), generate_uid()
    ds.PixelSpacing = [0.2, 0.2]
    ds.Rows, ds.Columns = 64, 48
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
    ds.PixelData = (np.arange(64 * 48, dtype=np.uint16) % 4096).tobytes()
    if pydicom.__version__.startswith("2."):   # pydicom 2.4 (Python 3.8) spells it this way
        ds.is_little_endian, ds.is_implicit_VR = True, False
        ds.save_as(str(path), write_like_original=False)
    else:
        ds.save_as(str(path), enforce_file_format=True)


def test_no_patient_name_or_birth_date_in_any_payload(tmp_path):
    path = tmp_path / "Doe_Jane.dcm"
    _dicom_with_patient(path)
    ds = pydicom.dcmread(str(path))
    assert str(ds.PatientName) == "Doe^Jane"   # the file really carries them
    img = Image(pixels=ds.pixel_array.astype(np.float32) / 4095.0, source_format="dicom",
                modality=ds.Modality, view_position=ds.ViewPosition,
                pixel_spacing_mm=tuple(float(v) for v in ds.PixelSpacing),
                sop_instance_uid=ds.SOPInstanceUID, study_instance_uid=ds.StudyInstanceUID,
                series_instance_uid=ds.SeriesInstanceUID, accession_number=ds.AccessionNumber)
    payloads = [
        alert(img=img, file_name="scan-0001.dcm"),
        alert(img=img, file_name="scan-0001.dcm", identify_by=["accession_number"]),
        build_event("rejected", "wrong modality", site="s", device="d", file="scan-0001.dcm").to_json(),
    ]
    for payload in payloads:
        text = encode(payload).decode()
        for secret in ("Doe", "Jane", "19700215", "1970-02-15", "PID-42"):
            assert secret not in text


def test_event_payload():
    ev = build_event("fault", "broker unreachable", site="ward-3", device="cart-1", retries=3).to_json()
    assert ev["schema_version"] == 1 and ev["kind"] == "fault"
    assert ev["fields"] == {"retries": 3} and len(ev["event_id"]) == 32
    assert ev["created_at"].endswith("Z")
    assert build_event("fault", "x", site="s", device="d").event_id != ev["event_id"]
    with pytest.raises(AlertError):
        build_event("Bad Kind", "x", site="s", device="d")
    with pytest.raises(AlertError):
        encode(build_event("fault", "x", site="s", device="d", value=float("nan")).to_json())


def test_topics():
    t = Topics("pneumo/", "ward-3", "cart-1")
    assert (t.alert, t.status, t.event) == ("pneumo/ward-3/cart-1/alert",
                                            "pneumo/ward-3/cart-1/status",
                                            "pneumo/ward-3/cart-1/event")
    assert t.overlay("abc") == "pneumo/ward-3/cart-1/overlay/abc"
    assert subscription("pneumo", "alert") == "pneumo/+/+/alert"
    with pytest.raises(AlertError):
        t.overlay("a/b")


def test_contours_are_bounded_in_polygons_and_points_and_keep_the_largest():
    import math
    big = [(int(500 + 300 * math.cos(t / 500.0 * 2 * math.pi)),
            int(500 + 300 * math.sin(t / 500.0 * 2 * math.pi))) for t in range(500)]
    specks = [[(x, 10), (x + 3, 10), (x + 3, 13)] for x in range(0, 400, 20)]
    line = [(0, 0), (5, 5)]                            # not a region
    f = Finding(pneumothorax=True, probability=0.9, seg_max_probability=0.9, area_px=1,
                area_fraction=0.1, area_cm2=None, side="right", bbox=(200, 200, 600, 600),
                contours=specks + [big, line])
    polys = alert(result(f), image(pixels=np.zeros((1000, 1000), np.float32)))["finding"]["contours"]
    assert len(polys) == schema.MAX_ALERT_POLYGONS
    assert all(3 <= len(p) <= schema.MAX_ALERT_POINTS for p in polys)
    circle = polys[0]                                  # the largest comes first, simplified
    assert len(circle) < 500
    assert all(abs(math.hypot(x - 500, y - 500) - 300) < 6 for x, y in circle)
    assert len(encode(alert(result(f))) ) < 8000


def test_a_negative_alert_carries_no_contours():
    f = Finding(pneumothorax=False, probability=0.1, seg_max_probability=0.2, area_px=0,
                area_fraction=0.0, area_cm2=None, side=None, bbox=None,
                contours=[[(1, 1), (9, 1), (9, 9)]])
    assert alert(result(f))["finding"]["contours"] == []


def test_ack_payload_round_trips_and_bad_acks_are_refused():
    ack = schema.build_ack("ab" * 16, "ward-monitor-1", " jd ",
                           acked_at=datetime(2024, 5, 1, 8, 31, tzinfo=timezone.utc))
    assert ack == {"schema_version": 1, "alert_id": "ab" * 16, "display_id": "ward-monitor-1",
                   "acked_at": "2024-05-01T08:31:00.000Z", "initials": "jd"}
    assert schema.check_ack(decode(encode(ack))) == ack
    assert schema.build_ack("ab" * 16, "d")["initials"] is None
    for bad in ({"alert_id": "xyz"}, {"display_id": ""}, {"initials": "x" * 9}, {"acked_at": 5}):
        broken = dict(ack, **bad)
        with pytest.raises(AlertError):
            schema.check_ack(broken)
    assert Topics("pneumo", "ward-3", "cart-1").ack == "pneumo/ward-3/cart-1/ack"


def test_status_envelope_wins_over_the_providers_fields():
    body = build_status("offline", site="ward-3", device="cart-1",
                        fields={"state": "online", "site": "elsewhere", "queue_depth": 4}).to_json()
    assert (body["state"], body["site"], body["device"]) == ("offline", "ward-3", "cart-1")
    assert body["queue_depth"] == 4 and body["schema_version"] == SCHEMA_VERSION and body["at"].endswith("Z")


def test_the_typed_alert_holds_what_its_json_says():
    a = build_alert(result(), image(), file_name="img1.dcm", file_sha256=SHA, site="ward-3",
                    device="cart-1", identify_by=["accession_number"])
    payload = a.to_json()
    assert a.alert_id == payload["alert_id"] and a.source.file_name == "img1.dcm"
    assert a.finding.pneumothorax is True and a.finding.classifier_probability == 0.8812
    assert a.source.identifiers == {"accession_number": "ACC123"}
    assert [m.name for m in a.models] == ["classifier", "segmenter"]
    assert a.image.width == 300 and a.image.pixel_spacing_mm == (0.2, 0.2)
    with pytest.raises(AttributeError):      # frozen: what was queued is what was built
        a.alert_id = "0" * 32


def test_threshold_switches_stay_booleans_and_limits_numbers():
    res = Result(finding=positive_finding(), models=[model()], timings_ms={},
                 thresholds={"pixel_high": 1, "gate_segmenter": True, "classifier_alerts": False})
    th = alert(res=res)["thresholds"]
    assert th == {"classifier_alerts": False, "gate_segmenter": True, "pixel_high": 1.0}
    assert type(th["gate_segmenter"]) is bool and type(th["pixel_high"]) is float


def test_status_leaves_out_what_it_does_not_know():
    will = build_status("offline", site="s", device="d", client_id="c", clean=False).to_json()
    assert set(will) == {"schema_version", "state", "site", "device", "at", "client_id", "clean"}
    online = build_status("online", site="s", device="d", fields={"backend": "onnxruntime"},
                          client_id="c", queue_depth=0)
    assert online.queue_depth == 0 and online.to_json()["queue_depth"] == 0
    assert online.to_json()["backend"] == "onnxruntime" and "clean" not in online.to_json()
