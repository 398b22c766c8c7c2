"""`python -m models gate-eval`: the not-a-chest gate on non-chest images
made or found here, and on every chest film in the shared data, through the
runtime (decode -> Pipeline), counting refusals by reason code.

Non-chest: pydicom-data's DICOMs other than the chest CR (extremity CR, CT,
MR, NM, US, JPEG-LS test frames), scikit-image's photographs as PNG, the
same photographs as DX DICOMs that claim BodyPartExamined CHEST, and the
same again without the tag. Chest: the 415 CV films (SIIM PNG + DICOM, NIH)
and the chest CR RG1_J2KI.
"""
import os
import tempfile
from collections import Counter
from typing import Any, Dict, List, Tuple

import numpy as np

from edge.decode import decode_file
from edge.errors import DecodeError
from edge.inference.manifest import load_manifest
from edge.inference.onnxruntime import OnnxRuntimeBackend
from edge.pipeline import Pipeline

PHOTOS = ("astronaut", "brick", "camera", "cat", "coffee", "coins", "grass", "gravel", "horse", "moon", "page",
          "rocket", "text", "immunohistochemistry", "hubble_deep_field", "colorwheel", "chelsea", "clock",
          # added after the layout view and the colour check were designed (models 0.3.1): the
          # rest of scikit-image's bundled pictures, a test those designs had not seen
          "binary_blobs", "cell", "checkerboard", "logo", "microaneurysms", "retina", "shepp_logan_phantom")
CHEST_DICOM = "RG1_J2KI.dcm"


def _photos(out: str) -> List[Tuple[str, str]]:
    """(kind, path) for each photograph as PNG, as DX DICOM claiming CHEST, and as DX DICOM untagged."""
    import cv2
    import pydicom
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid
    import skimage.data as sd
    items = []
    for name in PHOTOS:
        fn = getattr(sd, name, None)
        if fn is None:
            continue
        img = np.asarray(fn())
        if img.dtype == bool:
            img = img.astype(np.uint8) * 255
        if img.dtype != np.uint8:
            img = cv2.normalize(img.astype(np.float32), None, 0, 255, cv2.NORM_MINMAX).astype(np.uint8)
        if min(img.shape[:2]) < 256:        # the decoder refuses small images; test the learned gate instead
            s = 256.0 / min(img.shape[:2])
            img = cv2.resize(img, (int(round(img.shape[1] * s)), int(round(img.shape[0] * s))))
        grey = img if img.ndim == 2 else cv2.cvtColor(img[..., :3], cv2.COLOR_RGB2GRAY)
        png = os.path.join(out, name + ".png")
        cv2.imwrite(png, img if img.ndim == 2 else cv2.cvtColor(img[..., :3], cv2.COLOR_RGB2BGR))
        items.append(("photo_png", png))
        for tag in ("CHEST", None):
            ds = Dataset()
            ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.1.1"
            ds.SOPInstanceUID = generate_uid()
            ds.Modality = "DX"
            ds.ViewPosition = "PA"
            if tag:
                ds.BodyPartExamined = tag
            ds.Rows, ds.Columns = grey.shape
            ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
            ds.BitsAllocated = ds.BitsStored = 8
            ds.HighBit, ds.PixelRepresentation = 7, 0
            ds.PixelData = np.ascontiguousarray(grey).tobytes()
            ds.file_meta = FileMetaDataset()
            ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID
            ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
            ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
            path = os.path.join(out, "%s_dx_%s.dcm" % (name, (tag or "untagged").lower()))
            pydicom.dcmwrite(path, ds, enforce_file_format=True) if pydicom.__version__ >= "3" else \
                pydicom.dcmwrite(path, ds, write_like_original=False)
            items.append(("photo_dx_" + (tag or "untagged").lower(), path))
    return items


def outcome(pipe: Pipeline, path: str) -> Tuple[str, Dict[str, Any]]:
    """'refused:<code>' or 'positive' / 'negative', with the figures."""
    try:
        image = decode_file(path)
        res = pipe.run(image)
    except DecodeError as exc:
        return "refused:" + exc.code, {"reason": str(exc)}
    f = res.finding
    return ("positive" if f.pneumothorax else "negative"), {"p": f.probability}


def gate_eval(classifier: str, segmenter: str, data_root: str, run: str = "runs/cv") -> Dict[str, Any]:
    from . import cvdata
    pipe = Pipeline(OnnxRuntimeBackend(load_manifest(classifier), threads=1),
                    OnnxRuntimeBackend(load_manifest(segmenter), threads=1))
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        items = [("dicom_sample", os.path.join(data_root, "dicom-samples", n))
                 for n in sorted(os.listdir(os.path.join(data_root, "dicom-samples")))
                 if n.endswith(".dcm") and n != CHEST_DICOM]
        try:
            items += _photos(tmp)
        except ImportError:
            print("scikit-image not installed: photographs left out")
        for kind, path in items:
            rows.append(("non_chest", kind, os.path.basename(path)) + outcome(pipe, path))
        samples, _ = cvdata.load_table(os.path.join(run, "samples.csv"))
        chest = [("chest_dicom", os.path.join(data_root, "dicom-samples", CHEST_DICOM))] + \
                [(s.source, s.image) for s in samples]
        for kind, path in chest:
            rows.append(("chest", kind, os.path.basename(path)) + outcome(pipe, path))
    counts = Counter((r[0], r[1], r[3].split(":")[0]) for r in rows)
    codes = Counter((r[0], r[3]) for r in rows if r[3].startswith("refused"))
    summary = {"rows": [{"set": r[0], "kind": r[1], "file": r[2], "outcome": r[3], **r[4]} for r in rows],
               "counts": {"%s/%s/%s" % k: v for k, v in sorted(counts.items())},
               "refusal_codes": {"%s/%s" % k: v for k, v in sorted(codes.items())}}
    return summary
