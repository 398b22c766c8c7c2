"""Evaluate a trained run: operating points chosen on validation, figures on
validation and on the held-out test split (never tuned on).

Writes <run>/eval.json (read by export and report) and <run>/preds-<split>.npz.
Classifier: ROC-AUC with a bootstrap interval; the triage threshold is the
highest one reaching the sensitivity target on validation; sensitivity,
specificity, PPV, NPV (Wilson intervals) and the confusion matrix at it.
Segmenter: the SIIM triplet (pixel_high, min_area_fraction, pixel_low) that
maximises mean per-image Dice on validation; per-image Dice/IoU SIIM-style
(empty on empty = 1) at the original image size, stratified by size; the
image-level decision the runtime makes with the same triplet.
"""
import json
import os
from typing import Any, Dict, List, Tuple

import cv2
import numpy as np
import torch

from edge.preprocess import map_to_original, plan_geometry

from . import data as D
from . import metrics as M
from .train import build_samples, load_arrays, load_trained, predict, preprocess_spec, sigmoid


def _auc_block(y: np.ndarray, score: np.ndarray, n_boot: int) -> Dict[str, Any]:
    lo, hi = M.bootstrap_ci(y, score, M.roc_auc, n=n_boot)
    return {"value": M.roc_auc(y, score), "ci95": [lo, hi], "n_positive": int(y.sum()),
            "n_negative": int((1 - y).sum())}


def _at(y: np.ndarray, score: np.ndarray, thr: float) -> Dict[str, Any]:
    out = M.confusion(y, score >= thr).rates()
    out["threshold"] = float(thr)
    return out


def evaluate_classifier(run_dir: str, net, cfg, arrays, sensitivity_target: float, n_boot: int) -> Dict[str, Any]:
    spec = preprocess_spec(cfg)
    res = {"task": "classification"}  # type: Dict[str, Any]
    scores = {}
    for split in ("val", "test"):
        a = arrays.subset(split)
        if not len(a.labels):
            continue
        p = sigmoid(predict(net, a.planes, spec, torch.device("cpu")))
        scores[split] = (a, p)
        np.savez(os.path.join(run_dir, "preds-%s.npz" % split), prob=p, label=a.labels,
                 key=np.array([s.key for s in a.samples]), source=np.array([s.source for s in a.samples]))
    a, p = scores["val"]
    positive = M.threshold_for_sensitivity(a.labels, p, sensitivity_target)
    # Skipping the segmenter must not lose positives: the highest threshold
    # that kept every validation positive, halved for margin.
    skip = min(positive, M.threshold_for_sensitivity(a.labels, p, 1.0)) * 0.5
    res["thresholds"] = {"positive": positive, "skip_segmenter_below": skip}
    res["sensitivity_target"] = sensitivity_target
    for split, (a, p) in scores.items():
        block = {"auc": _auc_block(a.labels, p, n_boot), "at_positive": _at(a.labels, p, positive),
                 "at_skip": _at(a.labels, p, skip)}
        nih = np.array([s.source != "siim" for s in a.samples])
        if nih.any() and (a.labels[nih] == 1).any():
            block["auc_nih_positives_only"] = _auc_block(a.labels[nih], p[nih], n_boot)
        res[split] = block
    return res


