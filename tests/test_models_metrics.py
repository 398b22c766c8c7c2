"""Metrics against values worked out by hand."""
import numpy as np
import pytest

from models import metrics as M


def test_auc_counts_ties_as_half():
    # pairs (pos, neg): (0.8,0.1) win, (0.8,0.4) win, (0.4,0.1) win, (0.4,0.4) tie -> 3.5/4
    assert M.roc_auc([1, 1, 0, 0], [0.8, 0.4, 0.1, 0.4]) == pytest.approx(0.875)
    assert M.roc_auc([1, 0], [0.2, 0.9]) == 0.0
    assert np.isnan(M.roc_auc([1, 1], [0.2, 0.9]))


def test_bootstrap_interval_brackets_the_estimate():
    rng = np.random.default_rng(0)
    y = np.r_[np.ones(30), np.zeros(70)].astype(int)
    s = y * 0.8 + rng.random(100)
    lo, hi = M.bootstrap_ci(y, s, n=300)
    assert lo <= M.roc_auc(y, s) <= hi and hi - lo > 0.01


def test_confusion_rates():
    c = M.confusion([1, 1, 1, 0, 0, 0, 0], [True, True, False, True, False, False, False])
    r = c.rates()
    assert (c.tp, c.fn, c.fp, c.tn) == (2, 1, 1, 3)
    assert r["sensitivity"]["value"] == pytest.approx(2 / 3)
    assert r["specificity"]["value"] == pytest.approx(3 / 4)
    assert r["ppv"]["value"] == pytest.approx(2 / 3)
    assert r["npv"]["value"] == pytest.approx(3 / 4)
    lo, hi = r["sensitivity"]["ci95"]
    assert lo < 2 / 3 < hi


def test_threshold_for_sensitivity_is_the_highest_reaching_the_target():
    y = [1, 1, 1, 1, 0, 0]
    s = [0.9, 0.7, 0.5, 0.2, 0.6, 0.1]
    assert M.threshold_for_sensitivity(y, s, 0.75) == 0.5     # 3 of 4 positives >= 0.5
    assert M.threshold_for_sensitivity(y, s, 1.0) == 0.2


def test_dice_siim_style():
    empty = np.zeros((4, 4), bool)
    a = np.zeros((4, 4), bool)
    a[:2, :2] = True                     # 4 px
    b = np.zeros((4, 4), bool)
    b[:2, :1] = True                     # 2 px, inside a
    assert M.dice_iou(empty, empty) == (1.0, 1.0)
    assert M.dice_iou(a, empty) == (0.0, 0.0)
    assert M.dice_iou(empty, a) == (0.0, 0.0)
    d, j = M.dice_iou(a, b)
    assert d == pytest.approx(2 * 2 / 6) and j == pytest.approx(2 / 4)


def test_gating_needs_min_area_above_high_and_draws_at_low():
    p = np.zeros((2, 10, 10), np.float32)
    p[0, :2, :] = 0.95                   # 20 % above high
    p[0, 2, :] = 0.45                    # drawn with the low threshold
    p[1, 0, 0] = 0.95                    # 1 % above high: below the area floor
    positive, masks = M.gated_masks(p, pixel_high=0.9, min_area_fraction=0.05, pixel_low=0.4)
    assert positive.tolist() == [True, False]
    assert masks[0].sum() == 30 and masks[1].sum() == 0


def test_triplet_search_prefers_quiet_negatives():
    truth = np.zeros((2, 10, 10), np.uint8)
    truth[0, :3] = 1
    p = np.zeros((2, 10, 10), np.float32)
    p[0, :3] = 0.95
    p[1, 0, :2] = 0.95                   # 2 % speckle on the negative
    t = M.search_seg_triplet(p, truth, highs=(0.9,), areas=(0.01, 0.05), lows=(0.5,))
    assert t["min_area_fraction"] == 0.05 and t["val_mean_dice"] == 1.0


def test_size_strata_summary():
    dice = np.array([1.0, 0.5, 0.2, 0.8])
    frac = np.array([0.0, 0.005, 0.03, 0.08])
    s = M.summarise_seg(dice, dice, frac)
    assert s["dice_negative"]["value"] == 1.0
    assert s["dice_small"]["value"] == 0.5 and s["dice_medium"]["value"] == 0.2 and s["dice_large"]["value"] == 0.8
