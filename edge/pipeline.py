"""One Image -> Result. No folders, no MQTT: easy to test and to benchmark.

`run` = `infer(prepare(image))`. The split lets the appliance (edge/app.py)
prepare the next image on its intake thread while the models run this one.
"""
import time
from dataclasses import dataclass, field
from typing import Any, Dict, Optional, Tuple

import numpy as np

from edge.inference.backend import Backend
from edge import polarity
from edge.gate import check_body_part, check_ood, check_polarity
from edge.postprocess import (Thresholds, classifier_logit, classifier_probability, layout_distance, make_finding,
                              ood_distance, parse_calibration, resolve_thresholds, segmenter_probability,
                              skip_segmenter)
from edge.preprocess import preprocess
from edge.resolution import to_original
from edge.settings import DecisionSettings
from edge.types import Geometry, Image, Result


@dataclass
class Prepared:
    """An image with its model inputs made (the segmenter's may be deferred)."""
    image: Image
    cls_in: np.ndarray
    cls_geo: Geometry
    seg_in: Optional[np.ndarray] = None
    seg_geo: Optional[Geometry] = None
    timings_ms: Dict[str, float] = field(default_factory=dict)


def _model_input(image: Image, backend: Backend) -> Tuple[np.ndarray, Geometry]:
    """The model's tensor, with its Geometry against the original film's size."""
    tensor, geo = preprocess(image.pixels, backend.manifest.preprocessing)
    return tensor, to_original(geo, image.original_hw)


