"""CPU INT8 variants: `<model>.int8.onnx` (u8s8) + manifest + a report of drop and speed-up.

Both ONNX Runtime formats (QDQ and QOperator) are built and timed once
against FP32 in one interleaved loop; the faster one is kept. When the drop
exceeds the profile's INT8 budget, the budget's op types are kept in float
and the variant is measured again (mixed precision). Past the parity
tolerance the variant is not installed unless forced.
"""
import dataclasses
import datetime
import json
import os
import shutil
from typing import Any, Dict, List, Optional

import numpy as np

from build_engine import calibration as cal
from build_engine.bench import interleaved, speedup
from build_engine.errors import ParityFailure
from build_engine.parity import breaches, compare
from build_engine.profiles import DeviceProfile, Placement
from build_engine.progress import Progress
from build_engine.quantize import nodes_matching, quantize_cpu
from edge.inference.manifest import ROLE_OF_TASK, ModelManifest, file_sha256, load_manifest, verify_model_file


def ort_session(path: str, threads: int = 0):
    import onnxruntime as ort
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.log_severity_level = 3
    return ort.InferenceSession(path, sess_options=opts, providers=["CPUExecutionProvider"])


def run_all(session, input_name: str, tensors: np.ndarray) -> List[np.ndarray]:
    out_name = session.get_outputs()[0].name
    return [np.asarray(session.run([out_name], {input_name: tensors[i:i + 1]})[0], np.float32)
            for i in range(len(tensors))]


def golden_set(manifest: ModelManifest, profile: DeviceProfile, golden_dir: Optional[str]) -> cal.ImageSet:
    default = cal.DEFAULT_SEG_GOLDEN_DIR if manifest.task == "segmentation" else cal.DEFAULT_CALIB_DIR
    # offset 1 and another phantom seed keep golden images apart from the calibration ones
    return cal.choose_images(golden_dir, profile.golden_images, seed=10000, offset=1, default=default)


def calibration_tensors(manifest: ModelManifest, images: cal.ImageSet, cache_path: str, recalibrate: bool,
                        progress: Progress) -> Dict[str, Any]:
    """Preprocessed calibration tensors, from the keyed cache when it matches."""
    key = cal.cache_key(manifest.sha256, manifest.preprocessing.digest(), images.set_hash)
    if recalibrate and os.path.exists(cache_path):
        os.remove(cache_path)
    stale = []  # type: List[str]
    tensors = cal.load_batches(cache_path, key, on_stale=stale.append)
    decoders = ["cache"]
    if stale:
        progress.note("%s: calibrating again on %s" % (stale[0], images.describe()))
    if tensors is None:
        tensors, decoders = cal.collect(images, manifest.preprocessing,
                                        lambda d, t: progress.count(d, t, "calibration images"))
        cal.save_batches(cache_path, tensors, key, images.describe())
    else:
        progress.note("calibration tensors from %s (key matches)" % cache_path)
    out = {"tensors": tensors, "key": key, "decoders": decoders}  # type: Dict[str, Any]
    if stale:
        out["replaced_stale_cache"] = stale[0]
    return out


def write_variant_manifest(src: ModelManifest, onnx_path: str, precision: str, note: str) -> str:
    data = src.to_json()
    data.update(file=os.path.basename(onnx_path), sha256=file_sha256(onnx_path), precision=precision,
                derived_from=src.sha256, notes=(src.notes + " " if src.notes else "") + note)
    path = onnx_path[:-5] + ".json"
    with open(path, "w", encoding="utf-8") as fh:
        json.dump(data, fh, indent=2)
        fh.write("\n")
    load_manifest(path)   # what we wrote must be a manifest the runtime accepts
    return path


