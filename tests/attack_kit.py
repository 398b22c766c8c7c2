"""Shared pieces of the standing attack suite (tests/test_attacks_*.py):
an in-process appliance on real folders, SQLite and mosquitto, hostile
files made at test time, and ways to wait for what happened to them."""
import contextlib
import io
import logging
import os
import queue
import tempfile
import time
from dataclasses import replace
from typing import List, Union

from edge.app import Appliance, Outcome
from tests.dicom_factory import write_dicom
from tests.test_appliance import make_settings, radiograph_pixels, wait_until  # noqa: F401 (re-exported for the attack tests)

PATIENT_NAME = "Smith^Johanna"
BIRTH_DATE = "19480213"
SECRETS = (b"Smith", b"Johanna", BIRTH_DATE.encode())
# Outcomes that are final for a file (deferred/returned files come back later).
FINAL = ("alerted", "rejected", "duplicate", "vanished")


def dicom_bytes(seed: int = 0, positive: bool = False, size=(400, 400), **kw) -> bytes:
    kw.setdefault("patient_name", PATIENT_NAME)
    kw.setdefault("birth_date", BIRTH_DATE)
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "x.dcm")
        write_dicom(path, radiograph_pixels(seed, positive, *size), bits_stored=12, window=(2048, 4096),
                    sop_instance_uid="1.2.826.0.1.3680043.8.498.%d" % (seed + 1), **kw)
        with open(path, "rb") as f:
            return f.read()


def dicom_with(seed: int = 0, **elements) -> bytes:
    """A 300 px attack film (dicom_bytes) with these header elements set as given."""
    import pydicom
    ds = pydicom.dcmread(io.BytesIO(dicom_bytes(seed, size=(300, 300))))
    for keyword, value in elements.items():
        setattr(ds, keyword, value)
    out = io.BytesIO()
    ds.save_as(out)
    return out.getvalue()


def drop(incoming: str, name: Union[str, bytes], data: bytes) -> bytes:
    """Write beside, then rename into incoming/ (names may be any bytes)."""
    raw = os.fsencode(name)
    tmp = os.path.join(os.fsencode(os.path.dirname(incoming)), b".staging-" + raw[:200])
    with open(tmp, "wb") as f:
        f.write(data)
    dest = os.path.join(os.fsencode(incoming), raw)
    os.rename(tmp, dest)
    return dest


def settings_for(tmp_path, port: int, **capture):
    s = make_settings(tmp_path, port)
    if capture:
        s.capture = replace(s.capture, **capture)
    return s


def collect(app: Appliance, count: int, timeout: float = 60.0,
            final: bool = True) -> List[Outcome]:
    """The next `count` outcomes (only final ones when `final`)."""
    got = []  # type: List[Outcome]
    deadline = time.monotonic() + timeout
    while len(got) < count:
        try:
            outcome = app.outcomes.get(timeout=max(0.05, deadline - time.monotonic()))
        except queue.Empty:
            raise AssertionError("timed out: %d of %d outcomes: %s" % (len(got), count, got))
        if not final or outcome.state in FINAL:
            got.append(outcome)
    return got


def reason_files(folder: str) -> List[str]:
    return sorted(n for n in os.listdir(folder) if n.endswith(".reason.json"))


def entries(folder: str) -> List[str]:
    return sorted(ascii(n) for n in os.listdir(folder))


@contextlib.contextmanager
def appliance_logs(stream):
    """The appliance's own log handler and filters at DEBUG into `stream`;
    the root logger as it was afterwards."""
    from edge import logsetup
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    logsetup.setup_logging("DEBUG", stream=stream)
    try:
        yield
    finally:
        for h in root.handlers[:]:
            if h not in saved[0]:
                root.removeHandler(h)
        root.setLevel(saved[1])

