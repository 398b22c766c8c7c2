"""Test inputs made at test time: a synthetic chest phantom, and DICOM/PNG/JPEG
writers with every knob the decoder cares about. Used by several test files.

`pixels` always means the image as it should look (bright = dense). For
MONOCHROME1 the writer stores the inverse, as a CR plate reader would, so the
same phantom written either way must decode to the same picture.
"""
import os
from typing import Optional, Sequence, Tuple

import cv2
import numpy as np
import pydicom
import pytest
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian, generate_uid

from edge.phantom import chest_phantom as _phantom

DX_SOP_CLASS = "1.2.840.10008.5.1.4.1.1.1.1"       # Digital X-Ray Image, for presentation
JPEG_LS_LOSSLESS = "1.2.840.10008.1.2.4.80"
JPEG_2000_LOSSLESS = "1.2.840.10008.1.2.4.90"
RLE_LOSSLESS = "1.2.840.10008.1.2.5"


class EncoderUnavailable(pytest.skip.Exception):
    """No installed encoder can write the requested compression; raised from
    inside a test it skips that test."""


def chest_phantom(h: int = 1024, w: int = 1024, seed: int = 0, bits: int = 12) -> np.ndarray:
    """uint16, values < 2**bits: the runtime's phantom (edge/phantom.py) as a DICOM stores it."""
    return _phantom(h, w, seed, bits)


def _save(ds: Dataset, path: str, preamble: bool) -> None:
    """Write with a preamble + file meta, or as a bare data set (pydicom 2/3)."""
    pydicom3 = int(pydicom.__version__.split(".")[0]) >= 3
    if preamble:
        if pydicom3:
            ds.save_as(path, enforce_file_format=True)
        else:
            ds.save_as(path, write_like_original=False)
    elif pydicom3:
        ds.save_as(path, enforce_file_format=False, implicit_vr=True, little_endian=True)
    else:
        ds.is_implicit_VR, ds.is_little_endian = True, True
        ds.save_as(path, write_like_original=True)


def write_dicom(path, pixels: Optional[np.ndarray] = None, *, photometric: str = "MONOCHROME2",
                bits_stored: int = 12, modality: str = "DX", view_position: Optional[str] = "PA",
                pixel_spacing: Optional[Tuple[float, float]] = (0.2, 0.2),
                use_imager_spacing: bool = False,
                rescale: Optional[Tuple[float, float]] = None,          # (slope, intercept)
                window: Optional[Tuple[float, float]] = None,           # (center, width)
                voi_lut: Optional[Sequence[int]] = None,                # output for stored 0..n-1
                compression: Optional[str] = None,                      # None | rle | jpeg2000 | jpegls
                frames: int = 1, rows: Optional[int] = None, columns: Optional[int] = None,
                sop_instance_uid: Optional[str] = None, accession: str = "ACC123",
                patient_name: str = "Doe^Jane", birth_date: str = "19700101",
                samples_per_pixel: int = 1, preamble: bool = True,
                body_part: Optional[str] = None) -> str:
    path = str(path)
    if pixels is None:
        pixels = chest_phantom(512, 512, bits=bits_stored)
    pixels = np.asarray(pixels)
    top = (1 << bits_stored) - 1
    stored = pixels.astype(np.int64)
    if photometric == "MONOCHROME1":
        stored = top - stored
    dtype = np.uint8 if bits_stored <= 8 else np.uint16
    stored = np.clip(stored, 0, top).astype(dtype)
    if samples_per_pixel == 3:
        stored = np.repeat(stored[:, :, None], 3, axis=2)
        photometric = "RGB" if photometric.startswith("MONO") else photometric
    if frames > 1:
        stored = np.repeat(stored[None], frames, axis=0)

    ds = Dataset()
    ds.SOPClassUID = DX_SOP_CLASS
    ds.SOPInstanceUID = sop_instance_uid or generate_uid()
    ds.StudyInstanceUID = generate_uid()
    ds.SeriesInstanceUID = generate_uid()
    ds.AccessionNumber = accession
    ds.PatientName = patient_name
    ds.PatientBirthDate = birth_date
    ds.PatientID = "PID0001"
    ds.Modality = modality
    if view_position is not None:
        ds.ViewPosition = view_position
    if body_part is not None:
        ds.BodyPartExamined = body_part
    if pixel_spacing is not None:
        if use_imager_spacing:
            ds.ImagerPixelSpacing = list(pixel_spacing)
        else:
            ds.PixelSpacing = list(pixel_spacing)
    ds.Rows = rows if rows is not None else pixels.shape[0]
    ds.Columns = columns if columns is not None else pixels.shape[1]
    ds.SamplesPerPixel = samples_per_pixel
    if samples_per_pixel > 1:
        ds.PlanarConfiguration = 0
    ds.PhotometricInterpretation = photometric
    ds.BitsAllocated = 8 if dtype == np.uint8 else 16
    ds.BitsStored = bits_stored
    ds.HighBit = bits_stored - 1
    ds.PixelRepresentation = 0
    if frames > 1:
        ds.NumberOfFrames = frames
    if rescale is not None:
        ds.RescaleSlope, ds.RescaleIntercept = rescale[0], rescale[1]
        ds.RescaleType = "US"
    if window is not None:
        ds.WindowCenter, ds.WindowWidth = window[0], window[1]
    if voi_lut is not None:
        lut = np.asarray(voi_lut, dtype=np.uint16)
        item = Dataset()
        item.LUTDescriptor = [len(lut), 0, 16]
        item.LUTData = lut.tobytes()     # OW
        ds.VOILUTSequence = [item]

    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian if preamble else ImplicitVRLittleEndian
    ds.PixelData = stored.tobytes()
    if compression is not None:
        _compress(ds, stored, compression)
    if not preamble:
        del ds.file_meta            # a bare implicit-VR data set, no 'DICM'
        ds.preamble = None
    _save(ds, path, preamble)
    return path


