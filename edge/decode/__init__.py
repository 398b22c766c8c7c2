"""bytes -> Image: DICOM, PNG or JPEG, recognised by content, with clear rejections.

Every refusal is a DecodeError subclass (edge.errors) whose `.code` is stable
and whose message says what is wrong in plain words; nothing here reads or
reports the patient's name or birth date. The contract is total: whatever a
parser raises on hostile bytes (pydicom's TypeError/ValueError from element
access, struct.error, a plugin's RuntimeError ...) leaves decode_bytes as a
DecodeError, so a bad file is rejected with a reason, never filed as an
internal fault. Messages never quote an element's raw value or a parser's
exception text: a corrupted length makes a value span the patient's name.
"""
import logging
import os
from typing import Optional

from edge.errors import CorruptImage, DecodeError, ImageTooLarge, NotAnImage, Truncated
from edge.settings import DecodeSettings
from edge.types import Image

from .checks import check_file_size
from .dicom import decode_dicom
from .raster import decode_raster
from .sniff import looks_like_text, sniff_format

__all__ = ["sniff_format", "decode_bytes", "decode_file", "DecodeError"]


log = logging.getLogger(__name__)


def decode_bytes(data: bytes, settings: Optional[DecodeSettings] = None, name: str = "",
                 min_side: int = 0) -> Image:
    """Decode one file's content; `name` is for the caller's logs only (the
    extension is never trusted). Raises only DecodeError subclasses.
    min_side > 0 allows a reduced-resolution decode whose shorter side is
    still >= min_side (JPEG 2000, JPEG; the Image then records its original size)."""
    settings = settings or DecodeSettings()
    try:
        return _decode(data, settings, min_side)
    except DecodeError:
        raise
    except MemoryError:
        raise ImageTooLarge("file needs more memory to decode than is free")
    except RecursionError:
        raise CorruptImage("file is damaged: nesting too deep to parse")
    except Exception as exc:  # noqa: BLE001 - the contract: hostile bytes end as DecodeError
        log.debug("decode: %s from the parser (message withheld: it may quote file values)",
                  type(exc).__name__)
        raise Truncated("file is damaged: its header or pixel data cannot be parsed (%s)"
                        % type(exc).__name__)


def _decode(data: bytes, settings: DecodeSettings, min_side: int) -> Image:
    check_file_size(len(data), settings)
    if not data:
        raise NotAnImage("file is empty (0 bytes)")
    fmt = sniff_format(data)
    if fmt == "dicom":
        return decode_dicom(data, settings, min_side)
    if fmt in ("png", "jpeg"):
        return decode_raster(data, fmt, settings, min_side)
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
