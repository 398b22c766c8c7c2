"""First-boot engine check: build every missing or stale engine the settings need.

The entrypoint runs `python -m build_engine ensure --config ...` before the
appliance; the app may call ensure_engines itself with `on_state` to publish
`building-engines` on its status topic.
"""
import os
from dataclasses import dataclass
from typing import Callable, List, Optional

from build_engine.device_plan import prepare
from build_engine.profiles import load_profile
from build_engine.progress import Progress
from edge.errors import ModelError
from edge.inference.engine_sidecar import engine_filename, model_stem, read_sidecar, sidecar_mismatches, sidecar_path
from edge.inference.manifest import ROLES, load_manifest
from edge.settings import Settings


@dataclass
class EnsureResult:
    role: str
    engine: str
    action: str          # "current" | "built" | "failed"
    reasons: List[str]


def engine_status(onnx_path: str, device: str, precision: str, engine_dir: str, facts) -> List[str]:
    """Why this engine must be (re)built; empty = current."""
    manifest = load_manifest(onnx_path)
    engine = os.path.join(engine_dir, engine_filename(model_stem(manifest.model_path), precision, device))
    if not os.path.exists(engine):
        return ["missing: %s" % engine]
    try:
        sidecar = read_sidecar(sidecar_path(engine))
    except ModelError as exc:
        return [str(exc)]
    return sidecar_mismatches(sidecar, facts, manifest.sha256, manifest.preprocessing.digest())


def ensure_engines(settings: Settings, on_state: Optional[Callable[[str], None]] = None, force: bool = False,
                   calib_dir: Optional[str] = None) -> List[EnsureResult]:
    """Check each model's engine against this device; build those missing or stale.

    on_state("building-engines") is called once before the first build and
    on_state("engines-ready") / on_state("engine-build-failed") at the end.
    """
    from build_engine.trt_build import build
    from edge.inference.tensorrt import device_facts, tensorrt_available
    ok, why = tensorrt_available()
    if not ok:
        raise ModelError("cannot ensure TensorRT engines here: %s" % why)
    m = settings.models
    profile = load_profile(m.device_profile)
    facts = device_facts()
    results, announced = [], False
    for role in ROLES:
        onnx_path = getattr(m, role)
        precision = profile.placement(role).precision
        engine = os.path.join(m.engine_dir, engine_filename(model_stem(onnx_path), precision, profile.name))
        reasons = ["--force"] if force else engine_status(onnx_path, profile.name, precision, m.engine_dir, facts)
        if not reasons:
            results.append(EnsureResult(role, engine, "current", []))
            continue
        if on_state and not announced:
            on_state("building-engines")
            announced = True
        try:
            plan = prepare(onnx_path, profile, precision, m.engine_dir, calib_dir=calib_dir,
                           tensorrt_version=facts.tensorrt_version, progress=Progress(7))
            build(plan, progress=Progress(3))
            results.append(EnsureResult(role, engine, "built", reasons))
        except ModelError as exc:
            results.append(EnsureResult(role, engine, "failed", reasons + [str(exc)]))
    if on_state:
        on_state("engine-build-failed" if any(r.action == "failed" for r in results) else "engines-ready")
    return results
