"""Data readers: the formats hospitals and the public sets use, and splits by patient."""
import os
from collections import defaultdict

import cv2
import numpy as np
import pytest

from edge.inference.manifest import PreprocessSpec
from models import data as D
from models import rle

SHARED = os.path.join(os.path.dirname(__file__), "..", "..", "shared", "data")


def _png(path, value=100, size=(64, 64)):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    cv2.imwrite(path, np.full(size, value, np.uint8))
    return path


def test_mask_folders_pair_by_name_and_keep_the_split_hint(tmp_path):
    for split in ("train", "val"):
        _png(str(tmp_path / split / "images" / "a.png"))
        _png(str(tmp_path / split / "masks" / "a.png"), 255)
    samples = D.read_mask_folders(str(tmp_path), "siim")
    assert sorted(s.extra["split_hint"] for s in samples) == ["train", "val"]
    assert all(s.mask.endswith(os.path.join("masks", "a.png")) for s in samples)


def test_mask_folder_without_its_mask_is_an_error(tmp_path):
    _png(str(tmp_path / "images" / "a.png"))
    os.makedirs(str(tmp_path / "masks"))
    with pytest.raises(D.DataError, match="no mask"):
        D.read_mask_folders(str(tmp_path))


def test_labelled_folders(tmp_path):
    _png(str(tmp_path / "pneumothorax" / "p1.png"))
    _png(str(tmp_path / "normal" / "sub" / "n1.png"))
    _png(str(tmp_path / "other" / "x.png"))
    labels = {os.path.basename(s.image): s.label for s in D.read_labelled_folders(str(tmp_path))}
    assert labels == {"p1.png": 1, "n1.png": 0}


def test_nih_labels_group_by_patient(tmp_path):
    (tmp_path / "labels.csv").write_text("image,pneumothorax,patient_id\nimages/a.png,1,7\nimages/b.png,0,7\n"
                                         "images/c.png,0,8\n")
    s = D.read_nih_labels(str(tmp_path / "labels.csv"))
    assert [x.group for x in s] == ["nih:7", "nih:7", "nih:8"]
    assert s[0].image == os.path.join(str(tmp_path), "images", "a.png") and s[0].label == 1


def test_split_keeps_each_patient_in_one_split_and_stratifies():
    samples = [D.Sample(image="%d-%d" % (p, k), label=int(p < 10), group="p%d" % p)
               for p in range(50) for k in range(2)]
    out = D.split_groups(samples, {"train": 0.6, "val": 0.2, "test": 0.2}, seed=3)
    where = defaultdict(set)
    for s in out:
        where[s.group].add(s.split)
    assert all(len(v) == 1 for v in where.values())
    pos = defaultdict(int)
    for s in out:
        pos[s.split] += s.label
    assert pos == {"train": 12, "val": 4, "test": 4}         # 10 positive patients x 2 images
    assert out == D.split_groups(samples, {"train": 0.6, "val": 0.2, "test": 0.2}, seed=3)


def test_rle_dicoms_group_by_study_and_decode_masks(tmp_path):
    from dicom_factory import write_dicom
    root = tmp_path / "dicom-images-train"
    mask = np.zeros((256, 256), np.uint8)
    mask[100:140, 30:60] = 1
    rows = ["\ufeffImageId, EncodedPixels"]
    for i, uid in enumerate(("1.2.3.1", "1.2.3.2")):
        d = root / ("study%d" % (i % 1)) / ("series%d" % i)
        d.mkdir(parents=True)
        write_dicom(str(d / (uid + ".dcm")), np.full((256, 256), 2000), modality="CR", sop_instance_uid=uid)
        rows.append("%s, %s" % (uid, rle.encode(mask) if i == 0 else "-1"))
    rows.append("1.2.3.9, -1")                                # listed, file absent: skipped
    (tmp_path / "train-rle.csv").write_text("\n".join(rows) + "\n", encoding="utf-8")
    samples = D.read_rle_dicoms(str(tmp_path / "train-rle.csv"), str(root))
    assert [(s.key, s.label) for s in samples] == [("1.2.3.1", 1), ("1.2.3.2", 0)]
    assert samples[0].group == samples[1].group == "siim:study0"
    spec = PreprocessSpec(size=(64, 64), channels=1, mean=(0.5,), std=(0.25,))
    plane, m = D.plane_and_mask(samples[0], spec)
    assert plane.shape == m.shape == (64, 64)
    assert m.sum() == pytest.approx(mask.sum() / 16.0, rel=0.15)


@pytest.mark.shared_data
def test_shared_sets_read_as_documented():
    nih = os.path.join(SHARED, "nih-cxr14-subset", "labels.csv")
    siim = os.path.join(SHARED, "siim-ptx-png")
    if not (os.path.exists(nih) and os.path.isdir(siim)):
        pytest.skip("../shared/data absent")
    n = D.read_nih_labels(nih)
    assert len(n) == 369 and sum(s.label for s in n) == 26
    s = D.read_mask_folders(siim, "siim")
    assert len(s) == 36 and sum(x.extra["split_hint"] == "val" for x in s) == 6
