"""Uncompressed 16-bit grey pixel data read in place, without a second parse.

pydicom's way to the pixels of an uncompressed film parses the file again
with its pixel data, copies the value out of the stream (8 MB for a 2048 px
film), and copies it once more into a writable array: about half the CPU of
decoding such a film. The header read has already stopped at the Pixel Data
element, so its value is a slice of the file's bytes: this module checks the
element there and returns a read-only numpy view on it. The values are
pydicom 3's: bits above Bits Stored are corrected (masked, or sign-extended)
exactly as its decoders do, on a copy, and only when some value uses them.

Anything else (big endian, encapsulated, 8 or 32 bits, several samples or
frames, odd or missing header values, too few bytes or whole extra frames,
an element that does not look like Pixel Data) returns None, and the caller
takes pydicom's path, which words the refusal where there is one. A
deflated film is inflated first (deflate.py) and then read in place too.
Elements after Pixel Data are not read: the header the checks passed is the
one whose values are used.
"""
import struct
from typing import Optional

import numpy as np
import pydicom
from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian

_PIXEL_DATA_TAG = b"\xe0\x7f\x10\x00"       # (7FE0,0010), little endian
_UNDEFINED = 0xFFFFFFFF


def native_view(data: bytes, offset: int, header: "pydicom.Dataset", ts: str) -> Optional[np.ndarray]:
    """The Rows x Columns stored values of the Pixel Data element starting at
    `offset` in `data`; None where this fast path does not apply, and for
    anything pydicom's path should word a refusal for (odd header values,
    too few or too many bytes)."""
    if ts not in (ExplicitVRLittleEndian, ImplicitVRLittleEndian):
        return None
    bits = _int(header, "BitsStored")
    signed = _int(header, "PixelRepresentation")
    if (_int(header, "BitsAllocated") != 16 or bits is None or not 1 <= bits <= 16
            or signed not in (0, 1) or _int(header, "SamplesPerPixel", 1) != 1
            or _int(header, "NumberOfFrames", 1) != 1):
        return None
    rows, cols = _int(header, "Rows"), _int(header, "Columns")
    if (rows or 0) <= 0 or (cols or 0) <= 0:
        return None
    start = _value_start(data, offset)
    if start is None:
        return None
    value_start, length = start
    expected = rows * cols * 2
    # Short: pydicom's path says how short. Whole extra frames behind a NumberOfFrames of 1: pydicom 3
    # reads them as frames and the film is refused as not one grey frame; so is it here.
    if min(length, len(data) - value_start) < expected or length >= 2 * expected:
        return None
    raw = np.frombuffer(data, "<i2" if signed else "<u2", count=rows * cols, offset=value_start)
    return _correct_unused_bits(raw.reshape(rows, cols), bits, bool(signed))


def _int(header: "pydicom.Dataset", keyword: str, absent: Optional[int] = None) -> Optional[int]:
    """One integer value, `absent` when the element is missing, None when it is
    anything else (several values, empty, not a number)."""
    if keyword not in header:
        return absent
    try:
        return int(header.get(keyword))
    except (TypeError, ValueError, OverflowError):
        return None


def _value_start(data: bytes, offset: int):
    """(where the value starts, its declared length), or None if the element
    at `offset` is not a native Pixel Data element. Explicit or implicit VR is
    read from the bytes, as pydicom does, not from the transfer syntax: files
    that declare one and are written in the other exist, and pydicom reads them.
    An implicit element whose length bytes spell "OW" or "OB" and two zero
    bytes would have an odd length, which 16-bit pixel data never has."""
    head = data[offset:offset + 12]
    if len(head) < 8 or head[:4] != _PIXEL_DATA_TAG:
        return None
    if head[4:6] in (b"OW", b"OB") and head[6:8] == b"\0\0":
        if len(head) < 12:
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
