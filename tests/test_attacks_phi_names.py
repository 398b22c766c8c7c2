"""Attack suite: a patient's name or birth date in the FILE or FOLDER name
(`Smith^Johanna.dcm`, `incoming/SMITH JOHANNA/`, `smith_johanna_19480213.dcm`)
never leaves the device. Each DICOM film is named after its own PatientName
and PatientBirthDate; after a real appliance run (real folders, SQLite,
mosquitto) every MQTT payload, every log line (the appliance's own handler,
at DEBUG), every reason file and the database are searched, any case."""
import glob
import io
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from edge.app import Appliance
from edge.capture.names import Sight, mask_dates, safe_label
from edge.decode.header_words import sight_of
from edge.decode.withheld import patient_words
from tests.attack_kit import BIRTH_DATE, appliance_logs, collect, dicom_bytes, drop, settings_for
from tests.dicom_factory import write_png
from tests.mosquitto import Subscriber
from edge.alerts.schema import decode as decode_payload
from tests.test_appliance import received

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# Lower-cased: searched in lower-cased text. The birth date as written and as a cart may spell it.
SECRETS = (b"smith", b"johanna", BIRTH_DATE.encode(), b"13.02.1948", b"1948-02-13")


def _named(name):
    from pydicom.dataset import Dataset
    ds = Dataset()
    ds.PatientName = name
    return ds


def _search(blobs, where):
    for secret in SECRETS:
        hits = [b for b in blobs if secret in b.lower()]
        assert not hits, "%r in %s: %r" % (secret, where, hits[0][:300])


def test_unit_label_rule():
    words = sight_of(dicom_bytes(1), 1 << 28).words
    assert {"SMITH", "JOHANNA", BIRTH_DATE} <= words
    dicom = Sight("dicom", words)
    assert safe_label("Smith^Johanna.dcm", dicom, "n") == "***^***.dcm"
    assert safe_label("smith_johanna_19480213.dcm", dicom, "n") == "***_***_***.dcm"
    assert safe_label("chest-20240105.dcm", dicom, "n") == "chest-***.dcm"        # any date-like run
    assert safe_label("chest-IM123456789.dcm", dicom, "n") == "chest-IM123456789.dcm"
    assert safe_label("SMITH JOHANNA 13.02.1948.dcm", dicom, "n") == "*** *** ***.dcm"
    assert safe_label("SMITHJOHANNA.dcm", dicom, "n") == "******.dcm"                 # run together
    assert safe_label("JohannaSmith19480213cxr.dcm", dicom, "n") == "*********cxr.dcm"
    assert safe_label("x_13-02-48.dcm", dicom, "n") == "x_***.dcm"                     # 2-digit year
    assert safe_label("x_130248.dcm", dicom, "n") == "x_***.dcm"
    hyphen = Sight("dicom", patient_words(_named("Smith-Jones^Ann")))
    assert safe_label("smith_jones_ann.dcm", hyphen, "n") == "***_***_***.dcm"
    assert safe_label("SmithJonesAnn.dcm", hyphen, "n") == "******.dcm"     # SMITHJONES, then ANN
    irish = Sight("dicom", patient_words(_named("O'Brien^Siobh\u00e1n")))
    assert safe_label("obrien_siobhan.dcm", irish, "n") == "***_***.dcm"
    assert safe_label("obrien_siobha\u0301n.dcm", irish, "n") == "***_***.dcm"       # decomposed (NFD)
    assert safe_label("Smi\u200bth^Joh\u200danna.dcm", dicom, "n") == "***^***.dcm"   # zero-width characters
    assert safe_label("\uff33\uff2d\uff29\uff34\uff28.dcm", dicom, "n") == "***.dcm"  # full-width letters
    assert safe_label("x 1948 02 13.dcm", dicom, "n") == "x ***.dcm"                   # spaced date
    assert safe_label("caf\u00e9 chest.dcm", dicom, "n") == "caf\u00e9 chest.dcm"       # no match: as written
    for hidden in ("\u034f", "\ufe0f", "\u20dd", "\u3164"):     # grapheme joiner, selector, mark, filler
        assert safe_label("Smi%sth.dcm" % hidden, dicom, "n") == "***.dcm", repr(hidden)
    weiss = Sight("dicom", patient_words(_named("Wei\u00df^Hans")))
    assert safe_label("weiss_hans.dcm", weiss, "n") == "***_***.dcm"
    assert safe_label("wei\u00df_hans.dcm", Sight("dicom", patient_words(_named("Weiss^Hans"))), "n") == "***_***.dcm"
    mueller = Sight("dicom", patient_words(_named("M\u00fcller^J\u00fcrgen")))
    cp1252 = os.fsdecode("M\u00fcller_J\u00fcrgen.dcm".encode("cp1252"))     # a Windows cart's bytes
    assert safe_label(cp1252, mueller, "n") == "***_***.dcm"
    no_date = Sight("dicom", patient_words(_named("Smith^Johanna")))          # header without a birth date
    assert safe_label("x_13.02.1948.dcm", no_date, "n") == "x_***.dcm"
    assert safe_label("x_13.2.1948.dcm", dicom, "n") == "x_***.dcm"
    assert safe_label("Smith^Johanna.dcm", None, "file-ab12") == "file-ab12"          # not looked at
    assert safe_label("Smith^Johanna.dcm", Sight("opaque"), "file-ab12") == "file-ab12"
    assert safe_label("xray_13.02.1948.png", Sight("raster"), "n") == "xray_***.png"
    assert safe_label("xray 1948 02 13.png", Sight("raster"), "n") == "xray ***.png"
    assert safe_label("xray_1948\u200b0213.png", Sight("raster"), "n") == "xray_***.png"
    assert mask_dates("a19480213b 1948-02-13 13-2-1948 IM123456789") == "a***b *** *** IM123456789"
    cut = dicom_bytes(1)[:300]                                    # no header to read
    assert sight_of(cut, 1 << 28).kind == "opaque"


