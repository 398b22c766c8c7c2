"""Model outputs -> Finding, in the original image's geometry. Pure functions.

Without a calibration, the decision follows the SIIM-ACR 1st-place recipe:
the segmenter's mask is the evidence (pixels above a high threshold must
cover a minimum area; the drawn outline uses a lower threshold), and the
classifier lets the device skip the segmenter on confident negatives
(`skip_segmenter_below`; 0 for the bundled models, whose segmenter always
runs because their calibrated p needs its area). With rule "mask_or_classifier" a
classifier probability at or above its own threshold also raises the alert
(for a site whose classifier earns it; the bundled one does not, see its
card). Every threshold comes from the model manifests, overridable per site.

With a calibration in the segmenter's manifest (`calibration`), the decision
is one threshold on one number: p = sigmoid(sum(coef_i * score_i) + intercept)
over the scores it names (the classifier's logit; log10 of the confident mask
area), fitted out-of-fold in training, and the image is positive when
p >= thresholds.probability. `finding.probability` is then that p, so every
positive shows a higher p than every negative; the classifier's own output
is `finding.classifier_probability`.

Work happens on the model-resolution map and only the results (area,
box, contour) are scaled to the original image: a 3000 px radiograph never
needs a full-size float mask.
"""
from dataclasses import asdict, dataclass
from typing import List, Optional, Tuple

import cv2
import numpy as np

from edge.errors import ManifestError
from edge.inference.manifest import ModelManifest
from edge.settings import DecisionSettings
from edge.types import Finding, Geometry

# Each side must hold at least this share of the outlined area to call it bilateral.
BILATERAL_SHARE = 0.25
MAX_CONTOUR_POINTS = 200


@dataclass(frozen=True)
class Thresholds:
    classifier_positive: float
    skip_segmenter_below: float
    pixel_high: float
    min_area_fraction: float
    pixel_low: float
    gate_segmenter: bool
    classifier_alerts: bool = False      # rule "mask_or_classifier"
    probability: Optional[float] = None  # decision threshold on the calibrated p (with a calibration)
    ood_max: Optional[float] = None      # not-a-chest gate on the classifier's feature distance
    layout_max: Optional[float] = None   # not-a-chest gate on the classifier's layout distance
    polarity_min: Optional[float] = None  # inverted-grey-scale gate on the layout correlation (edge/polarity.py)

    def as_dict(self):
        d = asdict(self)
        d["gate_segmenter"] = bool(d["gate_segmenter"])
        d["classifier_alerts"] = bool(d["classifier_alerts"])
        return {k: v for k, v in d.items() if v is not None}


CALIBRATION_INPUTS = ("classifier_logit", "log_area")


@dataclass(frozen=True)
class Calibration:
    """p = sigmoid(coef . scores + intercept); scores named by `inputs`.
    log_area = log10(max(confident area fraction, area_floor)), the area
    counting only when it reaches min_area_fraction."""
    inputs: Tuple[str, ...]
    coef: Tuple[float, ...]
    intercept: float
    area_floor: float = 1e-4

    def probability(self, classifier_logit: Optional[float], area_fraction: float) -> float:
        z = self.intercept
        for name, c in zip(self.inputs, self.coef):
            if name == "classifier_logit":
                z += c * (classifier_logit if classifier_logit is not None else 0.0)
            else:
                z += c * float(np.log10(max(area_fraction, self.area_floor)))
        return float(sigmoid(np.array([z], np.float32))[0])


def parse_calibration(manifest: ModelManifest) -> Optional[Calibration]:
    raw = manifest.calibration
    if not raw:
        return None
    try:
        if raw.get("method", "logistic") != "logistic":
            raise ValueError("method %r is not 'logistic'" % raw.get("method"))
        cal = Calibration(inputs=tuple(str(v) for v in raw["inputs"]),
                          coef=tuple(float(v) for v in raw["coef"]), intercept=float(raw["intercept"]),
                          area_floor=float(raw.get("area_floor", 1e-4)))
    except (KeyError, TypeError, ValueError) as exc:
        raise ManifestError("%s: calibration: %s" % (manifest.path, exc))
    bad = [n for n in cal.inputs if n not in CALIBRATION_INPUTS]
    if bad or len(cal.inputs) != len(cal.coef) or cal.area_floor <= 0:
        raise ManifestError("%s: calibration needs inputs from %s, one coef each, area_floor > 0"
                            % (manifest.path, CALIBRATION_INPUTS))
    if "probability" not in manifest.thresholds:
        raise ManifestError("%s: a calibration needs thresholds.probability" % manifest.path)
    return cal


