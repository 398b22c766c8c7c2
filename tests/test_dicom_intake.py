"""The C-STORE receiver: a real pynetdicom SCP on a loopback port, a real SCU
(pynetdicom, or dcmtk's storescu) on the cart's side, the real capture folder,
and, end to end, the appliance's alerts on a real mosquitto."""
import os
import signal
import subprocess

import pydicom
import pytest

from edge.alerts.schema import decode as decode_payload
from edge.app import Appliance
from edge.capture.folders import CaptureFolders
from edge.intake.dicom_scp import DicomReceiver
from edge.intake.names import SOP_CLASSES, TRANSFER_SYNTAXES, expand
from edge.settings import CaptureSettings, DicomIntakeSettings
from tests.dicom_factory import DX_SOP_CLASS, write_dicom
from tests.dicom_net import (BASIC_TEXT_SR, CT_IMAGE, EXPLICIT_LE, IMPLICIT_LE, RLE, VERIFICATION,
                             associate, dcmtk, make_film, send_files)
from tests.mosquitto import Subscriber, free_port
from tests.test_appliance import make_settings, received, start_process, wait_msgs, wait_until, write_config

pytestmark = pytest.mark.slow


def intake_settings(**kw) -> DicomIntakeSettings:
    kw.setdefault("allowed_calling_aes", ["CART1", "CART2"])
    return DicomIntakeSettings(listen=True, port=0, bind_address="127.0.0.1", **kw)


@pytest.fixture
def receiver(tmp_path):
    folders = CaptureFolders(str(tmp_path / "capture"), CaptureSettings())
    rx = DicomReceiver(intake_settings(), folders)
    rx.start()
    yield rx
    rx.stop()


def incoming(rx):
    return sorted(os.listdir(rx.spool.incoming))


def test_config_names_expand_to_the_uids_negotiated():
    assert expand(["cr", "dx_presentation"], SOP_CLASSES) == ["1.2.840.10008.5.1.4.1.1.1",
                                                             "1.2.840.10008.5.1.4.1.1.1.1"]
    assert "1.2.840.10008.1.2.4.57" in expand(["jpeg_lossless"], TRANSFER_SYNTAXES)


def test_c_echo_is_answered(receiver):
    assoc = associate(receiver.port)
    assert assoc.is_established
    assert assoc.send_c_echo().Status == 0x0000
    assoc.release()


def test_a_film_is_in_incoming_complete_before_the_success_status(receiver, tmp_path):
    src = make_film(str(tmp_path / "a.dcm"), seed=1, positive=True)
    assoc = associate(receiver.port)
    rsp = assoc.send_c_store(pydicom.dcmread(src))
    # The status has just come back: the file must already be whole, under its final name.
    names = incoming(receiver)
    assoc.release()
    assert rsp.Status == 0x0000
    assert names == ["1.2.826.0.1.3680043.8.498.2.dcm"]
    got = pydicom.dcmread(os.path.join(receiver.spool.incoming, names[0]))
    want = pydicom.dcmread(src)
    assert got.SOPInstanceUID == want.SOPInstanceUID and got.PixelData == want.PixelData
    assert got.file_meta.TransferSyntaxUID == want.file_meta.TransferSyntaxUID
    assert os.listdir(receiver.spool.dir) == []          # no temporary file left behind
    assert receiver.counts() == {"stored": 1, "refused": 0}


def test_the_same_instance_twice_keeps_both_files(receiver, tmp_path):
    src = make_film(str(tmp_path / "a.dcm"), seed=2, positive=False)
    assert send_files(receiver.port, [src, src]) == [0, 0]
    assert incoming(receiver) == ["1.2.826.0.1.3680043.8.498.3-1.dcm", "1.2.826.0.1.3680043.8.498.3.dcm"]


def test_an_unknown_calling_ae_or_a_wrong_called_ae_is_refused_at_association(receiver):
    assoc = associate(receiver.port, calling="INTRUDER")
    assert assoc.is_rejected and not assoc.is_established
    assoc = associate(receiver.port, called="SOMEONE_ELSE")
    assert assoc.is_rejected and not assoc.is_established
    assert receiver.counts()["refused"] == 2 and incoming(receiver) == []