def _png(name_dir, name):
    px = np.full((400, 400), 60, np.uint8)
    px[50:150, 300:380] = 255
    path = os.path.join(name_dir, ".png-" + name)
    write_png(path, px)
    with open(path, "rb") as fh:
        data = fh.read()
    os.unlink(path)
    return data


@pytest.mark.slow
def test_names_in_file_and_folder_names_never_leave_the_device(tmp_path, mosquitto):
    buf = io.StringIO()
    with appliance_logs(buf):          # the appliance's own handler and filters
        app = Appliance(settings_for(tmp_path, mosquitto.port))
        film, other = dicom_bytes(40, positive=True), dicom_bytes(41)
        # Left in processing/ by an "earlier run": logged at start, before its header is read.
        with open(os.path.join(app.folders.processing, "JOHANNA SMITH 19480213.dcm"), "wb") as fh:
            fh.write(dicom_bytes(42))
        files = {
            "Smith^Johanna.dcm": film,
            "SMITH JOHANNA 13.02.1948.dcm": other,
            "smith_johanna_19480213.dcm": dicom_bytes(43, modality="MR"),        # rejected: wrong modality
            "Smith^Johanna-cut.dcm": b"\0" * 128 + b"DICM" + os.urandom(600),    # no header to read
            "xray_13.02.1948.png": _png(str(tmp_path), "a"),                      # no header: dates masked
            "chest-1.dcm": dicom_bytes(44),                                        # an innocent name
        }
        try:
            with Subscriber(mosquitto.port, [app.topics.base + "/#"]) as sub:
                app.start()
                outcomes = collect(app, 1, timeout=60)                        # the leftover
                folder = os.path.join(app.folders.incoming, "SMITH JOHANNA")  # a cart's patient folder
                os.mkdir(folder)
                with open(os.path.join(folder, "IM1.dcm"), "wb") as fh:
                    fh.write(other)
                for name, data in sorted(files.items()):
                    drop(app.folders.incoming, name, data)
                outcomes += collect(app, len(files) + 1, timeout=120)
                drop(app.folders.incoming, "Johanna^Smith^copy.dcm", film)      # the same bytes again
                outcomes += collect(app, 1, timeout=60)
                sub.wait_for(lambda s: app.outbox.depth() == 0, 30)
                messages = received(sub, app.topics.base + "/#")
        finally:
            app.stop()
    states = sorted(o.state for o in outcomes)
    assert states.count("duplicate") == 1 and states.count("alerted") >= 4, outcomes
    assert states.count("rejected") == 3, outcomes        # the MR, the cut file, the folder
    payloads = [m.payload for m in messages]
    alerts = [decode_payload(m.payload) for m in received(sub, app.topics.alert)]
    shown = {a["source"]["file_name"] for a in alerts}
    assert {"***^***.dcm", "*** *** ***.dcm", "xray_***.png", "chest-1.dcm"} <= shown, shown
    reasons = [open(p, "rb").read() for p in glob.glob(os.path.join(app.folders.rejected, "*.reason.json"))]
    assert len(reasons) == 3
    database = b"".join(open(p, "rb").read() for p in glob.glob(app.store.path + "*"))
    _search(payloads, "an MQTT payload")
    _search([buf.getvalue().encode("utf-8", "replace")], "the log")
    _search(reasons, "a reason file")
    _search([database], "the database")
    _search([json.dumps([o.name, o.reason]).encode() for o in outcomes], "an Outcome")
    assert os.listdir(app.folders.rejected)   # the files themselves keep their names on disk


@pytest.mark.slow
def test_process_cli_masks_the_films_own_name_in_its_path(tmp_path):
    from tests.tiny_models import write_tiny_models
    cls, seg = write_tiny_models(str(tmp_path / "models"))
    config = tmp_path / "edge.yaml"
    config.write_text("models:\n  classifier: %s\n  segmenter: %s\n" % (cls, seg))
    folder = tmp_path / "SMITH JOHANNA"
    folder.mkdir()
    good, bad = folder / "smith_johanna_19480213.dcm", folder / "Smith^Johanna-MR.dcm"
    good.write_bytes(dicom_bytes(45))
    bad.write_bytes(dicom_bytes(46, modality="MR"))
    proc = subprocess.run([sys.executable, "-m", "edge.cli", "process", "--compact", "--config", str(config),
                           str(good), str(bad)], cwd=ROOT, env=dict(os.environ, PYTHONPATH=ROOT),
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=120)
    lines = [json.loads(line) for line in proc.stdout.decode().splitlines()]
    assert lines[0]["source"]["file_name"] == "***_***_***.dcm"
    assert lines[1]["rejected"] == "wrong_modality" and lines[1]["file"].endswith("/*** ***/***^***-MR.dcm")
    _search([proc.stdout, proc.stderr], "process output")
