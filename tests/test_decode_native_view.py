"""Uncompressed 16-bit films are read in place (edge/decode/native_view.py):
the decoded Image must be the one pydicom's own path gives, value for value."""
import struct

import numpy as np
import pytest
from pydicom.uid import ExplicitVRBigEndian, ExplicitVRLittleEndian, ImplicitVRLittleEndian

import edge.decode.dicom as dicom_decode
from edge.decode.dicom import decode_dicom
from edge.decode.native_view import native_view
from edge.errors import CorruptImage
from edge.phantom import chest_phantom, dataset_bytes, phantom_dataset
from edge.settings import DecodeSettings


def film(ts=ExplicitVRLittleEndian, bits=12, signed=False, pixels=None, size=512):
    px = chest_phantom(size, size, seed=3, bits=12) if pixels is None else pixels
    ds = phantom_dataset(px.astype(np.uint16), bits=bits)
    ds.PixelRepresentation = 1 if signed else 0
    ds.file_meta.TransferSyntaxUID = ts
    ds.is_implicit_VR = ts == ImplicitVRLittleEndian       # pydicom 2.4 writes by these
    ds.is_little_endian = ts != ExplicitVRBigEndian
    if ts == ExplicitVRBigEndian:
        ds.PixelData = px.astype(">u2").tobytes()
    return dataset_bytes(ds)


def by_pydicom(monkeypatch, data, min_side):
    with monkeypatch.context() as m:
        m.setattr(dicom_decode, "native_view", lambda *a: None)
        return decode_dicom(data, DecodeSettings(), min_side)


def assert_same(a, b):
    assert a.pixels.dtype == b.pixels.dtype and a.pixels.shape == b.pixels.shape
    np.testing.assert_array_equal(a.pixels, b.pixels)
    assert a.original_hw == b.original_hw and a.transfer_syntax == b.transfer_syntax
    assert (a.sop_instance_uid, a.view_position, a.pixel_spacing_mm) == (
        b.sop_instance_uid, b.view_position, b.pixel_spacing_mm)


@pytest.mark.parametrize("ts", [ExplicitVRLittleEndian, ImplicitVRLittleEndian])
@pytest.mark.parametrize("min_side", [0, 128])
def test_in_place_read_decodes_what_pydicom_decodes(monkeypatch, ts, min_side):
    data = film(ts)
    assert_same(decode_dicom(data, DecodeSettings(), min_side), by_pydicom(monkeypatch, data, min_side))


def test_the_view_shares_the_files_bytes_instead_of_copying_them():
    data = film()
    header, fp = dicom_decode._read(data, stop_before_pixels=True)
    raw = native_view(data, fp.tell(), header, ExplicitVRLittleEndian)
    assert raw is not None and not raw.flags.owndata and not raw.flags.writeable
    assert raw.shape == (512, 512)


# Bits above Bits Stored carry no value (PS3.5 8.1.1): pydicom 3 corrects them, pydicom 2.4
# (the Jetson's) does not; the in-place read corrects them on both.

def test_values_in_the_unused_high_bits_are_ignored():
    px = chest_phantom(256, 256, seed=1, bits=12).astype(np.uint16)
    dirty = px.copy()
    dirty[::7, ::5] |= 0xF000          # overlay bits written above Bits Stored (12)
    np.testing.assert_array_equal(decode_dicom(film(pixels=dirty), DecodeSettings(), 0).pixels,
                                  decode_dicom(film(pixels=px), DecodeSettings(), 0).pixels)


def test_signed_values_are_sign_extended_from_bits_stored():
    px = (chest_phantom(256, 256, seed=2, bits=12).astype(np.int32) - 2048)
    stored = (px & 0x0FFF).astype(np.uint16)     # 12-bit two's complement, high bits zero
    data = film(bits=12, signed=True, pixels=stored)
    header, fp = dicom_decode._read(data, stop_before_pixels=True)
    raw = native_view(data, fp.tell(), header, ExplicitVRLittleEndian)
    assert raw.dtype == np.int16 and int(raw.min()) < 0
    np.testing.assert_array_equal(raw, px)


def test_big_endian_takes_pydicoms_path():
    data = film(ExplicitVRBigEndian)
    header, fp = dicom_decode._read(data, stop_before_pixels=True)
    assert native_view(data, fp.tell(), header, ExplicitVRBigEndian) is None
    assert decode_dicom(data, DecodeSettings(), 0).pixels.shape == (512, 512)


def test_an_offset_that_is_not_pixel_data_takes_pydicoms_path():
    data = film()
    header, fp = dicom_decode._read(data, stop_before_pixels=True)
    assert native_view(data, fp.tell() - 2, header, ExplicitVRLittleEndian) is None


def test_truncated_pixel_data_is_refused_as_corrupt():     # by pydicom's path, which words it
    data = film()
    with pytest.raises(CorruptImage, match="truncated"):
        decode_dicom(data[:-1000], DecodeSettings(), 0)


def with_declared_transfer_syntax(data: bytes, uid: bytes) -> bytes:
    """The file meta's Transfer Syntax UID replaced, the data set left as written."""
    out = bytearray(data)
    at = data.index(b"\x02\x00\x10\x00UI")
    old = struct.unpack_from("<H", data, at + 6)[0]
    uid = uid + (b"\0" if len(uid) % 2 else b"")
    out[at + 6:at + 8 + old] = struct.pack("<H", len(uid)) + uid
    group = data.index(b"\x02\x00\x00\x00UL")
    struct.pack_into("<I", out, group + 8, struct.unpack_from("<I", data, group + 8)[0] + len(uid) - old)
    return bytes(out)


@pytest.mark.parametrize("written, declared", [(ExplicitVRLittleEndian, b"1.2.840.10008.1.2"),
                                               (ImplicitVRLittleEndian, b"1.2.840.10008.1.2.1")])
def test_a_file_written_in_the_other_vr_encoding_than_it_declares_decodes_as_before(monkeypatch, written, declared):
    data = with_declared_transfer_syntax(film(written), declared)    # pydicom reads these: so must we
    assert_same(decode_dicom(data, DecodeSettings(), 0), by_pydicom(monkeypatch, data, 0))


@pytest.mark.parametrize("keyword, value", [("PixelRepresentation", 2), ("SamplesPerPixel", 0),
                                            ("BitsStored", 0), ("BitsStored", [12, 12])])
def test_header_values_the_in_place_read_does_not_understand_go_to_pydicom(keyword, value):
    ds = phantom_dataset(chest_phantom(64, 64, seed=0, bits=12).astype(np.uint16))
    setattr(ds, keyword, value)
    data = dataset_bytes(ds)
    header, fp = dicom_decode._read(data, stop_before_pixels=True)
    assert native_view(data, fp.tell(), header, ExplicitVRLittleEndian) is None


def test_whole_extra_frames_behind_one_declared_frame_go_to_pydicom():
    ds = phantom_dataset(chest_phantom(64, 64, seed=0, bits=12).astype(np.uint16))
    ds.PixelData = ds.PixelData * 3
    data = dataset_bytes(ds)
    header, fp = dicom_decode._read(data, stop_before_pixels=True)
    assert native_view(data, fp.tell(), header, ExplicitVRLittleEndian) is None
