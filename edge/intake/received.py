"""Is a received C-STORE data set a complete image of the class it claims?

Pure: bytes in, a verdict out. The receiver answers with the verdict's
DICOM status and writes nothing unless it is success, so a truncated or
non-image data set never reaches the capture folder (the sender sees why).
pydicom is lenient with short data (it returns what it has, sometimes with
a warning), so completeness is checked explicitly here.
"""
import io
import re
import warnings
from dataclasses import dataclass
from typing import Optional

import pydicom
import struct

from edge.intake.names import NATIVE

_UID = re.compile(r"^[0-9]+(\.[0-9]+)*$")

SUCCESS = 0x0000
OUT_OF_RESOURCES = 0xA700          # could not store it (disk full, write error)
DOES_NOT_MATCH_SOP_CLASS = 0xA900  # not the class it claims, or not an image
CANNOT_UNDERSTAND = 0xC000         # truncated or unparseable


@dataclass(frozen=True)
class Verdict:
    status: int
    reason: str = ""

    @property
    def ok(self) -> bool:
        return self.status == SUCCESS


def check_dataset(dataset: bytes, transfer_syntax: str, sop_class: str,
                  sop_instance: str) -> Verdict:
    """Parse `dataset` (encoded in `transfer_syntax`, no file meta) and
    check it is a whole image whose SOP class/instance are the request's."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            # No file meta here: pydicom tells implicit from explicit VR by itself.
            ds = pydicom.dcmread(io.BytesIO(dataset), force=True)
            uid_class = str(ds.get("SOPClassUID", "") or "")
            uid_instance = str(ds.get("SOPInstanceUID", "") or "")
            rows, cols = ds.get("Rows"), ds.get("Columns")
            bits = ds.get("BitsAllocated")
            samples = ds.get("SamplesPerPixel") or 1
            frames = _int(ds.get("NumberOfFrames")) or 1
            pixels = ds.get("PixelData")
            # Converted here, inside the guard: a Rows that is text (a damaged VR or
            # length can make it the patient's name) raised outside it, and pynetdicom
            # logged the traceback, value and all.
            geometry = (int(rows), int(cols), int(bits), int(samples)) if rows and cols and bits else None
        except Exception as exc:  # pydicom raises many types on garbage
            return Verdict(CANNOT_UNDERSTAND, "cannot parse the data set: %s" % type(exc).__name__)
    if any("end of file" in str(w.message).lower() for w in caught):
        return Verdict(CANNOT_UNDERSTAND, "the data set is truncated (ends inside an element)")
    if uid_class != sop_class:
        return Verdict(DOES_NOT_MATCH_SOP_CLASS, "SOP Class UID in the data set (%s) is not the "
                       "request's (%s)" % (_shown_uid(uid_class), _shown_uid(sop_class)))
    if uid_instance != sop_instance:
        return Verdict(DOES_NOT_MATCH_SOP_CLASS, "SOP Instance UID in the data set is not the request's")
    if geometry is None:
        return Verdict(DOES_NOT_MATCH_SOP_CLASS, "no image geometry (Rows/Columns/Bits Allocated)")
    if pixels is None:
        return Verdict(DOES_NOT_MATCH_SOP_CLASS, "no Pixel Data: not an image")
    if transfer_syntax in NATIVE:
        need = _native_length(*geometry, frames=frames)
        if len(pixels) < need:
            return Verdict(CANNOT_UNDERSTAND, "the data set is truncated: Pixel Data has %d of %d "
                           "bytes" % (len(pixels), need))
    elif not _fragments_complete(pixels):
        return Verdict(CANNOT_UNDERSTAND, "the data set is truncated: an encapsulated Pixel Data "
                       "fragment is cut short")
    return Verdict(SUCCESS)


def _fragments_complete(value: bytes) -> bool:
    """Encapsulated Pixel Data: (FFFE,E000) items (offset table, then at least
    one fragment) whose lengths add up to exactly the bytes there are."""
    pos, items, end = 0, 0, len(value)
    while pos < end:
        if pos + 8 > end:
            return False
        group, elem, length = struct.unpack_from("<HHL", value, pos)
        if (group, elem) != (0xFFFE, 0xE000):
            return False
        pos += 8 + length
        items += 1
    return pos == end and items >= 2


def _native_length(rows: int, cols: int, bits: int, samples: int, frames: int) -> int:
    if bits == 1:
        return (rows * cols * samples * frames + 7) // 8
    return rows * cols * samples * frames * ((bits + 7) // 8)


def _shown_uid(value: str) -> str:
    """A UID as it may appear in a reason: a damaged length makes the value run
    on into the patient's name, so anything but digits and dots is described."""
    if not value:
        return "missing"
    if len(value) <= 64 and _UID.match(value):
        return value
    return "a malformed value of %d characters" % len(value)


def _int(value) -> Optional[int]:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None
