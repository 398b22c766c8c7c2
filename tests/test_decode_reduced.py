"""JPEG 2000 decoded at a reduced resolution level: the level rule, the
pixels, the original size kept, findings and the overlay in original pixels,
and the full-size fallbacks."""
import cv2
import numpy as np
import pytest

from edge.alerts.overlay import render_overlay
from edge.decode import decode_bytes, j2k
from edge.inference.manifest import load_manifest
from edge.inference.onnxruntime import OnnxRuntimeBackend
from edge.pipeline import Pipeline
from edge.resolution import decode_side, to_original
from edge.settings import DecodeSettings
from edge.types import Geometry
from tests.dicom_factory import JPEG_2000_LOSSLESS, chest_phantom, with_frame, write_dicom
from tests.tiny_models import write_tiny_models

needs_glymur = pytest.mark.skipif(not j2k.available()[0], reason="glymur/libopenjp2 not installed")


@pytest.mark.parametrize("hw, min_side, levels, expected", [
    ((2048, 2048), 384, 5, 2),      # 512 >= 384; 256 is too small
    ((1955, 1841), 384, 5, 2),      # 489 x 461
    ((1955, 1841), 461, 5, 2),      # ceil(1841 / 4) = 461 is still enough
    ((1955, 1841), 462, 5, 1),
    ((3000, 3000), 384, 5, 2),      # 750; 375 < 384
    ((4096, 4096), 256, 3, 3),      # the codestream's own levels cap it
    ((512, 512), 1024, 5, 0),       # smaller than asked: full size
    ((2048, 2048), 0, 5, 5),
])
def test_reduced_level_is_the_deepest_with_the_shorter_side_still_enough(hw, min_side, levels, expected):
    assert j2k.reduced_level(hw, min_side, levels) == expected


def test_decode_side_covers_every_model_input_and_the_overlay():
    assert decode_side((256, 256, 384, 384), 0) == 384
    assert decode_side((256, 256, 384, 384), 1024) == 1024


def test_geometry_against_the_original_keeps_the_input_and_rescales():
    geo = Geometry((512, 480), (256, 256), 256 / 480, 256 / 512, 0, 0)
    big = to_original(geo, (2048, 1920))
    assert big.original_hw == (2048, 1920) and big.input_hw == (256, 256)
    assert big.scale_x == pytest.approx(256 / 1920) and big.scale_y == pytest.approx(256 / 2048)
    assert to_original(geo, None) is geo


def _film(tmp_path, size=1024):
    """A JPEG 2000 lossless DICOM encoded with glymur, so pydicom 2.4 (which
    cannot encode JPEG 2000) gets the same file as pydicom 3."""
    import glymur
    import pydicom
    px = chest_phantom(size, size, bits=12)
    px[size // 4:size // 2, size // 8:size // 3] = 4095        # a bright block the tiny models call positive
    ds = pydicom.dcmread(write_dicom(tmp_path / "plain.dcm", px, pixel_spacing=(0.2, 0.2)))
    glymur.Jp2k(str(tmp_path / "f.j2k"), data=px.astype(np.uint16), numres=6)     # 5 levels, lossless
    return with_frame(ds, (tmp_path / "f.j2k").read_bytes(), JPEG_2000_LOSSLESS, tmp_path / "f.dcm")


@needs_glymur
def test_reduced_decode_keeps_the_original_size_and_close_pixels(tmp_path):
    data = _film(tmp_path)
    full = decode_bytes(data)
    small = decode_bytes(data, min_side=200)
    assert full.original_hw is None and full.pixels.shape == (1024, 1024)
    assert small.pixels.shape == (256, 256)                   # level 2: 256 >= 200 > 128
    assert small.original_hw == (1024, 1024) and (small.height, small.width) == (1024, 1024)
    shrunk = cv2.resize(full.pixels, (256, 256), interpolation=cv2.INTER_AREA)
    # The wavelet low-pass is not INTER_AREA, and the percentile window sees less noise:
    # close, not equal.
    assert float(np.abs(shrunk - small.pixels).mean()) < 0.03
    assert np.corrcoef(shrunk.ravel(), small.pixels.ravel())[0, 1] > 0.99
    assert decode_bytes(data, min_side=2048).original_hw is None                  # nothing to drop
    assert decode_bytes(data, DecodeSettings(reduced_resolution=False), min_side=200).original_hw is None


@needs_glymur
def test_findings_and_overlay_are_in_original_pixels(tmp_path):
    cls, seg = write_tiny_models(str(tmp_path / "models"), size=64)
    pipeline = Pipeline(OnnxRuntimeBackend(load_manifest(cls), threads=1),
                        OnnxRuntimeBackend(load_manifest(seg), threads=1))
    data = _film(tmp_path)
    full = pipeline.run(decode_bytes(data)).finding
    small_image = decode_bytes(data, min_side=200)
    small = pipeline.run(small_image).finding
    assert full.pneumothorax and small.pneumothorax
    assert small.area_px == pytest.approx(full.area_px, rel=0.05)
    assert small.area_cm2 == pytest.approx(full.area_cm2, rel=0.05)
    assert np.allclose(small.bbox, full.bbox, atol=1024 / 64 + 1)    # one model pixel
    assert max(x for c in small.contours for x, _ in c) > 256        # original, not decoded, pixels
    jpeg = render_overlay(small_image, small, max_side=512)
    # the radiograph at the original's 1024 px scaled to 512 (the banner strip sits above it)
    assert cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR).shape[1] == 512


@needs_glymur
def test_without_glymur_it_decodes_at_full_size_and_says_so_once(tmp_path, monkeypatch, caplog):
    data = _film(tmp_path, size=512)
    monkeypatch.setitem(j2k._state, "checked", False)
    monkeypatch.setitem(j2k._state, "glymur", None)
    import sys
    monkeypatch.setitem(sys.modules, "glymur", None)          # import glymur -> ImportError
    image = decode_bytes(data, min_side=128)
    decode_bytes(data, min_side=128)
    assert image.original_hw is None and image.pixels.shape == (512, 512)
    warnings = [r for r in caplog.records if "reduced-resolution decoding unavailable" in r.getMessage()]
    assert len(warnings) == 1
    monkeypatch.setitem(j2k._state, "checked", False)         # let later tests see the real glymur
