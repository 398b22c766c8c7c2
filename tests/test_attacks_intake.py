"""Attack suite: the C-STORE receiver fed data sets whose image elements are
not numbers. A Rows or Samples per Pixel re-encoded as text (a damaged VR)
raised ValueError outside check_dataset's guard; pynetdicom caught it,
answered the non-standard 0xC211 and logged the traceback at ERROR, which
quoted the value: the patient's name when that is what the element held.
The sender must get 0xC000 (cannot understand), nothing is stored, and no
log line carries the name or birth date. A data set's SOP Class UID that
runs on into the patient's name is described, not quoted, in the refusal."""
import io
import logging

import pytest

from edge import logsetup
from edge.capture.folders import CaptureFolders
from edge.intake.dicom_scp import DicomReceiver
from edge.intake.received import CANNOT_UNDERSTAND, DOES_NOT_MATCH_SOP_CLASS, check_dataset
from edge.settings import CaptureSettings, DicomIntakeSettings
from tests.attack_kit import BIRTH_DATE, PATIENT_NAME, SECRETS, dicom_bytes
from tests.dicom_factory import DX_SOP_CLASS
from tests.dicom_net import EXPLICIT_LE, associate
from tests.test_attacks_decoder import with_element
from tests.test_attacks_phi import spill

ROWS, SAMPLES, BITS = (0x0028, 0x0010), (0x0028, 0x0002), (0x0028, 0x0100)
NAME = PATIENT_NAME.encode() + b" "          # even length, as DICOM pads


@pytest.fixture
def logged():
    buf = io.StringIO()
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    logsetup.setup_logging("INFO", stream=buf)            # the appliance's own handler and filters
    yield buf
    for h in root.handlers[:]:
        if h not in saved[0]:
            root.removeHandler(h)
    root.setLevel(saved[1])


@pytest.fixture
def receiver(tmp_path):
    folders = CaptureFolders(str(tmp_path / "capture"), CaptureSettings())
    rx = DicomReceiver(DicomIntakeSettings(listen=True, port=0, bind_address="127.0.0.1",
                                           allowed_calling_aes=["CART1"]), folders)
    rx.start()
    yield rx
    rx.stop()


CASES = [
    ("rows_is_the_name", ROWS, b"LO", NAME),
    ("samples_is_the_name", SAMPLES, b"LO", NAME),
    ("bits_is_the_birth_date_text", BITS, b"LO", BIRTH_DATE.encode() + b"x "),
    ("rows_nan", ROWS, b"DS", b"nan "),
]


@pytest.mark.parametrize("name,tag,vr,value", CASES, ids=[c[0] for c in CASES])
def test_a_non_numeric_image_element_is_cannot_understand_and_never_logged(
        receiver, logged, tmp_path, name, tag, vr, value):
    path = tmp_path / "film.dcm"
    path.write_bytes(with_element(dicom_bytes(3), tag, vr, value))
    assoc = associate(receiver.port, contexts=[(DX_SOP_CLASS, (EXPLICIT_LE,))])
    try:
        status = int(assoc.send_c_store(str(path)).Status)     # a path is sent as it is, unparsed
    finally:
        assoc.release()
    assert status == CANNOT_UNDERSTAND
    assert receiver.counts() == {"stored": 0, "refused": 1}
    text = logged.getvalue()
    assert "Traceback" not in text
    for secret in SECRETS:
        assert secret.decode() not in text


def test_a_sop_class_uid_that_runs_into_the_name_is_described_not_quoted():
    data = spill(dicom_bytes(4), "SOPClassUID")
    start = data.index(b"DICM") + 4
    meta_len = int.from_bytes(data[start + 8:start + 12], "little")
    dataset = data[start + 12 + meta_len:]
    verdict = check_dataset(dataset, "1.2.840.10008.1.2.1", DX_SOP_CLASS, "1.2.826.0.1.3680043.8.498.5")
    assert verdict.status == DOES_NOT_MATCH_SOP_CLASS
    assert "malformed value" in verdict.reason
    assert PATIENT_NAME not in verdict.reason and BIRTH_DATE not in verdict.reason
