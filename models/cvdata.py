"""The shared data as one cross-validation set, decoded and resized once.

Masked positives: siim-ptx-png (36 PNG + mask) and siim-ptx-dicom (10 SIIM
DICOMs + masks, read through the runtime's DICOM decoder). Negatives: NIH
films labelled without pneumothorax (empty masks). NIH positives carry no
mask: they train and test only the image-level head. Where ChestX-Det's
radiologists re-read an NIH film, their verdict replaces NIH's text-mined label
(`verdict` column; `nih_label` keeps the original for the label-noise figure).

Folds are patient-grouped (NIH patient id; one group per SIIM image, merged
with any NIH film that is the same radiograph) and stratified by stratum
(masked positive / NIH positive / NIH negative).
"""
import csv
import json
import os
import random
from dataclasses import dataclass, replace
from typing import Dict, List, Optional, Tuple

import numpy as np

from edge.inference.manifest import PreprocessSpec

from . import data as D

STRATA = ("masked_pos", "nih_pos", "nih_neg")


@dataclass(frozen=True)
class CvSample:
    image: str
    mask: Optional[str]
    label: int            # the label used (ChestX-Det's verdict where it exists)
    nih_label: int        # as the source labels it
    source: str           # siim_png | siim_dicom | nih
    group: str
    stratum: str
    small: bool = False   # masked positive under 1 % of the image


def chestx_det_verdicts(root: str) -> Dict[str, int]:
    """NIH Image Index -> 1 if ChestX-Det's radiologists drew a pneumothorax, else 0."""
    number_to_nih = json.load(open(os.path.join(root, "chestxdet_number_to_nih_index.json")))
    out = {}
    for name in ("ChestX_Det_train.json", "ChestX_Det_test.json"):
        path = os.path.join(root, name)
        if not os.path.exists(path):
            continue
        for rec in json.load(open(path)):
            nih = number_to_nih.get(rec["file_name"])
            if nih:
                out[nih] = int("Pneumothorax" in rec.get("syms", []))
    return out


def read_siim_dicom_folder(root: str) -> List[D.Sample]:
    """siim-ptx-dicom: labels.csv + dicom/<id>.dcm + masks/<id>.png (0/255)."""
    out = []
    with open(os.path.join(root, "labels.csv"), newline="") as fh:
        for row in csv.DictReader(fh):
            sid = row["source_id"]
            out.append(D.Sample(image=os.path.join(root, "dicom", sid + ".dcm"), label=1,
                                mask=os.path.join(root, "masks", sid + ".png"), group="siim_dicom:" + sid,
                                source="siim_dicom", key=sid))
    return out


def collect(data_root: str) -> List[CvSample]:
    verdicts = chestx_det_verdicts(os.path.join(data_root, "label-sources", "chestx-det"))
    out = []
    for s in D.read_mask_folders(os.path.join(data_root, "siim-ptx-png"), "siim_png"):
        out.append(CvSample(s.image, s.mask, 1, 1, "siim_png", s.group, "masked_pos"))
    for s in read_siim_dicom_folder(os.path.join(data_root, "siim-ptx-dicom")):
        out.append(CvSample(s.image, s.mask, 1, 1, "siim_dicom", s.group, "masked_pos"))
    for s in D.read_nih_labels(os.path.join(data_root, "nih-cxr14-subset", "labels.csv"), "nih"):
        label = verdicts.get(s.key, s.label)
        out.append(CvSample(s.image, None, int(label), int(s.label), "nih", s.group,
                            "nih_pos" if label else "nih_neg"))
    return out


def merge_duplicate_groups(samples: List[CvSample]) -> List[CvSample]:
    """A SIIM film that is an NIH film re-encoded joins that NIH patient's group."""
    siim = [D.Sample(image=s.image, key=s.group) for s in samples if s.source != "nih"]
    nih = [D.Sample(image=s.image, key=s.group) for s in samples if s.source == "nih"]
    dup = D.find_duplicates(nih, siim)     # siim group -> nih group
    return [replace(s, group=dup.get(s.group, s.group)) for s in samples]


def assign_folds(samples: List[CvSample], k: int, seed: int = 0) -> np.ndarray:
    """Fold index per sample: whole groups, stratified by each group's
    strongest stratum, dealt round-robin after a seeded shuffle."""
    groups = {}  # type: Dict[str, List[int]]
    for i, s in enumerate(samples):
        groups.setdefault(s.group, []).append(i)
    rank = {name: n for n, name in enumerate(STRATA)}
    by_stratum = {}  # type: Dict[str, List[str]]
    for g, idx in groups.items():
        best = min((samples[i].stratum for i in idx), key=rank.get)
        by_stratum.setdefault(best, []).append(g)
    fold = np.zeros(len(samples), int)
    offset = 0
    for name in STRATA:
        keys = sorted(by_stratum.get(name, []))
        random.Random("%d:%s" % (seed, name)).shuffle(keys)
        for n, g in enumerate(keys):
            for i in groups[g]:
                fold[i] = (n + offset) % k
        offset += len(keys)
    return fold


def decode_all(samples: List[CvSample], spec: PreprocessSpec) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(planes (N,H,W) float32 resized, no window; masks (N,H,W) uint8; mask fraction at full size)."""
    from tqdm import tqdm
    ds = [D.Sample(image=s.image, label=s.label, mask=s.mask) for s in samples]
    h, w = spec.size
    planes = np.zeros((len(ds), h, w), np.float32)
    masks = np.zeros((len(ds), h, w), np.uint8)
    frac = np.zeros(len(ds), np.float32)
    for i, s in enumerate(tqdm(ds, desc="decode", leave=False)):
        plane, mask = D.plane_and_mask(s, spec)
        planes[i] = plane
        if mask is not None:
            masks[i] = mask
        if s.mask is not None:
            import cv2
            m = cv2.imread(s.mask, cv2.IMREAD_GRAYSCALE)
            frac[i] = float((m > 127).mean())
    return planes, masks, frac


def save_table(samples: List[CvSample], fold: np.ndarray, path: str) -> None:
    with open(path, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["fold", "source", "stratum", "label", "nih_label", "small", "group", "image", "mask"])
        for s, f in zip(samples, fold):
            w.writerow([int(f), s.source, s.stratum, s.label, s.nih_label, int(s.small), s.group, s.image,
                        s.mask or ""])


def load_table(path: str) -> Tuple[List[CvSample], np.ndarray]:
    samples, fold = [], []
    with open(path, newline="") as fh:
        for r in csv.DictReader(fh):
            samples.append(CvSample(r["image"], r["mask"] or None, int(r["label"]), int(r["nih_label"]),
                                    r["source"], r["group"], r["stratum"], bool(int(r["small"]))))
            fold.append(int(r["fold"]))
    return samples, np.array(fold, int)
