"""Log lines: one per record, UTC, and never a registered secret."""
import io
import logging
import re

import pytest

from edge import logsetup


@pytest.fixture
def capture_log():
    """setup_logging into a buffer; restores the root logger afterwards."""
    root = logging.getLogger()
    saved_handlers, saved_level = root.handlers[:], root.level
    buf = io.StringIO()
    yield buf
    for h in root.handlers[:]:
        if h not in saved_handlers:
            root.removeHandler(h)
    root.setLevel(saved_level)
    logsetup.clear_secrets()


def test_a_line_has_utc_time_level_logger_and_message(capture_log):
    logsetup.setup_logging("info", stream=capture_log)
    logging.getLogger("edge.capture").info("claimed %s", "a.dcm")
    logging.getLogger("edge.capture").debug("not shown at INFO")
    line, = capture_log.getvalue().splitlines()
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z INFO edge\.capture: claimed a\.dcm",
                        line)


def test_setup_twice_replaces_its_own_handler(capture_log):
    logsetup.setup_logging("INFO", stream=capture_log)
    logsetup.setup_logging("INFO", stream=capture_log)
    logging.getLogger("x").info("once")
    assert capture_log.getvalue().count("once") == 1


def test_a_registered_secret_never_appears(capture_log):
    logsetup.setup_logging("DEBUG", stream=capture_log)
    logsetup.register_secret("s3cret")
    logsetup.register_secret("")  # ignored, not "mask everything"
    log = logging.getLogger("paho.client")
    log.info("connecting with password s3cret")
    log.info("password=%s user=%s", "s3cret", "edge")
    log.info("args as mapping %(pw)s", {"pw": "xs3cretx"})
    try:
        raise ValueError("bad credentials s3cret")
    except ValueError:
        log.exception("connect failed")
    out = capture_log.getvalue()
    assert "s3cret" not in out
    assert "connecting with password ***" in out
    assert "password=*** user=edge" in out
    assert "args as mapping x***x" in out
    assert "ValueError: bad credentials ***" in out


def test_the_filter_masks_a_record_for_any_formatter():
    logsetup.register_secret("hunter2")
    try:
        record = logging.LogRecord("x", logging.INFO, __file__, 1, "pw %s", ("hunter2",), None)
        assert logsetup.redact_secrets.filter(record)
        assert logging.Formatter("%(message)s").format(record) == "pw ***"
    finally:
        logsetup.clear_secrets()


def test_an_unknown_level_is_refused():
    with pytest.raises(ValueError, match="LOUD"):
        logsetup.setup_logging("LOUD")


# -- file libraries' noise (pydicom, openjpeg) -------------------------------------

def _truncated_encapsulated_dicom(tmp_path) -> bytes:
    from tests.dicom_factory import chest_phantom, write_dicom
    path = write_dicom(tmp_path / "rle.dcm", chest_phantom(300, 300), compression="rle")
    data = open(path, "rb").read()
    return data[:len(data) - 3000]


def test_pydicom_and_openjpeg_chatter_is_debug_not_raw_output(capture_log, tmp_path, capsys):
    import warnings
    from edge.decode import decode_bytes
    from edge.errors import DecodeError
    data = _truncated_encapsulated_dicom(tmp_path)
    with warnings.catch_warnings():                  # restores showwarning and the filters
        logsetup.setup_logging("INFO", stream=capture_log)
        logging.getLogger("openjpeg.encode").info("tile number 1 / 1")
        with pytest.raises(DecodeError):
            decode_bytes(data)
        at_info = capture_log.getvalue()
        logsetup.setup_logging("DEBUG", stream=capture_log)
        with pytest.raises(DecodeError):
            decode_bytes(data)
        at_debug = capture_log.getvalue()[len(at_info):]
    err = capsys.readouterr().err
    assert at_info == "" and "End of file" not in err and "UserWarning" not in err
    assert re.search(r"Z DEBUG pydicom(\.\w+)*: .*End of file reached", at_debug), at_debug


def test_quoted_values_from_file_libraries_are_scrubbed_and_errors_stay_errors(capture_log):
    logsetup.setup_logging("DEBUG", stream=capture_log)
    logging.getLogger("pydicom").warning("Invalid value for VR CS: 'Smith^Johanna 19480213'")
    logging.getLogger("pydicom.pixels").error("decoder failed on b'Doe^Jane'")
    out = capture_log.getvalue()
    assert "Smith" not in out and "19480213" not in out and "Doe" not in out
    assert " DEBUG pydicom: Invalid value for VR CS: '...'" in out
    assert " ERROR pydicom.pixels: decoder failed on '...'" in out


def test_a_file_librarys_traceback_is_scrubbed_too(capture_log):
    logsetup.setup_logging("INFO", stream=capture_log)
    try:
        int("Smith^Johanna")
    except ValueError:
        logging.getLogger("pydicom.filereader").exception("cannot read element")
    out = capture_log.getvalue()
    assert "Traceback" in out and "ValueError" in out          # the error itself still shows
    assert "Smith" not in out and "Johanna" not in out


OPENCV_NOISE = """
import cv2, numpy as np
from edge.logsetup import setup_logging
setup_logging("INFO")
cv2.imdecode(np.frombuffer(b"\\x89PNG\\r\\n\\x1a\\n" + b"\\0" * 30, np.uint8), cv2.IMREAD_UNCHANGED)
"""


def test_opencv_complaints_about_a_bad_file_are_muted_below_debug():
    import os
    import subprocess
    import sys
    pytest.importorskip("cv2.utils.logging", reason="this OpenCV build cannot set its log level")
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    out = subprocess.run([sys.executable, "-c", OPENCV_NOISE], cwd=root, capture_output=True,
                         env=dict(os.environ, PYTHONPATH=root), timeout=60)
    assert out.returncode == 0, out.stderr
    assert b"grfmt_png" not in out.stderr, out.stderr


@pytest.mark.parametrize("name, flt", [("edge.x", logsetup.redact_secrets), ("pydicom.x", logsetup.library_noise)])
def test_the_filters_rewrite_once_and_a_librarys_bad_format_string_shows_no_values(name, flt):
    logsetup.register_secret("hunter2-secret")
    try:
        record = logging.LogRecord(name, logging.ERROR, __file__, 1, "pw %s in 'tag'", ("hunter2-secret",), None)
        assert flt.filter(record) and record.args is None
        assert record.msg == ("pw *** in 'tag'" if name == "edge.x" else "pw hunter2-secret in '...'")
        bad = logging.LogRecord(name, logging.ERROR, __file__, 1, "%d items", ("many",), None)
        assert flt.filter(bad)
        if name == "edge.x":                  # our own: logging reports it as usual
            assert bad.msg == "%d items" and bad.args == ("many",)
        else:                                 # a file library's: its arguments are file values
            assert "bad format string" in bad.msg and bad.args is None
    finally:
        logsetup.clear_secrets()
