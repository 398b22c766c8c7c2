"""The TensorRT calls of a build (runs on the device or in the L4T container only).

Consumes a BuildPlan from device_plan.prepare; everything it decides about
(precision, DLA, calibration keys, parity, layer summaries) is plain Python
in the modules beside it. TensorRT 8.5 Python API; newer-only features
(builder_optimization_level, IProgressMonitor: 8.6) are used when present and
recorded as unsupported otherwise.
"""
import datetime
import json
import os
import time
from typing import Any, Dict, List, Optional

import numpy as np

from build_engine import calibration as cal
from build_engine.device_plan import BuildPlan, make_qdq
from build_engine.errors import OnnxParseError, ParityFailure, PrecisionUnsupported
from build_engine.layers import summarise
from build_engine.parity import ParityResult, breaches, compare
from build_engine.progress import Progress
from edge.errors import ModelError
from edge.inference.engine_sidecar import EngineSidecar, write_sidecar
from edge.inference.manifest import file_sha256, load_manifest
from edge.inference.tensorrt import TrtRunner, device_facts


def _calibrator(trt, tensors: np.ndarray, batch: int, table: str, key: str):
    import pycuda.driver as cuda

    class EntropyCalibrator(trt.IInt8EntropyCalibrator2):
        """Feeds edge.preprocess tensors; the table is keyed (stale ones refused in prepare)."""

        def __init__(self):
            trt.IInt8EntropyCalibrator2.__init__(self)
            self.batches = list(cal.batches(tensors, batch))
            self.i = 0
            self.mem = cuda.mem_alloc(self.batches[0].nbytes)

        def get_batch_size(self):
            return batch

        def get_batch(self, names):
            if self.i >= len(self.batches):
                return None
            cuda.memcpy_htod(self.mem, np.ascontiguousarray(self.batches[self.i]))
            self.i += 1
            return [int(self.mem)]

        def read_calibration_cache(self):
            try:
                return cal.read_keyed_cache(table, key)
            except cal.StaleCalibrationCache:
                return None

        def write_calibration_cache(self, cache):
            cal.write_keyed_cache(table, bytes(cache), key)

    return EntropyCalibrator()


def _parse(trt, builder, logger, path: str):
    network = builder.create_network(1 << int(trt.NetworkDefinitionCreationFlag.EXPLICIT_BATCH))
    parser = trt.OnnxParser(network, logger)
    with open(path, "rb") as fh:
        ok = parser.parse(fh.read(), path)
    if not ok:
        errors = []
        for i in range(parser.num_errors):
            e = parser.get_error(i)
            errors.append("node %s: %s (code %s, %s)" % (e.node(), e.desc(), e.code(), e.func()))
        raise OnnxParseError("TensorRT's ONNX parser refused %s with %d error(s):\n  %s"
                             % (path, len(errors), "\n  ".join(errors)))
    return network, parser


