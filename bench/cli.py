"""`python -m bench`: arguments, orchestration. Goals live in bench/goals.py.

Every reference point is measured in the same run as the figure it judges:
the models' limit at every thread count (the best is the machine's limit),
the naive baseline (same networks, eager PyTorch), the matmul peak.
"""
import argparse
import copy
import dataclasses
import datetime
import json
import logging
import os
import platform
import shutil
from typing import Any, Dict, List

from bench import decode as decode_bench
from bench import goals, inputs, report, runner
from bench.baseline import measure_baseline
from bench.flops import matmul_peak_gflops, onnx_flops
from edge.errors import PneumoEdgeError
from edge.gate import LEARNED_LIMITS
from edge.inference.layout import candidates as layout_candidates, threads_for
from edge.inference.manifest import ROLES, load_manifest
from edge.inference.onnxruntime import DEFAULT_SPINNING, SPINNING
from edge.inference.threads import candidates, usable_cores

log = logging.getLogger(__name__)

QUICK = {"images": 4, "size": 512, "latency_images": 2, "burst": 4, "spin_burst": 2, "baseline_images": 1,
         "growth": "2,4",
         "growth_size": 300, "sizes": "512", "repeats": 1, "thread_runs": 3, "peak_n": 1024}


class BenchError(PneumoEdgeError):
    """The bench cannot run as asked (no models, bad option)."""


def _ints(text: str) -> List[int]:
    return [int(x) for x in text.split(",") if x.strip()] if text else []


def _words(text: str) -> List[str]:
    return [x.strip() for x in text.split(",") if x.strip()] if text else []


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m bench", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", default="config/edge.yaml", help="runtime config: the shipped one by default")
    p.add_argument("--quick", action="store_true", help="CI-sized run: a few small images per measurement")
    p.add_argument("--inputs", help="folder of uncompressed DICOM radiographs instead of generated ones")
    p.add_argument("--size", type=int, default=2048, help="side of the generated main inputs (px, default 2048)")
    p.add_argument("--images", type=int, default=20, help="images per in-process measurement (default 20)")
    p.add_argument("--thread-runs", type=int, default=15, help="runs per model per thread count (default 15)")
    p.add_argument("--precisions", default="fp32", help="fp32,int8: int8 variants are built here with "
                   "build_engine's CPU path into <out>/int8 (default fp32)")
    p.add_argument("--calib-dir", help="INT8 calibration images (default: build_engine's, "
                   "../shared/data/nih-cxr14-subset/images, else generated phantoms)")
    p.add_argument("--golden-dir", help="INT8 parity images (default: build_engine's)")
    p.add_argument("--threads", default="", help="extra variants' models.threads, e.g. 1,2 (the shipped "
                   "config's value always runs first)")
    p.add_argument("--gate", default="", help="extra variants' gate settings, e.g. off (shipped first)")
    # p95 of n samples (linear interpolation) sits at rank 0.95 (n - 1): with 15 it is 0.3 of the way
    # from the second-slowest file to the slowest, so one stall decides it; with 40 it is the 38th.
    p.add_argument("--latency-images", type=int, default=40, help="files dropped one at a time (0 skips)")
    p.add_argument("--burst", type=int, default=40, help="files dropped at once into the appliance (default 40)")
    p.add_argument("--spin-burst", type=int, default=16, help="films per burst comparing ONNX Runtime's idle "
                   "threads spinning on / only during a run / off, at threads = all cores (0 skips)")
    p.add_argument("--baseline-images", type=int, default=5, help="naive PyTorch baseline images (0 skips)")
    p.add_argument("--growth", default="50,200", help="memory checkpoints, e.g. 100,1000,10000 (empty skips)")
    p.add_argument("--growth-size", type=int, default=1024, help="side of the memory-growth inputs")
    p.add_argument("--sizes", default="2048,3000", help="generated JPEG 2000 sides for the decode table")
    p.add_argument("--samples", default=decode_bench.DEFAULT_SAMPLES,
                   help="real DICOM files for the decode table (default ../shared/data/dicom-samples)")
    p.add_argument("--repeats", type=int, default=3, help="decodes per file in the decode table")
    p.add_argument("--out", default="bench-results", help="where JSON, PNG and work files go")
    p.add_argument("--no-plot", action="store_true")
    p.add_argument("--peak-n", type=int, default=1024, help=argparse.SUPPRESS)
    return p


