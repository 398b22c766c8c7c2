"""Uncompressed DICOM reduced by 2, 4 or 8 before the display mapping when
the appliance needs less (decode floor), the original size kept."""
import cv2
import numpy as np
import pytest

from edge.decode import decode_bytes
from edge.decode.native_reduce import reduce_native
from edge.settings import DecodeSettings
from tests.dicom_factory import chest_phantom, write_dicom


def _film(tmp_path, size, **kw):
    px = chest_phantom(size, size, bits=12)
    return open(write_dicom(tmp_path / "n.dcm", px, window=(2048, 4096), **kw), "rb").read()


@pytest.mark.parametrize("hw, min_side, expected", [
    ((2048, 2048), 1024, (1024, 1024)),
    ((2048, 2048), 256, (256, 256)),      # 8 is the largest factor
    ((3000, 2500), 1024, (1500, 1250)),   # 4 would give 625 < 1024
    ((2047, 2047), 1024, (1024, 1024)),   # the DCT rule's ceil: ceil(2047 / 2) = 1024 meets the floor
    ((2046, 2046), 1024, (2046, 2046)),   # 1023 would not
    ((1024, 1024), 1024, (1024, 1024)),
    ((2048, 2048), 0, (2048, 2048)),
])
def test_the_factor_keeps_the_shorter_side_at_the_floor(hw, min_side, expected):
    raw = np.zeros(hw, np.uint16)
    assert reduce_native(raw, min_side).shape == expected


def test_only_sixteen_bit_grey_is_reduced():
    assert reduce_native(np.zeros((2048, 2048), np.uint8), 1024).shape == (2048, 2048)
    assert reduce_native(np.zeros((2048, 2048), np.int16), 1024).shape == (1024, 1024)
    assert reduce_native(np.zeros((2048, 2048, 3), np.uint16), 1024).shape == (2048, 2048, 3)


def test_a_2048_px_film_decodes_at_the_floor_with_its_original_size(tmp_path):
    data = _film(tmp_path, 2048)
    full = decode_bytes(data, DecodeSettings())
    small = decode_bytes(data, DecodeSettings(), min_side=1024)
    assert full.pixels.shape == (2048, 2048) and full.original_hw is None
    assert small.pixels.shape == (1024, 1024) and small.original_hw == (2048, 2048)
    assert (small.height, small.width) == (2048, 2048)     # findings stay in original pixels
    # The window is linear and clips nowhere here: averaging first is the same picture.
    expected = cv2.resize(full.pixels, (1024, 1024), interpolation=cv2.INTER_AREA)
    assert np.abs(small.pixels - expected).max() < 1.0 / 4096


def test_reduced_resolution_off_decodes_full_size(tmp_path):
    data = _film(tmp_path, 2048)
    image = decode_bytes(data, DecodeSettings(reduced_resolution=False), min_side=1024)
    assert image.pixels.shape == (2048, 2048) and image.original_hw is None
