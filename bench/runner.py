"""The bench's measurements. Each returns plain dicts (JSON-ready).

Reference points come from the same run as the figures they judge:
- limit: the models alone, back to back, on tensors preprocessed beforehand;
- limit per thread count: each model alone at 1, 2, 4 .. cores threads;
- pipeline: read + decode + preprocess + models + postprocess, in process, sequential;
- end to end: a real Appliance on a real capture folder with a real
  mosquitto (its intake thread overlaps decoding with inference);
  file-arrival-to-PUBACK per file, PUBACK = outbox `sent_at`.
"""
import copy
import dataclasses
import logging
import os
import shutil
import socket
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np

from bench import stats
from bench.inputs import BenchInput, unique_bytes
from edge.decode import decode_bytes
from edge.inference.layout import side_by_side
from edge.inference.manifest import load_manifest
from edge.inference.onnxruntime import OnnxRuntimeBackend
from edge.inference.registry import create_backend, resolve_backend_name
from edge.pipeline import Pipeline, runs_per_film
from edge.preprocess import preprocess
from edge.resolution import decode_side
from edge.settings import Settings

log = logging.getLogger(__name__)

PIPELINE_STAGES = ("read_ms", "decode_ms", "preprocess_ms", "classify_ms", "segment_ms", "postprocess_ms")
# outbox: the alert's transaction; publish: its outbox row to its PUBACK; overlay and
# after_alert (the overlay's transaction) run while the alert is on its way.
APPLIANCE_STAGES = ("claim_ms",) + PIPELINE_STAGES + ("outbox_ms", "publish_ms", "overlay_ms", "after_alert_ms")


@dataclass(frozen=True)
class Variant:
    precision: str      # fp32 | int8 (ONNX Runtime)
    threads: Any        # models.threads: "auto" or an int (0 = all cores)
    gate: bool          # skip the segmenter on confident negatives
    classifier: str     # ONNX files of this precision
    segmenter: str
    spinning: str = ""       # ONNX Runtime's idle threads (edge.inference.onnxruntime.SPINNING); "": the runtime's default

    @property
    def name(self) -> str:
        return "%s/threads=%s/gate=%s%s" % (self.precision, "all" if self.threads == 0 else self.threads,
                                            "on" if self.gate else "off",
                                            "/spinning=" + self.spinning if self.spinning else "")


