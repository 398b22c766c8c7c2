"""Readers for the label formats hospitals and the public sets use, and the
grouped splits.

Every reader returns `Sample`s; pixels are decoded by `edge.decode` (the
runtime's decoder, so DICOM windowing and MONOCHROME1 inversion are exactly
what the device does) and turned into model planes by `edge.preprocess`.

Formats:
- mask folders: `<root>/**/images/X.png` with `<root>/**/masks/X.png` (0/255)
- DICOM + SIIM RLE CSV (train-rle.csv, stage_2_train.csv): see models.rle
- labelled folders: `<root>/pneumothorax/*`, `<root>/normal/*`
- NIH ChestX-ray14 style labels.csv (image, pneumothorax, patient_id, ...)
"""
import csv
import hashlib
import os
import random
from collections import defaultdict
from dataclasses import dataclass, field, replace
from typing import Dict, Iterable, List, Optional, Sequence, Tuple

import cv2
import numpy as np

from edge.decode import decode_file
from edge.inference.manifest import PreprocessSpec
from edge.preprocess import resize_to_input
from edge.settings import DecodeSettings

from . import rle as rle_mod

IMAGE_EXTS = (".png", ".jpg", ".jpeg", ".dcm", ".dicom", "")
POSITIVE_DIRS = ("pneumothorax", "positive", "ptx", "1")
NEGATIVE_DIRS = ("normal", "negative", "no_pneumothorax", "0")


class DataError(ValueError):
    """A data folder or label file that cannot be read as described."""


@dataclass(frozen=True)
class Sample:
    image: str                              # file path
    label: Optional[int] = None             # 1 pneumothorax, 0 not, None unknown
    mask: Optional[str] = None              # mask image path
    rles: Optional[Tuple[str, ...]] = None  # SIIM RLE regions (empty tuple = no pneumothorax)
    group: str = ""                         # patient/study id; split unit
    source: str = ""
    split: str = ""                         # "train" | "val" | "test" once split
    key: str = ""                           # identity for dedupe (image id)
    extra: Dict[str, str] = field(default_factory=dict, compare=False)

    @property
    def has_mask(self) -> bool:
        return self.mask is not None or self.rles is not None


def _stem(path: str) -> str:
    return os.path.splitext(os.path.basename(path))[0]


def read_mask_folders(root: str, source: str = "masks") -> List[Sample]:
    """Pairs `images/X` with `masks/X` under every folder below `root`; the
    folder above `images/` (e.g. train, val) becomes a split hint."""
    out = []
    for dirpath, dirnames, _ in sorted(os.walk(root)):
        if "images" not in dirnames or "masks" not in dirnames:
            continue
        img_dir, mask_dir = os.path.join(dirpath, "images"), os.path.join(dirpath, "masks")
        hint = os.path.basename(dirpath) if dirpath != root else ""
        for name in sorted(os.listdir(img_dir)):
            mask = os.path.join(mask_dir, name)
            if not os.path.exists(mask):
                raise DataError("%s has no mask %s" % (os.path.join(img_dir, name), mask))
            out.append(Sample(image=os.path.join(img_dir, name), label=None, mask=mask,
                              group="%s:%s" % (source, _stem(name)), source=source,
                              key="%s:%s" % (source, _stem(name)), extra={"split_hint": hint}))
    if not out:
        raise DataError("%s: no images/ + masks/ folder pairs found" % root)
    return out


