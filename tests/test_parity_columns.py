"""Parity of a variant against FP32: with named output columns only the
pneumothorax logit becomes a probability; the not-a-chest distances are
compared raw (a sigmoid of a distance near 1 would report their noise as a
probability change)."""
import numpy as np

from edge.parity import compare, probability_part

COLUMNS = ["pneumothorax", "ood_distance", "layout_distance"]


def test_a_shifted_distance_is_a_raw_difference_not_a_probability_one():
    ref = [np.array([[-2.0, 1.0, 2.0]], np.float32)]
    got = [np.array([[-2.0, 1.3, 2.0]], np.float32)]
    named = compare(ref, got, "logit", "classification", columns=COLUMNS)
    assert named.max_prob_diff == 0.0 and abs(named.max_abs_diff - 0.3) < 1e-6
    unnamed = compare(ref, got, "logit", "classification")          # the old reading: every value a logit
    assert unnamed.max_prob_diff > 0.05


def test_a_moved_logit_still_counts_as_a_probability_change():
    ref = [np.array([[0.0, 1.0, 2.0]], np.float32)]
    got = [np.array([[1.0, 1.0, 2.0]], np.float32)]
    r = compare(ref, got, "logit", "classification", columns=COLUMNS)
    assert abs(r.max_prob_diff - (1 / (1 + np.exp(-1.0)) - 0.5)) < 1e-6


def test_outputs_without_a_pneumothorax_column_are_read_whole():
    x = np.arange(6, dtype=np.float32).reshape(1, 1, 2, 3)
    assert probability_part(x) is x and probability_part(x, ["a", "b"]) is x
