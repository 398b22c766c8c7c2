"""Postprocess on synthetic probability maps with known area, side and box."""
import numpy as np
import pytest

from edge.inference.manifest import PreprocessSpec
from edge.postprocess import (Thresholds, classifier_probability, contours_to_mask, make_finding,
                              patient_side, sigmoid, skip_segmenter)
from edge.preprocess import plan_geometry

TH = Thresholds(classifier_positive=0.8, skip_segmenter_below=0.1, pixel_high=0.7,
                min_area_fraction=0.01, pixel_low=0.4, gate_segmenter=True)


def stretch_geometry(original_hw, size=(100, 100)):
    return plan_geometry(original_hw, PreprocessSpec(size, 1, (0.0,), (1.0,), "stretch"))


def block_map(size=100, rows=(10, 30), cols=(5, 25), value=0.95):
    prob = np.zeros((size, size), np.float32)
    prob[rows[0]:rows[1], cols[0]:cols[1]] = value
    return prob


def test_block_in_image_left_half_is_patients_right_with_exact_area_and_box():
    # Model map 100x100 for a 1000x2000 (h x w) image: 1 model px = 10 x 20 original px.
    geo = stretch_geometry((1000, 2000))
    f = make_finding(0.5, block_map(), geo, TH, pixel_spacing_mm=(0.1, 0.1))
    assert f.pneumothorax
    assert f.side == "right"
    assert f.area_fraction == pytest.approx(400 / 10000)
    assert f.area_px == 400 * 10 * 20
    assert f.area_cm2 == pytest.approx(400 * 200 * 0.01 / 100)
    assert f.bbox == (5 * 20, 10 * 10, 20 * 20, 20 * 10)
    assert f.seg_max_probability == pytest.approx(0.95)
    assert any("segmenter" in r for r in f.reasons)


def test_block_in_image_right_half_is_patients_left():
    f = make_finding(0.5, block_map(cols=(70, 90)), stretch_geometry((500, 500)), TH)
    assert f.side == "left"


def test_blocks_on_both_sides_are_bilateral():
    prob = block_map(cols=(5, 25)) + block_map(cols=(70, 90))
    assert make_finding(0.5, prob, stretch_geometry((500, 500)), TH).side == "bilateral"


def test_area_below_minimum_is_negative_and_draws_nothing():
    prob = block_map(rows=(10, 15), cols=(10, 15))   # 25 px = 0.25 % < 1 %
    f = make_finding(0.5, prob, stretch_geometry((500, 500)), TH)
    assert not f.pneumothorax
    assert f.area_px == 0 and f.bbox is None and f.side is None and f.contours == []


def test_by_default_the_mask_decides_and_the_classifier_alone_does_not_alert():
    f = make_finding(0.9, np.zeros((100, 100), np.float32), stretch_geometry((500, 500)), TH)
    assert not f.pneumothorax and f.reasons == []


def test_rule_mask_or_classifier_lets_the_classifier_alone_raise_the_alert():
    th = Thresholds(0.8, 0.1, 0.7, 0.01, 0.4, gate_segmenter=True, classifier_alerts=True)
    f = make_finding(0.9, np.zeros((100, 100), np.float32), stretch_geometry((500, 500)), th)
    assert f.pneumothorax
    assert f.reasons == ["classifier p=0.900 >= 0.800"]
    assert not make_finding(0.79, None, None, th).pneumothorax


def test_resolved_thresholds_follow_the_configured_rule():
    from edge.inference.manifest import load_manifest
    from edge.postprocess import resolve_thresholds
    from edge.settings import DecisionSettings
    from tests.tiny_models import write_tiny_models
    import tempfile
    cls, seg = write_tiny_models(tempfile.mkdtemp())
    cm, sm = load_manifest(cls), load_manifest(seg)
    assert not resolve_thresholds(cm, sm, DecisionSettings()).classifier_alerts
    th = resolve_thresholds(cm, sm, DecisionSettings(rule="mask_or_classifier", pixel_high=0.66))
    assert th.classifier_alerts and th.pixel_high == 0.66 and th.min_area_fraction == 0.002