def read_rle_dicoms(csv_path: str, dicom_root: str, source: str = "siim") -> List[Sample]:
    """SIIM layout: DICOMs named `<SOPInstanceUID>.dcm` anywhere below
    `dicom_root` (the official tree nests study/series folders); images the
    CSV lists but the folder lacks are skipped and counted."""
    table = rle_mod.read_rle_csv(csv_path)
    files = {}
    for dirpath, _, names in os.walk(dicom_root):
        for name in names:
            if name.lower().endswith(".dcm"):
                files[name[:-4]] = os.path.join(dirpath, name)
    out = []
    for image_id, rles in table.items():
        path = files.get(image_id)
        if path is None:
            continue
        # the official tree is <study uid>/<series uid>/<sop uid>.dcm: group by study
        parts = os.path.relpath(path, dicom_root).split(os.sep)
        group = parts[0] if len(parts) >= 3 else image_id
        out.append(Sample(image=path, label=int(bool(rles)), rles=tuple(rles), group="%s:%s" % (source, group),
                          source=source, key=image_id))
    if not out:
        raise DataError("%s: none of the %d images in %s were found" % (dicom_root, len(table), csv_path))
    return out


def read_labelled_folders(root: str, source: str = "folders") -> List[Sample]:
    """`<root>/pneumothorax/*` -> 1, `<root>/normal/*` -> 0 (a few synonyms accepted)."""
    out = []
    for sub in sorted(os.listdir(root)):
        low = sub.lower()
        label = 1 if low in POSITIVE_DIRS else 0 if low in NEGATIVE_DIRS else None
        if label is None or not os.path.isdir(os.path.join(root, sub)):
            continue
        for dirpath, _, names in sorted(os.walk(os.path.join(root, sub))):
            for name in sorted(names):
                if name.startswith(".") or os.path.splitext(name)[1].lower() not in IMAGE_EXTS:
                    continue
                path = os.path.join(dirpath, name)
                out.append(Sample(image=path, label=label, group="%s:%s" % (source, _stem(name)),
                                  source=source, key="%s:%s" % (source, _stem(name))))
    if not out:
        raise DataError("%s: expected pneumothorax/ and normal/ sub-folders with images" % root)
    return out


def read_nih_labels(csv_path: str, source: str = "nih") -> List[Sample]:
    """NIH-style labels.csv: columns image, pneumothorax (0/1), patient_id;
    images relative to the CSV's folder. Groups by patient."""
    base = os.path.dirname(os.path.abspath(csv_path))
    out = []
    with open(csv_path, "r", encoding="utf-8-sig", newline="") as fh:
        for n, row in enumerate(csv.DictReader(fh), start=2):
            try:
                image, label = row["image"], int(row["pneumothorax"])
            except (KeyError, ValueError) as exc:
                raise DataError("%s:%d: needs 'image' and 0/1 'pneumothorax' (%s)" % (csv_path, n, exc))
            pid = row.get("patient_id") or _stem(image)
            out.append(Sample(image=os.path.join(base, image), label=label, group="%s:%s" % (source, pid),
                              source=source, key=row.get("nih_image_index") or os.path.basename(image),
                              extra={k: v for k, v in row.items() if k in ("view", "google2019_ptx", "label_note")}))
    return out


def split_groups(samples: Sequence[Sample], fractions: Dict[str, float], seed: int = 0) -> List[Sample]:
    """Assign whole groups (patients) to splits, stratified by whether the
    group holds any positive. Deterministic for a seed."""
    groups = defaultdict(list)  # type: Dict[str, List[Sample]]
    for s in samples:
        groups[s.group].append(s)
    names = sorted(fractions)
    out = []
    for positive in (True, False):
        keys = sorted(g for g, ss in groups.items() if any((x.label or 0) or x.rles or x.mask for x in ss) == positive)
        random.Random("%d:%s" % (seed, positive)).shuffle(keys)
        total = float(sum(fractions.values()))
        start = 0
        for i, name in enumerate(names):
            n = len(keys) - start if i == len(names) - 1 else int(round(len(keys) * fractions[name] / total))
            for g in keys[start:start + n]:
                out.extend(replace(s, split=name) for s in groups[g])
            start += n
    return out


def load_pixels(path: str, settings: Optional[DecodeSettings] = None) -> np.ndarray:
    """File -> float32 [0, 1] MONOCHROME2 pixels, through the runtime's decoder."""
    return decode_file(path, settings or TRAINING_DECODE).pixels


