"""One Image -> Result. No folders, no MQTT: easy to test and to benchmark."""
import time
from typing import Dict, Optional

from edge.inference.backend import Backend
from edge.postprocess import (Thresholds, classifier_probability, make_finding, resolve_thresholds,
                              segmenter_probability, skip_segmenter)
from edge.preprocess import preprocess
from edge.settings import DecisionSettings
from edge.types import Image, Result


class Pipeline:
    def __init__(self, classifier: Backend, segmenter: Backend, decision: Optional[DecisionSettings] = None):
        for backend, task in ((classifier, "classification"), (segmenter, "segmentation")):
            if backend.manifest.task != task:
                raise ValueError("%s is a %s model, expected %s"
                                 % (backend.manifest.name, backend.manifest.task, task))
        self.classifier = classifier
        self.segmenter = segmenter
        self.thresholds = resolve_thresholds(classifier.manifest, segmenter.manifest,
                                             decision or DecisionSettings())
        self.models = [classifier.info(), segmenter.info()]
        self._same_input = classifier.manifest.preprocessing == segmenter.manifest.preprocessing

    def run(self, image: Image, thresholds: Optional[Thresholds] = None) -> Result:
        th = thresholds or self.thresholds
        timings: Dict[str, float] = {}
        clock = time.perf_counter

        t0 = clock()
        cls_in, cls_geo = preprocess(image.pixels, self.classifier.manifest.preprocessing)
        t1 = clock()
        probability = classifier_probability(self.classifier.run(cls_in), self.classifier.manifest)
        t2 = clock()
        timings["preprocess_ms"] = (t1 - t0) * 1000.0
        timings["classify_ms"] = (t2 - t1) * 1000.0

        seg_prob = geo = None
        if not skip_segmenter(probability, th):
            t3 = clock()
            if self._same_input:
                seg_in, geo = cls_in, cls_geo
            else:
                seg_in, geo = preprocess(image.pixels, self.segmenter.manifest.preprocessing)
            t4 = clock()
            seg_prob = segmenter_probability(self.segmenter.run(seg_in), self.segmenter.manifest)
            t5 = clock()
            timings["preprocess_ms"] += (t4 - t3) * 1000.0
            timings["segment_ms"] = (t5 - t4) * 1000.0
        else:
            timings["segment_ms"] = 0.0

        t6 = clock()
        finding = make_finding(probability, seg_prob, geo, th, image.pixel_spacing_mm)
        timings["postprocess_ms"] = (clock() - t6) * 1000.0
        return Result(finding=finding, models=list(self.models), timings_ms=timings,
                      thresholds=th.as_dict())

    def warmup(self, iterations: int = 2) -> Dict[str, Dict[str, float]]:
        return {b.manifest.name: b.warmup(iterations) for b in (self.classifier, self.segmenter)}

    def close(self) -> None:
        self.classifier.close()
        self.segmenter.close()
