"""One Image -> Result. No folders, no MQTT: easy to test and to benchmark.

`run` = `infer(prepare(image))`. The split lets a caller overlap the CPU
work around the models (decode, resize, normalise) with inference: a
Prefetcher thread prepares the next image while the models run this one.
"""
import queue
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, Iterable, Iterator, Optional, Tuple

import numpy as np

from edge.inference.backend import Backend
from edge.gate import check_body_part, check_ood
from edge.postprocess import (Thresholds, classifier_logit, classifier_probability, make_finding,
                              ood_distance, parse_calibration, resolve_thresholds, segmenter_probability,
                              skip_segmenter)
from edge.preprocess import preprocess
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
        self.calibration = parse_calibration(segmenter.manifest)
        self.models = [classifier.info(), segmenter.info()]
        self._same_input = classifier.manifest.preprocessing == segmenter.manifest.preprocessing

    def prepare(self, image: Image, segmenter_input: bool = True) -> Prepared:
        """Make the model inputs. `segmenter_input=False` defers the
        segmenter's to `infer`, which then makes it only if the gate opens
        (the right choice when nothing runs alongside)."""
        t0 = time.perf_counter()
        cls_in, cls_geo = preprocess(image.pixels, self.classifier.manifest.preprocessing)
        prepared = Prepared(image, cls_in, cls_geo)
        if self._same_input:
            prepared.seg_in, prepared.seg_geo = cls_in, cls_geo
        elif segmenter_input:
            prepared.seg_in, prepared.seg_geo = preprocess(image.pixels, self.segmenter.manifest.preprocessing)
        prepared.timings_ms["preprocess_ms"] = (time.perf_counter() - t0) * 1000.0
        return prepared

    def infer(self, prepared: Prepared, thresholds: Optional[Thresholds] = None) -> Result:
        """Run the models. Raises NotAChestRadiograph (a DecodeError: the
        file is rejected with that code) for a DICOM whose BodyPartExamined
        names another body part, or when the classifier's feature distance
        says the image is no chest film."""
        check_body_part(prepared.image.body_part_examined)
        th = thresholds or self.thresholds
        timings = dict(prepared.timings_ms)
        timings.setdefault("preprocess_ms", 0.0)
        clock = time.perf_counter

        t1 = clock()
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

        seg_prob = geo = None
        if not skip_segmenter(probability, th):
            t3 = clock()
            if prepared.seg_in is None:
                prepared.seg_in, prepared.seg_geo = preprocess(prepared.image.pixels,
                                                               self.segmenter.manifest.preprocessing)
            seg_in, geo = prepared.seg_in, prepared.seg_geo
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

    def warmup(self, iterations: int = 2) -> Dict[str, Dict[str, float]]:
        return {b.manifest.name: b.warmup(iterations) for b in (self.classifier, self.segmenter)}

    def close(self) -> None:
        self.classifier.close()
        self.segmenter.close()


def _hflip(tensor: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(tensor[..., ::-1])


_END = object()


class Prefetcher:
    """Runs `load(item)` for each item on one background thread, at most
    `depth` results ahead; iterate to get (item, result) in order. An
    exception from `load` is re-raised at that item's turn, as
    (item, exception) when `errors="yield"`. Leaving the `with` block early
    stops the thread after the item it is loading."""

    def __init__(self, load: Callable[[Any], Any], items: Iterable[Any], depth: int = 2,
                 errors: str = "raise"):
        self._load = load
        self._items = items
        self._errors = errors
        self._queue = queue.Queue(maxsize=max(1, depth))  # type: queue.Queue
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._work, name="prefetch", daemon=True)

    def __enter__(self) -> "Prefetcher":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        while self._thread.is_alive():
            try:
                self._queue.get(timeout=0.05)   # unblock a put()
            except queue.Empty:
                pass
        self._thread.join()

    def __iter__(self) -> Iterator[Tuple[Any, Any]]:
        while True:
            entry = self._queue.get()
            if entry is _END:
                return
            item, ok, value = entry
            if not ok and self._errors == "raise":
                raise value
            yield item, value

    def _put(self, entry: Any) -> bool:
        while not self._stop.is_set():
            try:
                self._queue.put(entry, timeout=0.05)
                return True
            except queue.Full:
                continue
        return False

    def _work(self) -> None:
        for item in self._items:
            if self._stop.is_set():
                return
            try:
                entry = (item, True, self._load(item))
            except Exception as exc:  # handed to the consumer, in order
                entry = (item, False, exc)
            if not self._put(entry):
                return
        self._put(_END)
