"""python -m build_engine: ONNX -> device variant (TensorRT engine or CPU INT8 ONNX).

  python -m build_engine --onnx models/classifier/classifier.onnx --device cpu --precision int8
  python -m build_engine --onnx models/segmenter/segmenter.onnx --device xavier_nx --precision fp16 --out engines
  python -m build_engine ensure --config /etc/pneumo-edge/config.yaml
  python -m build_engine selftest --device xavier_nx

Exit codes: 0 done; 1 model/build error; 2 bad request or config;
3 TensorRT absent here (what could be made was made; the message says what to run on the device);
4 parity past tolerance (nothing installed).
"""
import argparse
import json
import os
import sys
import tempfile
from typing import List, Optional

from build_engine.errors import NeedsDevice, ParityFailure, PrecisionUnsupported
from build_engine.profiles import PRECISIONS, load_profile
from build_engine.progress import Progress
from edge.errors import ConfigError, ModelError, PneumoEdgeError

EXIT_OK, EXIT_ERROR, EXIT_USAGE, EXIT_NEEDS_DEVICE, EXIT_PARITY = 0, 1, 2, 3, 4
L4T_IMAGE = "pneumo-edge:jp5"


COMMANDS_HELP = """other commands (each has its own --help):
  ensure    build every missing or stale engine the runtime config needs (first boot, after an upgrade)
  selftest  build tiny models for a device: proves the tool chain before the real models

""" + __doc__[__doc__.index("Exit codes:"):].replace("Exit codes:", "exit codes:")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="build-engine", description=__doc__.split("\n\n")[0], epilog=COMMANDS_HELP,
                                usage="%(prog)s [ensure | selftest] ... | %(prog)s --onnx ONNX --device DEVICE "
                                      "--precision {fp32,fp16,int8} [options]",
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--onnx", required=True, help="FP32 ONNX with its manifest JSON beside it")
    p.add_argument("--device", required=True, help="profile name in config/devices (xavier_nx, orin_nx, cpu) or a YAML")
    p.add_argument("--precision", required=True, choices=PRECISIONS,
                   help="what to build (the profile says which it supports)")
    p.add_argument("--calib-dir", help="calibration images (default ../shared/data/nih-cxr14-subset/images, else "
                                       "generated phantoms)")
    p.add_argument("--golden-dir", help="golden images for parity (default: shared data, else phantoms)")
    p.add_argument("--out", help="output folder (cpu: beside the ONNX; TensorRT: engines)")
    p.add_argument("--dla-core", help="override the profile's placement: 0, 1 or none")
    p.add_argument("--force", action="store_true", help="install even past the parity tolerance (recorded)")
    p.add_argument("--recalibrate", action="store_true",
                   help="calibrate again even when the cache matches (a changed --calib-dir, model or "
                        "preprocessing is noticed and recalibrated without it)")
    p.add_argument("--threads", type=int, default=0, help="ONNX Runtime threads for CPU measurements")
    p.add_argument("--quiet", action="store_true", help="no progress lines on stderr")
    return p


def needs_device_message(produced: List[str], command: str, why: str) -> str:
    lines = ["TensorRT is not available here (%s), so no engine was built." % why, "Produced here:"]
    lines += ["  %s" % f for f in produced] or ["  (nothing)"]
    lines += ["Finish on the device (JetPack 5.1, from the repository root):", "  %s" % command,
              "or in the matching L4T container on the device:",
              "  docker run --rm --runtime nvidia -v $PWD:/app -w /app %s %s" % (L4T_IMAGE, command),
              "(copy the produced files along to reuse them; their keys are checked, stale ones are rebuilt)"]
    return "\n".join(lines)


