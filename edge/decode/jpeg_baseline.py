"""DICOM JPEG Baseline (8-bit grey, one frame) decoded by OpenCV, at a
reduced DCT scale when the film is larger than the models and overlay need.

pydicom's JPEG plugin (pylibjpeg-libjpeg) took 10-11 ms of CPU for a
1024 px SIIM film on the 2-core test machine; OpenCV's libjpeg-turbo
takes 1.9 ms (`python -m bench.cpu`). Both are conformant decoders whose
inverse DCTs round differently: on the real SIIM films their pixels agree
to within 1 grey level of 255 (tests/test_decode_jpeg_baseline.py pins it).
libjpeg also decodes at 1/2, 1/4 or 1/8 scale inside the DCT, without
making the full image: cv2.IMREAD_REDUCED_GRAYSCALE_n gives ceil(h/n) x
ceil(w/n), and the Image keeps the original size, so every measurement
stays in original pixels (edge/resolution.py).

Anything unusual (12-bit, colour, several frames, a size that disagrees
with the header, a codestream without its end marker: libjpeg would fill a
cut-off film with grey and only warn) returns None, and pydicom decodes
the film as before, reporting damage in its own words.
"""
from typing import Any, Optional

import cv2
import numpy as np

from .dct_scale import reduced_flag, reduced_scale
from .frames import single_frame
from .raster import jpeg_frame_header

JPEG_BASELINE = "1.2.840.10008.1.2.4.50"
_BASELINE_SOF = (0xC0, 0xC1)      # baseline / extended sequential Huffman, 8-bit here


def _suits(ds: Any) -> bool:
    return (int(ds.get("BitsAllocated") or 0) == 8 and int(ds.get("BitsStored") or 8) == 8
            and int(ds.get("SamplesPerPixel") or 1) == 1 and int(ds.get("PixelRepresentation") or 0) == 0
            and int(ds.get("NumberOfFrames") or 1) == 1)


def _complete(frame: bytes) -> bool:
    """Ends with EOI (DICOM pads a fragment to even length with one 0x00)."""
    tail = frame.rstrip(b"\x00")
    return tail.endswith(b"\xff\xd9") and len(frame) - len(tail) <= 1


def decode_baseline(ds: Any, ts: str, min_side: int = 0) -> Optional[np.ndarray]:
    """Stored values (uint8), full size or DCT-scaled so the shorter side
    stays >= min_side (0: full size); None when this path does not apply."""
    if ts != JPEG_BASELINE or not _suits(ds):
        return None
    hw = (int(ds.Rows), int(ds.Columns))
    try:
        frame = single_frame(ds)
    except Exception:  # odd encapsulation: pydicom's decode says what is wrong
        return None
    header = jpeg_frame_header(frame[:65536])
    if header is None or header[0] not in _BASELINE_SOF or (header[1], header[2]) != hw or header[3] != 1:
        return None
    if not _complete(frame):
        return None
    n = reduced_scale(hw, min_side)
    pixels = cv2.imdecode(np.frombuffer(frame, np.uint8), reduced_flag(n, 1))
    if pixels is None or pixels.dtype != np.uint8 or pixels.shape != (-(-hw[0] // n), -(-hw[1] // n)):
        return None
    return pixels
