"""Attack suite: the patient's name and birth date never leave the device,
even from a malformed file. Lengths of the elements before them are
stretched so their values run into PatientName/PatientBirthDate, and the
name is planted in every text element a message could quote; then every
MQTT payload, every log line (through the appliance's own handler, at
DEBUG), every reason file and the database are searched."""
import glob
import io
import os
import struct

import pytest

from edge.app import Appliance
from tests.attack_kit import BIRTH_DATE, PATIENT_NAME, SECRETS, appliance_logs, collect, dicom_bytes, drop, settings_for
from tests.mosquitto import Subscriber
from tests.test_appliance import received

pytestmark = pytest.mark.slow

# Elements written before PatientName (group 0008) whose value can swallow it.
SPILLERS = {"SOPClassUID": (0x0008, 0x0016), "SOPInstanceUID": (0x0008, 0x0018),
            "AccessionNumber": (0x0008, 0x0050), "Modality": (0x0008, 0x0060),
            "PatientName": (0x0010, 0x0010)}
BIRTH = (0x0010, 0x0030)


def _element_at(data: bytes, tag) -> int:
    """Offset of an explicit-VR little-endian element header in the data set."""
    needle = struct.pack("<HH", *tag)
    start = data.index(b"DICM") + 4
    meta_len = struct.unpack("<I", data[start + 8:start + 12])[0]   # (0002,0000) group length
    pos = data.index(needle, start + 12 + meta_len)
    return pos


def spill(data: bytes, keyword: str) -> bytes:
    """Stretch `keyword`'s 2-byte length so its value ends after PatientBirthDate's."""
    at = _element_at(data, SPILLERS[keyword])
    birth = _element_at(data, BIRTH)
    birth_end = birth + 8 + struct.unpack("<H", data[birth + 6:birth + 8])[0]
    length = birth_end - (at + 8)
    out = bytearray(data)
    out[at + 6:at + 8] = struct.pack("<H", length + (length % 2))
    return bytes(out)


def hostile_files():
    base = dicom_bytes(30)
    files = {"spill-%s.dcm" % k: spill(base, k) for k in SPILLERS}
    planted = {"Modality": dict(modality=PATIENT_NAME + " " + BIRTH_DATE),
               "ViewPosition": dict(view_position=PATIENT_NAME + " " + BIRTH_DATE),
               "Accession": dict(accession=PATIENT_NAME[:8] + BIRTH_DATE),
               "ViewPositionShort": dict(view_position=BIRTH_DATE)}
    for i, (what, kw) in enumerate(sorted(planted.items())):
        files["planted-%s.dcm" % what] = dicom_bytes(31 + i, **kw)
    files["cut-in-name.dcm"] = base[:_element_at(base, BIRTH) + 10]     # truncated inside the birth date
    return files


def test_no_patient_name_or_birth_date_in_any_payload_log_line_reason_file_or_database(tmp_path, mosquitto):
    buf = io.StringIO()
    with appliance_logs(buf):          # the appliance's own handler and filters
        files = hostile_files()
        app = Appliance(settings_for(tmp_path, mosquitto.port))
        try:
            with Subscriber(mosquitto.port, [app.topics.base + "/#"]) as sub:
                app.start()
                for name, data in sorted(files.items()):
                    drop(app.folders.incoming, name, data)
                outcomes = collect(app, len(files), timeout=120)
                sub.wait_for(lambda s: app.outbox.depth() == 0, 30)
                payloads = [m.payload for m in received(sub, app.topics.base + "/#")]
        finally:
            app.stop()
    assert {o.state for o in outcomes} <= {"alerted", "rejected"}
    assert not [o for o in outcomes if o.reason and o.reason.startswith("internal error")]
    assert len(payloads) >= len(files)
    reasons = [open(p, "rb").read() for p in glob.glob(os.path.join(app.folders.rejected, "*.reason.json"))]
    database = b"".join(open(p, "rb").read() for p in glob.glob(app.store.path + "*"))
    log_text = buf.getvalue().encode("utf-8", "replace")
    for secret in SECRETS:
        assert not [p for p in payloads if secret in p], secret
        assert secret not in log_text, secret
        assert not [r for r in reasons if secret in r], secret
        assert secret not in database, secret
    assert reasons, "nothing was rejected: the hostile files did not bite"
