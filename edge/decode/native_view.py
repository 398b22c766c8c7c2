"""Uncompressed 16-bit grey pixel data read in place, without a second parse.

pydicom's way to the pixels of an uncompressed film parses the file again
with its pixel data, copies the value out of the stream (8 MB for a 2048 px
film), and copies it once more into a writable array: about half the CPU of
decoding such a film. The header read has already stopped at the Pixel Data
element, so its value is a slice of the file's bytes: this module checks the
element there and returns a read-only numpy view on it. The values are
pydicom 3's: bits above Bits Stored are corrected (masked, or sign-extended)
exactly as its decoders do, on a copy, and only when some value uses them.

Anything else (big endian, deflated, encapsulated, 8 or 32 bits, several
samples or frames, an element that does not look like Pixel Data) returns
None, and the caller takes pydicom's path.
"""
import struct
from typing import Optional

import numpy as np
import pydicom
from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian

from edge.errors import CorruptImage

_PIXEL_DATA_TAG = b"\xe0\x7f\x10\x00"       # (7FE0,0010), little endian
_UNDEFINED = 0xFFFFFFFF


def native_view(data: bytes, offset: int, header: "pydicom.Dataset", ts: str) -> Optional[np.ndarray]:
    """The Rows x Columns stored values of the Pixel Data element starting at
    `offset` in `data`; None where this fast path does not apply."""
    if ts not in (ExplicitVRLittleEndian, ImplicitVRLittleEndian):
        return None
    if (int(header.get("BitsAllocated") or 0) != 16 or int(header.get("SamplesPerPixel") or 1) != 1
            or int(header.get("NumberOfFrames") or 1) != 1):
        return None
    bits = int(header.get("BitsStored") or 16)
    signed = int(header.get("PixelRepresentation") or 0) == 1
    if not 1 <= bits <= 16:
        return None
    start = _value_start(data, offset, explicit=ts == ExplicitVRLittleEndian)
    if start is None:
        return None
    value_start, length = start
    rows, cols = int(header.Rows), int(header.Columns)
    expected = rows * cols * 2
    got = min(length, len(data) - value_start)
    if got < expected:
        raise CorruptImage("DICOM pixel data is truncated: %d bytes of the %d a %d x %d image needs"
                           % (max(got, 0), expected, cols, rows))
    raw = np.frombuffer(data, "<i2" if signed else "<u2", count=rows * cols, offset=value_start)
    return _correct_unused_bits(raw.reshape(rows, cols), bits, signed)


def _value_start(data: bytes, offset: int, explicit: bool):
    """(where the value starts, its declared length), or None if the element
    at `offset` is not a native Pixel Data element."""
    head = data[offset:offset + 12]
    if len(head) < 8 or head[:4] != _PIXEL_DATA_TAG:
        return None
    if explicit:
        if len(head) < 12 or head[4:6] not in (b"OW", b"OB") or head[6:8] != b"\0\0":
            return None
        length, start = struct.unpack("<I", head[8:12])[0], offset + 12
    else:
        length, start = struct.unpack("<I", head[4:8])[0], offset + 8
    if length == _UNDEFINED:      # encapsulated fragments: not native pixels
        return None
    return start, length


def _correct_unused_bits(raw: np.ndarray, bits: int, signed: bool) -> np.ndarray:
    if bits == 16:
        return raw
    if signed:
        fits = int(raw.min()) >= -(1 << (bits - 1)) and int(raw.max()) < 1 << (bits - 1)
    else:
        fits = int(raw.max()) < 1 << bits
    if fits:
        return raw          # no value uses the unused bits: the correction changes nothing
    shift = 16 - bits
    fixed = np.left_shift(raw, shift)
    np.right_shift(fixed, shift, out=fixed)    # arithmetic for int16: sign-extends, as pydicom does
    return fixed