def run_build(args: argparse.Namespace) -> int:
    profile = load_profile(args.device)
    progress = Progress(6 if profile.runtime == "onnxruntime" else 7, quiet=args.quiet)
    if profile.runtime == "onnxruntime":
        if args.precision == "fp32":
            print("fp32 on %s is the ONNX file itself; nothing to build" % profile.name)
            return EXIT_OK
        if args.precision not in profile.precisions:
            raise PrecisionUnsupported("%s does not support %s (allowed: %s)" % (
                profile.name, args.precision, ", ".join(profile.precisions)))
        from build_engine.cpu_variant import build_cpu_int8
        report = build_cpu_int8(args.onnx, profile, args.calib_dir, args.golden_dir, args.out, args.force,
                                args.recalibrate, args.threads, progress)
        s, p = report["speedup_vs_fp32"], report["parity"]
        print("%s -> %s (%s): speed-up %.2fx median / %.2fx p95, max prob diff %.4g%s; report %s" % (
            args.onnx, report["variant"], report["chosen_format"], s["median"], s["p95"], p["max_prob_diff"],
            ", min Dice %.4f" % p["min_dice"] if p["min_dice"] is not None else "",
            report["variant"][:-5] + ".report.md"))
        if report.get("warning"):
            print("WARNING: " + report["warning"], file=sys.stderr)
        return EXIT_OK
    from build_engine.device_plan import prepare, produced_files
    from edge.inference.tensorrt import device_facts, tensorrt_available
    ok, why = tensorrt_available()
    out = args.out or "engines"
    plan = prepare(args.onnx, profile, args.precision, out, args.calib_dir, args.golden_dir, args.recalibrate,
                   args.dla_core, device_facts().tensorrt_version if ok else None, progress)
    if not ok:
        raise NeedsDevice(needs_device_message(produced_files(plan), plan.command, why), produced_files(plan),
                          plan.command)
    from build_engine.trt_build import build
    sidecar = build(plan, args.force, progress)
    print("%s (%s, %s): parity %s; sidecar %s" % (plan.engine, sidecar.precision, "DLA core %d" % sidecar.dla_core
          if sidecar.dla_core is not None else "GPU", json.dumps({k: sidecar.parity.get(k) for k in (
              "max_abs_diff", "max_prob_diff", "min_dice")}), plan.sidecar))
    return EXIT_OK


def run_ensure(argv: List[str]) -> int:
    p = argparse.ArgumentParser(prog="build-engine ensure", description="build missing or stale engines",
                                epilog=__doc__[__doc__.index("Exit codes:"):],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", help="runtime config YAML (default: embedded defaults)")
    p.add_argument("--calib-dir", help="calibration images for INT8 engines (default: shared data, else phantoms)")
    p.add_argument("--force", action="store_true", help="rebuild every engine, current or not")
    args = p.parse_args(argv)
    from build_engine.ensure import ensure_engines
    from edge.config import load_config
    from edge.settings import Settings
    settings = load_config(args.config) if args.config else Settings()
    from edge.alerts.announce import announce_state

    def on_state(state: str) -> None:
        print("state: %s" % state, flush=True)
        announce_state(settings, state)   # the displays see why the cart is not alerting yet

    results = ensure_engines(settings, on_state=on_state, force=args.force, calib_dir=args.calib_dir)
    for r in results:
        print("%-10s %-8s %s%s" % (r.role, r.action, r.engine, ("  (" + "; ".join(r.reasons) + ")") if r.reasons
                                   else ""))
    return EXIT_ERROR if any(r.action == "failed" for r in results) else EXIT_OK


def run_selftest(argv: List[str]) -> int:
    """Build the tiny models for a device: proves the tool chain before the real models."""
    p = argparse.ArgumentParser(prog="build-engine selftest", description=run_selftest.__doc__,
                                epilog=__doc__[__doc__.index("Exit codes:"):],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="xavier_nx", help="device profile (default: xavier_nx)")
    p.add_argument("--precision", default="fp16", choices=PRECISIONS, help="default: fp16")
    p.add_argument("--out", help="output folder (default: a new temporary folder)")
    args = p.parse_args(argv)
    from build_engine.tiny_models import make_classifier, make_segmenter
    out = args.out or tempfile.mkdtemp(prefix="build-engine-selftest-")
    code = EXIT_OK
    for make in (make_classifier, make_segmenter):
        onnx_path = make(os.path.join(out, "models"))
        code = max(code, main(["--onnx", onnx_path, "--device", args.device, "--precision", args.precision,
                               "--out", os.path.join(out, "engines")]))
    return code


def main(argv: Optional[List[str]] = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["ensure"]:
        return _guard(lambda: run_ensure(argv[1:]))
    if argv[:1] == ["selftest"]:
        return _guard(lambda: run_selftest(argv[1:]))
    args = build_parser().parse_args(argv)
    return _guard(lambda: run_build(args))


def _guard(fn) -> int:
    try:
        return fn()
    except NeedsDevice as exc:
        print(str(exc), file=sys.stderr)
        return EXIT_NEEDS_DEVICE
    except ParityFailure as exc:
        print("PARITY FAILURE: %s" % exc, file=sys.stderr)
        return EXIT_PARITY
    except (ConfigError, PrecisionUnsupported) as exc:
        print("error: %s" % exc, file=sys.stderr)
        return EXIT_USAGE
    except (ModelError, PneumoEdgeError) as exc:
        print("error: %s" % exc, file=sys.stderr)
        return EXIT_ERROR
    except OSError as exc:       # a folder or file that cannot be read or written: one line, no traceback
        print("error: %s%s" % ("%s: " % exc.filename if exc.filename else "", exc.strerror or exc), file=sys.stderr)
        return EXIT_ERROR


if __name__ == "__main__":
    sys.exit(main())
