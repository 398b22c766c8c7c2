"""What a TensorRT engine is bound to, and whether this device matches it.

An engine only runs on the GPU, TensorRT version and model it was built for.
`build_engine` writes `<model>.<precision>.<device>.engine.json` beside each
engine; the runtime reads it back and refuses a mismatch with the exact
command that rebuilds the engine. Pure Python: no TensorRT import here.
"""
import json
import os
import shlex
from dataclasses import asdict, dataclass, field
from typing import Any, Dict, List, Optional, Tuple

from edge.errors import EngineMismatch, ModelError

SIDECAR_SCHEMA_VERSION = 1
PRECISIONS = ("fp32", "fp16", "int8")
# Preference when several engines for one model exist and no profile says which.
PRECISION_PREFERENCE = ("int8", "fp16", "fp32")


@dataclass(frozen=True)
class DeviceFacts:
    """What this machine is, as far as an engine cares. None = unknown here."""
    tensorrt_version: Optional[str] = None
    cuda_version: Optional[str] = None
    l4t_version: Optional[str] = None        # "35.3.1" from /etc/nv_tegra_release
    compute_capability: Optional[str] = None  # "7.2"
    gpu_name: Optional[str] = None
    dla_cores: int = 0


@dataclass
class EngineSidecar:
    model: str                               # ONNX stem, e.g. "classifier"
    device: str                              # profile name, e.g. "xavier_nx"
    precision: str
    source_onnx: str
    source_sha256: str
    preprocess_digest: str
    tensorrt_version: str
    cuda_version: Optional[str]
    l4t_version: Optional[str]
    compute_capability: str
    dla_core: Optional[int] = None           # None = GPU
    gpu_fallback: bool = True
    engine_sha256: str = ""
    workspace_bytes: int = 0
    int8_mode: str = ""                      # "" | "qdq" | "calibrator"
    calibration: Dict[str, Any] = field(default_factory=dict)
    fp16_layers: List[str] = field(default_factory=list)   # kept out of INT8 (mixed precision)
    layer_precisions: Dict[str, int] = field(default_factory=dict)  # precision -> layer count
    dla_fallback_layers: List[str] = field(default_factory=list)
    build_seconds: float = 0.0
    built_at: str = ""
    parity: Dict[str, Any] = field(default_factory=dict)
    forced: bool = False                     # built with --force past the parity tolerance
    notes: List[str] = field(default_factory=list)

    def to_json(self) -> Dict[str, Any]:
        d = asdict(self)
        d["schema_version"] = SIDECAR_SCHEMA_VERSION
        return d


def engine_filename(model: str, precision: str, device: str) -> str:
    return "%s.%s.%s.engine" % (model, precision, device)


def sidecar_path(engine_path: str) -> str:
    return engine_path + ".json"


def model_stem(onnx_path: str) -> str:
    """`models/classifier/classifier.onnx` -> `classifier`."""
    base = os.path.basename(onnx_path)
    return base[:-5] if base.endswith(".onnx") else base


def rebuild_command(onnx_path: str, device: str, precision: str, out_dir: str,
                    python: str = "python3") -> str:
    """The one command that rebuilds this engine on the device."""
    args = [python, "-m", "build_engine", "--onnx", onnx_path, "--device", device,
            "--precision", precision, "--out", out_dir]
    return " ".join(shlex.quote(a) for a in args)


def write_sidecar(path: str, sidecar: EngineSidecar) -> None:
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as fh:
        json.dump(sidecar.to_json(), fh, indent=2, sort_keys=True)
        fh.write("\n")
    os.replace(tmp, path)


def read_sidecar(path: str) -> EngineSidecar:
    try:
        with open(path, "r", encoding="utf-8") as fh:
            data = json.load(fh)
    except FileNotFoundError:
        raise ModelError("%s: engine sidecar not found (every engine needs the JSON build_engine writes beside it)"
                         % path)
    except ValueError as exc:
        raise ModelError("%s: engine sidecar is not valid JSON: %s" % (path, exc))
    if not isinstance(data, dict):
        raise ModelError("%s: engine sidecar is not a JSON object" % path)
    ver = data.pop("schema_version", None)
    if ver != SIDECAR_SCHEMA_VERSION:
        raise ModelError("%s: sidecar schema_version %r, this runtime reads %d"
                         % (path, ver, SIDECAR_SCHEMA_VERSION))
    known = set(EngineSidecar.__dataclass_fields__)
    unknown = sorted(set(data) - known)
    if unknown:
        raise ModelError("%s: unknown sidecar keys %s" % (path, ", ".join(unknown)))
    try:
        return EngineSidecar(**data)
    except TypeError as exc:
        raise ModelError("%s: malformed sidecar: %s" % (path, exc))


