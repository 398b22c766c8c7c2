"""edge.decode on real DICOM files from ../shared/data (skipped where absent)."""
import os
from pathlib import Path

import numpy as np
import pydicom
import pytest

from edge.decode import decode_file
from edge.errors import MissingDecoder, UnsupportedModality
from edge.settings import DecodeSettings

SAMPLES = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "dicom-samples"

pytestmark = [
    pytest.mark.shared_data,
    pytest.mark.skipif(not SAMPLES.is_dir(), reason="../shared/data is absent"),
]


def test_rg1_monochrome1_chest_is_bone_bright():
    img = decode_file(str(SAMPLES / "RG1_J2KI.dcm"))
    assert img.photometric == "MONOCHROME1" and img.modality == "CR" and img.view_position == "PA"
    assert img.pixels.shape == (1955, 1841) and img.pixels.dtype == np.float32
    p = img.pixels
    h, w = p.shape
    rows = slice(int(0.25 * h), int(0.55 * h))
    spine = p[rows, int(0.47 * w):int(0.53 * w)].mean()
    right_lung = p[rows, int(0.22 * w):int(0.32 * w)].mean()
    left_lung = p[rows, int(0.68 * w):int(0.78 * w)].mean()
    assert spine > right_lung + 0.15 and spine > left_lung + 0.15, (spine, right_lung, left_lung)
    # Below the diaphragm (abdomen, dense) is brighter than the lung fields.
    assert p[int(0.8 * h):int(0.9 * h), int(0.3 * w):int(0.7 * w)].mean() > right_lung
    # Not washed out: the image uses a real part of the range.
    assert float(np.percentile(p, 99) - np.percentile(p, 1)) > 0.4
    assert img.pixel_spacing_mm is None          # the file says 0\0: unknown, not zero


@pytest.mark.parametrize("name", ["RG3_J2KI.dcm", "RG3_J2KR.dcm"])
def test_extremity_crs_decode(name):
    img = decode_file(str(SAMPLES / name))
    assert img.pixels.shape == (1760, 1760) and img.modality == "CR"
    assert 0.0 <= float(img.pixels.min()) and float(img.pixels.max()) <= 1.0
    assert float(img.pixels.std()) > 0.05


def test_rg3_lossy_and_lossless_agree():
    lossy = decode_file(str(SAMPLES / "RG3_J2KI.dcm")).pixels
    lossless = decode_file(str(SAMPLES / "RG3_J2KR.dcm")).pixels
    assert float(np.abs(lossy - lossless).mean()) < 0.02


@pytest.mark.parametrize("name,modality", [
    ("MR2_UNCR.dcm", "MR"), ("MR2_J2KR.dcm", "MR"), ("693_UNCR.dcm", "CT"),
    ("693_J2KR.dcm", "CT"), ("JPEG-LL.dcm", "NM"), ("JPGLosslessP14SV1_1s_1f_8b.dcm", "US")])
def test_other_modalities_are_rejected(name, modality):
    with pytest.raises(UnsupportedModality, match="modality %s is not a chest radiograph" % modality):
        decode_file(str(SAMPLES / name))


@pytest.mark.parametrize("name", ["JLSL_08_07_0_1F.dcm", "JLSL_16_15_1_1F.dcm"])
def test_jpeg_ls_decodes_or_names_the_package(tmp_path, name):
    # The samples have no Modality and are 128 px: relabel as DX to reach the decoder.
    ds = pydicom.dcmread(str(SAMPLES / name))
    ds.Modality = "DX"
    path = str(tmp_path / name)
    ds.save_as(path)
    try:
        img = decode_file(path, DecodeSettings(min_side=64))
    except MissingDecoder as exc:
        assert "pyjpegls" in str(exc)
        return
    reference = ds.pixel_array.astype(np.float64)
    assert img.pixels.shape == reference.shape
    assert np.corrcoef(img.pixels.ravel(), reference.ravel())[0, 1] > 0.99


def test_write_rg1_preview(tmp_path):
    """Leaves /tmp/rg1.png for a person to look at (orientation and polarity)."""
    import cv2
    img = decode_file(str(SAMPLES / "RG1_J2KI.dcm"))
    small = cv2.resize(img.pixels, (img.width // 3, img.height // 3), interpolation=cv2.INTER_AREA)
    out = os.environ.get("RG1_PREVIEW", "/tmp/rg1.png")
    assert cv2.imwrite(out, np.round(small * 255).astype(np.uint8))