def _full_res_dice(samples: List[D.Sample], probs: np.ndarray, spec, positive: np.ndarray, pixel_low: float
                   ) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Dice/IoU at the original image size, mapping the model-space mask back
    the way the runtime does (map_to_original)."""
    dice, iou, frac = np.zeros(len(samples)), np.zeros(len(samples)), np.zeros(len(samples))
    for i, s in enumerate(samples):
        if not s.has_mask:
            # negative without a mask image: empty truth; resolution does not matter
            dice[i], iou[i] = M.dice_iou(positive[i] & (probs[i] > pixel_low), np.zeros((1, 1), bool))
            continue
        truth_px = D.load_pixels(s.image)
        truth = D.load_mask(s, truth_px.shape[:2]) > 0.5
        geo = plan_geometry(truth.shape, spec)
        full = map_to_original(probs[i].astype(np.float32), geo, cv2.INTER_LINEAR)
        pred = (full > pixel_low) & bool(positive[i])
        dice[i], iou[i] = M.dice_iou(pred, truth)
        frac[i] = float(truth.mean())
    return dice, iou, frac


def evaluate_segmenter(run_dir: str, net, cfg, arrays, n_boot: int) -> Dict[str, Any]:
    spec = preprocess_spec(cfg)
    res = {"task": "segmentation"}  # type: Dict[str, Any]
    probs = {}
    for split in ("val", "test"):
        a = arrays.subset(split)
        if len(a.labels):
            probs[split] = (a, sigmoid(predict(net, a.planes, spec, torch.device("cpu"))).astype(np.float32))
    a, p = probs["val"]
    trip = M.search_seg_triplet(p, a.masks)
    res["thresholds"] = {k: trip[k] for k in ("pixel_high", "min_area_fraction", "pixel_low")}
    res["search"] = {"val_mean_dice_model_space": trip["val_mean_dice"]}
    hi, area, lo = trip["pixel_high"], trip["min_area_fraction"], trip["pixel_low"]
    for split, (a, p) in probs.items():
        positive, _ = M.gated_masks(p, hi, area, lo)
        dice, iou, frac = _full_res_dice(a.samples, p, spec, positive, lo)
        score = (p > hi).mean(axis=(1, 2))       # the runtime's gating quantity
        block = M.summarise_seg(dice, iou, frac)
        block["image_level"] = M.confusion(a.labels, positive).rates()
        block["image_auc_area_above_high"] = _auc_block(a.labels, score, n_boot)
        block["image_auc_max_prob"] = _auc_block(a.labels, p.reshape(len(p), -1).max(1), n_boot)
        res[split] = block
        np.savez_compressed(os.path.join(run_dir, "preds-%s.npz" % split), prob=p.astype(np.float16),
                            label=a.labels, dice=dice, truth_fraction=frac, positive=positive,
                            key=np.array([s.key for s in a.samples]), source=np.array([s.source for s in a.samples]))
    return res


def data_summary(arrays) -> Dict[str, Any]:
    out = {}
    for split in ("train", "val", "test"):
        a = arrays.subset(split)
        by_src = {}
        for s, y in zip(a.samples, a.labels):
            d = by_src.setdefault(s.source, {"positive": 0, "negative": 0})
            d["positive" if y else "negative"] += 1
        out[split] = {"images": len(a.labels), "positive": int(a.labels.sum()),
                      "patients": len({s.group for s in a.samples}), "by_source": by_src}
    return out


def evaluate_run(run_dir: str, sensitivity_target: float = 0.9, n_boot: int = 1000) -> Dict[str, Any]:
    torch.set_num_threads(2)
    net, cfg = load_trained(run_dir)
    samples = build_samples(cfg)
    arrays = load_arrays(samples, preprocess_spec(cfg), cfg["data"].get("cache_dir"), progress=False)
    if cfg["task"] == "classification":
        res = evaluate_classifier(run_dir, net, cfg, arrays, sensitivity_target, n_boot)
    else:
        res = evaluate_segmenter(run_dir, net, cfg, arrays, n_boot)
    ck = torch.load(os.path.join(run_dir, "best.pt"), map_location="cpu", weights_only=False)
    res["best_epoch"] = int(ck["epoch"])
    res["data"] = data_summary(arrays)
    hist = os.path.join(run_dir, "history.csv")
    if os.path.exists(hist):
        import csv
        with open(hist, newline="") as fh:
            rows = list(csv.DictReader(fh))
        res["epochs_run"] = len(rows)
        res["train_minutes"] = float(rows[-1]["minutes"]) if rows else 0.0
    with open(os.path.join(run_dir, "eval.json"), "w") as fh:
        json.dump(res, fh, indent=2, default=float)
    print(json.dumps({k: res[k] for k in ("thresholds",)}, indent=1))
    for split in ("val", "test"):
        if split in res:
            b = res[split]
            if "auc" in b:
                print("%s AUC %.3f [%.3f, %.3f]  sens %.3f spec %.3f at %.3f" % (
                    split, b["auc"]["value"], b["auc"]["ci95"][0], b["auc"]["ci95"][1],
                    b["at_positive"]["sensitivity"]["value"], b["at_positive"]["specificity"]["value"],
                    b["at_positive"]["threshold"]))
            else:
                print("%s Dice %.3f [%.3f, %.3f] (positives %.3f)  image sens %.3f spec %.3f" % (
                    split, b["dice"]["value"], b["dice"]["ci95"][0], b["dice"]["ci95"][1],
                    b["dice_positive"]["value"], b["image_level"]["sensitivity"]["value"],
                    b["image_level"]["specificity"]["value"]))
    return res