def _build_once(trt, plan: BuildPlan, source: str, fp16_layers: List[str], tensors: Optional[np.ndarray],
                progress: Progress, notes: List[str]) -> Dict[str, Any]:
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    if plan.precision == "fp16" and not builder.platform_has_fast_fp16:
        raise PrecisionUnsupported("this GPU has no fast FP16; refusing to build FP16")
    if plan.precision == "int8" and not builder.platform_has_fast_int8:
        raise PrecisionUnsupported("this GPU has no fast INT8; refusing to build INT8")
    if plan.dla_core is not None and plan.dla_core >= builder.num_DLA_cores:
        raise PrecisionUnsupported("DLA core %d requested, this device has %d" % (plan.dla_core, builder.num_DLA_cores))
    network, _parser = _parse(trt, builder, logger, source)
    for i in range(network.num_inputs):
        t = network.get_input(i)
        progress.note("input  %s %s %s" % (t.name, tuple(t.shape), t.dtype))
    for i in range(network.num_outputs):
        t = network.get_output(i)
        progress.note("output %s %s %s" % (t.name, tuple(t.shape), t.dtype))

    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, plan.workspace_bytes)
    config.profiling_verbosity = trt.ProfilingVerbosity.DETAILED
    if plan.builder_optimization_level is not None:
        if hasattr(config, "builder_optimization_level"):
            config.builder_optimization_level = plan.builder_optimization_level
        else:
            notes.append("builder_optimization_level %d not supported by TensorRT %s (>= 8.6); default used"
                         % (plan.builder_optimization_level, trt.__version__))
    profile = builder.create_optimization_profile()
    shape = tuple(plan.input_shape)
    profile.set_shape(plan.input_name, shape, shape, shape)
    config.add_optimization_profile(profile)
    if plan.precision in ("fp16", "int8"):
        config.set_flag(trt.BuilderFlag.FP16)
    if plan.precision == "int8":
        config.set_flag(trt.BuilderFlag.INT8)
        if plan.int8_mode == "calibrator":
            config.int8_calibrator = _calibrator(trt, tensors, plan.input_shape[0], plan.calib_table, plan.calib_key)
            config.set_calibration_profile(profile)
        if fp16_layers:
            wanted = set(fp16_layers)
            kept = 0
            for i in range(network.num_layers):
                layer = network.get_layer(i)
                if layer.name in wanted:
                    layer.precision = trt.float16
                    for j in range(layer.num_outputs):
                        layer.set_output_type(j, trt.float16)
                    kept += 1
            config.set_flag(trt.BuilderFlag.OBEY_PRECISION_CONSTRAINTS)
            progress.note("%d layer(s) constrained to FP16" % kept)
    dla_unsupported = []
    if plan.dla_core is not None:
        config.default_device_type = trt.DeviceType.DLA
        config.DLA_core = plan.dla_core
        if plan.gpu_fallback:
            config.set_flag(trt.BuilderFlag.GPU_FALLBACK)
        for i in range(network.num_layers):
            layer = network.get_layer(i)
            if not config.can_run_on_DLA(layer):
                dla_unsupported.append(layer.name)
        if dla_unsupported and not plan.gpu_fallback:
            raise ModelError("%d layer(s) cannot run on DLA and gpu_fallback is off: %s"
                             % (len(dla_unsupported), ", ".join(dla_unsupported[:20])))
    cache = None
    if plan.timing_cache:
        blob = b""
        if os.path.exists(plan.timing_cache):
            with open(plan.timing_cache, "rb") as fh:
                blob = fh.read()
        cache = config.create_timing_cache(blob)
        config.set_timing_cache(cache, False)
    if hasattr(trt, "IProgressMonitor"):
        config.progress_monitor = _monitor(trt, progress)
    progress.note("building (workspace %d MiB, %s, %s) - minutes on a Jetson" % (
        plan.workspace_bytes >> 20, plan.precision, "DLA core %d" % plan.dla_core if plan.dla_core is not None
        else "GPU"))
    t0 = time.time()
    serialized = builder.build_serialized_network(network, config)
    seconds = time.time() - t0
    if serialized is None:
        raise ModelError("TensorRT build failed for %s (the TensorRT log above says why)" % source)
    if cache is not None:
        os.makedirs(os.path.dirname(os.path.abspath(plan.timing_cache)), exist_ok=True)
        with open(plan.timing_cache, "wb") as fh:
            fh.write(bytes(config.get_timing_cache().serialize()))
    return {"engine": bytes(serialized), "seconds": seconds, "dla_unsupported": dla_unsupported}


def _monitor(trt, progress: Progress):
    class Monitor(trt.IProgressMonitor):
        def __init__(self):
            trt.IProgressMonitor.__init__(self)

        def phase_start(self, phase_name, parent_phase, num_steps):
            progress.note("phase %s (%d steps)" % (phase_name, num_steps))

        def step_complete(self, phase_name, step):
            return True

        def phase_finish(self, phase_name):
            pass

    return Monitor()


def _inspect(trt, runner: TrtRunner, dla: bool) -> Dict[str, Any]:
    try:
        insp = runner.engine.create_engine_inspector()
        return summarise(json.loads(insp.get_engine_information(trt.LayerInformationFormat.JSON)), dla)
    except Exception as exc:  # an inspector failure must not lose a good engine
        return {"error": str(exc)}


def _parity(plan: BuildPlan, runner: TrtRunner) -> Dict[str, Any]:
    with np.load(plan.golden, allow_pickle=False) as z:
        inputs = np.array(z["inputs"])
        ref = np.array(z["reference"]) if "reference" in z else None
    if ref is None:
        from build_engine.cpu_variant import ort_session, run_all
        ref = np.stack(run_all(ort_session(plan.onnx), plan.input_name, inputs))
    got = [runner.run(inputs[i:i + 1]) for i in range(len(inputs))]
    return compare(list(ref), got, plan.output_kind, plan.task, columns=plan.output_columns).to_json()


