"""Attack suite: the decoder's contract. Whatever hostile bytes make a
parser raise, decode_bytes raises a DecodeError subclass with a reason code
(never TypeError/ValueError/BytesLengthException/OverflowError, which the
appliance would file as internal faults and retry). The inputs are like
the ten a fuzzing run found: header elements whose VR or length does not
fit their meaning, made at test time from a valid film."""
import struct

import pytest

from edge.decode import decode_bytes
from edge.errors import DecodeError
from tests.attack_kit import dicom_bytes

ROWS, COLUMNS, SAMPLES, BITS_ALLOCATED = (0x0028, 0x0010), (0x0028, 0x0011), (0x0028, 0x0002), (0x0028, 0x0100)


def _find(data: bytes, tag) -> int:
    start = data.index(b"DICM") + 4
    meta_len = struct.unpack("<I", data[start + 8:start + 12])[0]
    return data.index(struct.pack("<HH", *tag), start + 12 + meta_len)


def with_element(data: bytes, tag, vr: bytes, value: bytes) -> bytes:
    """`data` with one explicit-VR (short form) element re-encoded."""
    at = _find(data, tag)
    old = struct.unpack("<H", data[at + 6:at + 8])[0]
    return (data[:at] + struct.pack("<HH", *tag) + vr + struct.pack("<H", len(value)) + value
            + data[at + 8 + old:])


# (name, tag, VR, value): what pydicom raised on element access before the contract
CASES = [
    ("rows_odd_length_US", ROWS, b"US", b"\x01"),               # BytesLengthException
    ("rows_empty", ROWS, b"US", b""),                           # TypeError: int(None)
    ("columns_empty", COLUMNS, b"US", b""),                     # TypeError
    ("samples_text", SAMPLES, b"IS", b"x1"),                    # ValueError
    ("samples_odd_length", SAMPLES, b"US", b"\x01"),            # BytesLengthException
    ("rows_text", ROWS, b"IS", b"ab"),                          # ValueError
    ("rows_nan", ROWS, b"DS", b"nan "),                         # ValueError: NaN to int
    ("bits_allocated_text", BITS_ALLOCATED, b"IS", b"zz"),      # ValueError
    ("rows_attribute_tag", ROWS, b"AT", b"\x01\x00"),           # TypeError: int(MultiValue)
    ("samples_infinite", SAMPLES, b"DS", b"inf "),              # OverflowError
    ("rows_three_byte_UL", ROWS, b"UL", b"\x01\x02\x03"),       # BytesLengthException
]


@pytest.fixture(scope="module")
def film() -> bytes:
    return dicom_bytes(0, size=(300, 300))


@pytest.mark.parametrize("name,tag,vr,value", CASES, ids=[c[0] for c in CASES])
def test_a_malformed_header_element_is_a_decode_error_with_a_code(film, name, tag, vr, value):
    data = with_element(film, tag, vr, value)
    with pytest.raises(DecodeError) as info:
        decode_bytes(data)
    assert info.value.code in ("corrupt", "unsupported", "not_an_image", "too_large")
    assert "\n" not in str(info.value)


def test_random_damage_anywhere_in_the_header_is_a_decode_error_or_a_picture(film):
    """Byte flips over the header only ever give a DecodeError or an image."""
    import random
    rng = random.Random(9)
    header_end = _find(film, (0x7FE0, 0x0010))
    for _ in range(300):
        data = bytearray(film)
        for _ in range(rng.randint(1, 8)):
            data[rng.randrange(132, header_end)] = rng.randrange(256)
        try:
            decode_bytes(bytes(data))
        except DecodeError:
            pass


PEAK_RSS = """
import resource, sys
from edge.decode import decode_bytes
from edge.errors import DecodeError
from edge.settings import DecodeSettings
try:
    decode_bytes(open(sys.argv[1], "rb").read(), DecodeSettings(min_side=4))
except DecodeError:
    pass
# VmHWM is this process's own peak: ru_maxrss would carry the forking parent's (pytest's) peak over exec.
print([int(l.split()[1]) // 1024 for l in open("/proc/self/status") if l.startswith("VmHWM:")][0])
"""


def test_a_png_chunk_declaring_gigabytes_is_refused_before_opencv_allocates_them(tmp_path):
    """Found by `make fuzz`: OpenCV allocated 3 GB for a 170-byte PNG."""
    import os
    import subprocess
    import sys
    import cv2
    import numpy as np
    ok, buf = cv2.imencode(".png", np.arange(256, dtype=np.uint8).reshape(16, 16))
    data = bytearray(buf.tobytes())
    idat = data.index(b"IDAT") - 4
    ancillary = struct.pack(">I", 0xBD00003F) + b"tEXt"                # a chunk "3 GB long"
    data[idat:idat] = ancillary + b"\0" * 8
    path = tmp_path / "bomb.png"
    path.write_bytes(bytes(data))
    with pytest.raises(DecodeError):
        decode_bytes(bytes(data))
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    peak_mb = int(subprocess.check_output([sys.executable, "-c", PEAK_RSS, str(path)], cwd=root,
                                          env=dict(os.environ, PYTHONPATH=root)).split()[-1])
    assert peak_mb < 1024, "decoding a %d-byte PNG peaked at %d MB" % (len(data), peak_mb)
