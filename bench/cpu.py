"""CPU time per film outside the models, stage by stage: `python -m bench.cpu`.

The appliance's own per-film path (claim, intake, models, overlay, commit:
Appliance.process), one film after another on one thread, timed in THREAD
CPU time (time.thread_time), not wall time: on a machine shared with model
training the wall clock measures the neighbours, CPU time much less. Each
stage is timed exclusive of the stages inside it, so the rows add up to the
total. The models run at 1 ONNX Runtime thread here, so all of their work is
on this thread and "models" is exactly what the rest is compared against.

--against REV runs the same films through REV's edge/ (git archive into a
temporary folder; models and config from this checkout) in the same run,
alternating sides each round, and compares every output: the alert's
finding fields and the overlay JPEG's pixels. The harness imports only
edge.* names that REV also has; a stage REV lacks is shown as absent.

    python -m bench.cpu                       # this checkout, 40 films
    python -m bench.cpu --against main        # before/after side by side
    python -m bench.cpu --profile             # + cProfile (CPU clock), models left out
"""
import argparse
import contextlib
import dataclasses
import glob
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

DATA = os.environ.get("PNEUMO_SHARED_DATA") or os.path.normpath(
    os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "shared", "data"))

# (stage, module, attribute): each is timed exclusive of the stages it calls.
STAGES = (
    ("claim (rename, read, hash)", "edge.capture.folders", "CaptureFolders.claim"),
    ("decode", "edge.stages.intake", "decode_bytes"),
    ("preprocess (resize, window, normalise)", "edge.pipeline", "Pipeline.prepare"),
    ("models (ONNX Runtime)", None, None),
    ("infer glue (TTA flips, sigmoid, mean)", "edge.pipeline", "Pipeline.infer"),
    ("postprocess (finding)", "edge.pipeline", "make_finding"),
    ("overlay (render + JPEG)", "edge.stages.commit", "render_overlay"),
    ("alert payload", "edge.stages.commit", "build_alert"),
    ("outbox + ledger SQL (+ JSON)", "edge.alerts.outbox", "Outbox.enqueue_alert"),
    ("move to done/", "edge.capture.folders", "CaptureFolders.finish"),
)
OTHER = "other (dedupe, transaction commit, logging)"
MODELS = STAGES[3][0]


