"""`pneumo-edge doctor`: is this machine ready to run the appliance as configured?

Each check prints OK / WARN / FAIL with a fix hint; the exit code is 1 when
anything FAILs. Missing TensorRT is a WARN when the configured backend does
not need it and a FAIL when it does.
"""
import os
import shutil
from dataclasses import dataclass
from typing import Callable, List, Optional, TextIO, Tuple

import numpy as np

from edge.errors import PneumoEdgeError
from edge.inference.manifest import ROLES
from edge.phantom import chest_phantom
from edge.settings import Settings

OK, WARN, FAIL = "OK", "WARN", "FAIL"
MIN_FREE_GIB, WARN_FREE_GIB = 1.0, 5.0


@dataclass
class Check:
    name: str
    status: str
    detail: str
    fix: str = ""


def _needs_tensorrt(settings: Settings) -> bool:
    return settings.models.backend == "tensorrt"


def check_tensorrt(settings: Settings) -> List[Check]:
    from edge.inference.tensorrt import device_facts, tensorrt_available
    ok, why = tensorrt_available()
    if ok:
        f = device_facts()
        return [Check("gpu", OK, "%s, compute capability %s, %d DLA core(s), CUDA %s, L4T %s" % (
                    f.gpu_name, f.compute_capability, f.dla_cores, f.cuda_version, f.l4t_version or "n/a")),
                Check("tensorrt", OK, "TensorRT %s" % f.tensorrt_version)]
    level = FAIL if _needs_tensorrt(settings) else WARN
    fix = ("run on the cart (JetPack 5.1 ships TensorRT 8.5 and pycuda in the image), or set models.backend: "
           "onnxruntime" if level == FAIL else "fine off the device: the %s backend runs on ONNX Runtime"
           % settings.models.backend)
    return [Check("gpu/tensorrt", level, why, fix)]


def check_models(settings: Settings) -> List[Check]:
    from edge.inference.manifest import load_manifest, verify_model_file
    out = []
    for role in ROLES:
        path = getattr(settings.models, role)
        try:
            m = load_manifest(path)
            verify_model_file(m)
            out.append(Check("model:" + role, OK, "%s %s (%s, %s, %s)" % (m.name, m.version, m.precision,
                                                                         m.intended_use, m.sha256[:12])))
        except PneumoEdgeError as exc:
            out.append(Check("model:" + role, FAIL, str(exc), "export the model (make models) or fix models.%s" % role))
    return out


def check_engines(settings: Settings) -> List[Check]:
    if not _needs_tensorrt(settings) and settings.models.backend != "auto":
        return [Check("engines", OK, "not needed (backend %s)" % settings.models.backend)]
    from edge.inference.engine_sidecar import (find_engine, model_stem, read_sidecar, rebuild_command,
                                               sidecar_mismatches, sidecar_path)
    from edge.inference.manifest import load_manifest
    from edge.inference.device_profile import profile_precision
    from edge.inference.tensorrt import device_facts
    facts = device_facts()
    level = FAIL if _needs_tensorrt(settings) else WARN
    out = []
    m = settings.models
    for role in ROLES:
        try:
            manifest = load_manifest(getattr(m, role))
        except PneumoEdgeError as exc:
            out.append(Check("engine:" + role, level, str(exc)))
            continue
        stem = model_stem(manifest.model_path)
        try:
            wanted = profile_precision(m.device_profile, role)
        except PneumoEdgeError as exc:   # an invalid profile: its file, line and key
            out.append(Check("engine:" + role, level, str(exc), "fix the device profile"))
            continue
        engine, found = find_engine(m.engine_dir, stem, m.device_profile, wanted)
        command = rebuild_command(manifest.model_path, m.device_profile, wanted or "fp16", m.engine_dir)
        if engine is None:
            out.append(Check("engine:" + role, level, "no %s engine for %s/%s in %s" % (
                wanted or "", stem, m.device_profile, m.engine_dir), command))
            continue
        try:
            sidecar = read_sidecar(sidecar_path(engine))
        except PneumoEdgeError as exc:
            out.append(Check("engine:" + role, level, str(exc), command))
            continue
        problems = sidecar_mismatches(sidecar, facts, manifest.sha256, manifest.preprocessing.digest())
        if problems:
            out.append(Check("engine:" + role, level, "; ".join(problems), command))
        else:
            out.append(Check("engine:" + role, OK, "%s (%s, %s)" % (os.path.basename(engine), sidecar.precision,
                             "DLA %d" % sidecar.dla_core if sidecar.dla_core is not None else "GPU")))
    return out


def check_broker(settings: Settings, timeout_s: float = 5.0) -> List[Check]:
    """Connect as the appliance does and publish once, QoS 1, awaiting the PUBACK."""
    from edge.alerts.probe import probe_broker
    from edge.alerts.topics import Topics
    topics = Topics(settings.mqtt.topic_prefix, settings.site, settings.device)
    client_id = (settings.mqtt.client_id or "pneumo-edge-%s-%s" % (settings.site, settings.device)) + "-doctor"
    r = probe_broker(settings.mqtt, topics.base + "/doctor", client_id, timeout_s)
    return [Check("broker", OK if r.ok else FAIL, r.detail, r.fix)]


