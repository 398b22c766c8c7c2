"""`python -m models gate-eval`: the not-a-chest gate on non-chest images
made or found here, and on every chest film in the shared data, through the
runtime (decode -> Pipeline), counting refusals by reason code.

Non-chest: pydicom-data's DICOMs other than the chest CR (extremity CR, CT,
MR, NM, US, JPEG-LS test frames), scikit-image's photographs as PNG, the
same photographs as DX DICOMs that claim BodyPartExamined CHEST, and the
same again without the tag; and, in the same three forms, fresh pictures
the gate was not designed on (`fresh_*`: matplotlib's and pydicom's sample
images, scikit-image's other files). Chest: the 415 CV films (SIIM PNG + DICOM, NIH)
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


# Pictures the frozen-encoder gate (models 0.4.0) was not designed on, listed before it was
# scored on them: the rest of scikit-image's bundled files, matplotlib's sample data (a
# photograph, an MR slice, elevation maps) and pydicom's own test frames (CT, MR, RT dose, ...).
SKIMAGE_FILES = ("motorcycle_left.png", "motorcycle_right.png", "color.png", "chessboard_GRAY.png",
                 "clock_motion.png", "phantom.png")
LFW_FACES = (0, 50, 100, 150, 199)
MATPLOTLIB_FILES = ("grace_hopper.jpg", "Minduka_Present_Blue_Pack.png", "logo2.png")
MATPLOTLIB_ARRAYS = ("jacksboro_fault_dem.npz", "topobathy.npz")
PYDICOM_FILES = ("CT_small.dcm", "MR_small.dcm", "liver_1frame.dcm", "examples_overlay.dcm", "examples_palette.dcm",
                 "examples_rgb_color.dcm", "examples_jpeg2k.dcm", "rtdose_1frame.dcm", "JPEG2000.dcm",
                 "GDCMJ2K_TextGBR.dcm")


def _design_pictures() -> List[Tuple[str, np.ndarray]]:
    import skimage.data as sd
    return [(name, np.asarray(getattr(sd, name)())) for name in PHOTOS if hasattr(sd, name)]


def _fresh_pictures() -> List[Tuple[str, np.ndarray]]:
    """(name, array) for every fresh picture this machine has (a missing one is left out)."""
    import gzip
    import skimage.data as sd
    import skimage.io as sio
    out = []
    folder = os.path.dirname(sd.__file__)
    for name in SKIMAGE_FILES:
        if os.path.exists(os.path.join(folder, name)):
            out.append((name, sio.imread(os.path.join(folder, name))))
    if os.path.exists(os.path.join(folder, "lfw_subset.npy")):
        faces = np.load(os.path.join(folder, "lfw_subset.npy"))
        out += [("lfw_%d" % i, faces[i]) for i in LFW_FACES]
    try:
        import matplotlib
        samples = os.path.join(matplotlib.get_data_path(), "sample_data")
        out += [(n, sio.imread(os.path.join(samples, n))) for n in MATPLOTLIB_FILES
                if os.path.exists(os.path.join(samples, n))]
        for n in MATPLOTLIB_ARRAYS:
            if os.path.exists(os.path.join(samples, n)):
                z = np.load(os.path.join(samples, n))
                out.append((n, z[z.files[0]]))
        if os.path.exists(os.path.join(samples, "s1045.ima.gz")):     # a 256 x 256 16-bit MR slice
            with gzip.open(os.path.join(samples, "s1045.ima.gz")) as fh:
                out.append(("s1045_mr", np.frombuffer(fh.read(), "<u2").reshape(256, 256)))
    except ImportError:
        pass
    import pydicom
    tests = os.path.join(os.path.dirname(pydicom.__file__), "data", "test_files")
    for n in PYDICOM_FILES:
        try:
            a = pydicom.dcmread(os.path.join(tests, n)).pixel_array
        except Exception:       # absent from this pydicom, or no decoder for it here
            continue
        out.append((n, a[0] if a.ndim == 3 and a.shape[-1] not in (3, 4) else a))
    return out


def _as_uint8(img: np.ndarray) -> np.ndarray:
    """Any picture -> uint8 grey or RGB, its short side at least 256 px (the
    decoder refuses small images; the learned gate is what is tested)."""
    import cv2
    img = np.asarray(img)
    if img.dtype == bool:
        img = img.astype(np.uint8) * 255
    if img.dtype != np.uint8:
        img = cv2.normalize(img.astype(np.float32), None, 0, 255, cv2.NORM_MINMAX).astype(np.uint8)
    if img.ndim == 3:
        img = img[..., :3] if img.shape[-1] >= 3 else img[..., 0]
    if min(img.shape[:2]) < 256:
        s = 256.0 / min(img.shape[:2])
        img = cv2.resize(img, (int(round(img.shape[1] * s)), int(round(img.shape[0] * s))))
    return np.ascontiguousarray(img)


def _write_variants(out: str, name: str, img: np.ndarray, kind: str) -> List[Tuple[str, str]]:
    """The picture as PNG, as a DX DICOM claiming CHEST and as one untagged."""
    import cv2
    import pydicom
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid
    img = _as_uint8(img)
    grey = img if img.ndim == 2 else cv2.cvtColor(img, cv2.COLOR_RGB2GRAY)
    stem = os.path.splitext(name)[0]
    png = os.path.join(out, stem + ".png")
    cv2.imwrite(png, img if img.ndim == 2 else cv2.cvtColor(img, cv2.COLOR_RGB2BGR))
    items = [(kind + "_png", png)]
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
        path = os.path.join(out, "%s_dx_%s.dcm" % (stem, (tag or "untagged").lower()))
        pydicom.dcmwrite(path, ds, enforce_file_format=True) if pydicom.__version__ >= "3" else \
            pydicom.dcmwrite(path, ds, write_like_original=False)
        items.append(("%s_dx_%s" % (kind, (tag or "untagged").lower()), path))
    return items


def _photos(out: str) -> List[Tuple[str, str]]:
    """(kind, path): the design pictures (kinds photo_*) and the fresh ones (fresh_*), each
    as PNG, as DX DICOM claiming CHEST, and as DX DICOM untagged."""
    items = []
    for kind, pictures in (("photo", _design_pictures()), ("fresh", _fresh_pictures())):
        for name, img in pictures:
            items += _write_variants(out, name, img, kind)
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


def _pipeline(classifier: str, segmenter: str) -> Pipeline:
    """The runtime's pipeline on the manifests under test, one thread per model."""
    return Pipeline(OnnxRuntimeBackend(load_manifest(classifier), threads=1),
                    OnnxRuntimeBackend(load_manifest(segmenter), threads=1))


