"""DICOM JPEG Baseline through OpenCV (edge/decode/jpeg_baseline.py): the
pixels against pydicom's own plugin, the DCT-scaled decode in original
pixels, the files it leaves to pydicom, and, on the real SIIM films, the
findings of the shipped models within the stated tolerance."""
import os
from pathlib import Path

import cv2
import numpy as np
import pydicom
import pytest

from edge.decode import decode_bytes, dicom as dicom_mod
from edge.decode.dct_scale import reduced_scale
from edge.decode.jpeg_baseline import JPEG_BASELINE, decode_baseline
from edge.errors import DecodeError
from edge.inference.manifest import load_manifest
from edge.inference.onnxruntime import OnnxRuntimeBackend
from edge.pipeline import Pipeline
from edge.postprocess import contours_to_mask
from edge.resolution import decode_side
from tests.dicom_factory import chest_phantom, with_frame, write_dicom
from tests.tiny_models import write_tiny_models

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("PNEUMO_SHARED_DATA") or ROOT.parent / "shared" / "data")
SIIM_DICOM = sorted((SHARED / "siim-ptx-dicom" / "dicom").glob("*.dcm"))


def _jpeg_dicom(tmp_path, px: np.ndarray, name: str = "f.dcm", frame: bytes = b"", **kw) -> bytes:
    """An 8-bit grey JPEG Baseline DICOM (OpenCV's encoder, encapsulated by
    pydicom: the same file on pydicom 2.4 and 3)."""
    ds = pydicom.dcmread(write_dicom(tmp_path / ("plain-" + name), px, bits_stored=8, **kw))
    if not frame:
        ok, buf = cv2.imencode(".jpg", px.astype(np.uint8), [int(cv2.IMWRITE_JPEG_QUALITY), 95])
        assert ok
        frame = buf.tobytes()
    return with_frame(ds, frame, JPEG_BASELINE, tmp_path / name)


def _pydicom_only(monkeypatch):
    """The decode as it was: pydicom's plugin for every JPEG Baseline film."""
    monkeypatch.setattr(dicom_mod, "decode_baseline", lambda *a, **k: None)


def _phantom8(size: int) -> np.ndarray:
    return (chest_phantom(size, size, bits=12) >> 4).astype(np.uint8)


@pytest.mark.parametrize("hw, min_side, expected", [
    ((1024, 1024), 1024, 1), ((1024, 1024), 0, 1), ((2048, 2048), 1024, 2), ((2049, 2500), 1024, 2),
    ((3000, 2500), 600, 4), ((4096, 4096), 256, 8), ((4096, 4096), 512, 8), ((1023, 4096), 512, 2), ((1023, 4096), 513, 1),
])
def test_reduced_scale_keeps_the_shorter_side(hw, min_side, expected):
    assert reduced_scale(hw, min_side) == expected


def test_full_size_pixels_match_pydicom_within_one_grey_level(tmp_path, monkeypatch):
    data = _jpeg_dicom(tmp_path, _phantom8(512))
    fast = decode_bytes(data, min_side=1024)
    _pydicom_only(monkeypatch)
    slow = decode_bytes(data, min_side=1024)
    assert fast.pixels.shape == slow.pixels.shape == (512, 512) and fast.original_hw is None
    ds = pydicom.dcmread(tmp_path / "f.dcm")
    raw = decode_baseline(ds, JPEG_BASELINE)
    assert raw is not None and raw.dtype == np.uint8
    assert int(np.abs(raw.astype(int) - ds.pixel_array.astype(int)).max()) <= 1
    # after the percentile window one grey level of 255 stays about one level of the display range
    assert float(np.abs(fast.pixels - slow.pixels).max()) < 0.02
    assert (fast.modality, fast.pixel_spacing_mm, fast.transfer_syntax) == \
        (slow.modality, slow.pixel_spacing_mm, slow.transfer_syntax)


