"""A synthetic chest radiograph, for checks that must run with no film at hand.

doctor's parity check, INT8 calibration and golden sets when no images are
given, the bench's inputs and the tests all draw this one picture: dark air
outside the body, darker lungs, a bright mediastinum and spine column, ribs,
clavicles, diaphragm domes and a little noise (the seed picks the noise).
It is not a radiograph: whatever measures on it says so.
"""
from typing import Optional

import numpy as np


def chest_phantom(h: int = 1024, w: int = 1024, seed: int = 0,
                  bits: Optional[int] = None) -> np.ndarray:
    """float32 in [0, 1], or with `bits` uint16 values below 2**bits (as stored in DICOM)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    y, x = yy / h, xx / w
    img = np.full((h, w), 0.08, np.float32)                            # air
    body = ((x - 0.5) / 0.46) ** 2 + ((y - 0.55) / 0.52) ** 2 < 1.0
    img[body] = 0.55                                                   # soft tissue
    for cx in (0.3, 0.7):                                              # lungs
        lung = ((x - cx) / 0.15) ** 2 + ((y - 0.45) / 0.3) ** 2 < 1.0
        img[lung] = 0.22
    for k in range(8):                                                 # ribs
        ry = 0.22 + 0.075 * k
        rib = (np.abs(y - ry - 0.04 * np.cos((x - 0.5) * 6.0)) < 0.008) & body
        img[rib] += 0.15
    img[(np.abs(x - 0.5) < 0.07) & (y > 0.1) & body] = 0.85            # mediastinum/spine
    img[(np.abs(y - 0.15 - 0.1 * np.abs(x - 0.5)) < 0.012) & body] = 0.8   # clavicles
    img[(y > 0.72) & body] = np.maximum(img[(y > 0.72) & body], 0.7)  # diaphragm/abdomen
    img += rng.normal(0.0, 0.01, img.shape).astype(np.float32)
    img = np.clip(img, 0.0, 1.0)
    if bits is None:
        return img
    return (img * ((1 << bits) - 1)).astype(np.uint16)


def phantom_dataset(pixels: np.ndarray, bits: int = 12, sop_instance_uid: Optional[str] = None,
                    modality: str = "DX"):
    """An uncompressed PA pydicom Dataset of `pixels` (grey, values below
    2**bits), with its file meta: the bench's inputs and the start-up warm-up
    film are both this."""
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid
    ds = Dataset()
    ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.1.1"
    ds.SOPInstanceUID = sop_instance_uid or generate_uid()
    ds.Modality, ds.ViewPosition, ds.PixelSpacing = modality, "PA", [0.15, 0.15]
    ds.Rows, ds.Columns = int(pixels.shape[0]), int(pixels.shape[1])
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, bits, bits - 1, 0
    ds.WindowCenter, ds.WindowWidth = 2048, 4096
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.PixelData = np.ascontiguousarray(pixels, dtype=np.uint16).tobytes()
    return ds


def dataset_bytes(ds) -> bytes:
    """A Dataset as a DICOM file's bytes, on pydicom 2 or 3."""
    import io
    import pydicom
    buf = io.BytesIO()
    if int(pydicom.__version__.split(".")[0]) >= 3:
        ds.save_as(buf, enforce_file_format=True)
    else:
        ds.save_as(buf, write_like_original=False)
    return buf.getvalue()
