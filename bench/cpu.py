"""CPU time per film outside the models, stage by stage: `python -m bench.cpu`.

The appliance's own per-film path (claim, intake, models, overlay, commit:
Appliance.process), one film after another, timed in the process's CPU
time (time.process_time: user + system, every thread), not wall time: on a
machine shared with model training the wall clock measures the neighbours,
CPU time much less. System time counts: page faults on fresh large arrays
are CPU the models do not get. Each stage is timed exclusive of the stages
inside it, so the rows add up to the total. The models run at 1 ONNX
Runtime thread and nothing else runs meanwhile (no publisher, no watcher),
so "models" is exactly their share and OpenCV's own worker threads count
for the stage that started them.

--against REV runs the same films through REV's edge/ (git archive into a
temporary folder; models and config from this checkout) in the same run,
alternating sides each round, and compares every output: the alert's
finding fields and the overlay JPEG's pixels. The harness imports only
edge.* names that REV also has; a stage REV lacks is shown as absent.

    python -m bench.cpu                       # this checkout, 40 films
    python -m bench.cpu --against main        # before/after side by side
    python -m bench.cpu --profile             # + cProfile (CPU clock), models left out
    python -m bench.cpu --phantoms 20         # the bench's 2048 px DICOM phantoms instead of real films
"""
import argparse
import contextlib
import glob
import json
import os
import shutil
import subprocess
import sys
import tempfile
from typing import Any, Dict, List, Optional, Sequence, Tuple

from bench.cpu_passes import run_child
from bench.stage_clock import MODELS, OTHER, STAGES

DATA = os.environ.get("PNEUMO_SHARED_DATA") or os.path.normpath(
    os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "shared", "data"))


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


# --- the parent: sides, rounds, the table ----------------------------------

def _extract(rev: str, repo: str, into: str) -> str:
    """REV's edge/ into a fresh folder (nothing else of REV is needed)."""
    archive = subprocess.run(["git", "-C", repo, "archive", rev, "edge"], check=True,
                             stdout=subprocess.PIPE).stdout
    os.makedirs(into, exist_ok=True)
    subprocess.run(["tar", "-x", "-C", into], input=archive, check=True)
    return into


def phantom_films(count: int, into: str) -> List[str]:
    """`count` distinct 2048 px uncompressed DICOM phantoms, the bench's default input."""
    from bench.inputs import generate, unique_bytes
    item = generate(["dicom"], [2048])[0]
    os.makedirs(into, exist_ok=True)
    paths = []
    for i in range(count):
        paths.append(os.path.join(into, "phantom-%02d.dcm" % i))
        with open(paths[-1], "wb") as fh:
            fh.write(unique_bytes(item, i))
    return paths


def _spawn(pythonpath: str, config: str, films: Sequence[str], out_dir: str, profile: bool,
           burst: bool, chest_gate: bool = True) -> Dict[str, Any]:
    os.makedirs(out_dir, exist_ok=True)
    spec = os.path.join(out_dir, "films.json")
    with open(spec, "w") as fh:
        json.dump(list(films), fh)
    env = dict(os.environ, PYTHONPATH=pythonpath)
    cmd = [sys.executable, "-m", "bench.cpu", "--child", out_dir, "--config", config, "--film-list", spec]
    if profile:
        cmd.append("--profile")
    if burst:
        cmd.append("--burst")
    if not chest_gate:
        cmd.append("--no-chest-gate")
    # cwd elsewhere: `-m` puts the working directory first on sys.path, ahead of PYTHONPATH
    subprocess.run(cmd, env=env, check=True, cwd=out_dir)
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
    decisions, worst_p, worst_area, same_jpeg = 0, 0.0, 0.0, 0
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
            with open(b["overlay"], "rb") as fb_, open(a["overlay"], "rb") as fa_:
                if fb_.read() == fa_.read():
                    same_jpeg += 1
                    continue
            if b.get("alert") != a.get("alert"):
                continue                # another probability or area: the banner text differs too
            ib, ia = cv2.imread(b["overlay"]), cv2.imread(a["overlay"])
            if ib.shape != ia.shape:
                shapes += 1
                continue
            d = np.abs(ib.astype(np.int16) - ia.astype(np.int16))
            worst_px = max(worst_px, int(d.max()))
            mean_px = max(mean_px, float(d.mean()))
    return {"films": len(after["films"]), "alerts_identical": same, "overlays_identical": same_jpeg, "decisions_differ": decisions,
            "probability_max_abs_diff": worst_p, "area_px_max_rel_diff": worst_area, "differences": diffs,
            "overlay_max_abs_diff": worst_px, "overlay_worst_mean_abs_diff": mean_px,
            "overlay_size_differs": shapes}


