"""Attack suite: a DICOM header of hundreds of thousands of tiny elements.
pydicom builds an object of about 1 KB for each element it reads: a 2 MB
file of 200,000 two-byte private elements took 1.8 s and 260 MB, so a
60 MB one (well under decode.max_file_mb) is an OOM kill on the 8 GB
Xavier before any rule runs. Such a header is refused as too large from a
cheap count, with or without the file meta, and inside an undefined-length
sequence too."""
import os
import struct
import subprocess
import sys

import pytest

from edge.decode import decode_bytes
from edge.decode.header_walk import MAX_HEADER_ELEMENTS, count_elements
from edge.errors import DecodeError
from tests.attack_kit import dicom_bytes

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MANY = MAX_HEADER_ELEMENTS + 20000


def _dataset_start(data: bytes) -> int:
    start = data.index(b"DICM") + 4
    return start + 12 + struct.unpack("<I", data[start + 8:start + 12])[0]


def _first_at_or_after(data: bytes, pos: int, group: int) -> int:
    """Offset of the first top-level element whose group is >= `group` (explicit VR LE)."""
    while True:
        g, _ = struct.unpack_from("<HH", data, pos)
        if g >= group:
            return pos
        vr = data[pos + 4:pos + 6]
        if vr in (b"OB", b"OW", b"SQ", b"UN", b"UT", b"OF"):
            pos += 12 + struct.unpack_from("<I", data, pos + 8)[0]
        else:
            pos += 8 + struct.unpack_from("<H", data, pos + 6)[0]


def tiny_elements(n: int, groups=(0x0009, 0x000B, 0x000D, 0x000F)) -> bytes:
    out = []
    for group in groups:
        for element in range(0x1000, 0x10000):
            if len(out) == n:
                return b"".join(out)
            out.append(struct.pack("<HH", group, element) + b"LO" + struct.pack("<H", 2) + b"ab")
    return b"".join(out)


def crowded(n: int = MANY, nested: bool = False) -> bytes:
    film = dicom_bytes(6, size=(300, 300))
    at = _first_at_or_after(film, _dataset_start(film), 0x0009)
    body = tiny_elements(n, groups=(0x0011, 0x0013, 0x0015) if nested else (0x0009, 0x000B, 0x000D, 0x000F))
    if nested:   # one undefined-length sequence, one undefined-length item holding them all
        body = (struct.pack("<HH", 0x0009, 0x1010) + b"SQ\0\0" + struct.pack("<I", 0xFFFFFFFF)
                + struct.pack("<HHI", 0xFFFE, 0xE000, 0xFFFFFFFF) + body
                + struct.pack("<HHI", 0xFFFE, 0xE00D, 0) + struct.pack("<HHI", 0xFFFE, 0xE0DD, 0))
    return film[:at] + body + film[at:]


@pytest.mark.parametrize("variant", ["with_file_meta", "raw_data_set", "nested_in_a_sequence"])
def test_a_header_of_too_many_elements_is_too_large(variant):
    data = crowded(nested=variant == "nested_in_a_sequence")
    if variant == "raw_data_set":
        data = data[_dataset_start(data):]             # no preamble, no 'DICM', no file meta
    with pytest.raises(DecodeError) as info:
        decode_bytes(data)
    assert info.value.code == "too_large"


def test_a_header_with_many_but_not_too_many_elements_still_decodes():
    data = crowded(n=2000)
    assert 2000 < count_elements(data, _dataset_start(data), explicit=True) < 2200
    assert decode_bytes(data).pixels.shape == (300, 300)


PEAK = """
import sys
from edge.decode import decode_bytes
from edge.errors import DecodeError
try:
    decode_bytes(open(sys.argv[1], "rb").read())
    print("decoded")
except DecodeError as exc:
    print(exc.code)
print([int(l.split()[1]) // 1024 for l in open("/proc/self/status") if l.startswith("VmHWM:")][0])
"""


def test_refusing_it_costs_no_memory_for_the_elements(tmp_path):
    path = tmp_path / "crowded.dcm"
    path.write_bytes(crowded(n=240000))                  # 2.4 MB; pydicom alone: about 230 MB more
    base = subprocess.check_output([sys.executable, "-c", PEAK, "/dev/null"], cwd=ROOT,
                                   env=dict(os.environ, PYTHONPATH=ROOT), timeout=120).split()
    out = subprocess.check_output([sys.executable, "-c", PEAK, str(path)], cwd=ROOT,
                                  env=dict(os.environ, PYTHONPATH=ROOT), timeout=120).split()
    assert out[0] == b"too_large"
    assert int(out[-1]) - int(base[-1]) < 100, "peak %s MB against %s MB for an empty file" % (
        out[-1].decode(), base[-1].decode())
