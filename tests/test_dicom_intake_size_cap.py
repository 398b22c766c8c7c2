"""A sender that streams one data set larger than intake.dicom.max_dataset_mb
(pynetdicom would hold all of it in memory) has its association aborted as
soon as the limit is passed: nothing is stored, the refusal is counted and
logged without the patient, and the next sender is served as before."""
import io
import os

import pytest

from edge.capture.folders import CaptureFolders
from edge.intake.dicom_scp import DicomReceiver
from edge.settings import CaptureSettings, DicomIntakeSettings
from tests.attack_kit import SECRETS, appliance_logs, dicom_bytes
from tests.dicom_factory import DX_SOP_CLASS
from tests.dicom_net import EXPLICIT_LE, associate


def _receiver(tmp_path, max_pdu):
    folders = CaptureFolders(str(tmp_path / "capture"), CaptureSettings())
    rx = DicomReceiver(DicomIntakeSettings(listen=True, port=0, bind_address="127.0.0.1", max_dataset_mb=1,
                                           max_pdu=max_pdu, allowed_calling_aes=["CART1"]), folders)
    rx.start()
    return rx, folders


@pytest.fixture
def receiver(tmp_path):
    rx, folders = _receiver(tmp_path, max_pdu=65536)
    yield rx, folders
    rx.stop()


def _store(port, path):
    assoc = associate(port, contexts=[(DX_SOP_CLASS, (EXPLICIT_LE,))])
    assert assoc.is_established
    try:
        rsp = assoc.send_c_store(str(path))
        return int(rsp.Status) if rsp is not None and "Status" in rsp else None, assoc
    finally:
        if assoc.is_established:
            assoc.release()


def test_a_data_set_past_the_limit_aborts_its_association_and_the_next_film_is_stored(receiver, tmp_path):
    rx, folders = receiver
    buf = io.StringIO()
    with appliance_logs(buf):
        big = tmp_path / "big.dcm"
        big.write_bytes(dicom_bytes(1, size=(1200, 1200)))          # 2.9 MB of pixels
        assert big.stat().st_size > 2 << 20
        status, assoc = _store(rx.port, big)
        assert status is None and assoc.is_aborted                  # no response: the association was cut
        small = tmp_path / "small.dcm"
        small.write_bytes(dicom_bytes(2))                           # 0.3 MB: under the limit
        status, _ = _store(rx.port, small)
    assert status == 0x0000
    assert rx.counts() == {"stored": 1, "refused": 1}
    assert len(os.listdir(folders.incoming)) == 1
    text = buf.getvalue()
    assert "more than 1 MB received for one data set" in text
    for secret in SECRETS:
        assert secret.decode() not in text


def test_with_no_pdu_limit_an_oversized_film_is_never_stored_however_often_it_is_sent(tmp_path):
    # max_pdu 0: the whole data set arrives in one PDU, already complete when the count
    # crosses the limit; before, each retry of it was stored.
    rx, folders = _receiver(tmp_path, max_pdu=0)
    try:
        big = tmp_path / "big.dcm"
        big.write_bytes(dicom_bytes(3, size=(750, 750)))            # 1.1 MB: just past the limit
        statuses = [_store(rx.port, big)[0] for _ in range(3)]
    finally:
        rx.stop()
    assert os.listdir(folders.incoming) == []
    assert rx.counts()["stored"] == 0 and rx.counts()["refused"] >= 3
    assert all(s in (None, 0xA700) for s in statuses)                # no status, or out of resources
