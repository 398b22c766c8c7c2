"""bench.cpu's child: one side's timed passes of the appliance's own per-film
path (stages patched by bench.stage_clock), the threaded burst with a real
mosquitto, and the cProfile pass. Runs in the process `python -m bench.cpu
--child` starts, so edge/ is whichever the parent put first on PYTHONPATH."""
import contextlib
import dataclasses
import json
import os
import shutil
import time
from typing import Any, Callable, Dict, List, Sequence, Tuple

from bench.stage_clock import OTHER, STAGES, StageClock, first_with, patch_stages


def _stable(alert: Dict[str, Any]) -> Dict[str, Any]:
    """The alert's fields that must not change with the code's speed."""
    drop = ("timings_ms", "created_at", "created", "sent_at", "time")
    alert = alert.to_json() if hasattr(alert, "to_json") else alert     # a typed Alert since edge.alerts.messages
    return {k: v for k, v in alert.items() if k not in drop}


def run_child(config: str, films: Sequence[str], out_dir: str, profile: bool,
              burst: bool = False, chest_gate: bool = True) -> Dict[str, Any]:
    """One side's passes in this process; the patched stages are put back after.
    chest_gate False: the learned not-a-chest refusal off, for phantoms."""
    from edge.app import build_pipeline
    from edge.config import load_config
    settings = load_config(config)
    if not chest_gate:
        from bench.cli import without_chest_gate
        settings.models.classifier = without_chest_gate(settings.models.classifier, out_dir, [])
    settings.models.threads = 1             # all model work on this thread: subtracted exactly
    settings.capture.on_success = "move"
    settings.mqtt.publish_overlay = True
    pipeline = build_pipeline(settings)
    pipeline.warmup(2)
    clock = StageClock()
    undo = []  # type: List[Tuple[Any, str, Any]]
    try:
        result = _timed_passes(settings, pipeline, clock, undo, films, out_dir, profile)
    finally:
        for owner, attr, original in reversed(undo):
            setattr(owner, attr, original)
        pipeline.close()
    if burst:
        result["burst"] = run_burst(settings, films, os.path.join(out_dir, "burst"))
    return result


def _free_port() -> int:
    import socket
    with contextlib.closing(socket.socket()) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def thread_cpu() -> Dict[str, float]:
    """CPU seconds per thread of this process (Linux /proc), by Python thread
    name where there is one; other native threads (OpenCV's pool ...) by id."""
    import threading
    names = {t.native_id: t.name for t in threading.enumerate() if getattr(t, "native_id", None)}
    tick = float(os.sysconf("SC_CLK_TCK"))
    out = {}  # type: Dict[str, float]
    for tid in os.listdir("/proc/self/task"):
        try:
            with open("/proc/self/task/%s/stat" % tid) as fh:
                fields = fh.read().rsplit(")", 1)[1].split()
        except OSError:
            continue                     # the thread ended meanwhile
        name = names.get(int(tid), "native")
        if name.startswith("paho-mqtt-client-"):
            name = "paho-mqtt-client"      # its name carries the client id, which differs per run
        out[name] = out.get(name, 0.0) + (int(fields[11]) + int(fields[12])) / tick
    return out


def run_burst(settings: Any, films: Sequence[str], work: str, idle_s: float = 2.0) -> Dict[str, Any]:
    """The threaded appliance (watcher, intake, inference, publisher) with a
    real mosquitto: every film renamed into incoming/ at once, until the last
    PUBACK. Process CPU over that span, less the models' (their run()'s
    thread CPU: at 1 ONNX Runtime thread all of it), is the CPU the models
    compete with: what the stage table shows plus the publisher, the
    watcher and the sends' SQLite. Idle CPU (nothing arriving) is measured
    first, over idle_s, and reported beside it."""
    import copy
    import threading
    from edge.app import Appliance, build_pipeline
    from edge.localbroker import ensure_local_broker, stop_broker
    s = copy.deepcopy(settings)
    s.capture.dir, s.state_dir = os.path.join(work, "capture"), os.path.join(work, "state")
    s.capture.on_success = "delete"
    s.mqtt.host, s.mqtt.port = "127.0.0.1", _free_port()
    s.mqtt.client_id = "pneumo-edge-bench-cpu-%d" % os.getpid()
    s.mqtt.tls.enabled = False
    s.mqtt.username = s.mqtt.password_file = s.mqtt.password_env = ""
    broker = ensure_local_broker("127.0.0.1", s.mqtt.port, os.path.join(work, "broker"))
    pipeline = build_pipeline(s)
    model_cpu, lock = [0.0], threading.Lock()

    def counted(run: Callable) -> Callable:
        def timed(*a, **k):
            t0 = time.thread_time()
            try:
                return run(*a, **k)
            finally:
                with lock:
                    model_cpu[0] += time.thread_time() - t0
        return timed
    for backend in (pipeline.classifier, pipeline.segmenter):
        backend.run = counted(backend.run)
        if getattr(backend, "provides_mask", False):   # the joined graph: the call the pipeline makes
            backend.run_with_mask = counted(backend.run_with_mask)
    app = Appliance(s, pipeline=pipeline)
    staging = os.path.join(s.capture.dir, "staging")
    os.makedirs(staging, exist_ok=True)
    staged = []
    for i, film in enumerate(films):
        staged.append(os.path.join(staging, "%02d_%s" % (i, os.path.basename(film))))
        shutil.copyfile(film, staged[-1])
    try:
        app.start()
        time.sleep(0.5)
        c0 = time.process_time()
        time.sleep(idle_s)
        idle = (time.process_time() - c0) / idle_s * 1000.0
        with lock:
            model_cpu[0] = 0.0
        c0, w0, per_thread0 = time.process_time(), time.perf_counter(), thread_cpu()
        for path in staged:
            os.rename(path, os.path.join(app.folders.incoming, os.path.basename(path)))
        states = [app.outcomes.get(timeout=300).state for _ in staged]
        conn = app.store.connection()
        deadline = time.time() + 60
        while time.time() < deadline and conn.execute(
                "SELECT COUNT(*) FROM outbox WHERE sent_at IS NULL").fetchone()[0]:
            time.sleep(0.002)
        cpu_s, wall_s = time.process_time() - c0, time.perf_counter() - w0
        per_thread1 = thread_cpu()
        with lock:
            models_s = model_cpu[0]
    finally:
        app.stop()
        stop_broker(broker)
        shutil.rmtree(work, ignore_errors=True)
    n = len(staged)
    return {"films": n, "states": sorted(set(states)), "wall_s": wall_s, "cpu_ms_per_film": cpu_s * 1000.0 / n,
            "models_ms_per_film": models_s * 1000.0 / n, "outside_ms_per_film": (cpu_s - models_s) * 1000.0 / n,
            "idle_cpu_ms_per_s": idle,
            "threads_ms_per_film": {k: (v - per_thread0.get(k, 0.0)) * 1000.0 / n for k, v in per_thread1.items()
                                    if v - per_thread0.get(k, 0.0) > 0}}