def _measure(candidates: Dict[str, str], fp32: Any, input_name: str, golden: np.ndarray, ref: List[np.ndarray],
             manifest: ModelManifest, profile: DeviceProfile, threads: int) -> Dict[str, Dict[str, Any]]:
    sessions = {name: ort_session(path, threads) for name, path in candidates.items()}
    result = {}  # type: Dict[str, Dict[str, Any]]
    for name, sess in sessions.items():
        result[name] = {"parity": compare(ref, run_all(sess, input_name, golden), manifest.output_kind,
                                          manifest.task, columns=manifest.output_columns).to_json()}
    one = golden[:1]
    out_name = fp32.get_outputs()[0].name
    runners = {"fp32": lambda: fp32.run([out_name], {input_name: one})}
    for name, sess in sessions.items():
        runners[name] = (lambda s: lambda: s.run([s.get_outputs()[0].name], {input_name: one}))(sess)
    lat = interleaved(runners, profile.bench_runs, profile.bench_warmup)
    for name in sessions:
        result[name]["latency"] = lat[name]
        result[name]["speedup_vs_fp32"] = speedup(lat["fp32"], lat[name])
    result["fp32"] = {"latency": lat["fp32"]}
    return result


def _budget_breaches(parity: Dict[str, Any], profile: DeviceProfile) -> List[str]:
    b = profile.int8_budget
    from build_engine.parity import ParityResult
    return breaches(ParityResult(**parity), None, b.max_prob_diff, b.min_dice)