def test_a_large_film_is_decoded_dct_scaled_and_keeps_its_original_size(tmp_path, monkeypatch):
    data = _jpeg_dicom(tmp_path, _phantom8(2048))
    small = decode_bytes(data, min_side=1024)
    assert small.pixels.shape == (1024, 1024) and small.original_hw == (2048, 2048)
    assert (small.height, small.width) == (2048, 2048)
    _pydicom_only(monkeypatch)
    full = decode_bytes(data, min_side=1024)
    assert full.original_hw is None and full.pixels.shape == (2048, 2048)
    shrunk = cv2.resize(full.pixels, (1024, 1024), interpolation=cv2.INTER_AREA)
    # the DCT-domain scaling is a low-pass like INTER_AREA, not the same one: close, not equal
    assert float(np.abs(shrunk - small.pixels).mean()) < 0.01


def test_reduced_resolution_off_decodes_full_size(tmp_path):
    from edge.settings import DecodeSettings
    data = _jpeg_dicom(tmp_path, _phantom8(2048))
    image = decode_bytes(data, DecodeSettings(reduced_resolution=False), min_side=1024)
    assert image.original_hw is None and image.pixels.shape == (2048, 2048)


def test_findings_on_a_scaled_decode_are_in_original_pixels(tmp_path, monkeypatch):
    cls, seg = write_tiny_models(str(tmp_path / "models"), size=64)
    pipeline = Pipeline(OnnxRuntimeBackend(load_manifest(cls), threads=1),
                        OnnxRuntimeBackend(load_manifest(seg), threads=1))
    px = _phantom8(2048)
    px[512:1024, 256:680] = 255                    # a bright block the tiny models call positive
    data = _jpeg_dicom(tmp_path, px)
    small = pipeline.run(decode_bytes(data, min_side=1024)).finding
    _pydicom_only(monkeypatch)
    full = pipeline.run(decode_bytes(data, min_side=1024)).finding
    assert full.pneumothorax and small.pneumothorax
    assert small.area_px == pytest.approx(full.area_px, rel=0.05)
    assert small.area_cm2 == pytest.approx(full.area_cm2, rel=0.05)
    assert np.allclose(small.bbox, full.bbox, atol=2048 / 64 + 1)    # one model pixel
    right_edge = [max(x for c in f.contours for x, _ in c) for f in (small, full)]
    assert right_edge[0] > 600 and abs(right_edge[0] - right_edge[1]) <= 2048 / 64 + 1   # original px (decoded: 340)


