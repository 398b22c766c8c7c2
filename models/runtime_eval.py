"""The shipped models judged exactly as the appliance runs them.

Each image goes through edge.decode -> edge.pipeline (ONNX Runtime, the
manifests' thresholds, the configured decision rule) -> Finding; the mask is
the alert's own contours rasterised (edge.postprocess.contours_to_mask), so
Dice is what a display would draw. This is the check a hospital repeats on
its own films: `python -m models runtime-eval SPLITS.csv --split test`.
"""
import csv
import json
import os
from typing import Any, Dict, Optional

import cv2
import numpy as np

from edge.decode import decode_file
from edge.inference.manifest import load_manifest
from edge.inference.onnxruntime import OnnxRuntimeBackend
from edge.pipeline import Pipeline
from edge.postprocess import contours_to_mask
from edge.settings import DecisionSettings

from . import metrics as M


def _mask_path(image_path: str) -> Optional[str]:
    """SIIM-style folders keep the mask beside the image: .../images/X.png -> .../masks/X.png."""
    head, name = os.path.split(image_path)
    if os.path.basename(head) != "images":
        return None
    path = os.path.join(os.path.dirname(head), "masks", name)
    return path if os.path.exists(path) else None


def runtime_eval(splits_csv: str, split: str = "test", classifier: str = "models/classifier/classifier.onnx",
                 segmenter: str = "models/segmenter/segmenter.onnx",
                 decision: Optional[DecisionSettings] = None) -> Dict[str, Any]:
    pipe = Pipeline(OnnxRuntimeBackend(load_manifest(classifier)), OnnxRuntimeBackend(load_manifest(segmenter)),
                    decision or DecisionSettings())
    with open(splits_csv, newline="") as fh:
        rows = [r for r in csv.DictReader(fh) if r["split"] == split]
    y, pred, dice, dice_pos = [], [], [], []
    for r in rows:
        image = decode_file(r["image"])
        finding = pipe.run(image).finding
        y.append(int(r["label"]))
        pred.append(bool(finding.pneumothorax))
        mask_file = _mask_path(r["image"])
        if mask_file is not None or int(r["label"]) == 0:
            truth = (cv2.imread(mask_file, cv2.IMREAD_GRAYSCALE) > 127) if mask_file else \
                np.zeros((image.height, image.width), bool)
            d, _ = M.dice_iou(contours_to_mask(finding.contours, (image.height, image.width)), truth)
            dice.append(d)
            if truth.any():
                dice_pos.append(d)
    c = M.confusion(np.array(y), np.array(pred))
    res = {"split": split, "images": len(y), "positives": int(sum(y)), "rule": pipe.thresholds.as_dict(),
           "decision": c.rates(), "dice_siim_style": M.mean_ci(dice), "dice_masked_positives": M.mean_ci(dice_pos)}
    pipe.close()
    return res


def print_summary(res: Dict[str, Any]) -> None:
    d = res["decision"]
    print("%s: %d images, %d positive; rule %s" % (res["split"], res["images"], res["positives"],
                                                  json.dumps(res["rule"], sort_keys=True)))
    for key in ("sensitivity", "specificity"):
        print("  %-11s %.3f [%.2f, %.2f]" % (key, d[key]["value"], d[key]["ci95"][0], d[key]["ci95"][1]))
    for key in ("dice_siim_style", "dice_masked_positives"):
        v = res[key]
        print("  %-22s %.3f [%.2f, %.2f] (n=%d)" % (key, v["value"], v["ci95"][0], v["ci95"][1], v["n"]))