def build_cpu_int8(onnx_path: str, profile: DeviceProfile, calib_dir: Optional[str] = None,
                   golden_dir: Optional[str] = None, out_dir: Optional[str] = None, force: bool = False,
                   recalibrate: bool = False, threads: int = 0, progress: Optional[Progress] = None
                   ) -> Dict[str, Any]:
    """Make and measure the u8s8 variant; returns the report (also written as JSON + markdown)."""
    progress = progress or Progress(6)
    manifest = load_manifest(onnx_path)
    verify_model_file(manifest)
    stem = os.path.basename(manifest.model_path)[:-5]
    out_dir = out_dir or os.path.dirname(os.path.abspath(manifest.model_path))
    os.makedirs(out_dir, exist_ok=True)
    role = ROLE_OF_TASK[manifest.task]
    placement = profile.models.get(role, Placement(precision="int8"))
    input_name = manifest.input.name

    progress.stage("calibration set for %s (%s)" % (stem, manifest.task))
    calib = cal.choose_images(calib_dir, profile.calibration_images)
    progress.note(calib.describe())
    ct = calibration_tensors(manifest, calib, os.path.join(out_dir, stem + ".calib.npz"), recalibrate, progress)

    progress.stage("golden inputs and FP32 reference")
    golden = golden_set(manifest, profile, golden_dir)
    progress.note(golden.describe())
    golden_t, golden_decoders = cal.collect(golden, manifest.preprocessing)
    fp32 = ort_session(manifest.model_path, threads)
    ref = run_all(fp32, input_name, golden_t)

    progress.stage("quantising (%s, %s activations / %s weights, per-channel %s)"
                   % ("+".join(profile.quant_formats), profile.activation_type, profile.weight_type,
                      profile.per_channel))
    always_float = nodes_matching(manifest.model_path, placement.fp16_layers, placement.fp16_op_types,
                                  placement.int8_only)
    candidates = {}
    for fmt in profile.quant_formats:
        path = os.path.join(out_dir, "%s.int8.%s.tmp.onnx" % (stem, fmt))
        quantize_cpu(manifest.model_path, path, input_name, ct["tensors"], fmt, profile.per_channel,
                     profile.activation_type, profile.weight_type, profile.calibrate_method, always_float)
        candidates[fmt] = path

    progress.stage("measuring parity and latency vs FP32 (%d interleaved runs)" % profile.bench_runs)
    measured = _measure(candidates, fp32, input_name, golden_t, ref, manifest, profile, threads)
    chosen = min(candidates, key=lambda f: measured[f]["latency"]["median_ms"])
    progress.note("kept %s: %.2f ms vs FP32 %.2f ms (median)" % (
        chosen, measured[chosen]["latency"]["median_ms"], measured["fp32"]["latency"]["median_ms"]))

    progress.stage("INT8 budget check")
    mixed = None  # type: Optional[Dict[str, Any]]
    over = _budget_breaches(measured[chosen]["parity"], profile)
    excluded = list(always_float)
    if over and profile.int8_budget.fallback_op_types:
        excluded = sorted(set(always_float) | set(nodes_matching(
            manifest.model_path, (), profile.int8_budget.fallback_op_types)))
        progress.note("over budget (%s): keeping %d node(s) of %s in float" % (
            "; ".join(over), len(excluded), ", ".join(profile.int8_budget.fallback_op_types)))
        mpath = os.path.join(out_dir, "%s.int8.%s.mixed.tmp.onnx" % (stem, chosen))
        quantize_cpu(manifest.model_path, mpath, input_name, ct["tensors"], chosen, profile.per_channel,
                     profile.activation_type, profile.weight_type, profile.calibrate_method, excluded)
        m = _measure({"mixed": mpath}, fp32, input_name, golden_t, ref, manifest, profile, threads)
        mixed = {"excluded_nodes": excluded, "parity": m["mixed"]["parity"], "latency": m["mixed"]["latency"],
                 "speedup_vs_fp32": m["mixed"]["speedup_vs_fp32"], "fp32_latency": m["fp32"]["latency"],
                 "budget_breaches": _budget_breaches(m["mixed"]["parity"], profile)}
        candidates["mixed"] = mpath
        # keep the mixed file only when it actually helps: within budget, or less drift
        helps = not mixed["budget_breaches"] or (
            mixed["parity"]["max_prob_diff"] < measured[chosen]["parity"]["max_prob_diff"])
        mixed["kept"] = bool(helps)
        chosen_key = "mixed" if helps else chosen
        final = mixed if helps else measured[chosen]
    else:
        chosen_key = chosen
        final = measured[chosen]
    progress.note("budget: %s" % ("; ".join(over) if over else "within"))

    progress.stage("tolerance check and install")
    tol = profile.tolerance("int8")
    from build_engine.parity import ParityResult
    failures = breaches(ParityResult(**final["parity"]), tol.max_abs_diff, tol.max_prob_diff, tol.min_dice)
    variant = os.path.join(out_dir, stem + ".int8.onnx")
    report = {
        "kind": "cpu-int8-variant", "created": datetime.datetime.now().isoformat(timespec="seconds"),
        "model": manifest.name, "source": os.path.abspath(manifest.model_path), "source_sha256": manifest.sha256,
        "preprocess_digest": manifest.preprocessing.digest(), "device": profile.name,
        "variant": variant, "quantization": {"activation_type": profile.activation_type,
                                             "weight_type": profile.weight_type, "per_channel": profile.per_channel,
                                             "method": profile.calibrate_method},
        "calibration": {"source": calib.source, "describe": calib.describe(), "count": calib.count,
                        "set_hash": calib.set_hash, "cache_key": ct["key"], "decoders": ct["decoders"],
                        "replaced_stale_cache": ct.get("replaced_stale_cache")},
        "golden": {"source": golden.source, "describe": golden.describe(), "count": golden.count,
                   "decoders": golden_decoders},
        "formats": {f: measured[f] for f in profile.quant_formats}, "fp32": measured["fp32"],
        "chosen_format": chosen, "budget": dataclasses.asdict(profile.int8_budget), "budget_breaches": over,
        "mixed": mixed, "excluded_nodes": excluded if chosen_key == "mixed" else list(always_float),
        "parity": final["parity"], "latency": final["latency"], "speedup_vs_fp32": final["speedup_vs_fp32"],
        "tolerance": dataclasses.asdict(tol), "tolerance_breaches": failures,
        "status": "ok" if not failures else ("forced" if force else "failed"),
    }
    if calib.source == "phantoms" or golden.source == "phantoms":
        report["warning"] = ("CALIBRATION/GOLDEN INPUTS ARE GENERATED PHANTOMS, NOT RADIOGRAPHS: the accuracy "
                             "figures say little about real images. Pass --calib-dir with real images.")
    if not failures or force:
        shutil.move(candidates[chosen_key], variant)
        report["variant_sha256"] = file_sha256(variant)
        report["manifest"] = write_variant_manifest(
            manifest, variant, "int8", "ONNX Runtime %s u8s8 static quantisation (%s) of %s" % (
                chosen, "mixed" if chosen_key == "mixed" else "all supported ops", os.path.basename(onnx_path)))
    for path in candidates.values():
        if os.path.exists(path):
            os.remove(path)
    write_report(report, os.path.join(out_dir, stem + ".int8.report"))
    if failures and not force:
        raise ParityFailure("%s: INT8 variant past the %s parity tolerance: %s. Nothing installed; report in %s. "
                            "Use --force to install it anyway." % (stem, profile.name, "; ".join(failures),
                                                                   os.path.join(out_dir, stem + ".int8.report.md")))
    return report