def resolve_thresholds(classifier: ModelManifest, segmenter: ModelManifest,
                       decision: DecisionSettings) -> Thresholds:
    """Manifest values, with any per-site override from config winning."""
    def pick(override, manifest, key):
        return float(override) if override is not None else float(manifest.thresholds[key])
    return Thresholds(
        classifier_positive=pick(decision.classifier_positive, classifier, "positive"),
        skip_segmenter_below=pick(decision.skip_segmenter_below, classifier, "skip_segmenter_below"),
        pixel_high=pick(decision.pixel_high, segmenter, "pixel_high"),
        min_area_fraction=pick(decision.min_area_fraction, segmenter, "min_area_fraction"),
        pixel_low=pick(decision.pixel_low, segmenter, "pixel_low"),
        gate_segmenter=bool(decision.gate_segmenter),
        classifier_alerts=decision.rule == "mask_or_classifier",
        probability=(pick(decision.probability, segmenter, "probability")
                     if "probability" in segmenter.thresholds else None),
        ood_max=_optional(classifier, "ood_max"),
        layout_max=_optional(classifier, "layout_max"),
        polarity_min=_optional(classifier, "polarity_min"),
    )


def _optional(manifest: ModelManifest, key: str) -> Optional[float]:
    return float(manifest.thresholds[key]) if key in manifest.thresholds else None


def sigmoid(x: np.ndarray) -> np.ndarray:
    # Split by sign so large logits never overflow exp(): e = exp(-|x|) is exp(-x) where
    # x >= 0 and exp(x) below, so 1/(1+e) and e/(1+e) are the two stable halves. np.where
    # over whole arrays, not masked gathers: the same float32 values, 1/5 of the CPU on a
    # 256 px mask (tests/test_postprocess_exact.py).
    x = np.asarray(x, dtype=np.float32)
    e = np.exp(-np.abs(x))
    d = e + np.float32(1.0)
    return np.where(x >= 0, np.float32(1.0) / d, e / d)


def _column(flat: np.ndarray, manifest: ModelManifest, name: str) -> Optional[float]:
    cols = manifest.output_columns
    if name not in cols:
        return None
    if flat.size != len(cols):
        raise ValueError("%s: classifier output has %d values, the manifest names %d columns"
                         % (manifest.name, flat.size, len(cols)))
    return float(flat[cols.index(name)])


def classifier_logit(raw: np.ndarray, manifest: ModelManifest) -> Optional[float]:
    """The pneumothorax logit, for a classifier whose output_kind is logit."""
    if manifest.output_kind != "logit":
        return None
    flat = np.asarray(raw, dtype=np.float32).reshape(-1)
    if manifest.output_columns:
        return _column(flat, manifest, "pneumothorax")
    return float(flat[-1] - flat[0]) if flat.size == 2 else float(flat[0])


def ood_distance(raw: np.ndarray, manifest: ModelManifest) -> Optional[float]:
    """The not-a-chest feature distance, when the classifier exports one."""
    return _column(np.asarray(raw, dtype=np.float32).reshape(-1), manifest, "ood_distance")


def layout_distance(raw: np.ndarray, manifest: ModelManifest) -> Optional[float]:
    """The not-a-chest layout (thumbnail) distance, when the classifier exports one."""
    return _column(np.asarray(raw, dtype=np.float32).reshape(-1), manifest, "layout_distance")


