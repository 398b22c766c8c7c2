"""Attack suite: the patient's name or birth date as a *well-formed* value of
an element the decoder quotes or carries. test_attacks_phi plants values
that break the code-string rule (mixed case, ^, too long); these pass it:
"SMITH JOHANNA" (upper case, a space) as BodyPartExamined or Modality, the
birth date "19480213" as Modality or BodyPartExamined, the surname as the
accession number, a Latin-1 name (ISO_IR 100) as the body part. Before the
fix the rejection reason, the event, the log line and the ledger quoted
them. The search here ignores case: DICOM names are usually upper case."""
import glob
import io
import os
from dataclasses import replace

import pydicom
import pytest

from edge.app import Appliance
from edge.decode import decode_bytes
from edge.errors import DecodeError
from edge.gate import check_body_part
from edge.decode.withheld import patient_words, scrub
from tests.attack_kit import BIRTH_DATE, appliance_logs, collect, dicom_with, drop, settings_for
from tests.mosquitto import Subscriber
from tests.test_appliance import received

UPPER = "SMITH JOHANNA"
SECRETS = (b"smith", b"johanna", BIRTH_DATE.encode(), b"1948 02 13", "núñez".encode(), "josé".encode())


def lowered(data: bytes) -> bytes:
    return data.decode("utf-8", "replace").lower().encode("utf-8")


FILES = {
    "modality-name.dcm": dict(Modality=UPPER),
    "modality-birth.dcm": dict(Modality=BIRTH_DATE),
    "bodypart-name.dcm": dict(BodyPartExamined=UPPER),
    "bodypart-birth.dcm": dict(BodyPartExamined=BIRTH_DATE),
    "bodypart-latin1.dcm": dict(SpecificCharacterSet="ISO_IR 100", PatientName="Núñez^José",
                                BodyPartExamined="JOSÉ NÚÑEZ"),
    "accession-surname.dcm": dict(AccessionNumber="SMITH"),
    # Run into a term: well-formed code strings that start or end like one (attack campaign, session 9).
    "modality-runon.dcm": dict(Modality="ZZSMITHJOHANNA"),
    "modality-dx-birth.dcm": dict(Modality="DX" + BIRTH_DATE),
    "view-lateral-birth.dcm": dict(ViewPosition="LATERAL" + BIRTH_DATE),
    "photometric-birth.dcm": dict(PhotometricInterpretation="RGB" + BIRTH_DATE),
    "bodypart-spaced-birth.dcm": dict(BodyPartExamined="HAND 1948 02 13"),
    "bodypart-runon.dcm": dict(BodyPartExamined="HANDSMITH"),
}


def refusal(data: bytes) -> str:
    try:
        image = decode_bytes(data)
        check_body_part(image.body_part_examined)
    except DecodeError as exc:
        return exc.code + ": " + str(exc)
    return "decoded"


@pytest.mark.parametrize("name", sorted(FILES))
def test_the_decoder_never_says_the_films_own_name_or_birth_date(name):
    said = refusal(dicom_with(0, **FILES[name])).lower().encode("utf-8")
    for secret in SECRETS:
        assert secret not in said, said


def test_words_are_masked_whole_and_in_any_case():
    ds = pydicom.Dataset()
    ds.PatientName, ds.PatientBirthDate = "Ng^Li", "1948-02-13"
    words = patient_words(ds)
    assert scrub("modality LI NG, lateral 1948-02-13 19480213", words) == "modality *** ***, lateral *** ***"
    assert scrub("LIGHT ANGLE", words) == "LIGHT ANGLE"            # inside other words: left alone


def test_a_refusal_quotes_only_the_standards_terms():
    said = refusal(dicom_with(0, Modality="MR"))
    assert "modality MR is not" in said                                     # a term: quoted
    said = refusal(dicom_with(0, Modality="DX" + BIRTH_DATE))
    assert "an unlisted value (10 characters, not quoted)" in said
    assert "BodyPartExamined is HAND," in refusal(dicom_with(0, BodyPartExamined="HAND"))
    assert "view position LATERAL is a lateral view" in refusal(dicom_with(0, ViewPosition="LATERAL"))


def test_through_the_appliance_no_payload_log_reason_or_ledger_holds_them(tmp_path, mosquitto):
    buf = io.StringIO()
    with appliance_logs(buf):          # the appliance's own handler and filters
        settings = settings_for(tmp_path, mosquitto.port)
        settings.alerts = replace(settings.alerts, identify_by=["accession_number"])   # the one opt-in identifier
        app = Appliance(settings)
        try:
            with Subscriber(mosquitto.port, [app.topics.base + "/#"]) as sub:
                app.start()
                for i, (name, elements) in enumerate(sorted(FILES.items())):
                    drop(app.folders.incoming, name, dicom_with(40 + i, **elements))
                outcomes = collect(app, len(FILES), timeout=60)
                sub.wait_for(lambda s: app.outbox.depth() == 0, 30)
                payloads = [lowered(m.payload) for m in received(sub, app.topics.base + "/#")]
        finally:
            app.stop()
    states = {o.name: o.state for o in outcomes}
    assert states["accession-surname.dcm"] == "alerted"
    assert sum(1 for s in states.values() if s == "rejected") == len(FILES) - 1
    reasons = [lowered(open(p, "rb").read()) for p in glob.glob(os.path.join(app.folders.rejected, "*.reason.json"))]
    database = lowered(b"".join(open(p, "rb").read() for p in glob.glob(app.store.path + "*")))
    log_text = lowered(buf.getvalue().encode("utf-8"))
    for secret in SECRETS:
        assert not [p for p in payloads if secret in p], secret
        assert secret not in log_text, secret
        assert not [r for r in reasons if secret in r], secret
        assert secret not in database, secret
