"""Decoding figures per compressed format: full size (pydicom's plugins, what
the runtime used before) against a reduced resolution level (glymur over
libopenjp2, edge/decode/j2k.py) at the floor the appliance uses, and, for
JPEG Baseline, OpenCV at the scale the runtime picks (1 for a film already
at the floor: then the row is the decoder change alone; edge/decode/jpeg_baseline.py).

JPEG lossless (SV1) and JPEG-LS have no resolution pyramid, so they only get
the full decode row: the figure says what they cost, not what could be saved.
"""
import io
import os
import time
from typing import Any, Dict, List, Sequence, Tuple

from bench import stats
from edge.decode.j2k import available, decode_reduced
from edge.decode.jpeg_baseline import JPEG_BASELINE, decode_baseline

DEFAULT_SAMPLES = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "shared",
                                               "data", "dicom-samples"))
_J2K = ("1.2.840.10008.1.2.4.90", "1.2.840.10008.1.2.4.91")


def sample_files(folder: str) -> List[Tuple[str, bytes]]:
    """The .dcm files of a folder (../shared/data/dicom-samples by default), or none."""
    if not folder or not os.path.isdir(folder):
        return []
    out = []
    for n in sorted(os.listdir(folder)):
        if n.endswith(".dcm"):
            with open(os.path.join(folder, n), "rb") as fh:
                out.append((n, fh.read()))
    return out


def _timed(fn, repeats: int) -> Tuple[Any, Dict[str, float]]:
    times, out = [], None
    for _ in range(max(1, repeats)):
        t0 = time.perf_counter()
        out = fn()
        times.append((time.perf_counter() - t0) * 1000.0)
    return out, stats.summarize(times)


def measure_file(name: str, data: bytes, sides: Dict[str, int], repeats: int) -> Dict[str, Any]:
    import pydicom
    ds = pydicom.dcmread(io.BytesIO(data))
    ts = str(ds.file_meta.TransferSyntaxUID)
    row = {"file": name, "transfer_syntax": ds.file_meta.TransferSyntaxUID.name,
           "size": [int(ds.Rows), int(ds.Columns)], "bits_stored": int(ds.get("BitsStored") or 0)}
    if int(ds.get("NumberOfFrames") or 1) != 1 or int(ds.get("SamplesPerPixel") or 1) != 1:
        row["skipped"] = "not one grey frame"
        return row
    _, row["full_ms"] = _timed(lambda: pydicom.dcmread(io.BytesIO(data)).pixel_array, repeats)
    if ts in _J2K or ts == JPEG_BASELINE:
        for label, side in sides.items():
            px, t = _timed(lambda: _as_runtime(data, side, ts), repeats)
            row[label] = {"min_side": side, "decoded": list(px.shape), "ms": t,
                          "speedup_p50": stats.ratio(row["full_ms"]["p50"], t["p50"])}
    return row


def _as_runtime(data: bytes, side: int, ts: str):
    """What edge/decode/dicom.py does: the reduced level (JPEG 2000) or
    OpenCV's scaled decode (JPEG Baseline), else the full decode."""
    import pydicom
    ds = pydicom.dcmread(io.BytesIO(data))
    px = decode_reduced(ds, side) if ts in _J2K else decode_baseline(ds, ts, side)
    return ds.pixel_array if px is None else px


def jpeg_baseline_files(sizes: Sequence[int]) -> List[Tuple[str, bytes]]:
    """Generated 8-bit JPEG Baseline DICOMs (OpenCV's encoder at quality 95,
    encapsulated by pydicom), one per side."""
    import cv2
    import numpy as np
    import pydicom
    from pydicom.encaps import encapsulate
    from bench.inputs import dicom_bytes
    from edge.phantom import chest_phantom, dataset_bytes
    out = []
    for size in sizes:
        px = (chest_phantom(size, size, bits=12) >> 4).astype(np.uint8)
        ds = pydicom.dcmread(io.BytesIO(dicom_bytes(px.astype(np.uint16), bits=8)))
        ds.BitsAllocated, ds.BitsStored, ds.HighBit = 8, 8, 7
        ds.WindowCenter, ds.WindowWidth = 128, 256
        ok, buf = cv2.imencode(".jpg", px, [int(cv2.IMWRITE_JPEG_QUALITY), 95])
        ds.PixelData = encapsulate([buf.tobytes()])
        ds["PixelData"].is_undefined_length = True
        ds["PixelData"].VR = "OB"
        ds.file_meta.TransferSyntaxUID = JPEG_BASELINE
        out.append(("jpeg-%d-0" % size, dataset_bytes(ds)))
    return out


def measure_decoders(files: Sequence[Tuple[str, bytes]], sides: Dict[str, int], repeats: int) -> Dict[str, Any]:
    ok, why = available()
    return {"reduced_decoder": why, "reduced_available": ok, "sides": sides,
            "files": [measure_file(n, d, sides, repeats) for n, d in files]}
