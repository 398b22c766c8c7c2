"""Which format a file is, by its content (never its name)."""
import io
import struct
from typing import Optional

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
JPEG_SIGNATURE = b"\xff\xd8\xff"
DICM_OFFSET = 128

# Groups a raw (preamble-less) DICOM stream usually starts with: file meta,
# identifying, or (ACR-NEMA style) command/patient groups.
_RAW_DICOM_FIRST_GROUPS = (0x0002, 0x0008)


def sniff_format(data: bytes) -> Optional[str]:
    """"dicom" | "png" | "jpeg" | None, from the bytes alone."""
    if data[DICM_OFFSET:DICM_OFFSET + 4] == b"DICM" or data[:4] == b"DICM":
        return "dicom"
    if data.startswith(PNG_SIGNATURE):
        return "png"
    if data.startswith(JPEG_SIGNATURE):
        return "jpeg"
    if _looks_like_raw_dicom(data):
        return "dicom"
    return None


def _looks_like_raw_dicom(data: bytes) -> bool:
    """A DICOM data set written without preamble and 'DICM': cheap tag test
    first (so random bytes rarely reach pydicom), then a real header parse."""
    if len(data) < 8:
        return False
    group, element = struct.unpack("<HH", data[:4])
    if group not in _RAW_DICOM_FIRST_GROUPS or element > 0x0100:
        return False
    from .header_walk import MAX_HEADER_ELEMENTS, count_elements
    explicit = data[4:6].isalpha()
    if count_elements(data, 0, explicit) > MAX_HEADER_ELEMENTS:
        return True     # not parsed here: decode_dicom refuses it as too large, by the same count
    try:
        import pydicom
        ds = pydicom.dcmread(io.BytesIO(data), force=True, stop_before_pixels=True)
        # A real image header names its SOP class or at least its size.
        return any(k in ds for k in ("SOPClassUID", "Modality", "Rows"))
    except Exception:  # noqa: BLE001 - any parse failure just means "not DICOM"
        return False


def looks_like_text(data: bytes) -> bool:
    """Printable UTF-8 with no NUL: a log, a CSV, an HTML error page..."""
    head = data[:1024]
    if not head or b"\x00" in head:
        return False
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError:
        # A multi-byte character cut at the 1024-byte boundary is still text.
        try:
            text = head[:-3].decode("utf-8")
        except UnicodeDecodeError:
            return False
    printable = sum(1 for ch in text if ch.isprintable() or ch in "\r\n\t")
    return printable >= 0.95 * len(text)