def classifier_probability(raw: np.ndarray, manifest: ModelManifest) -> float:
    """Single pneumothorax score from the classifier's output (1 value, the
    last of 2 softmax/logit columns, or the manifest's "pneumothorax" column)."""
    flat = np.asarray(raw, dtype=np.float32).reshape(-1)
    if manifest.output_columns:
        if "pneumothorax" not in manifest.output_columns:
            raise ValueError("%s: output_columns has no 'pneumothorax' column" % manifest.name)
        value = np.array([_column(flat, manifest, "pneumothorax")], np.float32)
        return float(sigmoid(value)[0]) if manifest.output_kind == "logit" else float(value[0])
    if flat.size == 2:
        if manifest.output_kind == "logit":
            e = np.exp(flat - flat.max())
            return float(e[1] / e.sum())
        return float(flat[1])
    if flat.size != 1:
        raise ValueError("%s: classifier output has %d values, expected 1 or 2" % (manifest.name, flat.size))
    value = flat[:1]
    return float(sigmoid(value)[0]) if manifest.output_kind == "logit" else float(value[0])


def segmenter_probability(raw: np.ndarray, manifest: ModelManifest, kind: Optional[str] = None) -> np.ndarray:
    """(1, 1, H, W) / (1, H, W) / (H, W) output -> (H, W) probabilities; kind overrides
    the manifest's output_kind ("probability": the joined graph's mask)."""
    plane = np.asarray(raw, dtype=np.float32)
    while plane.ndim > 2:
        if plane.shape[0] != 1:
            raise ValueError("%s: segmenter output shape %s is not a single mask" % (manifest.name, raw.shape))
        plane = plane[0]
    return sigmoid(plane) if (kind or manifest.output_kind) == "logit" else plane


def skip_segmenter(probability: Optional[float], th: Thresholds) -> bool:
    return th.gate_segmenter and probability is not None and probability < th.skip_segmenter_below


def _valid_region(prob: np.ndarray, geo: Geometry) -> Tuple[np.ndarray, int]:
    """The part of the model map that shows the image (letterbox padding removed)."""
    nh, nw = geo.inner_hw
    return prob[geo.inner], nh * nw


def patient_side(mask: np.ndarray) -> Optional[str]:
    """Side of the patient from a mask in the displayed orientation.

    Chest radiographs (PA and AP) are displayed with the patient's right on
    the viewer's left, so the image's left half is the patient's right.
    """
    total = int(np.count_nonzero(mask))
    if total == 0:
        return None
    half = mask.shape[1] // 2
    image_left = int(np.count_nonzero(mask[:, :half]))
    image_right = total - image_left
    if min(image_left, image_right) >= BILATERAL_SHARE * total:
        return "bilateral"
    return "right" if image_left > image_right else "left"