def test_a_non_image_sop_class_is_not_accepted(receiver, tmp_path):
    assoc = associate(receiver.port, contexts=[(BASIC_TEXT_SR, (EXPLICIT_LE,)), (CT_IMAGE, (EXPLICIT_LE,)),
                                               (DX_SOP_CLASS, (EXPLICIT_LE,))])
    accepted = {cx.abstract_syntax for cx in assoc.accepted_contexts}
    rejected = {cx.abstract_syntax: cx.result for cx in assoc.rejected_contexts}
    # A data set that claims DX but carries no image: "does not match SOP class".
    ds = pydicom.dcmread(make_film(str(tmp_path / "b.dcm"), seed=3, positive=True))
    del ds.PixelData
    status = assoc.send_c_store(ds).Status
    assoc.release()
    assert accepted == {DX_SOP_CLASS}
    assert rejected == {BASIC_TEXT_SR: 0x03, CT_IMAGE: 0x03}      # abstract syntax not supported
    assert status == 0xA900
    assert incoming(receiver) == []


def test_a_truncated_data_set_gets_cannot_understand_and_is_not_stored(receiver, tmp_path):
    src = make_film(str(tmp_path / "c.dcm"), seed=4, positive=True)
    data = open(src, "rb").read()
    cut = str(tmp_path / "cut.dcm")
    with open(cut, "wb") as fh:
        fh.write(data[:len(data) - 5000])
    rle = write_dicom(str(tmp_path / "rle.dcm"), compression="rle")
    rle_cut = pydicom.dcmread(rle)
    rle_cut.PixelData = rle_cut.PixelData[:len(rle_cut.PixelData) // 2]   # a fragment cut short
    assoc = associate(receiver.port)
    status = assoc.send_c_store(rle_cut).Status
    assoc.release()
    assert status == 0xC000
    assert send_files(receiver.port, [cut]) == [0xC000]
    assert incoming(receiver) == [] and os.listdir(receiver.spool.dir) == []
    assert send_files(receiver.port, [rle]) == [0]       # the whole RLE film is fine


def test_storescu_and_echoscu_from_dcmtk(receiver, tmp_path):
    storescu, echoscu = dcmtk("storescu"), dcmtk("echoscu")
    if not (storescu and echoscu):
        pytest.skip("dcmtk is not installed (apt-get install dcmtk)")
    port = str(receiver.port)
    echo = subprocess.run([echoscu, "-aet", "CART2", "-aec", "PNEUMO_EDGE", "127.0.0.1", port],
                          capture_output=True, timeout=30)
    assert echo.returncode == 0, echo.stderr
    src = make_film(str(tmp_path / "d.dcm"), seed=5, positive=True)
    sent = subprocess.run([storescu, "-aet", "CART2", "-aec", "PNEUMO_EDGE", "127.0.0.1", port, src],
                          capture_output=True, timeout=30)
    assert sent.returncode == 0, sent.stderr
    refused = subprocess.run([storescu, "-aet", "NOBODY", "-aec", "PNEUMO_EDGE", "127.0.0.1", port, src],
                             capture_output=True, timeout=30)
    assert refused.returncode != 0 and b"calling ae title not recogni" in refused.stderr.lower()
    assert incoming(receiver) == ["1.2.826.0.1.3680043.8.498.6.dcm"]


# -- end to end: C-STORE in, alerts out over MQTT ----------------------------------------

def test_films_sent_by_c_store_are_alerted_and_refused_ones_are_not(tmp_path, mosquitto):
    settings = make_settings(tmp_path, mosquitto.port)
    settings.intake.dicom = intake_settings()
    app = Appliance(settings)
    topics = app.topics
    try:
        with Subscriber(mosquitto.port, [topics.alert, topics.event]) as sub:
            app.start()
            port = app.hospital.receiver.port
            films = [make_film(str(tmp_path / ("f%d.dcm" % i)), seed=10 + i, positive=(i % 2 == 0))
                     for i in range(3)]
            bad = str(tmp_path / "bad.dcm")
            with open(bad, "wb") as fh:
                fh.write(open(films[0], "rb").read()[:-3000])
            assert send_files(port, films[:2] + [bad] + films[2:]) == [0, 0, 0xC000, 0]
            assert associate(port, calling="STRANGER").is_rejected
            wait_msgs(sub, lambda: len({m.payload for m in received(sub, topics.alert)}) >= 3, 30)
            wait_until(lambda: len(os.listdir(app.folders.done)) == 3, 30, "3 films done")
        alerts = {decode_payload(m.payload)["source"]["sop_instance_uid"]: decode_payload(m.payload)
                  for m in received(sub, topics.alert)}
        assert sorted(alerts) == ["1.2.826.0.1.3680043.8.498.%d" % (11 + i) for i in range(3)]
        assert alerts["1.2.826.0.1.3680043.8.498.11"]["finding"]["pneumothorax"]
        assert not alerts["1.2.826.0.1.3680043.8.498.12"]["finding"]["pneumothorax"]
        assert received(sub, topics.event) == []          # a refused film never reaches the pipeline
        assert app.status()["hospital"]["dicom_intake"]["stored"] == 3
        assert os.listdir(app.folders.rejected) == []
    finally:
        app.stop()


def test_sigkill_right_after_the_success_status_and_the_alert_still_comes(tmp_path, mosquitto):
    port = free_port()
    config = write_config(tmp_path, mosquitto.port)
    with open(config, "a") as fh:
        fh.write("intake:\n  dicom:\n    listen: true\n    port: %d\n    bind_address: 127.0.0.1\n"
                 "    allowed_calling_aes: [CART1]\n" % port)
    topic = "pneumo/ward-4/cart-9/alert"
    n = 4
    films = [make_film(str(tmp_path / ("k%d.dcm" % i)), seed=200 + i, positive=bool(i % 2), size=(2000, 2000))
             for i in range(n)]
    with Subscriber(mosquitto.port, [topic]) as sub:
        proc = start_process(config, str(tmp_path / "run.log"))
        try:
            wait_until(lambda: _listening(port), 60, "the DICOM receiver to listen")
            assoc = associate(port)
            statuses = [int(assoc.send_c_store(f).Status) for f in films]
            proc.send_signal(signal.SIGKILL)     # the instant the last success status is in
            proc.wait(10)
            assoc.abort()
            alerted_before = {decode_payload(m.payload)["source"]["sop_instance_uid"] for m in received(sub, topic)}
            proc = start_process(config, str(tmp_path / "run.log"))
            wait_msgs(sub, lambda: len({decode_payload(m.payload)["source"]["sop_instance_uid"]
                                        for m in received(sub, topic)}) == n, 90)
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(30)
    assert statuses == [0] * n
    assert len(alerted_before) < n, "every alert was out before the kill; the test proved nothing"
    got = {decode_payload(m.payload)["source"]["sop_instance_uid"] for m in received(sub, topic)}
    assert got == {"1.2.826.0.1.3680043.8.498.%d" % (201 + i) for i in range(n)}


def _listening(port: int) -> bool:
    import socket
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


# -- configuration -------------------------------------------------------------------------

@pytest.mark.parametrize("override, key, words", [
    ({"intake.dicom.ae_title": "A_TITLE_LONGER_THAN_16"}, "intake.dicom.ae_title", "not a DICOM AE title"),
    ({"intake.dicom.allowed_calling_aes": ["OK", ""]}, "intake.dicom.allowed_calling_aes", "item 1"),
    ({"intake.dicom.sop_classes": ["cr", "ct"]}, "intake.dicom.sop_classes", "'ct' is not known"),
    ({"intake.dicom.transfer_syntaxes": []}, "intake.dicom.transfer_syntaxes", "at least one"),
    ({"intake.dicom.max_associations": 0}, "intake.dicom.max_associations", "1 or more"),
    ({"intake.dicom.max_pdu": 100}, "intake.dicom.max_pdu", "4096 or more"),
    ({"intake.dicom.port": 70000}, "intake.dicom.port", "1..65535"),
    ({"pacs.enabled": True, "pacs.host": "pacs"}, "pacs.called_ae", "not a DICOM AE title"),
    ({"pacs.retry_min_s": 10.0, "pacs.retry_max_s": 5.0}, "pacs.retry_max_s", "smaller than"),
])
def test_bad_dicom_settings_are_refused_with_the_key(override, key, words):
    from edge.config import load_config
    from edge.errors import ConfigError
    with pytest.raises(ConfigError) as err:
        load_config(None, override)
    assert err.value.key == key and words in str(err.value)