def test_drawn_outline_uses_the_low_threshold():
    prob = block_map(value=0.95)
    prob[30:40, 5:25] = 0.5            # between pixel_low and pixel_high: drawn, not evidence
    f = make_finding(0.5, prob, stretch_geometry((100, 100)), TH)
    assert f.area_px == 400 + 200


def test_no_pixel_spacing_means_no_cm2():
    f = make_finding(0.5, block_map(), stretch_geometry((100, 100)), TH)
    assert f.area_cm2 is None


def test_letterbox_padding_is_not_counted():
    spec = PreprocessSpec((100, 100), 1, (0.0,), (1.0,), "letterbox")
    geo = plan_geometry((500, 1000), spec)          # image occupies rows 25..75
    prob = np.zeros((100, 100), np.float32)
    prob[0:25, :] = 0.99                            # padding only
    f = make_finding(0.5, prob, geo, TH)
    assert not f.pneumothorax and f.area_px == 0


@pytest.mark.parametrize("original_hw", [(500, 1000), (1000, 500), (333, 1000), (100, 100)])
def test_the_letterbox_inner_region_is_where_preprocess_put_the_image(original_hw):
    from edge.preprocess import map_to_original, resize_to_input
    from edge.resolution import to_original
    spec = PreprocessSpec((100, 100), 1, (0.0,), (1.0,), "letterbox")
    plane, geo = resize_to_input(np.ones(original_hw, np.float32), spec)
    rows, cols = np.nonzero(plane)
    assert geo.inner == (slice(rows.min(), rows.max() + 1), slice(cols.min(), cols.max() + 1))
    assert geo.inner_hw == (rows.max() + 1 - rows.min(), cols.max() + 1 - cols.min())
    assert map_to_original(plane, geo).shape == original_hw and map_to_original(plane, geo).min() == 1.0
    # the same input described against a film decoded at half size keeps its inner region
    assert to_original(geo, (original_hw[0] * 2, original_hw[1] * 2)).inner == geo.inner


def test_contours_rasterise_back_to_the_box():
    geo = stretch_geometry((400, 400))
    f = make_finding(0.5, block_map(), geo, TH)
    mask = contours_to_mask(f.contours, (400, 400))
    x, y, w, h = f.bbox
    inside = mask[y:y + h, x:x + w].mean()
    assert inside > 0.9
    assert mask.sum() == pytest.approx(f.area_px, rel=0.1)


def test_skipped_segmenter_gives_classifier_only_finding():
    assert skip_segmenter(0.05, TH)
    assert not skip_segmenter(0.5, TH)
    f = make_finding(0.05, None, None, TH)
    assert f.segmenter_skipped and not f.pneumothorax and f.seg_max_probability is None


def test_gate_off_never_skips():
    th = Thresholds(0.8, 0.1, 0.7, 0.01, 0.4, gate_segmenter=False)
    assert not skip_segmenter(0.0, th)


def test_sigmoid_is_stable_for_large_logits():
    out = sigmoid(np.array([-1000.0, 0.0, 1000.0]))
    assert np.all(np.isfinite(out))
    assert out.tolist() == pytest.approx([0.0, 0.5, 1.0])


def test_patient_side_of_empty_mask_is_none():
    assert patient_side(np.zeros((10, 10), bool)) is None


class _M:
    name, output_kind, output_columns = "m", "logit", []


def test_classifier_probability_logit_and_two_class_softmax():
    assert classifier_probability(np.array([[0.0]]), _M) == pytest.approx(0.5)
    assert classifier_probability(np.array([[0.0, np.log(3.0)]]), _M) == pytest.approx(0.75)


# --- calibrated decision -------------------------------------------------------------------

from dataclasses import replace as _replace  # noqa: E402

from edge.errors import ManifestError  # noqa: E402
from edge.postprocess import (Calibration, classifier_logit, layout_distance, ood_distance,  # noqa: E402
                              parse_calibration)