def _contours(mask: np.ndarray, geo: Geometry) -> List[List[Tuple[int, int]]]:
    found = cv2.findContours(mask.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    contours = found[0] if len(found) == 2 else found[1]  # OpenCV 3 returned 3 values
    out = []
    for c in sorted(contours, key=cv2.contourArea, reverse=True):
        eps = 1.0
        while len(c) > MAX_CONTOUR_POINTS:
            c = cv2.approxPolyDP(c, eps, True)
            eps *= 2
        pts = c.reshape(-1, 2).astype(np.float64)
        xs = np.clip(np.round((pts[:, 0] + 0.5) / geo.scale_x), 0, geo.original_hw[1] - 1)
        ys = np.clip(np.round((pts[:, 1] + 0.5) / geo.scale_y), 0, geo.original_hw[0] - 1)
        out.append([(int(x), int(y)) for x, y in zip(xs, ys)])
    return out


def make_finding(probability: Optional[float], seg_prob: Optional[np.ndarray], geo: Optional[Geometry],
                 th: Thresholds, pixel_spacing_mm: Optional[Tuple[float, float]] = None,
                 calibration: Optional[Calibration] = None, logit: Optional[float] = None) -> Finding:
    """Combine the classifier probability and the segmenter map into a Finding.

    seg_prob is the (H, W) probability map in model space (None when the
    segmenter was skipped); geo maps it back to the original image. With a
    calibration, the decision is calibrated p >= th.probability (`logit` is
    the classifier's logit; it defaults to the logit of `probability`).
    """
    reasons = []
    classifier_hit = (th.classifier_alerts and probability is not None
                      and probability >= th.classifier_positive)
    if classifier_hit:
        reasons.append("classifier p=%.3f >= %.3f" % (probability, th.classifier_positive))
    region = None
    high_fraction, seg_max, valid_px = 0.0, None, 0
    if seg_prob is not None and geo is not None:
        region, valid_px = _valid_region(seg_prob, geo)
        seg_max = float(region.max()) if region.size else 0.0
        high_fraction = float(np.count_nonzero(region > th.pixel_high)) / valid_px
    if calibration is not None:
        if logit is None and probability is not None:
            q = min(max(probability, 1e-7), 1 - 1e-7)
            logit = float(np.log(q / (1 - q)))
        area = high_fraction if high_fraction >= th.min_area_fraction else 0.0
        shown = calibration.probability(logit, area)
        cut = th.probability if th.probability is not None else 0.5
        mask_hit = shown >= cut
        if mask_hit:
            reasons.append("p=%.3f >= %.3f (calibrated from %s; confident area %.2f%% > %.2f)"
                           % (shown, cut, "+".join(calibration.inputs), 100 * area, th.pixel_high))
    else:
        shown = probability
        mask_hit = high_fraction >= th.min_area_fraction and high_fraction > 0
        if mask_hit:
            reasons.append("segmenter %.2f%% of image > %.2f (min %.2f%%)"
                           % (100 * high_fraction, th.pixel_high, 100 * th.min_area_fraction))
    positive = mask_hit or classifier_hit
    if region is None:
        return Finding(pneumothorax=positive, probability=shown, seg_max_probability=None,
                       area_px=0, area_fraction=0.0, area_cm2=None, side=None, bbox=None,
                       contours=[], segmenter_skipped=True, reasons=reasons, classifier_probability=probability)

    drawn = (region > th.pixel_low) if positive else np.zeros(region.shape, bool)
    drawn_px = int(np.count_nonzero(drawn))
    if drawn_px == 0:
        return Finding(pneumothorax=positive, probability=shown, seg_max_probability=seg_max,
                       area_px=0, area_fraction=0.0, area_cm2=None if pixel_spacing_mm is None else 0.0,
                       side=None, bbox=None, contours=[], segmenter_skipped=False, reasons=reasons,
                       classifier_probability=probability)

    # Scale model-space pixels to original pixels (letterbox padding already cut away).
    local = Geometry(geo.original_hw, region.shape, geo.scale_x, geo.scale_y, 0, 0)
    px_per_model_px = 1.0 / (geo.scale_x * geo.scale_y)
    area_px = int(round(drawn_px * px_per_model_px))
    area_cm2 = None
    if pixel_spacing_mm is not None:
        area_cm2 = area_px * float(pixel_spacing_mm[0]) * float(pixel_spacing_mm[1]) / 100.0
    ys, xs = np.nonzero(drawn)
    x0 = int(np.floor(xs.min() / geo.scale_x))
    y0 = int(np.floor(ys.min() / geo.scale_y))
    x1 = min(geo.original_hw[1], int(np.ceil((xs.max() + 1) / geo.scale_x)))
    y1 = min(geo.original_hw[0], int(np.ceil((ys.max() + 1) / geo.scale_y)))
    return Finding(
        pneumothorax=positive, probability=shown, seg_max_probability=seg_max,
        area_px=area_px, area_fraction=drawn_px / float(valid_px), area_cm2=area_cm2,
        side=patient_side(drawn), bbox=(x0, y0, x1 - x0, y1 - y0), contours=_contours(drawn, local),
        segmenter_skipped=False, reasons=reasons, classifier_probability=probability)


def contours_to_mask(contours: List[List[Tuple[int, int]]], hw: Tuple[int, int]) -> np.ndarray:
    """Rasterise a Finding's contours into a uint8 0/1 mask of the original size
    (for evaluation and overlays)."""
    mask = np.zeros(hw, np.uint8)
    if contours:
        cv2.fillPoly(mask, [np.asarray(c, np.int32).reshape(-1, 1, 2) for c in contours], 1)
    return mask
