"""edge.decode: every file a cart might write, and every way one can be bad."""
import os
import sys
import tracemalloc

import numpy as np
import pydicom
import pytest

sys.path.insert(0, os.path.dirname(__file__))
from dicom_factory import chest_phantom, write_dicom, write_jpeg, write_png  # noqa: E402

from edge.decode import decode_bytes, decode_file, sniff_format  # noqa: E402
from edge.decode.dicom import install_hint  # noqa: E402
from edge.errors import (CorruptImage, ImageTooLarge, MissingDecoder, NotAnImage,  # noqa: E402
                         UnsupportedImage, UnsupportedModality)
from edge.settings import DecodeSettings  # noqa: E402

H = W = 320
# Phantom regions (see chest_phantom): spine column and the right lung field.
SPINE = (slice(int(0.3 * H), int(0.6 * H)), slice(int(0.46 * W), int(0.54 * W)))
LUNG = (slice(int(0.35 * H), int(0.55 * H)), slice(int(0.25 * W), int(0.35 * W)))


def phantom(bits=12):
    return chest_phantom(H, W, seed=1, bits=bits)


def assert_display_image(img):
    assert img.pixels.dtype == np.float32 and img.pixels.ndim == 2
    assert img.pixels.shape == (H, W)
    assert 0.0 <= float(img.pixels.min()) and float(img.pixels.max()) <= 1.0
    assert img.pixels[SPINE].mean() > img.pixels[LUNG].mean() + 0.2, "bone must be brighter than lung"


# --- good DICOM ------------------------------------------------------------

@pytest.mark.parametrize("bits", [8, 12, 16])
@pytest.mark.parametrize("photometric", ["MONOCHROME1", "MONOCHROME2"])
def test_monochrome_dicom_decodes_bone_bright(tmp_path, bits, photometric):
    path = write_dicom(tmp_path / "a.dcm", phantom(bits), bits_stored=bits, photometric=photometric)
    img = decode_file(path)
    assert_display_image(img)
    assert img.source_format == "dicom" and img.photometric == photometric
    assert img.bits_stored == bits and img.modality == "DX" and img.view_position == "PA"


def test_monochrome1_is_inverted_after_windowing(tmp_path):
    pixels = phantom()
    m2 = decode_file(write_dicom(tmp_path / "m2.dcm", pixels, photometric="MONOCHROME2"))
    p1 = write_dicom(tmp_path / "m1.dcm", pixels, photometric="MONOCHROME1")
    stored = pydicom.dcmread(p1).pixel_array
    assert stored[SPINE].mean() < stored[LUNG].mean(), "the MONOCHROME1 file stores bone dark"
    m1 = decode_file(p1)
    assert m1.pixels[SPINE].mean() > m1.pixels[LUNG].mean() + 0.2
    # Same anatomy either way: the percentile window is symmetric under inversion.
    np.testing.assert_allclose(m1.pixels, m2.pixels, atol=2e-3)


def test_window_applies_after_rescale_exactly(tmp_path):
    pixels = phantom()
    slope, intercept, center, width = 2.0, -100.0, 3000.0, 4000.0
    img = decode_file(write_dicom(tmp_path / "w.dcm", pixels, rescale=(slope, intercept),
                                  window=(center, width)))
    x = pixels.astype(np.float64) * slope + intercept
    expected = np.clip((x - (center - 0.5)) / (width - 1) + 0.5, 0, 1)
    np.testing.assert_allclose(img.pixels, expected, atol=1e-5)


def test_window_on_monochrome1_then_inverted(tmp_path):
    pixels = phantom()
    path = write_dicom(tmp_path / "w1.dcm", pixels, photometric="MONOCHROME1", window=(2048, 4096))
    stored = pydicom.dcmread(path).pixel_array.astype(np.float64)
    expected = 1 - np.clip((stored - 2047.5) / 4095 + 0.5, 0, 1)
    img = decode_file(path)
    np.testing.assert_allclose(img.pixels, expected, atol=1e-5)
    assert img.pixels[SPINE].mean() > img.pixels[LUNG].mean()


def test_rescale_without_window_uses_percentiles(tmp_path):
    pixels = phantom()
    img = decode_file(write_dicom(tmp_path / "r.dcm", pixels, rescale=(0.5, 1000.0)))
    assert_display_image(img)
    # 0.5-99.5 percentile window: about 0.5 % of pixels clip at each end.
    assert 0.001 < float((img.pixels == 0).mean()) < 0.02
    assert 0.001 < float((img.pixels == 1).mean()) < 0.02


