"""The appliance's model pipelines: one per film in flight (edge.inference.layout).

Each film in flight gets its own Pipeline with its own sessions, so two
films never share a session's thread pool (ONNX Runtime then splits the
cores between them by the OS scheduler, not by its own barriers). Two films
sharing one 2-thread pipeline ran a 40-film burst at 13.1 films/s where two
1-thread pipelines ran 16.1 (two python -m bench runs during development,
2-core VM; the shared layout is not kept). With
several films in flight the one-film layout is kept as well, for a film that
arrives alone: it runs with every core's thread (a cart sends one film at a
time; 80 ms p50 alone at 2 threads against 115 at 1 in the same runs).
"""
import dataclasses
import logging
from typing import Dict, List, Optional, Tuple

from edge.inference import layout as film_layout, one_graph
from edge.inference.backend import JoinedHead
from edge.inference.manifest import load_manifest
from edge.inference.registry import create_backend, resolve_backend_name
from edge.inference.threads import usable_cores
from edge.pipeline import Pipeline
from edge.alerts.schema import use_warning
from edge.settings import Settings

log = logging.getLogger(__name__)


def build_pipeline(settings: Settings, threads=None, announce: bool = True) -> Pipeline:
    """One pipeline (classifier + segmenter); `threads` overrides models.threads;
    `announce` logs the backend and any model not validated for clinical use."""
    models = settings.models if threads is None else dataclasses.replace(settings.models, threads=threads)
    backend, why = resolve_backend_name(models)
    cls_manifest, seg_manifest = load_manifest(models.classifier), load_manifest(models.segmenter)
    joined, graphs = None, "two graphs: models.one_graph is off"
    if backend != "onnxruntime":
        graphs = "two graphs: one engine per model on %s" % backend
    elif models.one_graph == "auto":
        joined, graphs = one_graph.joined_bytes(cls_manifest, seg_manifest)
    cls = create_backend(cls_manifest, models, backend, joined=joined)
    seg = JoinedHead(seg_manifest, cls) if cls.provides_mask else create_backend(seg_manifest, models, backend)
    pipeline = Pipeline(cls, seg, settings.decision, backend_reason=why, graphs=graphs)
    if announce:
        _announce(pipeline, backend)
    return pipeline


def _announce(pipeline: Pipeline, backend: str) -> None:
    log.info("inference backend: %s (%s); %s", backend, pipeline.backend_reason, pipeline.graphs)
    for info in pipeline.models:
        if info.intended_use != "validated":
            log.warning("MODEL %s %s is intended_use=%s: %s", info.name, info.version,
                        info.intended_use, use_warning(info.intended_use))


def build_pipelines(settings: Settings) -> Tuple[List[Pipeline], Optional[Pipeline], film_layout.Layout]:
    """The pipelines for models.films_in_flight, the one-film pipeline for a
    film that arrives alone (None when there is one film in flight, or the
    configured threads leave nothing to gain), and the layout (for status)."""
    m = settings.models
    films = film_layout.parse(m.films_in_flight)
    backend = resolve_backend_name(m)[0]
    if backend != "onnxruntime":
        if films not in (None, 1):
            log.warning("models.films_in_flight %d ignored: %s runs one film at a time (one engine context per "
                        "model)", films, backend)
        pipeline = build_pipeline(settings)
        return [pipeline], None, film_layout.Layout(1, "-", "one engine per model (%s)" % backend)
    cores = usable_cores()
    counts = film_layout.candidates(cores)
    pipelines, alone, chosen = _build_layout(settings, films, cores, counts)
    if alone is not None and _most_threads(alone) <= _most_threads(pipelines[0]):
        alone.close()         # its own calibration chose no more threads than a film in flight has
        alone = None
    _announce(pipelines[0], backend)
    return pipelines, alone, chosen


def _most_threads(pipeline: Pipeline) -> int:
    return max(b.threads.threads if b.threads.threads else usable_cores()
               for b in (pipeline.classifier, pipeline.segmenter))


def _built(make, count: int) -> List[Pipeline]:
    """`count` pipelines from `make()`; the ones already made are closed if a later one fails."""
    out = []  # type: List[Pipeline]
    try:
        for _ in range(count):
            out.append(make())
    except BaseException:
        _close(out)
        raise
    return out


def _close(pipelines) -> None:
    for p in pipelines:
        p.close()


def _build_layout(settings: Settings, films: Optional[int], cores: int, counts: List[int]):
    m = settings.models
    if films is not None or len(counts) == 1:
        films = films or 1
        threads = _threads(m.threads, films, cores)
        pipelines = _built(lambda: build_pipeline(settings, threads, announce=False), films)
        try:
            alone = build_pipeline(settings, announce=False) if films > 1 and _shared_out(m.threads) else None
        except BaseException:
            _close(pipelines)
            raise
        return (pipelines, alone,
                film_layout.Layout(films, threads, "configured" if films > 1 or len(counts) > 1 else "one core"))
    built = {}  # type: Dict[int, List[Pipeline]]

    def time_films(n: int) -> float:
        if n not in built:
            threads = _threads(m.threads, n, cores)
            built[n] = _built(lambda: build_pipeline(settings, threads, announce=False), n)
            for p in built[n]:
                p.run_models_on_zeros()        # the first run allocates: not timed
        return film_layout.side_by_side_ms([p.run_models_on_zeros for p in built[n]])

    try:
        chosen = film_layout.calibrate(time_films, counts)
    except BaseException:
        _close(p for group in built.values() for p in group)
        raise
    keep = built.pop(chosen.films)
    # a lone film gains from every core's thread only where the threads are not fixed
    alone = built.pop(1)[0] if chosen.films > 1 and _shared_out(m.threads) else None
    _close(p for group in built.values() for p in group)
    threads = _threads(m.threads, chosen.films, cores)
    chosen = dataclasses.replace(chosen, threads=threads)
    log.info("films in flight: %d, %s thread(s) each (calibrated, ms per film %s)", chosen.films, threads,
             chosen.as_dict()["measured_ms_per_film"])
    return keep, alone, chosen


def _threads(configured, films: int, cores: int):
    """Threads per film: the configured value for one film; when several run
    at once, the configured number, or for "auto" and 0 (all cores) the cores
    shared out (each film's own calibration would time its model alone and
    take every core)."""
    if films > 1 and _shared_out(configured):
        return film_layout.threads_for(films, cores)
    return configured


def _shared_out(configured) -> bool:
    """models.threads that several films share out ("auto", 0 = all cores), not a fixed count."""
    return isinstance(configured, str) or configured == 0