class Pipeline:
    def __init__(self, classifier: Backend, segmenter: Backend, decision: Optional[DecisionSettings] = None,
                 backend_reason: str = "", graphs: str = ""):
        for backend, task in ((classifier, "classification"), (segmenter, "segmentation")):
            if backend.manifest.task != task:
                raise ValueError("%s is a %s model, expected %s"
                                 % (backend.manifest.name, backend.manifest.task, task))
        self.classifier = classifier
        self.segmenter = segmenter
        self.backend_reason = backend_reason      # why this backend was chosen (for the status)
        # the classifier's session is the joined graph: one call gives the mask too (edge.inference.one_graph)
        self.one_graph = bool(classifier.provides_mask)
        self.graphs = graphs or ("one graph" if self.one_graph else "two graphs")   # and why (for the status)
        self.thresholds = resolve_thresholds(classifier.manifest, segmenter.manifest,
                                             decision or DecisionSettings())
        self.calibration = parse_calibration(segmenter.manifest)
        self.models = [classifier.info(), segmenter.info()]
        self._same_input = classifier.manifest.preprocessing == segmenter.manifest.preprocessing

    def prepare(self, image: Image, segmenter_input: bool = True) -> Prepared:
        """Make the model inputs. `segmenter_input=False` defers the
        segmenter's to `infer`, which then makes it only if the gate opens
        (the right choice when nothing runs alongside)."""
        t0 = time.perf_counter()
        cls_in, cls_geo = _model_input(image, self.classifier)
        seg_in = seg_geo = None
        if self._same_input:
            seg_in, seg_geo = cls_in, cls_geo
        elif segmenter_input:
            seg_in, seg_geo = _model_input(image, self.segmenter)
        return Prepared(image, cls_in, cls_geo, seg_in, seg_geo,
                        {"preprocess_ms": (time.perf_counter() - t0) * 1000.0})

    def infer(self, prepared: Prepared, thresholds: Optional[Thresholds] = None) -> Result:
        """Run the models; `prepared` is only read (a deferred segmenter
        input is made here and dropped with the call). Raises NotAChestRadiograph (a DecodeError: the
        file is rejected with that code) for a DICOM whose BodyPartExamined
        names another body part, or when the classifier's feature or layout
        distance is past the manifest's ood_max / layout_max; InvertedGreyscale
        when the input's layout correlation is below polarity_min."""
        check_body_part(prepared.image.body_part_examined)
        th = thresholds or self.thresholds
        timings = dict(prepared.timings_ms)
        timings.setdefault("preprocess_ms", 0.0)
        clock = time.perf_counter

        t1 = clock()
        joined_mask = None
        if self.one_graph:
            raw, joined_mask = self.classifier.run_with_mask(prepared.cls_in)
        else:
            raw = self.classifier.run(prepared.cls_in)
        probability = classifier_probability(raw, self.classifier.manifest)
        logit = classifier_logit(raw, self.classifier.manifest)
        if "hflip" in self.classifier.manifest.tta and logit is not None:
            # mirrored input too, logits averaged (the not-a-chest distance stays the unmirrored one's)
            mirrored = self.classifier.run(_hflip(prepared.cls_in))
            logit = 0.5 * (logit + classifier_logit(mirrored, self.classifier.manifest))
            probability = float(1.0 / (1.0 + np.exp(-logit)))
        t2 = clock()
        timings["classify_ms"] = (t2 - t1) * 1000.0
        check_ood(ood_distance(raw, self.classifier.manifest), th.ood_max)
        check_ood(layout_distance(raw, self.classifier.manifest), th.layout_max, "layout")
        # after the not-a-chest gate, which owns the reason for a photograph or an MR (their
        # correlation with a chest layout says nothing), before the finding is made
        if th.polarity_min is not None:
            check_polarity(polarity.correlation(prepared.cls_in), th.polarity_min)

        seg_prob = geo = None
        if joined_mask is not None:
            # the classifier's call made it (the same input: one_graph needs equal preprocessing);
            # segment_ms stays 0, classify_ms is both heads' time
            if not skip_segmenter(probability, th):
                seg_prob, geo = segmenter_probability(joined_mask, self.segmenter.manifest, kind="probability"), \
                    prepared.cls_geo
            timings["segment_ms"] = 0.0
        elif not skip_segmenter(probability, th):
            t3 = clock()
            seg_in, geo = prepared.seg_in, prepared.seg_geo
            if seg_in is None:          # deferred by prepare(): made now, not stored on `prepared`
                seg_in, geo = _model_input(prepared.image, self.segmenter)
            t4 = clock()
            seg_prob = segmenter_probability(self.segmenter.run(seg_in), self.segmenter.manifest)
            if "hflip" in self.segmenter.manifest.tta:
                mirrored = segmenter_probability(self.segmenter.run(_hflip(seg_in)), self.segmenter.manifest)
                seg_prob = 0.5 * (seg_prob + mirrored[:, ::-1])
            t5 = clock()
            timings["preprocess_ms"] += (t4 - t3) * 1000.0
            timings["segment_ms"] = (t5 - t4) * 1000.0
        else:
            timings["segment_ms"] = 0.0

        t6 = clock()
        finding = make_finding(probability, seg_prob, geo, th, prepared.image.pixel_spacing_mm,
                               self.calibration, logit)
        timings["postprocess_ms"] = (clock() - t6) * 1000.0
        return Result(finding=finding, models=list(self.models), timings_ms=timings,
                      thresholds=th.as_dict())

    def run(self, image: Image, thresholds: Optional[Thresholds] = None) -> Result:
        return self.infer(self.prepare(image, segmenter_input=False), thresholds)

    @property
    def input_sides(self) -> Tuple[int, ...]:
        """Every model input's height and width (what a reduced decode must not go below)."""
        return tuple(int(v) for b in (self.classifier, self.segmenter) for v in b.manifest.preprocessing.size)

    def thread_report(self) -> Dict[str, Dict[str, Any]]:
        """Per model: CPU intra-op threads in use and how they were chosen (CPU backends only)."""
        return {b.manifest.name: b.threads.as_dict() for b in (self.classifier, self.segmenter)
                if b.threads is not None}

    def run_models_on_zeros(self) -> None:
        """Each model as often as one film runs it, on zeros: what start-up
        timing of a layout measures."""
        for backend in (self.classifier, self.segmenter):
            runs = runs_per_film(backend.manifest, self.one_graph)
            if runs:
                backend.warmup(runs)

    def warmup(self, iterations: int = 2) -> Dict[str, Dict[str, float]]:
        return {b.manifest.name: b.warmup(iterations) for b in (self.classifier, self.segmenter)}

    def close(self) -> None:
        self.classifier.close()
        self.segmenter.close()


def runs_per_film(manifest, one_graph: bool = False) -> int:
    """Runs of a model per film in infer(): 2 with h-flip TTA (film and mirror), else 1;
    the segmenter 0 when the classifier's joined graph makes its mask."""
    if one_graph and manifest.task == "segmentation":
        return 0
    return 2 if "hflip" in manifest.tta else 1


def _hflip(tensor: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(tensor[..., ::-1])