def test_voi_lut_sequence_is_applied_and_scaled_to_its_range(tmp_path):
    pixels = phantom()
    lut = (np.sqrt(np.arange(4096) / 4095.0) * 60000).astype(np.uint16)   # gamma-like LUT
    img = decode_file(write_dicom(tmp_path / "lut.dcm", pixels, voi_lut=lut, window=(10, 20)))
    expected = lut[pixels].astype(np.float64) / lut.max()                 # LUT wins over the window
    np.testing.assert_allclose(img.pixels, expected, atol=1e-4)


@pytest.mark.parametrize("compression", ["rle", "jpeg2000"])
def test_compressed_dicom_decodes_like_uncompressed(tmp_path, compression):
    pixels = phantom()
    plain = decode_file(write_dicom(tmp_path / "p.dcm", pixels, photometric="MONOCHROME1"))
    packed = decode_file(write_dicom(tmp_path / "c.dcm", pixels, photometric="MONOCHROME1",
                                     compression=compression))
    assert packed.transfer_syntax != plain.transfer_syntax
    np.testing.assert_array_equal(packed.pixels, plain.pixels)             # lossless


def test_metadata_and_no_patient_identity(tmp_path):
    path = write_dicom(tmp_path / "m.dcm", phantom(), pixel_spacing=(0.15, 0.175),
                       sop_instance_uid="1.2.3.4.5", accession="ACC999")
    img = decode_file(path)
    assert img.pixel_spacing_mm == (0.15, 0.175)
    assert img.sop_instance_uid == "1.2.3.4.5" and img.accession_number == "ACC999"
    ds = pydicom.dcmread(path, stop_before_pixels=True)
    assert img.study_instance_uid == ds.StudyInstanceUID
    assert img.series_instance_uid == ds.SeriesInstanceUID
    assert img.transfer_syntax == "Explicit VR Little Endian"
    fields = repr({k: v for k, v in img.__dict__.items() if k != "pixels"})
    assert "Doe" not in fields and "19700101" not in fields


def test_imager_pixel_spacing_is_the_fallback(tmp_path):
    path = write_dicom(tmp_path / "s.dcm", phantom(), pixel_spacing=(0.139, 0.14), use_imager_spacing=True)
    assert decode_file(path).pixel_spacing_mm == (0.139, 0.14)
    assert decode_file(write_dicom(tmp_path / "n.dcm", phantom(), pixel_spacing=None)).pixel_spacing_mm is None


def test_dicom_without_preamble_is_sniffed_and_decoded(tmp_path):
    path = write_dicom(tmp_path / "raw", phantom(), preamble=False)
    data = open(path, "rb").read()
    assert data[128:132] != b"DICM"
    assert sniff_format(data) == "dicom"
    img = decode_bytes(data)
    assert_display_image(img)
    assert img.transfer_syntax == "Implicit VR Little Endian"


# --- PNG / JPEG ------------------------------------------------------------

def test_png_8bit(tmp_path):
    pixels = (phantom(8)).astype(np.uint8)
    img = decode_file(write_png(tmp_path / "a.png", pixels))
    assert img.source_format == "png"
    np.testing.assert_allclose(img.pixels, pixels / 255.0, atol=1e-6)


def test_png_16bit(tmp_path):
    pixels = phantom(16)
    img = decode_file(write_png(tmp_path / "a.png", pixels, bits=16))
    np.testing.assert_allclose(img.pixels, pixels / 65535.0, atol=1e-6)


def test_rgb_png_becomes_grey(tmp_path):
    pixels = phantom(8).astype(np.uint8)
    img = decode_file(write_png(tmp_path / "rgb.png", pixels, rgb=True))
    assert img.pixels.ndim == 2
    np.testing.assert_allclose(img.pixels, pixels / 255.0, atol=1.5 / 255)


def test_jpeg(tmp_path):
    pixels = phantom(8).astype(np.uint8)
    img = decode_file(write_jpeg(tmp_path / "a.jpg", pixels))
    assert img.source_format == "jpeg"
    assert_display_image(img)
    assert float(np.abs(img.pixels - pixels / 255.0).mean()) < 0.02


def test_extension_is_ignored(tmp_path):
    as_png = write_dicom(tmp_path / "really_dicom.png", phantom())
    assert decode_file(as_png).source_format == "dicom"
    as_dcm = write_png(tmp_path / "really_png.dcm", phantom(8))
    assert decode_file(as_dcm).source_format == "png"


# --- the bad corpus --------------------------------------------------------

def rejected(exc_class, data, settings=None, *words):
    with pytest.raises(exc_class) as info:
        decode_bytes(data, settings)
    message = str(info.value)
    for word in words:
        assert word.lower() in message.lower(), message
    assert "Doe" not in message and "19700101" not in message
    assert info.value.code == exc_class.code
    return message


