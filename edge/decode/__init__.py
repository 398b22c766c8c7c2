"""bytes -> Image: DICOM, PNG or JPEG, recognised by content, with clear rejections.

Every refusal is a DecodeError subclass (edge.errors) whose `.code` is stable
and whose message says what is wrong in plain words; nothing here reads or
reports the patient's name or birth date.
"""
import os
from typing import Optional

from edge.errors import DecodeError, NotAnImage
from edge.settings import DecodeSettings
from edge.types import Image

from .checks import check_file_size
from .dicom import decode_dicom
from .raster import decode_raster
from .sniff import looks_like_text, sniff_format

__all__ = ["sniff_format", "decode_bytes", "decode_file", "DecodeError"]


def decode_bytes(data: bytes, settings: Optional[DecodeSettings] = None, name: str = "",
                 min_side: int = 0) -> Image:
    """Decode one file's content; `name` is for the caller's logs only (the
    extension is never trusted). min_side > 0 allows a reduced-resolution
    decode whose shorter side is still >= min_side (JPEG 2000 only; the Image
    then records its original size)."""
    settings = settings or DecodeSettings()
    check_file_size(len(data), settings)
    if not data:
        raise NotAnImage("file is empty (0 bytes)")
    fmt = sniff_format(data)
    if fmt == "dicom":
        return decode_dicom(data, settings, min_side)
    if fmt in ("png", "jpeg"):
        return decode_raster(data, fmt, settings)
    if looks_like_text(data):
        raise NotAnImage("file is text, not an image (expected DICOM, PNG or JPEG)")
    raise NotAnImage("file is not DICOM, PNG or JPEG (unrecognised content, %d bytes)" % len(data))


def decode_file(path: str, settings: Optional[DecodeSettings] = None) -> Image:
    """Like decode_bytes; the size limit is checked before the file is read."""
    settings = settings or DecodeSettings()
    check_file_size(os.path.getsize(path), settings)
    with open(path, "rb") as f:
        data = f.read()
    return decode_bytes(data, settings, name=os.path.basename(path))