def _timed_passes(settings: Any, pipeline: Any, clock: StageClock, undo: List[Tuple[Any, str, Any]],
                  films: Sequence[str], out_dir: str, profile: bool) -> Dict[str, Any]:
    import edge
    from edge.app import Appliance
    missing = patch_stages(clock, pipeline, undo)
    captured = {}  # type: Dict[str, Any]
    import edge.stages.commit as commit_mod
    overlay_mod = first_with(STAGES[6][1], "render_overlay")
    render, build = overlay_mod.render_overlay, commit_mod.build_alert

    def keep_overlay(*a, **k):
        captured["overlay"] = render(*a, **k)
        return captured["overlay"]

    def keep_alert(result, *a, **k):
        captured["finding"] = result.finding      # converted after the film's clock stops
        captured["alert"] = build(result, *a, **k)
        return captured["alert"]
    undo.extend([(overlay_mod, "render_overlay", overlay_mod.render_overlay),
                 (commit_mod, "build_alert", commit_mod.build_alert)])
    overlay_mod.render_overlay, commit_mod.build_alert = keep_overlay, keep_alert

    def one_pass(tag: str, names: Sequence[str], record: bool) -> List[Dict[str, Any]]:
        work = os.path.join(out_dir, "work-" + tag)
        settings.capture.dir, settings.state_dir = os.path.join(work, "capture"), os.path.join(work, "state")
        app = Appliance(settings, pipeline=pipeline)
        rows = []
        for i, film in enumerate(names):
            dst = os.path.join(app.folders.incoming, "%02d_%s" % (i, os.path.basename(film)))
            shutil.copyfile(film, dst)
            captured.clear()
            clock.take()
            t0 = time.process_time()
            claimed = app.folders.claim(dst, 1 << 30)
            outcome = app.process(claimed)
            total = (time.process_time() - t0) * 1000.0
            ms = clock.take()
            ms[OTHER] = total - sum(ms.values())
            row = {"film": os.path.basename(film), "state": outcome.state, "total_ms": total, "ms": ms}
            if record and "alert" in captured:
                row["alert"] = _stable(captured["alert"])
                row["finding"] = json.loads(json.dumps(dataclasses.asdict(captured["finding"])))
                if captured.get("overlay") is not None:
                    path = os.path.join(out_dir, "overlay-%02d.jpg" % i)
                    with open(path, "wb") as fh:
                        fh.write(captured["overlay"])
                    row["overlay"] = path
            rows.append(row)
        app.store.close()
        shutil.rmtree(work, ignore_errors=True)
        return rows

    # Warm-up: one film of each kind (first decoder imports, first-call caches).
    kinds = {}  # type: Dict[str, str]
    for film in films:
        kinds.setdefault(os.path.splitext(film)[1] + os.path.dirname(film), film)
    one_pass("warm", list(kinds.values()), record=False)
    rows = one_pass("timed", films, record=True)
    result = {"edge": os.path.dirname(edge.__file__), "missing_stages": missing, "films": rows}
    if profile:
        result["profile"] = _profile(lambda: one_pass("profile", films, record=False))
    return result


def _profile(run: Callable[[], Any], top: int = 25) -> List[Tuple[str, float, float, int]]:
    """cProfile on the CPU clock; ONNX Runtime's run (the models) left out."""
    import cProfile
    import pstats
    prof = cProfile.Profile(time.process_time)
    prof.runcall(run)
    stats = pstats.Stats(prof).stats    # {(file, line, fn): (cc, nc, tt, ct, callers)}
    rows = []
    for (path, line, fn), (_cc, nc, tt, ct, _callers) in stats.items():
        where = "%s:%d(%s)" % (os.path.basename(path), line, fn) if line else fn
        if "onnxruntime" in where or "onnxruntime" in path:
            continue
        rows.append((where, tt * 1000.0, ct * 1000.0, nc))
    rows.sort(key=lambda r: -r[1])
    return rows[:top]
