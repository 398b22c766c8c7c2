"""Bench inputs: generated chest-like radiographs (DICOM uncompressed, DICOM
JPEG 2000, PNG) or the files of a folder, held in memory as bytes.

The ledger deduplicates by content hash, so every file dropped into the
appliance must differ: `unique_bytes` patches a same-length counter into
the DICOM SOP Instance UID (a valid UID either way) or appends a few bytes
after a PNG's IEND chunk (decoders ignore them).
"""
import io
import os
from dataclasses import dataclass
from typing import List, Optional, Sequence

import numpy as np

from edge.phantom import chest_phantom, dataset_bytes, phantom_dataset

KINDS = ("dicom", "j2k", "png")
_UID_ROOT = "1.2.826.0.1.3680043.8.498.7."
_UID_SLOT = b"900000000000"           # replaced by "9%011d" % index


@dataclass(frozen=True)
class BenchInput:
    name: str
    kind: str               # dicom | j2k | png | folder
    height: int
    width: int
    data: bytes


def j2k_problem() -> Optional[str]:
    """Why JPEG 2000 DICOM cannot be written here, or None."""
    try:
        from pydicom.pixels import get_encoder      # pydicom 3
    except ImportError:
        return "pydicom 2.x cannot encode JPEG 2000 (inputs need pydicom 3 + pylibjpeg-openjpeg)"
    encoder = get_encoder("1.2.840.10008.1.2.4.90")
    if not encoder.is_available:
        return "no JPEG 2000 encoder: %s" % "; ".join(encoder.missing_dependencies)
    return None


def dicom_bytes(pixels: np.ndarray, compress_j2k: bool = False, bits: int = 12) -> bytes:
    from pydicom.uid import generate_uid
    ds = phantom_dataset(pixels, bits, sop_instance_uid=_UID_ROOT + _UID_SLOT.decode())
    ds.StudyInstanceUID = generate_uid()
    ds.SeriesInstanceUID = generate_uid()
    if compress_j2k:
        ds.compress("1.2.840.10008.1.2.4.90", pixels.astype(np.uint16), generate_instance_uid=False)
    return dataset_bytes(ds)


def png_bytes(pixels: np.ndarray) -> bytes:
    import cv2
    ok, buf = cv2.imencode(".png", (pixels.astype(np.uint32) * 16).clip(0, 65535).astype(np.uint16))
    if not ok:
        raise RuntimeError("OpenCV could not encode a PNG")
    return buf.tobytes()


def generate(kinds: Sequence[str], sizes: Sequence[int], per_combo: int = 1,
             notes: Optional[List[str]] = None) -> List[BenchInput]:
    """One or more phantoms per (kind, size); kinds that cannot be written
    here are skipped with a line in `notes`."""
    out = []
    for kind in kinds:
        if kind not in KINDS:
            raise ValueError("unknown input kind %r (choose from %s)" % (kind, ", ".join(KINDS)))
        if kind == "j2k":
            why = j2k_problem()
            if why:
                if notes is not None:
                    notes.append("JPEG 2000 inputs skipped: " + why)
                continue
        for size in sizes:
            for seed in range(per_combo):
                px = chest_phantom(size, size, seed=seed, bits=12)
                data = png_bytes(px) if kind == "png" else dicom_bytes(px, compress_j2k=kind == "j2k")
                out.append(BenchInput("%s-%d-%d" % (kind, size, seed), kind, size, size, data))
    return out


def from_folder(path: str, limit: int = 0) -> List[BenchInput]:
    """Every regular file of a folder (not recursive), sorted by name. A
    DICOM file gets the patchable SOP Instance UID (see unique_bytes): the
    alert id follows the SOP Instance UID, so copies differing only in
    their bytes would all be the same alert."""
    names = sorted(n for n in os.listdir(path) if os.path.isfile(os.path.join(path, n)) and not n.startswith("."))
    if limit:
        names = names[:limit]
    out = []
    for n in names:
        with open(os.path.join(path, n), "rb") as fh:
            data = fh.read()
        if data[128:132] == b"DICM":
            out.append(BenchInput(n, "dicom", 0, 0, _with_slot_uid(data)))
        else:
            out.append(BenchInput(n, "folder", 0, 0, data))
    return out


def _with_slot_uid(data: bytes) -> bytes:
    """The DICOM file re-written with SOP Instance UID = root + slot (pixels untouched)."""
    import pydicom
    ds = pydicom.dcmread(io.BytesIO(data))
    ds.SOPInstanceUID = _UID_ROOT + _UID_SLOT.decode()
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    buf = io.BytesIO()
    ds.save_as(buf)
    return buf.getvalue()


def unique_bytes(item: BenchInput, index: int) -> bytes:
    """The item's bytes made unique by `index` (see the module docstring)."""
    if item.kind in ("dicom", "j2k"):
        return item.data.replace(_UID_SLOT, ("9%011d" % index).encode())
    return item.data + b"bench%08d" % index
