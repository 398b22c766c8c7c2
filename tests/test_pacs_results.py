"""Results to PACS: the Secondary Capture and SR built from a real source film,
the durable queue, and, against a real Orthanc started here, delivery, read
back by StudyInstanceUID, and a PACS outage that loses nothing."""
import dataclasses
import io
import json
import time
import os
import subprocess

import cv2
import numpy as np
import pydicom
import pytest

from edge.alerts.overlay import render_overlay
from edge.app import Appliance
from edge.pacs.queue import PacsQueue, backoff_s
from edge.pacs.results import ENHANCED_SR, SECONDARY_CAPTURE, overlay_sc, report_sr, source_header, uid_for
from edge.settings import PacsSettings
from edge.store import Store
from edge.types import Finding, Image
from tests.dicom_factory import write_png
from tests.dicom_net import dcmtk, make_film, send_files
from tests.mosquitto import Subscriber
from tests.orthanc import SKIP_REASON, Orthanc, orthanc_binary
from tests.test_appliance import make_settings, received, wait_msgs, wait_until
from tests.test_dicom_intake import intake_settings

ALERT = {"alert_id": "a" * 32, "created_at": "2026-12-01T10:00:00.000Z", "intended_use": "untrained",
         "finding": {"pneumothorax": True, "probability": 0.91, "area_cm2": 12.5, "side": "right"},
         "models": [{"name": "tiny-classifier", "version": "0", "precision": "fp32"}]}


@pytest.fixture
def orthanc(tmp_path):
    if orthanc_binary() is None:
        pytest.skip(SKIP_REASON)
    pacs = Orthanc(str(tmp_path / "orthanc"))
    pacs.start()
    yield pacs
    pacs.stop()


def source(tmp_path, **kw):
    path = make_film(str(tmp_path / "src.dcm"), seed=1, positive=True, patient_name="Doe^Jane",
                     birth_date="19700101", **kw)
    return path, source_header(path)


def overlay_jpeg() -> bytes:
    px = np.linspace(0, 1, 300 * 240, dtype=np.float32).reshape(300, 240)
    image = Image(pixels=px, source_format="dicom")
    finding = Finding(pneumothorax=True, probability=0.9, seg_max_probability=0.9, area_px=100,
                      area_fraction=0.01, area_cm2=1.0, side="right", bbox=(10, 10, 50, 50),
                      contours=[[(10, 10), (60, 10), (60, 60), (10, 60)]])
    return render_overlay(image, finding, "TEST")


def test_the_objects_join_the_source_study_with_only_the_patient_data_it_had(tmp_path):
    path, src = source(tmp_path)
    want = pydicom.dcmread(path)
    jpeg = overlay_jpeg()
    sc = overlay_sc(src, ALERT, jpeg)
    sr = report_sr(src, ALERT, overlay_uid=sc.SOPInstanceUID)
    for ds in (sc, sr):
        assert ds.StudyInstanceUID == want.StudyInstanceUID
        assert ds.SeriesInstanceUID not in (want.SeriesInstanceUID, sc.SeriesInstanceUID if ds is sr else "")
        assert str(ds.PatientName) == "Doe^Jane" and ds.PatientID == want.PatientID
        assert ds.AccessionNumber == want.AccessionNumber
        # Nothing about the patient that the source did not carry (it has no sex, no address...).
        assert ds.PatientSex == "" and "PatientAddress" not in ds and "OtherPatientIDs" not in ds
    assert sc.SOPClassUID == SECONDARY_CAPTURE and sr.SOPClassUID == ENHANCED_SR
    assert sc.SourceImageSequence[0].ReferencedSOPInstanceUID == want.SOPInstanceUID
    h, w = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR).shape[:2]
    assert (sc.Rows, sc.Columns, sc.SamplesPerPixel) == (h, w, 3) and w == 240   # the overlay as rendered
    ref = sr.CurrentRequestedProcedureEvidenceSequence[0]
    assert ref.StudyInstanceUID == want.StudyInstanceUID
    assert ref.ReferencedSeriesSequence[0].ReferencedSOPSequence[0].ReferencedSOPInstanceUID == want.SOPInstanceUID
    texts = [i.TextValue for i in sr.ContentSequence if i.ValueType == "TEXT"]
    assert "Pneumothorax suspected (right)" in texts
    nums = {i.ConceptNameCodeSequence[0].CodeValue: float(i.MeasuredValueSequence[0].NumericValue)
            for i in sr.ContentSequence if i.ValueType == "NUM"}
    assert nums == {"PROB": 0.91, "AREA": 12.5}
    # The same alert gives the same instances, so a resend is filed once.
    assert overlay_sc(src, ALERT, overlay_jpeg()).SOPInstanceUID == sc.SOPInstanceUID == uid_for("a" * 32, "sc")