def test_empty_file():
    rejected(NotAnImage, b"", None, "empty")


def test_random_bytes():
    rejected(NotAnImage, np.random.default_rng(3).bytes(5000), None, "not DICOM, PNG or JPEG")


def test_text():
    rejected(NotAnImage, b"Patient scheduled for chest X-ray\nroom 4\n" * 20, None, "text")


def test_truncated_dicom(tmp_path):
    data = open(write_dicom(tmp_path / "t.dcm", phantom()), "rb").read()
    rejected(CorruptImage, data[:len(data) // 2], None, "truncated")


def test_truncated_compressed_dicom(tmp_path):
    data = open(write_dicom(tmp_path / "t.dcm", phantom(), compression="jpeg2000"), "rb").read()
    rejected(CorruptImage, data[:len(data) * 2 // 3], None, "truncated")


def test_dicom_header_cut_short(tmp_path):
    data = open(write_dicom(tmp_path / "t.dcm", phantom()), "rb").read()
    rejected(CorruptImage, data[:300], None, "truncated")


@pytest.mark.parametrize("writer", [write_png, write_jpeg])
def test_truncated_png_and_jpeg(tmp_path, writer):
    data = open(writer(tmp_path / "t.img", phantom(8)), "rb").read()
    rejected(CorruptImage, data[:len(data) // 2], None, "truncated")


def test_wrong_modality(tmp_path):
    data = open(write_dicom(tmp_path / "mr.dcm", phantom(), modality="MR"), "rb").read()
    rejected(UnsupportedModality, data, None, "modality MR is not a chest radiograph", "CR, DX")


def test_huge_declared_size_is_refused_without_allocating(tmp_path):
    data = open(write_dicom(tmp_path / "big.dcm", phantom(), rows=60000, columns=60000), "rb").read()
    tracemalloc.start()
    try:
        rejected(ImageTooLarge, data, None, "60000 x 60000", "max_side")
        # Past max_side, max_pixels still holds.
        rejected(ImageTooLarge, data, DecodeSettings(max_side=100000), "max_pixels")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 20 * 1024 * 1024          # a decoded 60000^2 image would be 7 GB


def test_huge_declared_png_is_refused_from_its_header(tmp_path):
    data = bytearray(open(write_png(tmp_path / "a.png", phantom(8)), "rb").read())
    data[16:24] = (60000).to_bytes(4, "big") * 2                          # IHDR width, height
    rejected(ImageTooLarge, bytes(data), None, "60000")


def test_file_over_the_size_limit(tmp_path):
    path = write_dicom(tmp_path / "f.dcm", phantom())
    with pytest.raises(ImageTooLarge, match="max_file_mb"):
        decode_file(path, DecodeSettings(max_file_mb=0.05))


def test_too_small(tmp_path):
    data = open(write_dicom(tmp_path / "s.dcm", chest_phantom(100, 100)), "rb").read()
    rejected(UnsupportedImage, data, None, "shorter than 256")


def test_multiframe(tmp_path):
    data = open(write_dicom(tmp_path / "mf.dcm", phantom(), frames=3), "rb").read()
    rejected(UnsupportedImage, data, None, "3 frames")


def test_rgb_dicom(tmp_path):
    data = open(write_dicom(tmp_path / "rgb.dcm", phantom(8), bits_stored=8, samples_per_pixel=3), "rb").read()
    rejected(UnsupportedImage, data, None, "colour", "RGB")


@pytest.mark.parametrize("view", ["LL", "RL", "LATERAL", "LLD", "RLD"])
def test_lateral_view(tmp_path, view):
    data = open(write_dicom(tmp_path / "lat.dcm", phantom(), view_position=view), "rb").read()
    rejected(UnsupportedImage, data, None, "lateral")
    assert decode_bytes(data, DecodeSettings(reject_lateral=False)).view_position == view


def test_transfer_syntax_without_decoder(tmp_path):
    path = write_dicom(tmp_path / "jxl.dcm", phantom(), compression="rle")
    ds = pydicom.dcmread(path)
    ds.file_meta.TransferSyntaxUID = "1.2.840.10008.1.2.4.100"            # MPEG-2 video: no plugin
    ds.save_as(path)
    rejected(MissingDecoder, open(path, "rb").read(), None, "no decoder", "MPEG2")


def test_install_hints_name_the_package():
    assert "pyjpegls" in install_hint("1.2.840.10008.1.2.4.80")
    assert "pylibjpeg-openjpeg" in install_hint("1.2.840.10008.1.2.4.91")
    assert "pylibjpeg-libjpeg" in install_hint("1.2.840.10008.1.2.4.70")