def sidecar_mismatches(sidecar: EngineSidecar, facts: DeviceFacts, source_sha256: str,
                       preprocess_digest: str) -> List[str]:
    """Every reason this engine must not run here; empty = it matches.

    Unknown device facts are only tolerated for the L4T release (a plain
    Linux host with a dGPU has none); TensorRT version and compute
    capability must be known and equal, since the engine format depends on both.
    """
    out = []
    if sidecar.source_sha256 != source_sha256:
        out.append("model changed: engine built from ONNX sha256 %s..., the manifest now says %s..."
                   % (sidecar.source_sha256[:12], source_sha256[:12]))
    if sidecar.preprocess_digest != preprocess_digest:
        out.append("preprocessing changed: engine built for digest %s..., the manifest now gives %s..."
                   % (sidecar.preprocess_digest[:12], preprocess_digest[:12]))
    if facts.tensorrt_version != sidecar.tensorrt_version:
        out.append("TensorRT %s here, engine built with TensorRT %s"
                   % (facts.tensorrt_version or "unknown", sidecar.tensorrt_version))
    if facts.compute_capability != sidecar.compute_capability:
        out.append("GPU compute capability %s here, engine built for %s"
                   % (facts.compute_capability or "unknown", sidecar.compute_capability))
    if facts.l4t_version and sidecar.l4t_version and facts.l4t_version != sidecar.l4t_version:
        out.append("L4T %s here, engine built on L4T %s" % (facts.l4t_version, sidecar.l4t_version))
    if sidecar.dla_core is not None and sidecar.dla_core >= facts.dla_cores:
        out.append("engine placed on DLA core %d, this device has %d DLA core(s)"
                   % (sidecar.dla_core, facts.dla_cores))
    if sidecar.precision not in PRECISIONS:
        out.append("unknown precision %r in sidecar" % sidecar.precision)
    return out


def check_sidecar(sidecar: EngineSidecar, facts: DeviceFacts, source_sha256: str,
                  preprocess_digest: str, command: str, engine_path: str = "") -> None:
    """Raise EngineMismatch listing every mismatch and the rebuild command."""
    problems = sidecar_mismatches(sidecar, facts, source_sha256, preprocess_digest)
    if problems:
        raise EngineMismatch("%sengine does not match this device/model:\n  - %s\nRebuild it with:\n  %s"
                             % (engine_path + ": " if engine_path else "", "\n  - ".join(problems), command))


def find_engine(engine_dir: str, model: str, device: str,
                precision: Optional[str] = None) -> Tuple[Optional[str], List[str]]:
    """(engine path to use or None, every candidate found) for one model/device.

    With `precision` only that file counts; without, the best available by
    PRECISION_PREFERENCE (the profile normally names the precision).
    """
    wanted = [precision] if precision else list(PRECISION_PREFERENCE)
    found = [os.path.join(engine_dir, engine_filename(model, p, device)) for p in PRECISION_PREFERENCE]
    found = [p for p in found if os.path.isfile(p)]
    for p in wanted:
        path = os.path.join(engine_dir, engine_filename(model, p, device))
        if os.path.isfile(path):
            return path, found
    return None, found


def read_l4t_release(text: str) -> Optional[str]:
    """'# R35 (release), REVISION: 3.1, ...' -> '35.3.1'."""
    head = text.strip().splitlines()[0] if text.strip() else ""
    if not head.startswith("# R"):
        return None
    try:
        major = head[3:].split(" ", 1)[0]
        rev = head.split("REVISION:", 1)[1].split(",", 1)[0].strip()
    except IndexError:
        return None
    return "%s.%s" % (int(major), rev)