def table(sides: Dict[str, Dict[str, Any]]) -> str:
    labels = list(sides)
    lines = ["%-42s" % "CPU ms per film (user+sys)" + "".join("%12s" % l for l in labels)
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
    p.add_argument("--burst", action="store_true", help="also drop all films at once into the threaded "
                   "appliance with a real mosquitto: CPU per film outside the models, publisher included")
    p.add_argument("--phantoms", type=int, default=0, metavar="N",
                   help="N generated 2048 px DICOM phantoms (the bench's input) instead of real films; "
                        "the learned not-a-chest refusal is off for them")
    p.add_argument("--json", help="write every figure here")
    p.add_argument("--child", help=argparse.SUPPRESS)
    p.add_argument("--no-chest-gate", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--film-list", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    config = os.path.abspath(args.config)
    if args.child:
        from edge.logsetup import setup_logging
        setup_logging("WARNING")
        with open(args.film_list) as fh:
            films = json.load(fh)
        result = run_child(config, films, args.child, args.profile, args.burst, not args.no_chest_gate)
        with open(os.path.join(args.child, "result.json"), "w") as fh:
            json.dump(result, fh)
        return 0

    tmp = tempfile.mkdtemp(prefix="bench-cpu-")
    films = (phantom_films(args.phantoms, os.path.join(tmp, "phantoms")) if args.phantoms
             else default_films(args.data, args.films))
    if not films:
        print("bench.cpu: no films under %s" % args.data, file=sys.stderr)
        shutil.rmtree(tmp, ignore_errors=True)
        return 2
    here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    load_start = os.getloadavg()
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
                                          args.profile and last, args.burst, chest_gate=not args.phantoms))
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
            print("outputs: alert fields identical on %d/%d films, overlay JPEG bytes on %d; where the alert is the"
                  " same but the JPEG not: pixels max |diff| %d, worst mean %.3f, size differs on %d"
                  % (cmp["alerts_identical"], cmp["films"], cmp["overlays_identical"], cmp["overlay_max_abs_diff"],
                     cmp["overlay_worst_mean_abs_diff"], cmp["overlay_size_differs"]))
            print("findings: decision differs on %d; probabilities max |diff| %.2g; area_px max relative diff %.2g"
                  % (cmp["decisions_differ"], cmp["probability_max_abs_diff"], cmp["area_px_max_rel_diff"]))
            for line in cmp["differences"]:
                print("  differs: " + line)
        if args.burst:
            report["burst"] = {label: [r["burst"] for r in results] for label, results in runs.items()}
            print("\nburst: %d films dropped at once into the threaded appliance (mosquitto, models at 1 thread),"
                  " arrival to last PUBACK; process CPU ms per film, best round" % len(films))
            print("%-42s" % "" + "".join("%12s" % label for label in runs))
            for key, what in (("cpu_ms_per_film", "all threads"), ("models_ms_per_film", "models"),
                              ("outside_ms_per_film", "outside the models"),
                              ("idle_cpu_ms_per_s", "idle appliance, CPU ms per second")):
                print("%-42s" % what + "".join("%12.2f" % min(b[key] for b in report["burst"][label])
                                               for label in runs))
            names = sorted(set(k for b in report["burst"]["after"] for k in b["threads_ms_per_film"]))
            for name in names:       # /proc ticks (10 ms): coarse per thread, summed over the burst
                print("%-42s" % ("  thread " + name) + "".join(
                    "%12.2f" % min(b["threads_ms_per_film"].get(name, 0.0) for b in report["burst"][label])
                    for label in runs))
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
