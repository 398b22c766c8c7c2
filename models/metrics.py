"""Pure numpy metrics: ROC-AUC (with ties) and its bootstrap interval,
confusion-matrix figures with Wilson intervals, SIIM-style per-image Dice
and IoU, and the operating-point searches."""
import math
from dataclasses import asdict, dataclass
from typing import Dict, Sequence, Tuple

import numpy as np

# Pneumothorax size strata by mask area as a fraction of the image.
SIZE_BINS = (("small", 0.0, 0.01), ("medium", 0.01, 0.05), ("large", 0.05, 1.01))


def roc_auc(y: Sequence[int], score: Sequence[float]) -> float:
    """Mann-Whitney AUC; ties count one half. NaN when a class is missing."""
    y = np.asarray(y).astype(bool)
    s = np.asarray(score, np.float64)
    n_pos, n_neg = int(y.sum()), int((~y).sum())
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    order = np.argsort(s, kind="mergesort")
    ranks = np.empty(len(s), np.float64)
    sorted_s = s[order]
    i = 0
    while i < len(s):
        j = i
        while j + 1 < len(s) and sorted_s[j + 1] == sorted_s[i]:
            j += 1
        ranks[order[i:j + 1]] = (i + j) / 2.0 + 1.0
        i = j + 1
    return float((ranks[y].sum() - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


def bootstrap_ci(y: Sequence[int], score: Sequence[float], fn=roc_auc, n: int = 1000,
                 alpha: float = 0.05, seed: int = 0) -> Tuple[float, float]:
    """Percentile interval, resampling positives and negatives separately."""
    y = np.asarray(y).astype(int)
    s = np.asarray(score, np.float64)
    pos, neg = np.flatnonzero(y == 1), np.flatnonzero(y == 0)
    if len(pos) == 0 or len(neg) == 0:
        return float("nan"), float("nan")
    rng = np.random.default_rng(seed)
    vals = []
    for _ in range(n):
        idx = np.concatenate([rng.choice(pos, len(pos)), rng.choice(neg, len(neg))])
        vals.append(fn(y[idx], s[idx]))
    lo, hi = np.nanpercentile(vals, [100 * alpha / 2, 100 * (1 - alpha / 2)])
    return float(lo), float(hi)


def roc_curve(y: Sequence[int], score: Sequence[float]) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(fpr, tpr, thresholds) with 'positive if score >= threshold'."""
    y = np.asarray(y).astype(bool)
    s = np.asarray(score, np.float64)
    thr = np.concatenate([[np.inf], np.unique(s)[::-1]])
    tpr = np.array([(s[y] >= t).mean() if y.any() else np.nan for t in thr])
    fpr = np.array([(s[~y] >= t).mean() if (~y).any() else np.nan for t in thr])
    return fpr, tpr, thr


def pr_curve(y: Sequence[int], score: Sequence[float]) -> Tuple[np.ndarray, np.ndarray]:
    y = np.asarray(y).astype(bool)
    s = np.asarray(score, np.float64)
    prec, rec = [], []
    for t in np.unique(s)[::-1]:
        p = s >= t
        prec.append((p & y).sum() / max(1, p.sum()))
        rec.append((p & y).sum() / max(1, y.sum()))
    return np.array(rec), np.array(prec)


def wilson(k: int, n: int, z: float = 1.96) -> Tuple[float, float]:
    if n == 0:
        return float("nan"), float("nan")
    p = k / float(n)
    d = 1 + z * z / n
    c = (p + z * z / (2 * n)) / d
    h = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / d
    return max(0.0, c - h), min(1.0, c + h)


@dataclass
class Confusion:
    tp: int
    fp: int
    tn: int
    fn: int

    def rates(self) -> Dict[str, object]:
        def rate(k, n):
            return {"value": (k / float(n)) if n else float("nan"), "ci95": list(wilson(k, n)), "k": k, "n": n}
        return {"sensitivity": rate(self.tp, self.tp + self.fn), "specificity": rate(self.tn, self.tn + self.fp),
                "ppv": rate(self.tp, self.tp + self.fp), "npv": rate(self.tn, self.tn + self.fn),
                "confusion": asdict(self)}


def confusion(y: Sequence[int], predicted: Sequence[bool]) -> Confusion:
    y = np.asarray(y).astype(bool)
    p = np.asarray(predicted).astype(bool)
    return Confusion(tp=int((y & p).sum()), fp=int((~y & p).sum()), tn=int((~y & ~p).sum()), fn=int((y & ~p).sum()))


def threshold_for_sensitivity(y: Sequence[int], score: Sequence[float], target: float) -> float:
    """The highest threshold whose sensitivity ('score >= t') reaches `target`."""
    y = np.asarray(y).astype(bool)
    s = np.asarray(score, np.float64)
    pos = np.sort(s[y])[::-1]
    if len(pos) == 0:
        raise ValueError("no positives to set a sensitivity target on")
    k = int(math.ceil(target * len(pos)))
    return float(pos[max(0, min(len(pos), k) - 1)])


def dice_iou(pred: np.ndarray, truth: np.ndarray) -> Tuple[float, float]:
    """SIIM-style: both empty scores 1; one empty scores 0."""
    p, t = pred.astype(bool), truth.astype(bool)
    ps, ts = int(p.sum()), int(t.sum())
    if ps == 0 and ts == 0:
        return 1.0, 1.0
    inter = int((p & t).sum())
    return 2.0 * inter / (ps + ts), inter / float(ps + ts - inter)


def gated_masks(probs: np.ndarray, pixel_high: float, min_area_fraction: float, pixel_low: float
                ) -> Tuple[np.ndarray, np.ndarray]:
    """The runtime's rule on (N, H, W) probabilities: an image is positive when
    pixels above pixel_high cover >= min_area_fraction; its drawn mask is
    probs > pixel_low, empty when negative."""
    frac = (probs > pixel_high).mean(axis=(1, 2))
    positive = frac >= max(min_area_fraction, 1e-12)
    masks = (probs > pixel_low) & positive[:, None, None]
    return positive, masks


def seg_scores(probs: np.ndarray, truths: np.ndarray, pixel_high: float, min_area_fraction: float,
               pixel_low: float) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    positive, masks = gated_masks(probs, pixel_high, min_area_fraction, pixel_low)
    d = np.zeros(len(probs))
    j = np.zeros(len(probs))
    for i in range(len(probs)):
        d[i], j[i] = dice_iou(masks[i], truths[i])
    return d, j, positive


def search_seg_triplet(probs: np.ndarray, truths: np.ndarray,
                       highs: Sequence[float] = (0.5, 0.6, 0.7, 0.8, 0.9, 0.95),
                       areas: Sequence[float] = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.02),
                       lows: Sequence[float] = (0.3, 0.4, 0.5, 0.7)) -> Dict[str, float]:
    """The SIIM-ACR winner's triplet, maximising mean per-image Dice on validation."""
    best = None
    for hi in highs:
        for area in areas:
            for lo in lows:
                if lo > hi:
                    continue
                d, _, _ = seg_scores(probs, truths, hi, area, lo)
                score = float(d.mean())
                if best is None or score > best[0] + 1e-9:
                    best = (score, hi, area, lo)
    return {"pixel_high": best[1], "min_area_fraction": best[2], "pixel_low": best[3], "val_mean_dice": best[0]}


def size_stratum(fraction: float) -> str:
    for name, lo, hi in SIZE_BINS:
        if lo <= fraction < hi:
            return name
    return "large"


def mean_ci(values: Sequence[float], n: int = 1000, seed: int = 0) -> Dict[str, object]:
    v = np.asarray(values, np.float64)
    if len(v) == 0:
        return {"value": float("nan"), "ci95": [float("nan"), float("nan")], "n": 0}
    rng = np.random.default_rng(seed)
    boots = [v[rng.integers(0, len(v), len(v))].mean() for _ in range(n)]
    return {"value": float(v.mean()), "ci95": [float(np.percentile(boots, 2.5)), float(np.percentile(boots, 97.5))],
            "n": int(len(v))}


def summarise_seg(dice: np.ndarray, iou: np.ndarray, truth_fraction: np.ndarray) -> Dict[str, object]:
    """Mean Dice/IoU overall, on positives only, on negatives only, and per size stratum."""
    out = {"dice": mean_ci(dice), "iou": mean_ci(iou)}
    pos = truth_fraction > 0
    out["dice_positive"] = mean_ci(dice[pos])
    out["dice_negative"] = mean_ci(dice[~pos])
    for name, lo, hi in SIZE_BINS:
        sel = pos & (truth_fraction >= lo) & (truth_fraction < hi)
        out["dice_" + name] = mean_ci(dice[sel])
    return out