def test_dcmtk_reads_the_sr_as_a_valid_structured_report(tmp_path):
    dsrdump = dcmtk("dsrdump")
    if not dsrdump:
        pytest.skip("dcmtk is not installed (apt-get install dcmtk)")
    _, src = source(tmp_path)
    out = str(tmp_path / "sr.dcm")
    sr = report_sr(src, ALERT)
    try:
        sr.save_as(out, enforce_file_format=True)
    except TypeError:                                          # pydicom 2.x
        sr.save_as(out, write_like_original=False)
    dump = subprocess.run([dsrdump, out], capture_output=True, timeout=30)
    assert dump.returncode == 0, dump.stderr
    text = dump.stdout.decode(errors="replace")
    assert "Enhanced SR" in text and "Pneumothorax suspected (right)" in text and "12.5" in text
    assert b"W:" not in dump.stderr and b"E:" not in dump.stderr, dump.stderr


def test_backoff_doubles_up_to_the_cap():
    assert [backoff_s(n, 2.0, 30.0) for n in (1, 2, 3, 4, 5, 6)] == [2.0, 4.0, 8.0, 16.0, 30.0, 30.0]


def test_a_row_queued_once_per_alert_and_kind_and_done_only_on_success(tmp_path):
    store = Store(str(tmp_path / "state"))
    q = PacsQueue(store)
    _, src = source(tmp_path)
    for _ in range(2):
        with store.transaction() as conn:
            q.enqueue(conn, ["overlay_sc", "report_sr"], src, ALERT, b"jpeg")
    assert q.depth() == 2
    rows = q.due(now=1e12)
    q.mark_failed(rows[0].id, rows[0].attempts, "PACS answered 0xA700", 0xA700, 60.0, 60.0)
    assert q.depth() == 2
    assert [r.kind for r in q.due(now=time.time())] == ["report_sr"]   # the failed one waits its backoff
    q.mark_sent(rows[1].id, 0)
    assert q.depth() == 1 and q.last_error() == "PACS answered 0xA700"
    assert rows[1].source.PatientName == "Doe^Jane"             # the copied header survives the round trip
    store.close()


# -- against a real PACS ------------------------------------------------------------------

def pacs_settings(orthanc: Orthanc, **kw) -> PacsSettings:
    return PacsSettings(enabled=True, host="127.0.0.1", port=orthanc.dicom_port, called_ae=orthanc.aet,
                        calling_ae="PNEUMO_EDGE", retry_min_s=0.2, retry_max_s=1.0, timeout_s=10, **kw)


def results_in(orthanc: Orthanc, study_uid: str):
    found = orthanc.instances_of_study(study_uid)
    return {i["MainDicomTags"]["SOPInstanceUID"]: i for i in found}


