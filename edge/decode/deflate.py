"""Deflated Explicit VR Little Endian, inflated here with a bound.

pydicom inflates a deflated data set whole, in memory, before it reads a
single element: a 1.1 MB file of deflated zeros peaked at 3.1 GB (a 3 MB one
is an OOM kill on an 8 GB Xavier), and the file-size limit only ever saw
the compressed size. Here the file meta is walked by hand, the data set is
inflated up to decode.max_file_mb (what an uncompressed file may weigh) and
handed on as plain Explicit VR Little Endian.
"""
import struct
import zlib
from typing import Optional, Tuple, Union

from edge.errors import ImageTooLarge, Truncated

DEFLATED = "1.2.840.10008.1.2.1.99"
EXPLICIT_LE = b"1.2.840.10008.1.2.1\0"          # even length, as written
_LONG_VRS = frozenset((b"OB", b"OD", b"OF", b"OL", b"OV", b"OW", b"SQ", b"SV", b"UC", b"UN", b"UR",
                       b"UT", b"UV"))
_CHUNK = 1 << 20


def _meta_start(data: bytes) -> Optional[int]:
    if data[128:132] == b"DICM":
        return 132
    if data[:4] == b"DICM":
        return 4
    return None


def _walk_meta(data: bytes, pos: int) -> Tuple[int, Optional[Tuple[int, int]], Optional[int]]:
    """(end of the group-0002 elements, (start, length) of the transfer syntax
    value, offset of the group length's value)."""
    ts, group_length = None, None
    n = len(data)
    while pos + 8 <= n:
        group, element = struct.unpack_from("<HH", data, pos)
        if group != 0x0002:
            break
        vr = bytes(data[pos + 4:pos + 6])     # hashable, also from a bytearray
        if vr in _LONG_VRS:
            if pos + 12 > n:
                break
            (length,) = struct.unpack_from("<I", data, pos + 8)
            value = pos + 12
        else:
            (length,) = struct.unpack_from("<H", data, pos + 6)
            value = pos + 8
        if element == 0x0010:
            ts = (value, length)
        elif element == 0x0000 and length == 4:
            group_length = value
        pos = value + length
    return min(pos, n), ts, group_length


def dataset_start(data: bytes) -> Tuple[int, Optional[str]]:
    """(offset where the data set begins, transfer syntax UID or None) from the file meta;
    (0, None) for a raw data set without preamble or 'DICM'."""
    start = _meta_start(data)
    if start is None:
        return 0, None
    end, ts, _ = _walk_meta(data, start)
    if ts is None:
        return end, None
    return end, data[ts[0]:ts[0] + ts[1]].rstrip(b"\0 ").decode("ascii", "replace")


def inflate_if_deflated(data: bytes, max_bytes: int) -> Tuple[Union[bytes, bytearray], bool]:
    """(data, False) for any other transfer syntax; for a deflated one, the
    same file re-encoded as Explicit VR Little Endian and True. Raises
    ImageTooLarge past `max_bytes` inflated, CorruptImage for a broken stream."""
    start = _meta_start(data)
    if start is None:
        return data, False
    end, ts, group_length = _walk_meta(data, start)
    if ts is None or data[ts[0]:ts[0] + ts[1]].rstrip(b"\0 ") != DEFLATED.encode():
        return data, False
    inflater = zlib.decompressobj(-zlib.MAX_WBITS)
    out = bytearray(data[:end])          # grown in place: no list of pieces joined into a second copy
    total, view = 0, memoryview(data)[end:]
    try:
        for offset in range(0, len(view), _CHUNK):
            piece = inflater.decompress(view[offset:offset + _CHUNK], max_bytes + 1 - total)
            while True:
                total += len(piece)
                if total > max_bytes:
                    raise ImageTooLarge("deflated DICOM inflates to more than the %.0f MB limit "
                                        "(decode.max_file_mb)" % (max_bytes / 1048576.0))
                out += piece
                if not inflater.unconsumed_tail:
                    break
                piece = inflater.decompress(inflater.unconsumed_tail, max_bytes + 1 - total)
        piece = inflater.flush()
        out += piece
        if total + len(piece) > max_bytes:
            raise ImageTooLarge("deflated DICOM inflates to more than the %.0f MB limit "
                                "(decode.max_file_mb)" % (max_bytes / 1048576.0))
    except zlib.error:
        raise Truncated("deflated DICOM data set cannot be inflated (stream damaged)")
    value, length = ts
    out[value:value + length] = EXPLICIT_LE
    struct.pack_into("<H", out, value - 2, len(EXPLICIT_LE))
    if group_length is not None:
        (old,) = struct.unpack_from("<I", out, group_length)
        struct.pack_into("<I", out, group_length, old + len(EXPLICIT_LE) - length)
    return out, True      # a bytearray: every reader downstream takes one, and it spares a copy