def default_films(data: str, count: int) -> List[str]:
    """A fixed mix of real films: SIIM PNG positives, NIH PNGs, SIIM DICOM
    (JPEG Baseline) and a JPEG 2000 CR, in that order of preference."""
    siim_png = sorted(glob.glob(os.path.join(data, "siim-ptx-png", "*", "images", "*.png")))
    nih = sorted(glob.glob(os.path.join(data, "nih-cxr14-subset", "images", "*.png")))
    dicom = sorted(glob.glob(os.path.join(data, "siim-ptx-dicom", "dicom", "*.dcm")))
    j2k = [p for p in [os.path.join(data, "dicom-samples", "RG1_J2KI.dcm")] if os.path.exists(p)]
    n_dicom = min(len(dicom), count // 4)
    n_nih = min(len(nih), count * 3 // 10)
    films = j2k + dicom[:n_dicom] + nih[:n_nih]
    return (films + siim_png[:max(0, count - len(films))])[:count]


# --- the child: one side, one pass over the films --------------------------

class StageClock:
    """Exclusive thread-CPU milliseconds per named stage (nesting allowed)."""

    def __init__(self, clock: Callable[[], float] = time.thread_time):
        self.clock = clock
        self.ms = {}  # type: Dict[str, float]
        self._inner = []  # type: List[float]

    def wrap(self, name: str, fn: Callable) -> Callable:
        def timed(*args, **kwargs):
            t0 = self.clock()
            self._inner.append(0.0)
            try:
                return fn(*args, **kwargs)
            finally:
                spent = (self.clock() - t0) * 1000.0
                inner = self._inner.pop()
                self.ms[name] = self.ms.get(name, 0.0) + spent - inner
                if self._inner:
                    self._inner[-1] += spent
        return timed

    def take(self) -> Dict[str, float]:
        out, self.ms = self.ms, {}
        return out


def _patch(clock: StageClock, pipeline: Any) -> List[str]:
    """Wrap each stage where it is looked up; the names this edge/ lacks."""
    import importlib
    missing = []
    for name, module, attr in STAGES:
        if module is None:
            continue
        owner = importlib.import_module(module)
        parts = attr.split(".")
        for part in parts[:-1]:
            owner = getattr(owner, part, None)
        if owner is None or not hasattr(owner, parts[-1]):
            missing.append(name)
            continue
        setattr(owner, parts[-1], clock.wrap(name, getattr(owner, parts[-1])))
    for backend in (pipeline.classifier, pipeline.segmenter):
        backend.run = clock.wrap(MODELS, backend.run)
    return missing


def _stable(alert: Dict[str, Any]) -> Dict[str, Any]:
    """The alert's fields that must not change with the code's speed."""
    drop = ("timings_ms", "created_at", "created", "sent_at", "time")
    return {k: v for k, v in alert.items() if k not in drop}


def run_child(config: str, films: Sequence[str], out_dir: str, profile: bool) -> Dict[str, Any]:
    import edge
    from edge.app import Appliance, build_pipeline
    from edge.config import load_config
    from edge.logsetup import setup_logging
    setup_logging("WARNING")
    settings = load_config(config)
    settings.models.threads = 1             # all model work on this thread: subtracted exactly
    settings.capture.on_success = "move"
    settings.mqtt.publish_overlay = True
    pipeline = build_pipeline(settings)
    pipeline.warmup(2)
    clock = StageClock()
    missing = _patch(clock, pipeline)
    captured = {}  # type: Dict[str, Any]
    import edge.stages.commit as commit_mod
    render, build = commit_mod.render_overlay, commit_mod.build_alert

    def keep_overlay(*a, **k):
        captured["overlay"] = render(*a, **k)
        return captured["overlay"]

    def keep_alert(result, *a, **k):
        captured["finding"] = result.finding      # converted after the film's clock stops
        captured["alert"] = build(result, *a, **k)
        return captured["alert"]
    commit_mod.render_overlay, commit_mod.build_alert = keep_overlay, keep_alert

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
            t0 = time.thread_time()
            claimed = app.folders.claim(dst, 1 << 30)
            outcome = app.process(claimed)
            total = (time.thread_time() - t0) * 1000.0
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
    pipeline.close()
    return result


def _profile(run: Callable[[], Any], top: int = 25) -> List[Tuple[str, float, float, int]]:
    """cProfile on the CPU clock; ONNX Runtime's run (the models) left out."""
    import cProfile
    import pstats
    prof = cProfile.Profile(time.thread_time)
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


# --- the parent: sides, rounds, the table ----------------------------------

def _extract(rev: str, repo: str, into: str) -> str:
    """REV's edge/ into a fresh folder (nothing else of REV is needed)."""
    archive = subprocess.run(["git", "-C", repo, "archive", rev, "edge"], check=True,
                             stdout=subprocess.PIPE).stdout
    subprocess.run(["tar", "-x", "-C", into], input=archive, check=True)
    return into


def _spawn(pythonpath: str, config: str, films: Sequence[str], out_dir: str, profile: bool) -> Dict[str, Any]:
    os.makedirs(out_dir, exist_ok=True)
    spec = os.path.join(out_dir, "films.json")
    with open(spec, "w") as fh:
        json.dump(list(films), fh)
    env = dict(os.environ, PYTHONPATH=pythonpath)
    cmd = [sys.executable, "-m", "bench.cpu", "--child", out_dir, "--config", config, "--film-list", spec]
    if profile:
        cmd.append("--profile")
    subprocess.run(cmd, env=env, check=True)
    with open(os.path.join(out_dir, "result.json")) as fh:
        return json.load(fh)


def per_stage(results: Sequence[Dict[str, Any]]) -> Tuple[Dict[str, float], float, float]:
    """Mean over films of each film's fastest round: (stage -> ms, total, models)."""
    names = [s[0] for s in STAGES] + [OTHER]
    n = len(results[0]["films"])
    out = {}
    for name in names:
        out[name] = sum(min(r["films"][i]["ms"].get(name, 0.0) for r in results) for i in range(n)) / n
    total = sum(min(r["films"][i]["total_ms"] for r in results) for i in range(n)) / n
    return out, total, out[MODELS]


def compare_outputs(before: Dict[str, Any], after: Dict[str, Any]) -> Dict[str, Any]:
    """Same alert fields? How far apart are the overlays' pixels?"""
    import cv2
    import numpy as np
    same, diffs, worst_px, mean_px, shapes = 0, [], 0, 0.0, 0
    decisions, worst_p, worst_area = 0, 0.0, 0.0
    for b, a in zip(before["films"], after["films"]):
        fb, fa = b.get("finding") or {}, a.get("finding") or {}
        if fb and fa:
            decisions += fb["pneumothorax"] != fa["pneumothorax"]
            for key in ("probability", "classifier_probability", "seg_max_probability"):
                if fb.get(key) is not None and fa.get(key) is not None:
                    worst_p = max(worst_p, abs(fb[key] - fa[key]))
            if fb["area_px"] or fa["area_px"]:
                worst_area = max(worst_area, abs(fb["area_px"] - fa["area_px"]) / max(fb["area_px"], fa["area_px"]))
        if b.get("alert") == a.get("alert"):
            same += 1
        else:
            keys = sorted(k for k in set(b.get("alert") or {}) | set(a.get("alert") or {})
                          if (b.get("alert") or {}).get(k) != (a.get("alert") or {}).get(k))
            diffs.append("%s: %s" % (b["film"], ", ".join(keys)))
        if b.get("overlay") and a.get("overlay"):
            ib, ia = cv2.imread(b["overlay"]), cv2.imread(a["overlay"])
            if ib.shape != ia.shape:
                shapes += 1
                continue
            d = np.abs(ib.astype(np.int16) - ia.astype(np.int16))
            worst_px = max(worst_px, int(d.max()))
            mean_px = max(mean_px, float(d.mean()))
    return {"films": len(after["films"]), "alerts_identical": same, "decisions_differ": decisions,
            "probability_max_abs_diff": worst_p, "area_px_max_rel_diff": worst_area, "differences": diffs,
            "overlay_max_abs_diff": worst_px, "overlay_worst_mean_abs_diff": mean_px,
            "overlay_size_differs": shapes}


def table(sides: Dict[str, Dict[str, Any]]) -> str:
    labels = list(sides)
    lines = ["%-42s" % "CPU ms per film (thread CPU)" + "".join("%12s" % l for l in labels)
             + ("%10s" % "after/bef" if len(labels) == 2 else "")]
    rows = [s[0] for s in STAGES] + [OTHER]
    for name in rows + ["outside the models", "total"]:
        vals = []
        for label in labels:
            stages, total, models = sides[label]["stages"], sides[label]["total"], sides[label]["models"]
            vals.append(stages[name] if name in stages else (total - models if name.startswith("outside")
                                                             else total))
        line = "%-42s" % name + "".join("%12.2f" % v for v in vals)
        if len(vals) == 2:
            line += "%10s" % ("%.2f" % (vals[1] / vals[0]) if vals[0] > 0.005 else "-")
        lines.append(line)
    return "\n".join(lines)


def main(argv: Optional[List[str]] = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.cpu", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", default="config/edge.yaml")
    p.add_argument("--data", default=DATA, help="real films (default $PNEUMO_SHARED_DATA, else ../shared/data)")
    p.add_argument("--films", type=int, default=40, help="films per pass (default 40)")
    p.add_argument("--rounds", type=int, default=2, help="passes per side; each film's fastest counts")
    p.add_argument("--against", help="git revision whose edge/ runs as 'before' in the same run")
    p.add_argument("--profile", action="store_true", help="also cProfile this checkout's pass (CPU clock)")
    p.add_argument("--json", help="write every figure here")
    p.add_argument("--child", help=argparse.SUPPRESS)
    p.add_argument("--film-list", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    config = os.path.abspath(args.config)
    if args.child:
        with open(args.film_list) as fh:
            films = json.load(fh)
        result = run_child(config, films, args.child, args.profile)
        with open(os.path.join(args.child, "result.json"), "w") as fh:
            json.dump(result, fh)
        return 0

    films = default_films(args.data, args.films)
    if not films:
        print("bench.cpu: no films under %s" % args.data, file=sys.stderr)
        return 2
    here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    load_start = os.getloadavg()
    tmp = tempfile.mkdtemp(prefix="bench-cpu-")
    try:
        paths = {"after": here}
        if args.against:
            old = _extract(args.against, here, os.path.join(tmp, "before-src"))
            paths = {"before": old + os.pathsep + here, "after": here}
        runs = {label: [] for label in paths}  # type: Dict[str, List[Dict[str, Any]]]
        for r in range(args.rounds):
            order = list(paths) if r % 2 == 0 else list(reversed(list(paths)))
            for label in order:
                last = r == args.rounds - 1 and label == "after"
                print("round %d/%d: %s" % (r + 1, args.rounds, label), flush=True)
                runs[label].append(_spawn(paths[label], config, films, os.path.join(tmp, "%s-%d" % (label, r)),
                                          args.profile and last))
        load_end = os.getloadavg()
        sides = {}
        for label, results in runs.items():
            stages, total, models = per_stage(results)
            sides[label] = {"edge": results[0]["edge"], "stages": stages, "total": total, "models": models,
                            "missing_stages": results[0]["missing_stages"],
                            "states": sorted(set(f["state"] for f in results[0]["films"]))}
        kinds = {}  # type: Dict[str, int]
        for f in films:
            kinds[os.path.splitext(f)[1]] = kinds.get(os.path.splitext(f)[1], 0) + 1
        print("")
        print("%d films (%s), %d round(s) per side, fastest round per film; models at 1 thread"
              % (len(films), ", ".join("%d %s" % (n, k) for k, n in sorted(kinds.items())), args.rounds))
        print("load average: start %s, end %s (cores: %d)"
              % (" ".join("%.2f" % v for v in load_start), " ".join("%.2f" % v for v in load_end),
                 os.cpu_count() or 1))
        for label, side in sides.items():
            print("%s: edge from %s; outcomes %s%s" % (label, side["edge"], ",".join(side["states"]),
                  "; stages absent: " + ", ".join(side["missing_stages"]) if side["missing_stages"] else ""))
        print(table(sides))
        report = {"films": films, "load_average": [load_start, load_end], "sides": sides}
        if args.against:
            cmp = compare_outputs(runs["before"][-1], runs["after"][-1])
            report["outputs"] = cmp
            print("outputs: alert fields identical on %d/%d films; overlay pixels max |diff| %d, worst mean %.3f,"
                  " size differs on %d" % (cmp["alerts_identical"], cmp["films"], cmp["overlay_max_abs_diff"],
                                           cmp["overlay_worst_mean_abs_diff"], cmp["overlay_size_differs"]))
            print("findings: decision differs on %d; probabilities max |diff| %.2g; area_px max relative diff %.2g"
                  % (cmp["decisions_differ"], cmp["probability_max_abs_diff"], cmp["area_px_max_rel_diff"]))
            for line in cmp["differences"]:
                print("  differs: " + line)
        prof = runs["after"][-1].get("profile")
        if prof:
            report["profile"] = prof
            print("\ncProfile of the per-film path, CPU clock, ONNX Runtime left out (ms over %d films):"
                  % len(films))
            print("%-58s %9s %9s %7s" % ("function", "self", "cumul", "calls"))
            for where, tt, ct, nc in prof:
                print("%-58s %9.1f %9.1f %7d" % (where[:58], tt, ct, nc))
        if args.json:
            with open(args.json, "w") as fh:
                json.dump(report, fh, indent=1)
    finally:
        with contextlib.suppress(OSError):
            shutil.rmtree(tmp)
    return 0


if __name__ == "__main__":
    sys.exit(main())
