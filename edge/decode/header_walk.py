"""How many elements pydicom would build for a DICOM header, counted cheaply first.

pydicom keeps every header element it reads as an object of about 1 KB: a
2 MB file of 200,000 tiny private elements took 1.8 s and 260 MB to read,
so a 60 MB one is an OOM kill on an 8 GB Xavier, long before any size or
pixel rule runs. This walks the element headers (no objects, no values)
the way pydicom reads them: defined-length values are skipped (pydicom
keeps them as raw bytes until asked), undefined-length sequences and items
are entered (pydicom must parse those to find their end); it stops at the
Pixel Data or after `limit` elements.
"""
import struct

from edge.errors import ImageTooLarge

from .deflate import dataset_start

IMPLICIT_LE, EXPLICIT_BE = "1.2.840.10008.1.2", "1.2.840.10008.1.2.2"

# A radiograph's header has a few hundred elements; enhanced multi-frame objects
# reach tens of thousands. Beyond this the file is refused before pydicom reads it.
MAX_HEADER_ELEMENTS = 100000

_PIXEL_DATA = (0x7FE0, 0x0010)
_UNDEFINED = 0xFFFFFFFF
_LONG_VRS = frozenset((b"OB", b"OD", b"OF", b"OL", b"OV", b"OW", b"SQ", b"SV", b"UC", b"UN", b"UR",
                       b"UT", b"UV"))


def count_elements(data: bytes, pos: int, explicit: bool, little: bool = True,
                   limit: int = MAX_HEADER_ELEMENTS) -> int:
    """Elements from `pos` up to the Pixel Data (or the end), at most limit + 1."""
    tag_fmt, short_fmt, long_fmt = ("<HH", "<H", "<I") if little else (">HH", ">H", ">I")
    n, count = len(data), 0
    while pos + 8 <= n and count <= limit:
        group, element = struct.unpack_from(tag_fmt, data, pos)
        if (group, element) == _PIXEL_DATA:
            break
        count += 1
        if group == 0xFFFE:                      # item / delimiters: always tag + 4-byte length
            (length,) = struct.unpack_from(long_fmt, data, pos + 4)
            pos += 8 if element == 0xE000 or length == _UNDEFINED else 8 + length
            continue
        vr = bytes(data[pos + 4:pos + 6])     # hashable, also from a bytearray
        if explicit and vr in _LONG_VRS:
            if pos + 12 > n:
                break
            (length,) = struct.unpack_from(long_fmt, data, pos + 8)
            head = 12
        elif explicit:
            (length,) = struct.unpack_from(short_fmt, data, pos + 6)
            head = 8
        else:
            (length,) = struct.unpack_from(long_fmt, data, pos + 4)
            head = 8
        pos += head if length == _UNDEFINED else head + length
    return count


def check_header_elements(data: bytes) -> None:
    """Refuse a DICOM file whose header has more than MAX_HEADER_ELEMENTS elements."""
    start, ts = dataset_start(data)
    if ts is None:                    # no file meta: explicit VR if a VR follows the first tag
        explicit, little = data[start + 4:start + 6].isalpha(), True
    else:
        explicit, little = ts != IMPLICIT_LE, ts != EXPLICIT_BE
    if count_elements(data, start, explicit, little) > MAX_HEADER_ELEMENTS:
        raise ImageTooLarge("DICOM header has more than %d elements; a radiograph's has a few "
                            "hundred (refused before parsing it)" % MAX_HEADER_ELEMENTS)
