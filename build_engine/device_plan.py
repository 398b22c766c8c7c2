"""Everything a TensorRT build needs that is not a TensorRT call.

`prepare` checks the request against the profile (precision, DLA, opset),
makes the explicit s8s8 QDQ ONNX and/or the keyed calibration tensors, the
golden inputs with their FP32 reference outputs, and writes the build plan
JSON. On a machine without TensorRT that is where it stops (NeedsDevice, with
the exact command for the device); on the device trt_build consumes the plan.
"""
import json
import os
from dataclasses import asdict, dataclass, field, replace
from typing import Any, Dict, List, Optional

import numpy as np

from build_engine import calibration as cal
from build_engine.cpu_variant import golden_set, ort_session, run_all
from build_engine.errors import PrecisionUnsupported
from build_engine.profiles import DeviceProfile, Placement
from build_engine.progress import Progress
from build_engine.quantize import nodes_matching, onnx_opset, quantize_trt_qdq
from edge.errors import ModelError
from edge.inference.engine_sidecar import engine_filename, model_stem, rebuild_command, sidecar_path
from edge.inference.manifest import ROLE_OF_TASK, ModelManifest, load_manifest, verify_model_file

# Highest ONNX opset each TensorRT release's parser reads (TensorRT support matrices).
TRT_MAX_OPSET = {"8.0": 13, "8.2": 13, "8.4": 17, "8.5": 17, "8.6": 17, "10.0": 17, "10.3": 20}


@dataclass
class BuildPlan:
    model: str
    onnx: str
    onnx_sha256: str
    preprocess_digest: str
    task: str
    output_kind: str
    device: str
    profile_path: str
    precision: str
    dla_core: Optional[int]
    gpu_fallback: bool
    workspace_bytes: int
    builder_optimization_level: Optional[int]
    timing_cache: Optional[str]
    input_name: str
    input_shape: List[int]                 # min = opt = max
    opset: int
    max_opset: int
    int8_mode: str = ""                    # "qdq" | "calibrator" | ""
    qdq_onnx: str = ""
    qdq_key: str = ""
    calib_tensors: str = ""                # .npz of preprocessed calibration tensors
    calib_key: str = ""
    calib_table: str = ""                  # TensorRT's calibration cache (calibrator mode)
    calib_describe: str = ""
    golden: str = ""                       # .npz: inputs + FP32 reference outputs
    golden_describe: str = ""
    fp16_layers: List[str] = field(default_factory=list)
    fallback_layers: List[str] = field(default_factory=list)   # FP16 on an INT8 budget breach
    output_columns: List[str] = field(default_factory=list)    # the manifest's, for parity
    tolerance: Dict[str, float] = field(default_factory=dict)
    budget: Dict[str, Any] = field(default_factory=dict)
    engine: str = ""
    sidecar: str = ""
    command: str = ""
    notes: List[str] = field(default_factory=list)


def max_opset_for(tensorrt_version: Optional[str], profile_max: int) -> int:
    if not tensorrt_version:
        return profile_max
    parts = tensorrt_version.split(".")
    return TRT_MAX_OPSET.get(".".join(parts[:2]), profile_max)


def check_opset(opset: int, limit: int, onnx_path: str, trt: str) -> None:
    if opset > limit:
        raise ModelError("%s uses ONNX opset %d; TensorRT %s reads opset <= %d. Re-export with opset %d "
                         "(torch.onnx.export(..., opset_version=%d))." % (onnx_path, opset, trt, limit, limit, limit))


def check_request(profile: DeviceProfile, precision: str, placement: Placement) -> None:
    if precision not in profile.precisions:
        raise PrecisionUnsupported("%s does not support %s (allowed: %s); refusing rather than building something "
                                   "else" % (profile.name, precision, ", ".join(profile.precisions)))
    if placement.dla_core is not None and precision == "fp32":
        raise PrecisionUnsupported("DLA core %d runs only fp16 or int8; ask for fp16/int8 or pass --dla-core none"
                                   % placement.dla_core)