# The device refuses tiny images; training folders may hold test-sized ones.
TRAINING_DECODE = DecodeSettings(min_side=32, allowed_modalities=["CR", "DX"], reject_lateral=False)


def load_mask(sample: Sample, shape: Tuple[int, int]) -> np.ndarray:
    """The sample's mask as float32 0/1 at the image's (h, w)."""
    if sample.mask is not None:
        m = cv2.imread(sample.mask, cv2.IMREAD_GRAYSCALE)
        if m is None:
            raise DataError("cannot read mask %s" % sample.mask)
        if m.shape != shape:
            m = cv2.resize(m, (shape[1], shape[0]), interpolation=cv2.INTER_NEAREST)
        return (m > 127).astype(np.float32)
    if sample.rles is not None:
        return rle_mod.mask_from_rles(list(sample.rles), shape[0], shape[1]).astype(np.float32)
    return np.zeros(shape, np.float32)


def plane_and_mask(sample: Sample, spec: PreprocessSpec) -> Tuple[np.ndarray, Optional[np.ndarray]]:
    """Decode + resize exactly as the runtime does; the mask follows the same
    geometry (area-resized then thresholded at 0.5)."""
    pixels = load_pixels(sample.image)
    plane, _ = resize_to_input(pixels, spec)
    mask = None
    if sample.has_mask or sample.label == 0:
        full = load_mask(sample, pixels.shape[:2]) if sample.has_mask else np.zeros(pixels.shape[:2], np.float32)
        m, _ = resize_to_input(full, replace(spec, interpolation="area"))
        mask = (m >= 0.5).astype(np.float32)
    return plane, mask


def thumbnail(path: str, size: int = 32) -> np.ndarray:
    px = load_pixels(path)
    t = cv2.resize(px, (size, size), interpolation=cv2.INTER_AREA).ravel()
    t = t - t.mean()
    return t / (np.linalg.norm(t) + 1e-8)


def find_duplicates(a: Sequence[Sample], b: Sequence[Sample], min_corr: float = 0.985) -> Dict[str, str]:
    """Images in `b` that are the same radiograph as one in `a` (SIIM PNGs are
    re-encoded NIH images without their ids): {b key: a key}."""
    ta = np.stack([thumbnail(s.image) for s in a])
    tb = np.stack([thumbnail(s.image) for s in b])
    corr = tb @ ta.T
    out = {}
    for i, j in zip(*np.nonzero(corr >= min_corr)):
        out[b[i].key] = a[j].key
    return out


def cache_key(samples: Iterable[Sample], spec: PreprocessSpec) -> str:
    h = hashlib.sha256(spec.digest().encode())
    for s in samples:
        h.update(("%s|%s|%s|%s\n" % (s.image, s.mask, s.rles, s.label)).encode())
    return h.hexdigest()[:16]


def load_planes(samples: Sequence[Sample], spec: PreprocessSpec, cache_dir: Optional[str] = None,
                progress: bool = False) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """All samples -> (planes (N,H,W) float32, masks (N,H,W) uint8, has_mask (N,) bool),
    cached as .npz keyed by the file list and the preprocessing digest."""
    path = None
    if cache_dir:
        os.makedirs(cache_dir, exist_ok=True)
        path = os.path.join(cache_dir, "planes-%s.npz" % cache_key(samples, spec))
        if os.path.exists(path):
            z = np.load(path)
            return z["planes"], z["masks"], z["has_mask"]
    h, w = spec.size
    planes = np.zeros((len(samples), h, w), np.float32)
    masks = np.zeros((len(samples), h, w), np.uint8)
    has = np.zeros(len(samples), bool)
    it = samples
    if progress:
        from tqdm import tqdm
        it = tqdm(samples, desc="decode", leave=False)
    for i, s in enumerate(it):
        plane, mask = plane_and_mask(s, spec)
        planes[i] = plane
        if mask is not None:
            masks[i] = mask.astype(np.uint8)
            has[i] = True
    if path:
        np.savez(path, planes=planes, masks=masks, has_mask=has)
    return planes, masks, has