def check_capture(settings: Settings) -> List[Check]:
    base = settings.capture.dir
    out = []
    if not os.path.isdir(base):
        parent = os.path.dirname(os.path.abspath(base))
        if os.access(parent, os.W_OK | os.X_OK):
            return [Check("capture", WARN, "%s does not exist yet (created at start)" % base)]
        return [Check("capture", FAIL, "%s does not exist and %s is not writable" % (base, parent),
                      "mkdir -p %s && chown pneumo-edge %s" % (base, base))]
    for sub in ("", "incoming", "processing", "done", "rejected"):
        path = os.path.join(base, sub)
        if os.path.isdir(path) and not os.access(path, os.R_OK | os.W_OK | os.X_OK):
            out.append(Check("capture", FAIL, "%s is not readable+writable by uid %d" % (path, os.getuid()),
                             "chown -R pneumo-edge %s (the service user must move files)" % base))
    return out or [Check("capture", OK, "%s writable" % base)]


def check_disk(settings: Settings) -> List[Check]:
    out = []
    seen = set()
    for label, path in (("capture", settings.capture.dir), ("state", settings.state_dir)):
        probe = os.path.abspath(path)
        while not os.path.exists(probe):
            probe = os.path.dirname(probe)
        usage = shutil.disk_usage(probe)
        if usage.free in seen:
            continue
        seen.add(usage.free)
        gib = usage.free / float(1 << 30)
        status = FAIL if gib < MIN_FREE_GIB else WARN if gib < WARN_FREE_GIB else OK
        out.append(Check("disk:" + label, status, "%.1f GiB free at %s" % (gib, probe),
                         "free space or set capture.on_success: delete" if status != OK else ""))
    return out


def _fp32_source(manifest) -> Optional[str]:
    """The FP32 ONNX a variant was derived from: `x.int8.onnx` -> `x.onnx` beside it."""
    from edge.inference.manifest import file_sha256
    if not manifest.derived_from:
        return manifest.model_path
    base = manifest.model_path
    for prec in (".int8.onnx", ".fp16.onnx"):
        if base.endswith(prec):
            cand = base[:-len(prec)] + ".onnx"
            if os.path.exists(cand) and file_sha256(cand) == manifest.derived_from:
                return cand
    return None


def parity_limit(precision: str) -> float:
    return 0.05 if precision == "int8" else 0.01 if precision == "fp16" else 1e-3


def check_parity(settings: Settings, golden: Optional[np.ndarray] = None) -> List[Check]:
    """The model the appliance will run (TensorRT engine or INT8 ONNX) vs the ONNX Runtime FP32
    reference on one image; nothing to compare when the configured model is that reference."""
    from edge.inference.manifest import load_manifest
    from edge.inference.registry import create_backend, resolve_backend_name
    from edge.parity import compare
    from edge.preprocess import preprocess
    pixels = golden if golden is not None else chest_phantom(512, 512)
    source = "golden image" if golden is not None else "generated phantom"
    out = []
    for role in ROLES:
        try:
            manifest = load_manifest(getattr(settings.models, role))
            name, _ = resolve_backend_name(settings.models)
            if name == "onnxruntime" and not manifest.derived_from:
                out.append(Check("parity:" + role, OK, "nothing to compare: %s runs as the FP32 reference itself "
                                 "(onnxruntime %s)" % (manifest.file, manifest.precision)))
                continue
            ref_path = _fp32_source(manifest)
            if ref_path is None:
                out.append(Check("parity:" + role, WARN, "FP32 source of %s not found beside it" % manifest.file))
                continue
            tensor = preprocess(pixels, manifest.preprocessing)[0]
            backend = create_backend(manifest, settings.models, name)
            try:
                got, precision = backend.run(tensor), backend.precision
            finally:
                backend.close()
            import onnxruntime as ort
            sess = ort.InferenceSession(ref_path, providers=["CPUExecutionProvider"])
            ref = sess.run(None, {manifest.input.name: tensor})[0]
            result = compare([ref], [got], manifest.output_kind, manifest.task, columns=manifest.output_columns)
        except (PneumoEdgeError, ImportError, ValueError) as exc:
            out.append(Check("parity:" + role, FAIL if _needs_tensorrt(settings) else WARN, str(exc)))
            continue
        limit = parity_limit(precision)
        status = OK if result.max_prob_diff <= limit else FAIL
        dice = ", mask Dice %.4f" % result.min_dice if result.min_dice is not None else ""
        out.append(Check("parity:" + role, status, "%s %s vs FP32 (%s) on a %s: max abs %.3g, max prob diff %.3g"
                         "%s (limit %.3g)" % (name, precision, os.path.basename(ref_path), source,
                                               result.max_abs_diff, result.max_prob_diff, dice, limit),
                         "rebuild the engine/variant and read its build report" if status != OK else ""))
    return out


CHECKS = (check_tensorrt, check_models, check_engines, check_broker, check_capture, check_disk,
          check_parity)  # type: Tuple[Callable[[Settings], List[Check]], ...]


def run_doctor(settings: Settings, out: TextIO) -> int:
    failed = False
    for fn in CHECKS:
        try:
            results = fn(settings)
        except Exception as exc:  # a broken check is itself a finding, not a crash
            results = [Check(fn.__name__.replace("check_", ""), FAIL, "check crashed: %r" % exc)]
        for c in results:
            failed = failed or c.status == FAIL
            out.write("%-4s  %-18s %s\n" % (c.status, c.name, c.detail))
            if c.fix:
                out.write("      %-18s fix: %s\n" % ("", c.fix))
    out.write("doctor: %s\n" % ("problems found" if failed else "ready"))
    return 1 if failed else 0
