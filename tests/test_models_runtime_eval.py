"""runtime-eval judges models through the appliance's own pipeline."""
import csv

import cv2
import numpy as np

from models.runtime_eval import runtime_eval
from tests.tiny_models import write_tiny_models


def test_runtime_eval_counts_decisions_and_dice_from_the_alerts_own_contours(tmp_path):
    cls, seg = write_tiny_models(str(tmp_path / "m"))
    (tmp_path / "images").mkdir()
    (tmp_path / "masks").mkdir()
    rows = []
    for i, positive in enumerate([True, True, False, False]):
        px = np.full((300, 300), 80, np.uint8)
        mask = np.zeros((300, 300), np.uint8)
        if positive:
            px[40:140, 30:130] = 255          # bright block = what the tiny segmenter calls pneumothorax
            mask[40:140, 30:130] = 255
        cv2.imwrite(str(tmp_path / "images" / ("%d.png" % i)), px)
        cv2.imwrite(str(tmp_path / "masks" / ("%d.png" % i)), mask)
        rows.append({"split": "test", "label": int(positive), "image": str(tmp_path / "images" / ("%d.png" % i))})
    splits = tmp_path / "splits.csv"
    with open(str(splits), "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=["split", "label", "image"])
        w.writeheader()
        w.writerows(rows)
    res = runtime_eval(str(splits), "test", classifier=cls, segmenter=seg)
    assert res["images"] == 4 and res["positives"] == 2
    assert res["decision"]["sensitivity"]["value"] == 1.0
    assert res["decision"]["specificity"]["value"] == 1.0
    assert res["dice_masked_positives"]["value"] > 0.85     # 64 px model input blurs the edges
    assert res["dice_siim_style"]["n"] == 4