def gate_eval(classifier: str, segmenter: str, data_root: str, run: str = "runs/cv") -> Dict[str, Any]:
    from . import cvdata
    pipe = _pipeline(classifier, segmenter)
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


def _jpeg(pixels: np.ndarray, quality: int) -> np.ndarray:
    import cv2
    u8 = np.clip(pixels * 255.0, 0, 255).astype(np.uint8)
    return cv2.imdecode(cv2.imencode(".jpg", u8, [cv2.IMWRITE_JPEG_QUALITY, quality])[1], 0).astype(np.float32) / 255


def _noise(pixels: np.ndarray, sigma: float, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.clip(pixels + rng.normal(0.0, sigma, pixels.shape), 0, 1).astype(np.float32)


def _resampled(pixels: np.ndarray) -> np.ndarray:
    import cv2
    small = cv2.resize(pixels, None, fx=0.25, fy=0.25, interpolation=cv2.INTER_AREA)
    return cv2.resize(small, (pixels.shape[1], pixels.shape[0]), interpolation=cv2.INTER_LINEAR)


# Damage done to a decoded film at its own resolution, before the runtime's preprocessing.
DEGRADATIONS = (("jpeg_q75", lambda p, i: _jpeg(p, 75)), ("jpeg_q50", lambda p, i: _jpeg(p, 50)),
                ("jpeg_q30", lambda p, i: _jpeg(p, 30)), ("jpeg_q15", lambda p, i: _jpeg(p, 15)),
                ("noise_2pct", lambda p, i: _noise(p, 0.02, i)), ("noise_5pct", lambda p, i: _noise(p, 0.05, i)),
                ("resampled_4x", lambda p, i: _resampled(p)))


def degraded_chest(classifier: str, segmenter: str, run: str = "runs/cv", step: int = 4) -> Dict[str, Any]:
    """How many chest films the gate refuses once damaged: every `step`-th CV film,
    each degradation of DEGRADATIONS, through the runtime's Pipeline. A refused
    degraded film is the safe side (not read), but it is a chest film."""
    import dataclasses
    from edge.errors import NotAChestRadiograph
    from . import cvdata
    pipe = _pipeline(classifier, segmenter)
    samples, _ = cvdata.load_table(os.path.join(run, "samples.csv"))
    films = samples[::step]
    damages = (("none", lambda p, i: p),) + DEGRADATIONS
    refused = {name: 0 for name, _ in damages}
    try:
        for i, s in enumerate(films):
            image = decode_file(s.image)
            for name, damage in damages:
                try:
                    pipe.run(dataclasses.replace(image, pixels=damage(image.pixels.astype(np.float32), i)))
                except NotAChestRadiograph:
                    refused[name] += 1
    finally:
        pipe.close()
    return {"films": len(films), "refused": refused}