def _compress(ds: Dataset, stored: np.ndarray, compression: str) -> None:
    uid = {"rle": RLE_LOSSLESS, "jpeg2000": JPEG_2000_LOSSLESS, "jpegls": JPEG_LS_LOSSLESS}.get(compression)
    if uid is None:
        raise ValueError("unknown compression %r" % compression)
    try:
        from pydicom.pixels import get_encoder          # pydicom 3
    except ImportError:
        get_encoder = None
    if get_encoder is None:
        if compression != "rle":
            raise EncoderUnavailable("pydicom 2.x can only encode RLE")
    else:
        encoder = get_encoder(uid)
        if not encoder.is_available:
            raise EncoderUnavailable("no %s encoder installed (%s)"
                                     % (compression, "; ".join(encoder.missing_dependencies)))
    try:
        ds.compress(uid, stored)
    except (RuntimeError, ValueError, NotImplementedError) as exc:
        raise EncoderUnavailable("%s encoding failed here: %s" % (compression, exc))


def with_frame(ds: Dataset, frame: bytes, transfer_syntax: str, path) -> bytes:
    """`ds` with one encapsulated frame already encoded in `transfer_syntax`,
    written explicit VR little endian (the same file on pydicom 2.4 and 3); its bytes."""
    from pydicom.encaps import encapsulate
    ds.PixelData = encapsulate([frame])
    ds["PixelData"].is_undefined_length = True
    ds["PixelData"].VR = "OB"
    ds.file_meta.TransferSyntaxUID = transfer_syntax
    if int(pydicom.__version__.split(".")[0]) < 3:
        ds.is_implicit_VR, ds.is_little_endian = False, True
    _save(ds, str(path), preamble=True)
    with open(str(path), "rb") as fh:
        return fh.read()


def write_png(path, pixels: np.ndarray, bits: int = 8, rgb: bool = False) -> str:
    """Writes `pixels` as stored (uint8 for bits=8, uint16 for bits=16)."""
    path = str(path)
    img = np.asarray(pixels).astype(np.uint8 if bits == 8 else np.uint16)
    if rgb:
        img = cv2.cvtColor(img, cv2.COLOR_GRAY2BGR)
    if not cv2.imwrite(path + ".tmp.png", img):
        raise RuntimeError("OpenCV could not write a PNG")
    os.replace(path + ".tmp.png", path)   # any extension: the decoder must not care
    return path


def write_jpeg(path, pixels: np.ndarray) -> str:
    path = str(path)
    ok, buf = cv2.imencode(".jpg", np.asarray(pixels).astype(np.uint8), [cv2.IMWRITE_JPEG_QUALITY, 95])
    if not ok:
        raise RuntimeError("OpenCV could not encode a JPEG")
    with open(path, "wb") as f:
        f.write(buf.tobytes())
    return path