class RssSampler:
    """Peak resident memory of this process, sampled every `interval` s."""

    def __init__(self, interval: float = 0.02):
        self.interval = interval
        self.peak = 0
        self._stop = threading.Event()
        self._thread = None  # type: Optional[threading.Thread]
        try:
            import psutil
            self._proc = psutil.Process()
        except ImportError:
            self._proc = None

    def current(self) -> int:
        if self._proc is not None:
            return int(self._proc.memory_info().rss)
        import resource   # fallback: lifetime peak, kB on Linux
        return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * 1024

    def sample(self) -> int:
        self.peak = max(self.peak, self.current())
        return self.peak

    def __enter__(self) -> "RssSampler":
        self.sample()
        self._thread = threading.Thread(target=self._loop, name="rss", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        self.sample()

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            self.sample()


def build_pipeline(settings: Settings, variant: Variant) -> Pipeline:
    s = copy.deepcopy(settings)
    s.models.threads = variant.threads
    s.decision.gate_segmenter = variant.gate
    backend, why = resolve_backend_name(s.models)
    if backend == "onnxruntime" and variant.spinning:
        cls, seg = (OnnxRuntimeBackend(load_manifest(p), threads=variant.threads, spinning=variant.spinning)
                    for p in (variant.classifier, variant.segmenter))
    else:
        cls = create_backend(load_manifest(variant.classifier), s.models, backend)
        seg = create_backend(load_manifest(variant.segmenter), s.models, backend)
    pipeline = Pipeline(cls, seg, s.decision, backend_reason=why)
    pipeline.warmup(max(1, s.models.warmup))
    return pipeline


def _ms(seconds: float) -> float:
    return seconds * 1000.0


# --- the models' own limit ---------------------------------------------

passes = runs_per_film     # runs of a model per film in the shipped pipeline (edge.pipeline)


def measure_limit(pipeline: Pipeline, images: Sequence[np.ndarray], count: int) -> Dict[str, Any]:
    """Both models on every image, back to back, tensors made beforehand;
    each model as many times as the pipeline runs it (h-flip TTA: twice)."""
    cls_spec = pipeline.classifier.manifest.preprocessing
    seg_spec = pipeline.segmenter.manifest.preprocessing
    tensors = [(preprocess(px, cls_spec)[0], preprocess(px, seg_spec)[0]) for px in images]
    tensors = [([xc, xc[..., ::-1].copy()][:passes(pipeline.classifier.manifest)],
                [xs, xs[..., ::-1].copy()][:passes(pipeline.segmenter.manifest, pipeline.one_graph)])
               for xc, xs in tensors]
    per_image, cls_ms, seg_ms = [], [], []
    start = time.perf_counter()
    for i in range(count):
        xcs, xss = tensors[i % len(tensors)]
        t0 = time.perf_counter()
        for xc in xcs:
            pipeline.classifier.run(xc)
        t1 = time.perf_counter()
        for xs in xss:
            pipeline.segmenter.run(xs)
        t2 = time.perf_counter()
        cls_ms.append(_ms(t1 - t0))
        seg_ms.append(_ms(t2 - t1))
        per_image.append(_ms(t2 - t0))
    wall = time.perf_counter() - start
    return {"images": count, "throughput_ips": stats.throughput(count, wall),
            "per_image_ms": stats.summarize(per_image), "samples_ms": per_image,
            "classify_ms": stats.summarize(cls_ms),
            "segment_ms": stats.summarize(seg_ms)}


def measure_side_by_side(pipelines: Sequence[Pipeline], images: Sequence[np.ndarray],
                         count: int) -> Dict[str, Any]:
    """measure_limit on each pipeline at once, one thread per pipeline (the
    films in flight of edge.inference.layout): `count` images in all, films/s
    over the wall time of the whole, and ms per film from the p50 of each
    film's own time (the sweep's figures are p50s: one statistic for every
    candidate of the limit, bench.goals.limits)."""
    share = max(1, count // len(pipelines))
    parts, wall = side_by_side([lambda p=p: measure_limit(p, images, share) for p in pipelines])
    samples = [v for part in parts for v in part["samples_ms"]]
    return {"images": share * len(pipelines), "films": len(pipelines),
            "ms_per_film_p50": stats.summarize(samples)["p50"] / len(pipelines),
            "throughput_ips": stats.throughput(share * len(pipelines), wall),
            "per_image_ms": stats.summarize(samples), "samples_ms": samples}


def measure_layouts(settings: Settings, variant: "Variant", images: Sequence[np.ndarray], count: int,
                    cores: int) -> List[Dict[str, Any]]:
    """The models with several films side by side, each film its own sessions
    at cores / films threads (edge.inference.layout's candidates above 1):
    part of the machine's limit, since the appliance may run that way."""
    from edge.inference.layout import candidates, threads_for
    rows = []
    for films in candidates(cores)[1:]:
        threads = threads_for(films, cores)
        v = dataclasses.replace(variant, threads=threads)
        pipelines = [build_pipeline(settings, v) for _ in range(films)]
        try:
            got = measure_side_by_side(pipelines, images, max(count, 2 * films))
        finally:
            for p in pipelines:
                p.close()
        rows.append({"films": films, "threads": threads, "throughput_ips": got["throughput_ips"],
                     "ms_per_film_p50": got["ms_per_film_p50"], "per_image_ms": got["per_image_ms"]})
    return rows


def measure_thread_counts(model_paths: Sequence[str], images: Sequence[np.ndarray], counts: Sequence[int],
                          runs: int, one_graph: bool = True) -> Dict[str, Dict[str, Any]]:
    """Each model alone, at each intra-op thread count, on real preprocessed
    tensors: {model name: {"by_threads": {t: summary}, "best_threads", "best_ms"}}.
    As the appliance runs them: where the pair joins into one graph
    (edge.inference.one_graph), the classifier's row times the joined graph
    (both heads) and the segmenter's passes are 0."""
    out = {}
    manifests = [load_manifest(p) for p in model_paths]
    joined, graphs = None, "two graphs"
    if one_graph and len(manifests) == 2:
        from edge.inference.one_graph import joined_bytes
        joined, graphs = joined_bytes(*manifests)
    for path, manifest in zip(model_paths, manifests):
        tensors = [preprocess(px, manifest.preprocessing)[0] for px in images]
        rows = {}
        mine = joined if manifest.task == "classification" else None
        for t in counts:
            backend = OnnxRuntimeBackend(manifest, threads=t, joined=mine)
            backend.warmup(2)
            times = []
            for i in range(runs):
                t0 = time.perf_counter()
                backend.run(tensors[i % len(tensors)])
                times.append(_ms(time.perf_counter() - t0))
            backend.close()
            rows[str(t)] = stats.summarize(times)
        best = min(rows, key=lambda k: rows[k]["p50"])
        out[manifest.name] = {"task": manifest.task, "file": path, "by_threads": rows,
                              "passes": passes(manifest, joined is not None), "graphs": graphs,
                              "best_threads": int(best), "best_ms": rows[best]["p50"]}
    return out


# --- the in-process pipeline -------------------------------------------

def _write_files(directory: str, items: Sequence[BenchInput], count: int, offset: int) -> List[str]:
    os.makedirs(directory, exist_ok=True)
    paths = []
    for i in range(count):
        item = items[i % len(items)]
        path = os.path.join(directory, "%s-%06d" % (item.name, offset + i))
        with open(path, "wb") as fh:
            fh.write(unique_bytes(item, offset + i))
        paths.append(path)
    return paths


def pipeline_decode_side(pipeline: Pipeline, settings: Settings) -> int:
    """The reduced-decode floor the appliance uses (models' input and overlay)."""
    return decode_side(pipeline.input_sides, settings.alerts.overlay_max_side if settings.mqtt.publish_overlay else 0)


def _load(path: str, settings: Settings, min_side: int = 0) -> Tuple[Any, Dict[str, float]]:
    t0 = time.perf_counter()
    with open(path, "rb") as fh:
        data = fh.read()
    t1 = time.perf_counter()
    image = decode_bytes(data, settings.decode, name=os.path.basename(path), min_side=min_side)
    t2 = time.perf_counter()
    return image, {"read_ms": _ms(t1 - t0), "decode_ms": _ms(t2 - t1)}


def measure_pipeline(pipeline: Pipeline, settings: Settings, paths: Sequence[str],
                     gate_off: bool = False) -> Dict[str, Any]:
    """read + decode + pipeline over files, one after another, in process;
    gate_off runs the segmenter on every image whatever the config says."""
    samples = []
    side = pipeline_decode_side(pipeline, settings)
    thresholds = dataclasses.replace(pipeline.thresholds, gate_segmenter=False) if gate_off else None
    start = time.perf_counter()
    for path in paths:
        image, t = _load(path, settings, side)
        result = pipeline.run(image, thresholds)
        t.update(result.timings_ms)
        samples.append(t)
    wall = time.perf_counter() - start
    totals = [sum(v for k, v in s.items() if k in PIPELINE_STAGES) for s in samples]
    return {"images": len(paths), "throughput_ips": stats.throughput(len(paths), wall),
            "per_image_ms": stats.summarize(totals), "samples_ms": totals,
            # the joined graph makes every film's mask in the classifier's call
            "segmenter_ran": sum(1 for s in samples if s.get("segment_ms", 0.0) > 0.0 or pipeline.one_graph),
            "stages": stats.stage_table(samples, PIPELINE_STAGES)}


# --- end to end through the appliance and a real broker -----------------

def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _sent_at(app, alert_id: str) -> Optional[Tuple[float, float]]:
    """(created_at, sent_at) of an alert's outbox row once PUBACKed, else None."""
    row = app.store.connection().execute(
        "SELECT created_at, sent_at FROM outbox WHERE alert_id = ? AND kind = 'alert'", (alert_id,)).fetchone()
    if row is None or row[1] is None:
        return None
    return float(row[0]), float(row[1])


def _wait_sent(app, alert_id: str, timeout: float = 30.0) -> Optional[Tuple[float, float]]:
    deadline = time.time() + timeout
    while time.time() < deadline:
        got = _sent_at(app, alert_id)
        if got is not None:
            return got
        time.sleep(0.002)
    return None


class LocalBroker:
    """mosquitto on a free loopback port for the bench's lifetime."""

    def __init__(self, workdir: str):
        from edge.localbroker import ensure_local_broker
        self.port = _free_port()
        self.proc = ensure_local_broker("127.0.0.1", self.port, workdir)

    def close(self) -> None:
        from edge.localbroker import stop_broker
        stop_broker(self.proc)


def appliance_settings(settings: Settings, variant: Variant, workdir: str, port: int) -> Settings:
    s = copy.deepcopy(settings)
    s.capture.dir = os.path.join(workdir, "capture")
    s.capture.on_success = "delete"        # 10,000 files must not fill the disk
    s.state_dir = os.path.join(workdir, "state")
    s.mqtt.host, s.mqtt.port = "127.0.0.1", port
    s.mqtt.client_id = "pneumo-edge-bench-%d" % os.getpid()
    s.mqtt.tls.enabled = False
    s.mqtt.username = s.mqtt.password_file = s.mqtt.password_env = ""
    s.models.threads = variant.threads
    s.models.classifier, s.models.segmenter = variant.classifier, variant.segmenter
    s.decision.gate_segmenter = variant.gate
    return s


def quiesce(max_wait_s: float = 5.0, window_s: float = 0.2, idle_share: float = 0.05) -> Dict[str, float]:
    """Wait until this process is idle (its threads together use under
    `idle_share` of one core over `window_s`), after a garbage collection:
    the appliance's start-up calibration must not time its thread counts
    against leftovers of the bench's previous step (sessions not yet freed,
    threads still spinning). Returns how long it waited and the last share."""
    import gc
    gc.collect()
    start = time.perf_counter()
    share = 1.0
    while True:
        c0, t0 = time.process_time(), time.perf_counter()
        time.sleep(window_s)
        share = (time.process_time() - c0) / max(1e-6, time.perf_counter() - t0)
        if share < idle_share or time.perf_counter() - start >= max_wait_s:
            break
    return {"waited_s": time.perf_counter() - start, "own_cpu_share": share}


def measure_appliance(settings: Settings, variant: Variant, items: Sequence[BenchInput], workdir: str,
                      port: int, one_at_a_time: int, burst: int, after_thread: bool = True) -> Dict[str, Any]:
    """A real Appliance watching a real folder. Files are written beside
    incoming/ and renamed in (arrival = the rename). One at a time: the next
    file arrives only after the previous alert's PUBACK. Burst: all at once.
    `after_thread` False: overlays rendered on the models' threads (before the after-alert thread)."""
    from edge.app import Appliance
    shutil.rmtree(workdir, ignore_errors=True)
    s = appliance_settings(settings, variant, workdir, port)
    quiet = quiesce()
    # The shipped path: the appliance builds its own pipelines (models.films_in_flight);
    # a variant that changes ONNX Runtime's idle threads hands it one.
    app = Appliance(s, pipeline=build_pipeline(s, variant) if variant.spinning else None,
                    after_thread=after_thread)
    staging = os.path.join(s.capture.dir, "staging")
    os.makedirs(staging, exist_ok=True)
    incoming = app.folders.incoming
    samples, latency, after_settle = [], [], []
    seen = set()
    counter = [0]

    def drop(n: int) -> List[Tuple[str, float]]:
        paths = _write_files(staging, items, n, counter[0])
        counter[0] += n
        out = []
        for p in paths:
            target = os.path.join(incoming, os.path.basename(p))
            os.rename(p, target)
            out.append((os.path.basename(p), time.time()))
        return out

    app.start()
    settle = s.capture.settle_s if app.watcher.settle_applies_to_renames else 0.0   # files arrive by rename
    status = app.status()
    try:
        for _ in range(one_at_a_time):
            (name, arrived), = drop(1)
            outcome = app.outcomes.get(timeout=60)
            if outcome.alert_id is None:
                raise RuntimeError("bench file %s was %s: %s" % (name, outcome.state, outcome.reason))
            if outcome.alert_id in seen:     # its outbox row is an earlier file's: the latency would be false
                raise RuntimeError("bench file %s repeats alert %s: inputs are not unique images"
                                   % (name, outcome.alert_id))
            seen.add(outcome.alert_id)
            created, sent = _wait_sent(app, outcome.alert_id) or (None, None)
            if sent is None:
                raise RuntimeError("no PUBACK for %s within 30 s" % name)
            t = dict(outcome.timings_ms)
            t["publish_ms"] = _ms(sent - created)
            samples.append(t)
            latency.append(_ms(sent - arrived))
            after_settle.append(_ms(sent - arrived) - 1000.0 * settle)
        burst_result = {}
        if burst:
            # The models' limit right before the burst, on the appliance's own
            # sessions: the same contention as the burst it is compared with.
            images = [decode_bytes(it.data, s.decode).pixels for it in items[:2]]
            limit_now = measure_side_by_side(app.pipelines, images, max(10, min(burst, 20)))
            del images
            cpu0 = time.process_time()
            arrivals = drop(burst)
            ids, seg_ran, burst_samples, names = [], 0, [], []
            for _ in range(burst):
                outcome = app.outcomes.get(timeout=300)
                ids.append(outcome.alert_id)
                names.append(outcome.name)
                burst_samples.append(dict(outcome.timings_ms or {}))
                seg_ran += int(bool((outcome.timings_ms or {}).get("segment_ms")) or app.pipelines[0].one_graph)
            finished = time.time()     # every file's Outcome: overlay queued, file in done/
            if None in ids:
                raise RuntimeError("a burst file was not alerted")
            sent_at = [(_wait_sent(app, i) or (0.0, 0.0))[1] for i in ids]
            last = max(sent_at)
            arrived_at = dict(arrivals)
            # each file's own wait in the burst: what a nurse sees when films queue up
            in_burst = [_ms(t - arrived_at[n]) for n, t in zip(names, sent_at) if n in arrived_at and t]
            cpu_s = time.process_time() - cpu0
            span = last - arrivals[0][1]
            burst_result = {"images": burst, "throughput_ips": stats.throughput(burst, span),
                            "throughput_after_settle_ips": stats.throughput(burst, span - settle),
                            # alerts are the throughput; the overlays follow on the after-alert thread
                            "files_finished_ips": stats.throughput(burst, max(finished, last) - arrivals[0][1]),
                            "arrival_to_puback_ms": stats.summarize(in_burst) if in_burst else None,
                            "segmenter_ran": seg_ran,
                            # this process's CPU over the burst (every thread), in cores: what it left idle
                            "cores_used": cpu_s / max(1e-9, time.time() - arrivals[0][1]),
                            "limit_just_before_ips": limit_now["throughput_ips"],
                            "limit_just_before_ms_per_film_p50": limit_now["ms_per_film_p50"],
                            "stages": stats.stage_table(burst_samples, tuple(
                                k for k in APPLIANCE_STAGES if k != "publish_ms"))}
    finally:
        app.stop()
    compute = [sum(v for k, v in smp.items() if k in PIPELINE_STAGES) for smp in samples]
    # Each file's latency less its own compute: what the appliance adds, free of
    # the compute's own spread (large on a busy machine).
    overhead = [lat - c for lat, c in zip(latency, compute)]
    per_file = [lat / c for lat, c in zip(latency, compute) if c > 0]
    return {"variant": variant.name, "capture_mode": "inotify/poll as configured (%s)" % s.capture.watch,
            "settle_s": settle, "one_at_a_time": {
                "images": len(samples),
                "arrival_to_puback_ms": stats.summarize(latency), "samples_ms": latency,
                "after_settle_to_puback_ms": stats.summarize(after_settle),
                "single_image_compute_ms": stats.summarize(compute),
                "arrival_to_puback_less_compute_ms": stats.summarize(overhead),
                "arrival_to_puback_over_compute": stats.summarize(per_file),
                "stages": stats.stage_table(samples, APPLIANCE_STAGES)},
            "burst": burst_result, "inference_threads": status.get("inference_threads"),
            "films_in_flight": status.get("films_in_flight"),
            "before_start": quiet}


def measure_growth(settings: Settings, variant: Variant, items: Sequence[BenchInput], workdir: str,
                   port: int, checkpoints: Sequence[int],
                   progress: Optional[Callable[[int, int], None]] = None) -> Dict[str, Any]:
    """One continuous run through Appliance.process (real folders, SQLite
    ledger + outbox, publisher to the broker), without the settle wait;
    peak RSS and throughput at each checkpoint."""
    from edge.app import Appliance
    shutil.rmtree(workdir, ignore_errors=True)
    s = appliance_settings(settings, variant, workdir, port)
    app = Appliance(s)       # the shipped layout's sessions, all of them resident (films in flight + a lone film's)
    app.publisher.start()
    staging = os.path.join(s.capture.dir, "staging")
    os.makedirs(staging, exist_ok=True)
    rows = []
    done, seg_start = 0, time.perf_counter()
    try:
        with RssSampler() as rss:
            for target in sorted(checkpoints):
                while done < target:
                    (path,) = _write_files(staging, items, 1, done)
                    incoming = os.path.join(app.folders.incoming, os.path.basename(path))
                    os.rename(path, incoming)
                    claimed = app.folders.claim(incoming)
                    app.process(claimed)
                    app.publisher.notify()
                    done += 1
                    if progress is not None and done % 50 == 0:
                        progress(done, max(checkpoints))
                now = time.perf_counter()
                rows.append({"images": done, "peak_rss_mb": rss.sample() / 2 ** 20,
                             "throughput_ips": stats.throughput(done - (rows[-1]["images"] if rows else 0),
                                                                now - seg_start),
                             "outbox_pending": app.outbox.depth()})
                seg_start = now
    finally:
        app.stop()
    return {"variant": variant.name, "checkpoints": rows}


def write_inputs(directory: str, items: Sequence[BenchInput], count: int) -> List[str]:
    return _write_files(directory, items, count, 0)
