"""A file's own patient words, read from its DICOM header before anything
about the file is said (its name may be the patient's: `Smith^Johanna.dcm`).

The same header read as decode_dicom's (deflate inflated within the size
limit, the element-count bomb refused first), stopped before the pixels, so
a duplicate or a file rejected later is labelled as safely as one decoded.
"""
from typing import FrozenSet, Optional

from edge.capture.names import Sight

from .deflate import inflate_if_deflated
from .dicom import _read, stream_end
from .header_walk import check_header_elements
from .sniff import sniff_format
from .withheld import patient_words

# A file too large to keep in memory is looked at by its head: a header
# longer than this is "opaque" (the name is then not shown).
HEAD_BYTES = 16 * 1024 * 1024


def content_kind(data: bytes) -> str:
    """"dicom" | "raster" (PNG/JPEG) | "opaque" (anything else), by content."""
    try:
        fmt = sniff_format(data)
    except Exception:  # noqa: BLE001 - hostile bytes: say nothing about the name
        return "opaque"
    if fmt == "dicom":
        return "dicom"
    return "raster" if fmt in ("png", "jpeg") else "opaque"


def header_words(data: bytes, max_bytes: int) -> Optional[FrozenSet[str]]:
    """patient_words of this DICOM content's header; None when there is no
    whole header (not DICOM, damaged, or cut off before the pixels: the
    patient's elements may be in the part that is missing)."""
    try:
        data, _deflated = inflate_if_deflated(data, max_bytes)
        check_header_elements(data)
        header, fp = _read(data, stop_before_pixels=True)
        if fp.tell() >= stream_end(fp):      # read to the end: no pixel data after it
            return None
        return patient_words(header)
    except Exception:  # noqa: BLE001 - total: the caller then shows no name at all
        return None


def sight_of(data: bytes, max_inflated: int) -> Sight:
    """What this content (or its first HEAD_BYTES) says about showing its name."""
    kind = content_kind(data)
    if kind != "dicom":
        return Sight(kind)
    words = header_words(data, max_inflated)
    return Sight("opaque") if words is None else Sight("dicom", words)