def parse_args(argv=None) -> argparse.Namespace:
    """--quick changes the defaults; flags given explicitly still win."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.quick:
        parser.set_defaults(**QUICK)
        args = parser.parse_args(argv)
    return args


def _host() -> Dict[str, Any]:
    try:
        import onnxruntime
        ort = onnxruntime.__version__
    except ImportError:
        ort = None
    try:
        load = os.getloadavg()
    except OSError:
        load = None
    return {"platform": platform.platform(terse=True), "machine": platform.machine(),
            "cpu_count": os.cpu_count() or 1, "usable_cores": usable_cores(), "python": platform.python_version(),
            "onnxruntime": ort, "load_average_at_start": load}


def build_int8(settings, out_dir: str, notes: List[str], calib_dir=None, golden_dir=None) -> Dict[str, str]:
    """CPU INT8 variants of both models, built here (build_engine's CPU path);
    past-tolerance variants are still built, for speed only, and flagged."""
    from build_engine.cpu_variant import build_cpu_int8
    from build_engine.profiles import load_profile
    profile = load_profile("cpu")
    paths, status = {}, {}
    for role in ROLES:
        src = getattr(settings.models, role)
        rep = build_cpu_int8(src, profile, calib_dir=calib_dir, golden_dir=golden_dir,
                             out_dir=os.path.join(out_dir, "int8"), force=True)
        if rep.get("warning"):
            notes.append("INT8 %s: %s" % (role, rep["warning"]))
        paths[role] = rep["variant"]
        status[role] = rep["status"]
        if rep["status"] != "ok":
            notes.append("INT8 %s is past build_engine's parity tolerance (%s): its row measures speed only; "
                         "the runtime would refuse to install it" % (role, "; ".join(rep["tolerance_breaches"])))
    return paths


def _variants(args, settings, paths: Dict[str, Dict[str, str]]) -> List[runner.Variant]:
    shipped = runner.Variant("fp32", settings.models.threads, settings.decision.gate_segmenter,
                             settings.models.classifier, settings.models.segmenter)
    out = [shipped]

    def add(v):
        if v not in out:
            out.append(v)
    for t in _ints(args.threads):
        add(dataclasses.replace(shipped, threads=t))
    for g in _words(args.gate):
        add(dataclasses.replace(shipped, gate=g == "on"))
    for precision, p in paths.items():
        if precision != "fp32":
            add(dataclasses.replace(shipped, precision=precision, classifier=p["classifier"],
                                    segmenter=p["segmenter"]))
    return out


def without_chest_gate(manifest_path: str, work: str, notes: List[str]) -> str:
    """A copy of the classifier manifest without `thresholds.ood_max` and
    `layout_max`, for generated phantoms: they are not chest films, and the
    learned not-a-chest gate refuses them. The distances are still computed
    (outputs of the classifier's graph), so the models' compute is the shipped one."""
    manifest_path = load_manifest(manifest_path).path      # the config may name the .onnx
    with open(manifest_path) as fh:
        data = json.load(fh)
    keys = [k for k in LEARNED_LIMITS if k in data.get("thresholds", {})]
    if not keys:
        return manifest_path
    for key in keys:
        del data["thresholds"][key]
    data["file"] = os.path.abspath(os.path.join(os.path.dirname(manifest_path), data["file"]))
    out = os.path.join(work, "classifier-no-chest-gate.json")
    with open(out, "w") as fh:
        json.dump(data, fh, indent=1)
    notes.append("generated phantoms are not chest films: the learned not-a-chest refusal is off for them "
                 "(its distances are still computed); --inputs with real films keeps it on")
    return out


def run_bench(args: argparse.Namespace, settings) -> int:
    settings = copy.deepcopy(settings)
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    work = os.path.join(args.out, "work-" + stamp)
    os.makedirs(work, exist_ok=True)
    notes = []  # type: List[str]

    def say(text: str) -> None:
        print(text, flush=True)

    for name in ("edge.app", "edge.alerts.publisher", "edge.localbroker", "edge.inference.onnxruntime"):
        logging.getLogger(name).setLevel(logging.WARNING)   # one line per image drowns the table
    for path in (settings.models.classifier, settings.models.segmenter):
        if not os.path.exists(path):
            raise BenchError("model %s is absent (models/ ships both; check --config)" % path)

    if not args.inputs:
        settings.models.classifier = without_chest_gate(settings.models.classifier, work, notes)
    model_paths = {"fp32": {"classifier": settings.models.classifier, "segmenter": settings.models.segmenter}}
    if "int8" in _words(args.precisions):
        say("building CPU INT8 variants with build_engine (calibration + parity; minutes)")
        model_paths["int8"] = build_int8(settings, args.out, notes, args.calib_dir, args.golden_dir)
    variants = _variants(args, settings, model_paths)

    if args.inputs:
        main_items = inputs.from_folder(args.inputs)
        if not main_items:
            raise BenchError("no files in %s" % args.inputs)
    else:
        main_items = inputs.generate(["dicom"], [args.size], per_combo=2, notes=notes)
    main_paths = runner.write_inputs(os.path.join(work, "main"), main_items, args.images)

    result = {"schema": "pneumo-edge-bench/2", "created": stamp, "host": _host(), "notes": notes,
              "options": {k: v for k, v in vars(args).items() if not callable(v)},
              "config": {"file": args.config, "threads": settings.models.threads,
                         "gate_segmenter": settings.decision.gate_segmenter,
                         "reduced_resolution": settings.decode.reduced_resolution,
                         "spinning": DEFAULT_SPINNING}}
    say("machine peak: float32 %d x %d matmul (numpy and ONNX Runtime, the better)" % (args.peak_n, args.peak_n))
    result["peak"] = matmul_peak_gflops(args.peak_n)
    images = [runner._load(p, settings)[0].pixels for p in main_paths[:2]]
    counts = candidates(usable_cores())
    result["thread_sweep"], result["flops"] = {}, {}
    for precision, p in model_paths.items():
        say("models alone at %s threads (%s), %d runs each" % (counts, precision, args.thread_runs))
        result["thread_sweep"][precision] = runner.measure_thread_counts(
            [p["classifier"], p["segmenter"]], images, counts, args.thread_runs,
            one_graph=settings.models.one_graph == "auto")
    result["layouts"] = {}
    for precision, p in model_paths.items():
        if len(counts) > 1:
            say("models with films side by side (%s): %s" % (precision, ", ".join(
                "%d films x %d thread(s)" % (n, threads_for(n, usable_cores())) for n in layout_candidates(
                    usable_cores())[1:])))
            variant = runner.Variant(precision, 1, settings.decision.gate_segmenter, p["classifier"], p["segmenter"])
            result["layouts"][precision] = runner.measure_layouts(settings, variant, images, args.images,
                                                                  usable_cores())
    for path in model_paths["fp32"].values():
        manifest = load_manifest(path)
        result["flops"][manifest.name] = onnx_flops(manifest.model_path)

    sampler = runner.RssSampler()
    broker = None
    try:
        with sampler:
            result["variants"] = []
            for v in variants:
                say("[%s] loading models (threads calibrated when auto)" % v.name)
                pipeline = runner.build_pipeline(settings, v)
                say("[%s] models' limit at these threads, then the pipeline in process" % v.name)
                row = {"name": v.name, "precision": v.precision, "threads": v.threads, "gate": v.gate,
                       "threads_chosen": pipeline.thread_report(),
                       "limit": runner.measure_limit(pipeline, images, args.images),
                       "pipeline": runner.measure_pipeline(pipeline, settings, main_paths)}
                if v is variants[0]:
                    row["pipeline_gate_off"] = runner.measure_pipeline(pipeline, settings, main_paths,
                                                                       gate_off=True)
                    sides = {"models": max(pipeline.input_sides),
                             "models+overlay": runner.pipeline_decode_side(pipeline, settings)}
                result["variants"].append(row)
                pipeline.close()
            del images

            say("decode: full size against reduced resolution (JPEG 2000, JPEG Baseline), %d repeats" % args.repeats)
            j2k = inputs.generate(["j2k"], _ints(args.sizes), notes=notes)
            files = ([(i.name, i.data) for i in j2k] + decode_bench.jpeg_baseline_files(_ints(args.sizes))
                     + decode_bench.sample_files(args.samples))
            if not decode_bench.sample_files(args.samples):
                notes.append("no real DICOM samples at %s: decode table has generated films only" % args.samples)
            result["decode"] = decode_bench.measure_decoders(files, sides, args.repeats)

            if args.latency_images or args.burst or args.spin_burst or _ints(args.growth):
                broker = runner.LocalBroker(os.path.join(work, "broker"))
            if args.latency_images or args.burst:
                say("appliance end to end (mosquitto on 127.0.0.1:%d): %d files one at a time, then %d at once"
                    % (broker.port, args.latency_images, args.burst))
                result["end_to_end"] = runner.measure_appliance(
                    settings, variants[0], main_items, os.path.join(work, "appliance"), broker.port,
                    args.latency_images, args.burst)
            if args.spin_burst:
                cores = usable_cores()
                say("ONNX Runtime idle threads %s: %d films at once, threads=%d"
                    % ("/".join(SPINNING), args.spin_burst, cores))
                result["spinning"] = {}
                for spin in SPINNING:
                    v = dataclasses.replace(variants[0], threads=cores, spinning=spin)
                    r = runner.measure_appliance(settings, v, main_items, os.path.join(work, "spin"), broker.port,
                                                 0, args.spin_burst)
                    result["spinning"][spin] = dict(r["burst"], threads=cores)
            if _ints(args.growth):
                say("memory growth: %s images of %d px DICOM through Appliance.process"
                    % (args.growth, args.growth_size))
                items = inputs.generate(["dicom"], [args.growth_size], per_combo=2)
                result["growth"] = runner.measure_growth(
                    settings, variants[0], items, os.path.join(work, "growth"), broker.port, _ints(args.growth),
                    progress=lambda n, total: print("  %d/%d" % (n, total), end="\r", flush=True))
            # Last: PyTorch's threads must not be around when the appliance calibrates.
            if args.baseline_images and not args.inputs:
                say("naive baseline: pydicom + PIL + PyTorch eager, same networks, %d images" % args.baseline_images)
                manifests = [load_manifest(p) for p in model_paths["fp32"].values()]
                result["baseline"] = measure_baseline(
                    main_paths[:args.baseline_images], manifests,
                    [sum(result["flops"][m.name].values()) for m in manifests])
            else:
                result["baseline"] = {"skipped": "--baseline-images 0" if not args.baseline_images
                                      else "the baseline reads the generated uncompressed DICOM only"}
    finally:
        if broker is not None:
            broker.close()
    result["peak_rss_mb"] = sampler.peak / 2 ** 20
    try:
        result["host"]["load_average_at_end"] = os.getloadavg()
    except OSError:
        pass
    result["limits"] = goals.limits(result)
    result["threads_check"] = goals.threads_check(result)
    result["goals"] = goals.goals(result)
    json_path = report.write_json(result, os.path.join(args.out, "bench-%s.json" % stamp))
    say("")
    say(report.table(result))
    say("")
    say("JSON: %s" % json_path)
    if not args.no_plot:
        png = report.write_plot(result, os.path.join(args.out, "bench-%s.png" % stamp))
        say("plot: %s" % png if png else "plot skipped: matplotlib is not installed (pip install 'pneumo-edge[dev]')")
    shutil.rmtree(work, ignore_errors=True)
    return 0