def device_command(onnx_path: str, profile: DeviceProfile, precision: str, out_dir: str,
                   dla_override: Optional[str] = None) -> str:
    cmd = rebuild_command(onnx_path, profile.name, precision, out_dir)
    return cmd + (" --dla-core %s" % dla_override if dla_override is not None else "")


def prepare(onnx_path: str, profile: DeviceProfile, precision: str, out_dir: str,
            calib_dir: Optional[str] = None, golden_dir: Optional[str] = None, recalibrate: bool = False,
            dla_core: Optional[str] = None, tensorrt_version: Optional[str] = None,
            progress: Optional[Progress] = None) -> BuildPlan:
    progress = progress or Progress(4)
    manifest = load_manifest(onnx_path)
    verify_model_file(manifest)
    role = ROLE_OF_TASK[manifest.task]
    placement = profile.models.get(role, Placement(precision=precision))
    if dla_core is not None:
        placement = replace(placement, precision=precision, dla_core=None if dla_core == "none" else int(dla_core))
        if placement.dla_core is not None and not 0 <= placement.dla_core < profile.dla_cores:
            raise ModelError("--dla-core %s: %s has %d DLA core(s)" % (dla_core, profile.name, profile.dla_cores))
    check_request(profile, precision, placement)
    stem = model_stem(manifest.model_path)
    os.makedirs(out_dir, exist_ok=True)

    progress.stage("checking %s for %s %s" % (stem, profile.name, precision))
    opset = onnx_opset(manifest.model_path)
    limit = max_opset_for(tensorrt_version, profile.max_opset)
    check_opset(opset, limit, manifest.model_path, tensorrt_version or profile.tensorrt or "?")
    engine = os.path.join(out_dir, engine_filename(stem, precision, profile.name))
    tol = profile.tolerance(precision)
    plan = BuildPlan(
        model=stem, onnx=os.path.abspath(manifest.model_path), onnx_sha256=manifest.sha256,
        preprocess_digest=manifest.preprocessing.digest(), task=manifest.task, output_kind=manifest.output_kind,
        output_columns=list(manifest.output_columns), device=profile.name, profile_path=profile.path, precision=precision, dla_core=placement.dla_core,
        gpu_fallback=placement.gpu_fallback, workspace_bytes=profile.workspace_mib << 20,
        builder_optimization_level=profile.builder_optimization_level, timing_cache=profile.timing_cache,
        input_name=manifest.input.name,
        input_shape=[profile.batch, manifest.preprocessing.channels] + list(manifest.preprocessing.size),
        opset=opset, max_opset=limit, tolerance=asdict(tol), budget=asdict(profile.int8_budget),
        engine=engine, sidecar=sidecar_path(engine),
        command=device_command(onnx_path, profile, precision, out_dir, dla_core))
    if precision == "int8":
        plan.int8_mode = profile.int8_mode
        plan.fp16_layers = nodes_matching(manifest.model_path, placement.fp16_layers, placement.fp16_op_types,
                                          placement.int8_only)
        plan.fallback_layers = nodes_matching(manifest.model_path, (), profile.int8_budget.fallback_op_types)
        progress.stage("calibration tensors through edge.preprocess")
        calib = cal.choose_images(calib_dir, profile.calibration_images)
        progress.note(calib.describe())
        plan.calib_describe = calib.describe()
        plan.calib_key = cal.cache_key(manifest.sha256, plan.preprocess_digest, calib.set_hash)
        plan.calib_tensors = os.path.join(out_dir, "%s.%s.calib.npz" % (stem, profile.name))
        plan.calib_table = os.path.join(out_dir, "%s.%s.calib.cache" % (stem, profile.name))
        if recalibrate:
            for p in (plan.calib_tensors, plan.calib_table, plan.calib_table + ".key.json"):
                if os.path.exists(p):
                    os.remove(p)
        tensors = cal.load_batches(plan.calib_tensors, plan.calib_key,
                                   on_stale=lambda why: progress.note(why + ": calibrating again"))
        if tensors is None:
            tensors, _ = cal.collect(calib, manifest.preprocessing,
                                     lambda d, t: progress.count(d, t, "calibration images"))
            # a static engine calibrates in whole batches of the profile's size
            usable = (len(tensors) // profile.batch) * profile.batch
            tensors = tensors[:usable]
            cal.save_batches(plan.calib_tensors, tensors, plan.calib_key, calib.describe())
        stale_table = cal.drop_stale_table(plan.calib_table, plan.calib_key)
        if stale_table:       # TensorRT then calibrates again and writes a table with this key
            progress.note(stale_table + ": removed, TensorRT will calibrate again")
        if profile.int8_mode == "qdq":
            plan.qdq_onnx = os.path.join(out_dir, "%s.int8.qdq.onnx" % stem)
            plan.qdq_key = plan.calib_key
            make_qdq(manifest, plan, tensors, profile.calibrate_method, plan.fp16_layers, progress)
    progress.stage("golden inputs and ONNX Runtime FP32 reference")
    plan.golden, plan.golden_describe = make_golden(manifest, profile, golden_dir, out_dir, stem)
    progress.note(plan.golden_describe)
    write_plan(plan, engine + ".plan.json")
    return plan


def make_qdq(manifest: ModelManifest, plan: BuildPlan, tensors: np.ndarray, method: str,
             exclude: List[str], progress: Progress, suffix: str = "") -> str:
    """The s8s8 QDQ ONNX, reused when its key file matches."""
    path = plan.qdq_onnx if not suffix else plan.qdq_onnx[:-5] + suffix + ".onnx"
    key = "%s|%s" % (plan.qdq_key, ",".join(sorted(exclude)))
    keyfile = path + ".key.json"
    if os.path.exists(path) and os.path.exists(keyfile):
        with open(keyfile, "r", encoding="utf-8") as fh:
            if json.load(fh).get("key") == key:
                progress.note("QDQ ONNX %s is current (key matches)" % path)
                return path
    progress.note("quantising to explicit s8s8 QDQ (%d float node(s))" % len(exclude))
    quantize_trt_qdq(manifest.model_path, path, manifest.input.name, tensors, method, exclude)
    with open(keyfile, "w", encoding="utf-8") as fh:
        json.dump({"key": key}, fh)
    return path


def make_golden(manifest: ModelManifest, profile: DeviceProfile, golden_dir: Optional[str], out_dir: str,
                stem: str) -> Any:
    images = golden_set(manifest, profile, golden_dir)
    tensors, _ = cal.collect(images, manifest.preprocessing)
    path = os.path.join(out_dir, "%s.golden.npz" % stem)
    try:
        ref = np.stack(run_all(ort_session(manifest.model_path), manifest.input.name, tensors))
    except ImportError:
        ref = None   # no ONNX Runtime on this machine: the device computes the reference itself
    if ref is None:
        np.savez_compressed(path, inputs=tensors, sha256=np.array(manifest.sha256))
    else:
        np.savez_compressed(path, inputs=tensors, reference=ref, sha256=np.array(manifest.sha256))
    return path, images.describe()


def write_plan(plan: BuildPlan, path: str) -> None:
    with open(path, "w", encoding="utf-8") as fh:
        json.dump(asdict(plan), fh, indent=2, sort_keys=True)
        fh.write("\n")


def read_plan(path: str) -> BuildPlan:
    with open(path, "r", encoding="utf-8") as fh:
        return BuildPlan(**json.load(fh))


def produced_files(plan: BuildPlan) -> List[str]:
    files = [plan.engine + ".plan.json", plan.golden, plan.qdq_onnx, plan.calib_tensors]
    return [f for f in files if f and os.path.exists(f)]