@pytest.mark.slow
def test_c_store_in_alert_out_and_results_land_in_pacs_in_the_source_study(tmp_path, mosquitto, orthanc):
    settings = make_settings(tmp_path, mosquitto.port)
    settings.intake.dicom = intake_settings()
    settings.pacs = pacs_settings(orthanc)
    app = Appliance(settings)
    try:
        with Subscriber(mosquitto.port, [app.topics.alert]) as sub:
            app.start()
            film = make_film(str(tmp_path / "f.dcm"), seed=30, positive=True, patient_name="Roe^Rick")
            assert send_files(app.hospital.receiver.port, [film]) == [0]
            wait_msgs(sub, lambda: received(sub, app.topics.alert), 30)
            # the results are queued after the alert went out, with its overlay: the outcome says when
            assert app.outcomes.get(timeout=30).state == "alerted"
        alert = json.loads(received(sub, app.topics.alert)[0].payload)
        study = pydicom.dcmread(film).StudyInstanceUID
        wait_until(lambda: app.hospital.queue.depth() == 0, 30, "the PACS queue to drain")
        found = results_in(orthanc, study)
        assert set(found) == {uid_for(alert["alert_id"], "sc"), uid_for(alert["alert_id"], "sr")}
        sr = pydicom.dcmread(io.BytesIO(orthanc.file(found[uid_for(alert["alert_id"], "sr")]["ID"])))
        assert sr.StudyInstanceUID == study and str(sr.PatientName) == "Roe^Rick"
        assert any(getattr(i, "TextValue", "").startswith("Pneumothorax suspected") for i in sr.ContentSequence)
        assert app.status()["hospital"]["pacs_queue_depth"] == 0
    finally:
        app.stop()


@pytest.mark.slow
def test_pacs_down_results_wait_and_all_arrive_when_it_returns(tmp_path, mosquitto, orthanc):
    orthanc.stop()
    settings = make_settings(tmp_path, mosquitto.port)
    settings.pacs = pacs_settings(orthanc)
    app = Appliance(settings)
    n = 3
    try:
        app.start()
        studies = []
        for i in range(n):
            path = make_film(str(tmp_path / ("p%d.dcm" % i)), seed=40 + i, positive=bool(i % 2))
            studies.append(pydicom.dcmread(path).StudyInstanceUID)
            os.rename(path, os.path.join(app.folders.incoming, "p%d.dcm" % i))
        png = os.path.join(app.folders.incoming, "film.png")
        write_png(png, np.full((400, 400), 60, np.uint8))          # no study: nothing for PACS
        wait_until(lambda: len(os.listdir(app.folders.done)) == n + 1, 30, "all films processed")
        wait_until(lambda: app.status()["hospital"].get("pacs_last_error"), 10, "a failed attempt")
        assert app.hospital.queue.depth() == 2 * n                   # an SC and an SR per DICOM film
        assert "unreachable" in app.status()["hospital"]["pacs_last_error"]
        orthanc.start()
        wait_until(lambda: app.hospital.queue.depth() == 0, 30, "the PACS queue to drain")
        for study in studies:
            assert len(results_in(orthanc, study)) == 2
    finally:
        app.stop()


@pytest.mark.slow
def test_a_pacs_that_refuses_us_keeps_the_results_queued(tmp_path, orthanc):
    from edge.pacs.sender import PacsSender
    store = Store(str(tmp_path / "state"))
    q = PacsQueue(store)
    _, src = source(tmp_path)
    with store.transaction() as conn:
        q.enqueue(conn, ["report_sr"], src, ALERT, None)
    sender = PacsSender(dataclasses.replace(pacs_settings(orthanc), called_ae="WRONG_AE"), q)
    assert sender.send_due() is False
    assert q.depth() == 1 and "rejected" in q.last_error()
    assert results_in(orthanc, str(src.StudyInstanceUID)) == {}
    store.close()


@pytest.mark.slow
def test_a_resend_after_a_lost_acknowledgement_is_filed_once(tmp_path, orthanc):
    """At least once: a crash between PACS's success and our "sent" resends the
    same instances; PACS keeps one copy of each (same SOP Instance UIDs)."""
    from edge.pacs.sender import PacsSender
    store = Store(str(tmp_path / "state"))
    q = PacsQueue(store)
    _, src = source(tmp_path)
    with store.transaction() as conn:
        q.enqueue(conn, ["overlay_sc", "report_sr"], src, ALERT, overlay_jpeg())
    sender = PacsSender(pacs_settings(orthanc), q)
    assert sender.send_due() is True and q.depth() == 0
    with store.transaction() as conn:                      # as if "sent" had never been recorded
        conn.execute("UPDATE pacs_outbox SET sent_at = NULL, next_attempt_at = 0")
    assert sender.send_due() is True and q.depth() == 0
    found = results_in(orthanc, str(src.StudyInstanceUID))
    assert set(found) == {uid_for(ALERT["alert_id"], "sc"), uid_for(ALERT["alert_id"], "sr")}
    store.close()