def build(plan: BuildPlan, force: bool = False, progress: Optional[Progress] = None) -> EngineSidecar:
    import tensorrt as trt
    progress = progress or Progress(3)
    notes = []  # type: List[str]
    manifest = load_manifest(plan.onnx)
    tensors = cal.load_batches(plan.calib_tensors, plan.calib_key) if plan.calib_tensors else None
    source = plan.qdq_onnx if plan.precision == "int8" and plan.int8_mode == "qdq" else plan.onnx
    fp16 = list(plan.fp16_layers) if plan.int8_mode == "calibrator" else []

    progress.stage("TensorRT %s build of %s" % (trt.__version__, os.path.basename(source)))
    built = _build_once(trt, plan, source, fp16, tensors, progress, notes)
    runner = TrtRunner(built["engine"], plan.dla_core, plan.engine)
    progress.stage("parity vs ONNX Runtime FP32 on golden inputs")
    parity = _parity(plan, runner)
    progress.note("max abs %.4g, max prob %.4g%s" % (parity["max_abs_diff"], parity["max_prob_diff"],
                  ", min Dice %.4f" % parity["min_dice"] if parity["min_dice"] is not None else ""))
    budget = plan.budget
    over = breaches(ParityResult(**parity), None, budget["max_prob_diff"], budget["min_dice"]) \
        if plan.precision == "int8" else []
    mixed = []  # type: List[str]
    if over and plan.fallback_layers:
        progress.note("over the INT8 budget (%s): rebuilding with %d layer(s) in FP16" % (
            "; ".join(over), len(plan.fallback_layers)))
        mixed = sorted(set(plan.fp16_layers) | set(plan.fallback_layers))
        if plan.int8_mode == "qdq":
            source = make_qdq(manifest, plan, tensors, "entropy", mixed, progress, suffix=".mixed")
            built2 = _build_once(trt, plan, source, [], tensors, progress, notes)
        else:
            built2 = _build_once(trt, plan, source, mixed, tensors, progress, notes)
        runner2 = TrtRunner(built2["engine"], plan.dla_core, plan.engine)
        parity2 = _parity(plan, runner2)
        if parity2["max_prob_diff"] < parity["max_prob_diff"]:
            runner.close()
            runner, built, parity = runner2, built2, parity2
            notes.append("mixed precision kept: %s" % ", ".join(mixed))
        else:
            runner2.close()
            notes.append("mixed precision measured and not better; all-INT8 kept")
            mixed = []
    progress.stage("tolerance check, sidecar")
    tol = plan.tolerance
    failures = breaches(ParityResult(**parity), tol["max_abs_diff"], tol["max_prob_diff"], tol["min_dice"])
    layers = _inspect(trt, runner, plan.dla_core is not None)
    runner.close()
    if failures and not force:
        raise ParityFailure("%s %s engine past the %s parity tolerance: %s. Not installed; --force installs it "
                            "anyway." % (plan.model, plan.precision, plan.device, "; ".join(failures)))
    os.makedirs(os.path.dirname(os.path.abspath(plan.engine)), exist_ok=True)
    tmp = plan.engine + ".tmp"
    with open(tmp, "wb") as fh:
        fh.write(built["engine"])
    os.replace(tmp, plan.engine)
    facts = device_facts()
    sidecar = EngineSidecar(
        model=plan.model, device=plan.device, precision=plan.precision, source_onnx=plan.onnx,
        source_sha256=plan.onnx_sha256, preprocess_digest=plan.preprocess_digest,
        tensorrt_version=trt.__version__, cuda_version=facts.cuda_version, l4t_version=facts.l4t_version,
        compute_capability=facts.compute_capability or "unknown", dla_core=plan.dla_core,
        gpu_fallback=plan.gpu_fallback, engine_sha256=file_sha256(plan.engine), workspace_bytes=plan.workspace_bytes,
        int8_mode=plan.int8_mode if plan.precision == "int8" else "",
        calibration={"key": plan.calib_key, "describe": plan.calib_describe} if plan.precision == "int8" else {},
        fp16_layers=mixed or list(plan.fp16_layers), layer_precisions=layers.get("precisions", {}),
        dla_fallback_layers=sorted(set(built["dla_unsupported"]) | set(layers.get("gpu_layers", []))),
        build_seconds=round(built["seconds"], 1), built_at=datetime.datetime.now().isoformat(timespec="seconds"),
        parity=dict(parity, tolerance=tol, breaches=failures, golden=plan.golden_describe), forced=bool(failures),
        notes=notes)
    write_sidecar(plan.sidecar, sidecar)
    return sidecar