CAL = Calibration(inputs=("classifier_logit", "log_area"), coef=(0.5, 1.5), intercept=3.0, area_floor=1e-4)
TH_CAL = _replace(TH, probability=0.4, min_area_fraction=0.001)


def test_calibrated_p_is_the_formula_and_the_decision_is_p_at_or_above_the_threshold():
    geo = stretch_geometry((1000, 1000))
    f = make_finding(0.3, block_map(), geo, TH_CAL, calibration=CAL)
    logit = np.log(0.3 / 0.7)
    assert f.probability == pytest.approx(1 / (1 + np.exp(-(0.5 * logit + 1.5 * np.log10(0.04) + 3.0))), abs=1e-5)
    assert f.classifier_probability == 0.3
    assert f.pneumothorax == (f.probability >= 0.4)


def test_decisions_agree_with_p_across_areas_and_classifier_scores():
    geo = stretch_geometry((500, 500))
    rows = []
    for side in (0, 1, 2, 3, 5, 8, 13, 21, 34):
        for cls in (0.01, 0.2, 0.5, 0.9, 0.999):
            f = make_finding(cls, block_map(rows=(10, 10 + side), cols=(10, 10 + side)), geo, TH_CAL,
                             calibration=CAL)
            rows.append((f.probability, f.pneumothorax))
            assert f.pneumothorax == (f.probability >= TH_CAL.probability)
    assert {d for _, d in rows} == {True, False}
    positives = [p for p, d in rows if d]
    negatives = [p for p, d in rows if not d]
    assert min(positives) > max(negatives)


def test_area_below_min_area_counts_as_none_and_a_skipped_segmenter_uses_the_floor():
    geo = stretch_geometry((500, 500))
    tiny = make_finding(0.5, block_map(rows=(10, 12), cols=(10, 12)), geo, _replace(TH_CAL, min_area_fraction=0.01),
                        calibration=CAL)
    skipped = make_finding(0.5, None, None, TH_CAL, calibration=CAL)
    assert tiny.probability == pytest.approx(skipped.probability)
    assert skipped.segmenter_skipped and skipped.probability == pytest.approx(
        1 / (1 + np.exp(-(1.5 * -4 + 3.0))), abs=1e-5)


class _Manifest:
    def __init__(self, calibration, thresholds, output_columns=(), output_kind="logit"):
        self.calibration, self.thresholds, self.path, self.name = calibration, thresholds, "x.json", "x"
        self.output_columns, self.output_kind = list(output_columns), output_kind


def test_parse_calibration_checks_what_the_manifest_says():
    good = {"method": "logistic", "inputs": ["log_area"], "coef": [1.0], "intercept": 0.0}
    assert parse_calibration(_Manifest({}, {})) is None
    assert parse_calibration(_Manifest(good, {"probability": 0.5})).inputs == ("log_area",)
    for bad, th in ((dict(good, inputs=["age"]), {"probability": 0.5}),
                    (dict(good, coef=[1.0, 2.0]), {"probability": 0.5}),
                    (dict(good, method="isotonic"), {"probability": 0.5}),
                    ({"inputs": ["log_area"]}, {"probability": 0.5}),
                    (good, {})):
        with pytest.raises(ManifestError):
            parse_calibration(_Manifest(bad, th))


def test_named_output_columns():
    m = _Manifest({}, {}, output_columns=["pneumothorax", "ood_distance"])
    raw = np.array([[2.0, 7.5]], np.float32)
    assert classifier_logit(raw, m) == 2.0 and ood_distance(raw, m) == 7.5
    assert classifier_probability(raw, m) == pytest.approx(1 / (1 + np.exp(-2.0)))
    assert ood_distance(raw, _Manifest({}, {})) is None
    with pytest.raises(ValueError):
        classifier_probability(np.array([[1.0, 2.0, 3.0]]), m)
    both = _Manifest({}, {}, output_columns=["pneumothorax", "ood_distance", "layout_distance"])
    raw3 = np.array([[2.0, 7.5, 3.25]], np.float32)
    assert ood_distance(raw3, both) == 7.5 and layout_distance(raw3, both) == 3.25
    assert layout_distance(raw, m) is None
