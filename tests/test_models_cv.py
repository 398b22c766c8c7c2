"""The cross-validation machinery's pure parts: logistic calibration, ECE,
the not-a-chest statistics, grouped folds, the decision threshold."""
import numpy as np
import pytest

from models.calibration import apply_logistic, ece, fit_logistic, reliability
from models.cvdata import CvSample, assign_folds
from models.cvreport import cross_fit, decision_threshold, threshold_for, threshold_for_specificity
from models.ood import distance, fit_gaussian, held_out_distances, ledoit_wolf


def test_logistic_fit_recovers_known_parameters_and_gives_a_calibrated_p():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(4000, 2))
    p_true = 1 / (1 + np.exp(-(1.5 * x[:, 0] - 0.7 * x[:, 1] - 1.0)))
    y = (rng.random(4000) < p_true).astype(int)
    coef, b = fit_logistic(x, y, l2=1e-3)
    np.testing.assert_allclose(coef, [1.5, -0.7], atol=0.15)
    assert b == pytest.approx(-1.0, abs=0.15)
    p = apply_logistic(x, coef, b)
    assert ece(y, p) < 0.03
    assert sum(r["n"] for r in reliability(y, p)) == 4000


def test_separable_data_gives_finite_parameters():
    x = np.array([[0.0], [1.0], [2.0], [3.0]])
    coef, b = fit_logistic(x, [0, 0, 1, 1], l2=1.0)
    assert np.all(np.isfinite(coef)) and np.isfinite(b) and coef[0] > 0


def test_ece_of_a_confidently_wrong_p_is_large():
    y = np.array([0, 0, 1, 1])
    assert ece(y, np.array([0.95, 0.95, 0.05, 0.05])) == pytest.approx(0.95)
    assert ece(y, np.array([0.0, 0.0, 1.0, 1.0])) == 0.0


def test_mahalanobis_distance_is_about_one_inside_and_large_outside():
    rng = np.random.default_rng(1)
    a = rng.normal(size=(50, 50))
    train = rng.normal(size=(400, 50)) @ a
    mean, w, shrink = fit_gaussian(train)
    assert 0.0 <= shrink <= 1.0
    inside = distance(rng.normal(size=(100, 50)) @ a, mean, w)
    outside = distance(4 * rng.normal(size=(100, 50)) @ a, mean, w)     # 4x the spread of any film
    assert 0.7 < np.median(inside) < 1.5 and outside.min() > inside.max()
    held = held_out_distances(train, np.arange(400) % 5)
    assert held.mean() > distance(train, mean, w).mean()       # statistics that saw a film flatter it
    cov, _ = ledoit_wolf(train)
    assert np.all(np.linalg.eigvalsh(cov) > 0)


def _s(group, stratum):
    return CvSample(image=group, mask=None, label=int(stratum != "nih_neg"), nih_label=0, source="nih",
                    group=group, stratum=stratum)


def test_folds_keep_patients_together_and_spread_every_stratum():
    samples = [_s("p%d" % (i // 2), "nih_neg") for i in range(100)] + \
        [_s("q%d" % i, "masked_pos") for i in range(10)] + [_s("r%d" % i, "nih_pos") for i in range(5)]
    fold = assign_folds(samples, 5, seed=0)
    for g in {s.group for s in samples}:
        assert len({f for s, f in zip(samples, fold) if s.group == g}) == 1
    for stratum, n in (("masked_pos", 2), ("nih_pos", 1)):
        counts = np.bincount([f for s, f in zip(samples, fold) if s.stratum == stratum], minlength=5)
        assert counts.tolist() == [n] * 5
    assert np.array_equal(fold, assign_folds(samples, 5, seed=0))


def test_threshold_keeps_the_target_sensitivity_midway_to_the_next_score():
    p = np.array([0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3, 0.2])
    pos = np.array([1, 1, 1, 0, 1, 0, 0, 0], bool)
    t = threshold_for(p, pos, ~pos, 0.75)          # 3 of 4 positives: down to 0.7
    assert t == pytest.approx(0.65)
    assert (p[pos] >= t).mean() >= 0.75


def test_specificity_threshold_is_the_lowest_keeping_the_floor_midway_to_the_next_score():
    p = np.array([0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0, 0.35])
    neg = np.array([1] * 10 + [0], bool)
    t = threshold_for_specificity(p, neg, ~neg, 0.8)     # 8 of 10 negatives below t: above 0.8
    assert t == pytest.approx(0.85)
    assert (p[neg] < t).mean() >= 0.8
    assert threshold_for_specificity(p, neg, ~neg, 1.0) == float("inf")


def test_the_decision_spends_specificity_above_the_floor_on_sensitivity_never_the_reverse():
    stratum = np.array(["masked_pos"] * 4 + ["nih_neg"] * 10 + ["nih_pos"] * 2)
    sel = np.ones(len(stratum), bool)
    # positives well above most negatives: the 0.90-sensitivity threshold alone would sit at 0.85,
    # specificity 1.0; the floor 0.8 lets the threshold fall to just above the 8th negative
    p = np.array([0.95, 0.9, 0.88, 0.86] + [0.05 * i for i in range(1, 11)] + [0.7, 0.3])
    t_old = decision_threshold(p, sel, stratum, floor=1.0)
    t_new = decision_threshold(p, sel, stratum, floor=0.8)
    assert t_old == pytest.approx(threshold_for(p, stratum == "masked_pos", stratum != "masked_pos", 0.9))
    assert t_new < t_old and (p[stratum == "nih_neg"] < t_new).mean() >= 0.8
    assert (p[stratum == "nih_pos"] >= t_new).sum() > (p[stratum == "nih_pos"] >= t_old).sum()
    # negatives scoring above the positives: the floor may not cost masked sensitivity
    p_hard = np.array([0.3, 0.28, 0.26, 0.24] + [0.5] * 10 + [0.1, 0.1])
    assert decision_threshold(p_hard, sel, stratum, floor=0.8) == pytest.approx(
        decision_threshold(p_hard, sel, stratum, floor=1.0))


def test_cross_fit_never_uses_a_folds_own_labels():
    x = np.arange(20, dtype=float)[:, None]
    y = (np.arange(20) >= 10).astype(int)
    fold = np.arange(20) % 2
    flipped = y.copy()
    flipped[fold == 0] = 1 - flipped[fold == 0]
    a, b = cross_fit(x, y, fold), cross_fit(x, flipped, fold)
    # fold 1's p depends only on fold 0's labels: flipping fold 0 changes fold 1, not fold 0
    np.testing.assert_allclose(a[fold == 0], b[fold == 0])
    assert not np.allclose(a[fold == 1], b[fold == 1])
