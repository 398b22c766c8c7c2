"""Attack suite: a progressive JPEG with thousands of empty scans. libjpeg
re-reads the whole coefficient buffer for each scan and bounds their
number nowhere: 20,000 empty scans (240 KB added to a 2048 px film) held
one decode for 7 s here, and decode time grows with scans x pixels, so a
few MB of them stall the pipeline (and every film queued behind it) for
many minutes. Refused from a count of start-of-scan markers, as a .jpg and
inside a DICOM (JPEG baseline, encapsulated)."""
import io

import cv2
import numpy as np
import pydicom
import pytest
from pydicom.encaps import encapsulate

from edge.decode import decode_bytes
from edge.errors import DecodeError
from tests.attack_kit import dicom_bytes

JPEG_BASELINE = "1.2.840.10008.1.2.4.50"


def progressive(size: int = 512) -> bytes:
    img = (np.random.default_rng(1).random((size, size)) * 255).astype(np.uint8)
    return cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_PROGRESSIVE, 1])[1].tobytes()


def with_empty_scans(jpeg: bytes, n: int) -> bytes:
    """`jpeg` with its last scan header repeated n times (no data) before EOI."""
    last = jpeg.rindex(b"\xff\xda")
    header = jpeg[last:last + 2 + int.from_bytes(jpeg[last + 2:last + 4], "big")]
    return jpeg[:-2] + (header + b"\0\0") * n + b"\xff\xd9"


def in_dicom(jpeg: bytes) -> bytes:
    ds = pydicom.dcmread(io.BytesIO(dicom_bytes(9, size=(300, 300))))
    shape = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_GRAYSCALE).shape
    ds.Rows, ds.Columns = shape
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 8, 8, 7, 0
    for keyword in ("WindowCenter", "WindowWidth"):
        if keyword in ds:
            delattr(ds, keyword)
    ds.PixelData = encapsulate([jpeg])
    ds["PixelData"].VR = "OB"
    ds.file_meta.TransferSyntaxUID = JPEG_BASELINE
    out = io.BytesIO()
    ds.save_as(out)
    return out.getvalue()


def test_a_jpeg_of_thousands_of_scans_is_refused_and_an_ordinary_progressive_one_is_not():
    film = progressive()
    assert decode_bytes(film).pixels.shape == (512, 512)
    with pytest.raises(DecodeError) as info:
        decode_bytes(with_empty_scans(film, 2000))
    assert info.value.code == "corrupt" and "scans" in str(info.value)
    assert decode_bytes(with_empty_scans(film, 40)).pixels.shape == (512, 512)


def test_the_same_inside_a_dicom():
    film = cv2.imencode(".jpg", (np.random.default_rng(2).random((300, 300)) * 255).astype(np.uint8),
                        [cv2.IMWRITE_JPEG_PROGRESSIVE, 0])[1].tobytes()
    try:
        assert decode_bytes(in_dicom(film)).pixels.shape == (300, 300)
    except DecodeError as exc:
        if exc.code == "missing_decoder":
            pytest.skip("no JPEG baseline decoder for pydicom here")
        raise
    with pytest.raises(DecodeError) as info:
        decode_bytes(in_dicom(with_empty_scans(progressive(300), 2000)))
    assert info.value.code == "corrupt" and "scans" in str(info.value)