def _cut(frame: bytes) -> bytes:
    return frame[:len(frame) // 2]


@pytest.mark.parametrize("case", ["truncated", "12-bit", "two-frames-declared"])
def test_what_it_leaves_to_pydicom(tmp_path, case):
    px = _phantom8(256)
    ok, buf = cv2.imencode(".jpg", px, [int(cv2.IMWRITE_JPEG_QUALITY), 95])
    frame = _cut(buf.tobytes()) if case == "truncated" else buf.tobytes()
    _jpeg_dicom(tmp_path, px, frame=frame)
    ds = pydicom.dcmread(tmp_path / "f.dcm")
    if case == "12-bit":
        ds.BitsStored = 12
    if case == "two-frames-declared":
        ds.NumberOfFrames = 2
    assert decode_baseline(ds, JPEG_BASELINE) is None


def test_a_cut_off_codestream_is_still_rejected(tmp_path):
    px = _phantom8(256)
    ok, buf = cv2.imencode(".jpg", px, [int(cv2.IMWRITE_JPEG_QUALITY), 95])
    data = _jpeg_dicom(tmp_path, px, frame=_cut(buf.tobytes()))
    try:
        image = decode_bytes(data)
    except DecodeError:
        return                            # pydicom's plugin refused it: rejected with a reason
    # a plugin that fills the rest is pydicom's behaviour, not this fast path's
    assert image.pixels.shape == (256, 256)


# --- the real SIIM films and the shipped models ---------------------------

@pytest.mark.parametrize("path", SIIM_DICOM or [None], ids=lambda p: p.name[-14:] if p else "absent")
@pytest.mark.shared_data
@pytest.mark.skipif(not SIIM_DICOM, reason="../shared/data is absent")
def test_real_siim_films_match_pydicom_within_one_grey_level(path):
    ds = pydicom.dcmread(str(path))
    raw = decode_baseline(ds, str(ds.file_meta.TransferSyntaxUID))
    assert raw is not None and raw.shape == (1024, 1024)
    diff = np.abs(raw.astype(int) - ds.pixel_array.astype(int))
    assert int(diff.max()) <= 1 and float((diff > 0).mean()) < 0.05


@pytest.mark.slow
@pytest.mark.shared_data
@pytest.mark.skipif(not SIIM_DICOM, reason="../shared/data is absent")
def test_real_siim_findings_with_the_shipped_models_stay_within_tolerance(monkeypatch):
    """The stated tolerance of the OpenCV decode, on the shipped models: same
    decision and side, probabilities within 0.01, outlined area within 3 %,
    box within 2 model pixels (8 original px at 256 -> 1024)."""
    def load(role):
        return OnnxRuntimeBackend(load_manifest(str(ROOT / "models" / role / (role + ".onnx"))), threads=1)
    pipeline = Pipeline(load("classifier"), load("segmenter"))
    side = decode_side(pipeline.input_sides, 1024)
    datas = [p.read_bytes() for p in SIIM_DICOM]
    fast = [pipeline.run(decode_bytes(d, min_side=side)).finding for d in datas]
    _pydicom_only(monkeypatch)
    slow = [pipeline.run(decode_bytes(d, min_side=side)).finding for d in datas]
    for f, s in zip(fast, slow):
        assert (f.pneumothorax, f.side) == (s.pneumothorax, s.side)
        for a, b in ((f.probability, s.probability), (f.classifier_probability, s.classifier_probability)):
            assert a == pytest.approx(b, abs=0.01)
        assert f.area_px == pytest.approx(s.area_px, rel=0.03, abs=64)
        if f.bbox is not None:
            assert np.allclose(f.bbox, s.bbox, atol=8)
            overlap = contours_to_mask(f.contours, (1024, 1024)) & contours_to_mask(s.contours, (1024, 1024))
            union = contours_to_mask(f.contours, (1024, 1024)) | contours_to_mask(s.contours, (1024, 1024))
            if union.sum() >= 1024:      # a few-dozen-pixel speck (outline at p > 0.1) is within area's abs 64
                assert overlap.sum() / union.sum() > 0.95
    pipeline.close()


# --- JPEG files (not DICOM): the same DCT-scaled decode ---------------------

def _jpeg_file(px: np.ndarray) -> bytes:
    ok, buf = cv2.imencode(".jpg", px, [int(cv2.IMWRITE_JPEG_QUALITY), 95])
    assert ok
    return buf.tobytes()


@pytest.mark.parametrize("colour", [False, True])
def test_a_large_jpeg_file_is_decoded_dct_scaled_in_original_pixels(colour):
    px = _phantom8(2048)
    data = _jpeg_file(cv2.cvtColor(px, cv2.COLOR_GRAY2BGR) if colour else px)
    small = decode_bytes(data, min_side=1024)
    full = decode_bytes(data)
    assert small.pixels.shape == (1024, 1024) and small.original_hw == (2048, 2048)
    assert full.pixels.shape == (2048, 2048) and full.original_hw is None
    shrunk = cv2.resize(full.pixels, (1024, 1024), interpolation=cv2.INTER_AREA)
    assert float(np.abs(shrunk - small.pixels).mean()) < 0.01


def test_a_jpeg_file_too_small_to_scale_decodes_as_before_exactly():
    data = _jpeg_file(_phantom8(1536))                     # 768 < 1024: full size
    assert np.array_equal(decode_bytes(data, min_side=1024).pixels, decode_bytes(data).pixels)
    assert decode_bytes(data, min_side=1024).original_hw is None


def test_png_and_reduced_resolution_off_decode_whole(tmp_path):
    from edge.settings import DecodeSettings
    px = _phantom8(2048)
    ok, png = cv2.imencode(".png", px)
    assert decode_bytes(png.tobytes(), min_side=1024).pixels.shape == (2048, 2048)
    off = decode_bytes(_jpeg_file(px), DecodeSettings(reduced_resolution=False), min_side=1024)
    assert off.pixels.shape == (2048, 2048) and off.original_hw is None


def test_a_cut_off_large_jpeg_is_still_rejected():
    data = _jpeg_file(_phantom8(2048))
    with pytest.raises(DecodeError):
        decode_bytes(data[:len(data) // 2], min_side=1024)
