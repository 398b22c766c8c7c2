"""Attack suite: Deflated Explicit VR Little Endian (1.2.840.10008.1.2.1.99).
pydicom inflates the whole data set in memory before reading an element, and
the file-size limit saw only the compressed size: a 1.1 MB file of deflated
zeros peaked at 3.1 GB; a few MB more is an OOM kill of the appliance on an
8 GB Xavier. The inflated size is now held to decode.max_file_mb."""
import io
import os
import struct
import subprocess
import sys
import zlib

import numpy as np
import pydicom
import pytest

from edge.decode import decode_bytes
from edge.errors import DecodeError
from edge.settings import DecodeSettings
from tests.attack_kit import dicom_bytes

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFLATED = "1.2.840.10008.1.2.1.99"


def _body_start(data: bytes) -> int:
    start = data.index(b"DICM") + 4
    return start + 12 + struct.unpack("<I", data[start + 8:start + 12])[0]


def deflated(data: bytes, zeros_mb: int = 0) -> bytes:
    """`data` (an Explicit VR LE file) re-encoded deflated, with `zeros_mb` MB
    of zeros in a trailing private OB element (they deflate about 1000:1)."""
    ds = pydicom.dcmread(io.BytesIO(data))
    ds.file_meta.TransferSyntaxUID = DEFLATED
    out = io.BytesIO()
    ds.save_as(out)
    if not zeros_mb:
        return out.getvalue()
    head = out.getvalue()[:_body_start(out.getvalue())]             # the file meta, saying deflated
    body_start = _body_start(data)
    packer = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS)
    body = packer.compress(data[body_start:])
    body += packer.compress(struct.pack("<HH", 0x7FE1, 0x1010) + b"OB\0\0" + struct.pack("<I", zeros_mb << 20))
    chunk = b"\0" * (1 << 20)
    for _ in range(zeros_mb):
        body += packer.compress(chunk)
    return head + body + packer.flush()


@pytest.fixture(scope="module")
def film() -> bytes:
    return dicom_bytes(5, size=(300, 300))


def test_a_deflated_film_decodes_to_the_same_picture(film):
    image = decode_bytes(deflated(film))
    assert np.array_equal(image.pixels, decode_bytes(film).pixels)
    assert image.transfer_syntax == "Deflated Explicit VR Little Endian"


def test_a_damaged_or_cut_deflate_stream_is_corrupt(film):
    data = deflated(film)
    at = _body_start(data)
    invalid_block = data[:at] + b"\xff" + data[at + 1:]          # BTYPE 11: no such deflate block
    for bad in (invalid_block, data[:len(data) // 2]):
        with pytest.raises(DecodeError) as info:
            decode_bytes(bad)
        assert info.value.code == "corrupt"


PEAK = """
import sys
from edge.decode import decode_bytes
from edge.errors import DecodeError
from edge.settings import DecodeSettings
try:
    decode_bytes(open(sys.argv[1], "rb").read(), DecodeSettings(max_file_mb=16))
    print("decoded")
except DecodeError as exc:
    print(exc.code)
print([int(l.split()[1]) // 1024 for l in open("/proc/self/status") if l.startswith("VmHWM:")][0])
"""


def test_a_deflate_bomb_is_too_large_without_inflating_it(film, tmp_path):
    bomb = deflated(film, zeros_mb=384)
    assert len(bomb) < 1024 * 1024                     # well under any file-size limit
    path = tmp_path / "bomb.dcm"
    path.write_bytes(bomb)
    with pytest.raises(DecodeError) as info:
        decode_bytes(bomb, DecodeSettings(max_file_mb=16))
    assert info.value.code == "too_large"
    out = subprocess.check_output([sys.executable, "-c", PEAK, str(path)], cwd=ROOT,
                                  env=dict(os.environ, PYTHONPATH=ROOT), timeout=120).split()
    assert out[0] == b"too_large"
    assert int(out[-1]) < 250, "a %d-byte file peaked at %s MB" % (len(bomb), out[-1].decode())