def write_report(report: Dict[str, Any], base: str) -> None:
    with open(base + ".json", "w", encoding="utf-8") as fh:
        json.dump(report, fh, indent=2, sort_keys=True)
        fh.write("\n")
    with open(base + ".md", "w", encoding="utf-8") as fh:
        fh.write(report_markdown(report))


def report_markdown(r: Dict[str, Any]) -> str:
    lines = ["# INT8 variant of %s for %s" % (r["model"], r["device"]), ""]
    if r.get("warning"):
        lines += ["**WARNING: %s**" % r["warning"], ""]
    p, s, lat, fp = r["parity"], r["speedup_vs_fp32"], r["latency"], r["fp32"]["latency"]
    lines += [
        "- status: **%s**%s" % (r["status"], (" (" + "; ".join(r["tolerance_breaches"]) + ")")
                                if r["tolerance_breaches"] else ""),
        "- source: `%s` (sha256 %s)" % (r["source"], r["source_sha256"][:16]),
        "- variant: `%s` (format %s%s)" % (r["variant"], r["chosen_format"],
                                            ", mixed" if r["mixed"] and r["mixed"]["kept"] else ""),
        "- calibration: %s; decoded by %s" % (r["calibration"]["describe"], ", ".join(r["calibration"]["decoders"])),
        "- golden inputs: %s" % r["golden"]["describe"], "",
        "| | FP32 | INT8 |", "|---|---|---|",
        "| median latency (ms) | %.2f | %.2f |" % (fp["median_ms"], lat["median_ms"]),
        "| p95 latency (ms) | %.2f | %.2f |" % (fp["p95_ms"], lat["p95_ms"]),
        "| speed-up median / p95 | | %.2fx / %.2fx |" % (s["median"], s["p95"]), "",
        "Accuracy drop vs FP32 on %d golden inputs: max abs diff %.4g, max probability diff %.4g, "
        "mean probability diff %.4g%s." % (p["n"], p["max_abs_diff"], p["max_prob_diff"], p["mean_prob_diff"],
                                           ", min mask Dice %.4f (mean %.4f)" % (p["min_dice"], p["mean_dice"])
                                           if p["min_dice"] is not None else ""), "",
        "Formats measured in the same run:", "",
        "| format | median ms | p95 ms | speed-up (median) | max prob diff | min Dice |", "|---|---|---|---|---|---|"]
    for f, m in sorted(r["formats"].items()):
        lines.append("| %s | %.2f | %.2f | %.2fx | %.4g | %s |" % (
            f, m["latency"]["median_ms"], m["latency"]["p95_ms"], m["speedup_vs_fp32"]["median"],
            m["parity"]["max_prob_diff"],
            "%.4f" % m["parity"]["min_dice"] if m["parity"]["min_dice"] is not None else "-"))
    if r["mixed"]:
        m = r["mixed"]
        lines += ["", "Over the INT8 budget (%s): %d node(s) kept in float and re-measured: max prob diff %.4g, "
                  "speed-up %.2fx; %s." % ("; ".join(r["budget_breaches"]), len(m["excluded_nodes"]),
                                          m["parity"]["max_prob_diff"], m["speedup_vs_fp32"]["median"],
                                          "kept" if m["kept"] else "not kept (no better than all-INT8)")]
    return "\n".join(lines) + "\n"
