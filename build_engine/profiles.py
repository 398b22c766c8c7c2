"""Device profiles (config/devices/<name>.yaml): what a target can run and how to build for it.

Validated strictly: an unknown key or a wrong type is an error naming the
file, line and key, so a typo in `worspace_mib` cannot silently fall back to
a default that does not fit an 8 GB board.
"""
import os
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Tuple

import yaml

from edge.errors import ConfigError

RUNTIMES = ("tensorrt", "onnxruntime")
PRECISIONS = ("fp32", "fp16", "int8")
ROLES = ("classifier", "segmenter")
INT8_MODES = ("qdq", "calibrator")
QUANT_FORMATS = ("qdq", "qoperator")
CALIB_METHODS = ("minmax", "entropy", "percentile")

_HERE = os.path.dirname(os.path.abspath(__file__))
REPO_ROOT = os.path.dirname(_HERE)


@dataclass(frozen=True)
class Tolerance:
    max_abs_diff: float            # raw output (logit / probability) units
    max_prob_diff: float           # after sigmoid
    min_dice: float                # masks thresholded at 0.5, segmenter only


@dataclass(frozen=True)
class Placement:
    precision: str = "fp16"
    dla_core: Optional[int] = None  # None = GPU
    gpu_fallback: bool = True
    fp16_layers: Tuple[str, ...] = ()     # ONNX node names always kept FP16 in an INT8 build
    fp16_op_types: Tuple[str, ...] = ()   # op types always kept FP16 in an INT8 build


@dataclass(frozen=True)
class Int8Budget:
    """The most an INT8 build may drift from FP32 before sensitive layers go back to FP16."""
    max_prob_diff: float = 0.05
    min_dice: float = 0.90
    fallback_op_types: Tuple[str, ...] = ()   # kept FP16 on a breach, then re-measured


@dataclass(frozen=True)
class DeviceProfile:
    name: str
    runtime: str
    description: str
    precisions: Tuple[str, ...]
    compute_capability: Optional[str]
    tensorrt: Optional[str]        # "8.5": major.minor the engines are built with
    l4t: Optional[str]             # "35"
    cuda: Optional[str]
    dla_cores: int
    memory_gib: float
    workspace_mib: int
    builder_optimization_level: Optional[int]
    timing_cache: Optional[str]
    max_opset: int
    batch: int
    int8_mode: str
    calibration_images: int
    calibration_batch: int
    calibrate_method: str
    quant_formats: Tuple[str, ...]
    activation_type: str
    weight_type: str
    per_channel: bool
    bench_runs: int
    bench_warmup: int
    golden_images: int
    models: Dict[str, Placement] = field(default_factory=dict)
    parity: Dict[str, Tolerance] = field(default_factory=dict)
    int8_budget: Int8Budget = field(default_factory=Int8Budget)
    path: str = ""

    def placement(self, role: str) -> Placement:
        return self.models.get(role, Placement(precision=self.precisions[-1] if self.precisions else "fp32"))

    def tolerance(self, precision: str) -> Tolerance:
        if precision not in self.parity:
            raise ConfigError("no parity tolerance for %s" % precision, file=self.path, key="parity")
        return self.parity[precision]


# --- a small strict schema walker -------------------------------------------------
# A schema is a dict key -> spec; spec is a tuple of accepted Python types, a
# nested dict, or ("map", spec) for a mapping with free keys.

_NUM = (int, float)
_OPT_STR = (str, type(None))
_OPT_INT = (int, type(None))
_TOL = {"max_abs_diff": _NUM, "max_prob_diff": _NUM, "min_dice": _NUM}
_PLACEMENT = {"precision": (str,), "dla_core": _OPT_INT, "gpu_fallback": (bool,),
              "fp16_layers": (list,), "fp16_op_types": (list,)}
SCHEMA = {
    "name": (str,), "runtime": (str,), "description": (str,),
    "precisions": (list,),
    "platform": {"compute_capability": _OPT_STR, "tensorrt": _OPT_STR, "l4t": _OPT_STR,
                 "cuda": _OPT_STR, "dla_cores": (int,), "memory_gib": _NUM},
    "build": {"workspace_mib": (int,), "builder_optimization_level": _OPT_INT,
              "timing_cache": _OPT_STR, "max_opset": (int,), "batch": (int,), "int8_mode": (str,)},
    "calibration": {"images": (int,), "batch": (int,), "method": (str,)},
    "quantization": {"formats": (list,), "activation_type": (str,), "weight_type": (str,),
                     "per_channel": (bool,)},
    "bench": {"runs": (int,), "warmup": (int,), "golden_images": (int,)},
    "models": ("map", _PLACEMENT),
    "parity": ("map", _TOL),
    "int8_budget": {"max_prob_diff": _NUM, "min_dice": _NUM, "fallback_op_types": (list,)},
}
REQUIRED = ("name", "runtime", "precisions", "build", "parity")


def _line_index(node: Any, path: Tuple[str, ...], out: Dict[Tuple[str, ...], int]) -> None:
    if isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:
            key = (*path, str(key_node.value))
            out[key] = key_node.start_mark.line + 1
            _line_index(value_node, key, out)


def _check(data: Any, schema: Any, path: Tuple[str, ...], lines: Dict[Tuple[str, ...], int], where: str) -> None:
    def fail(msg: str, p: Tuple[str, ...]) -> None:
        line = None
        q = p
        while q and line is None:
            line = lines.get(q)
            q = q[:-1]
        raise ConfigError(msg, file=where, line=line, key=".".join(p) or None)

    if isinstance(schema, dict):
        if not isinstance(data, dict):
            fail("expected a mapping", path)
        for key, value in data.items():
            if key not in schema:
                fail("unknown key (allowed: %s)" % ", ".join(sorted(schema)), (*path, str(key)))
            _check(value, schema[key], (*path, str(key)), lines, where)
    elif isinstance(schema, tuple) and schema and schema[0] == "map":
        if not isinstance(data, dict):
            fail("expected a mapping", path)
        for key, value in data.items():
            _check(value, schema[1], (*path, str(key)), lines, where)
    else:
        # bool is an int in Python; do not let `workspace_mib: true` pass
        if isinstance(data, bool) and bool not in schema:
            fail("expected %s, got a boolean" % "/".join(t.__name__ for t in schema), path)
        if not isinstance(data, schema):
            fail("expected %s, got %r" % ("/".join(t.__name__ for t in schema), data), path)


def resolve_profile_path(name_or_path: str) -> str:
    """A profile name (xavier_nx) or a path to a YAML file."""
    if name_or_path.endswith((".yaml", ".yml")) or os.sep in name_or_path:
        return name_or_path
    for base in (os.getcwd(), REPO_ROOT):
        candidate = os.path.join(base, "config", "devices", name_or_path + ".yaml")
        if os.path.isfile(candidate):
            return candidate
    return os.path.join(REPO_ROOT, "config", "devices", name_or_path + ".yaml")


def available_profiles() -> List[str]:
    folder = os.path.join(REPO_ROOT, "config", "devices")
    if not os.path.isdir(folder):
        return []
    return sorted(f[:-5] for f in os.listdir(folder) if f.endswith(".yaml"))


def load_profile(name_or_path: str) -> DeviceProfile:
    path = resolve_profile_path(name_or_path)
    try:
        with open(path, "r", encoding="utf-8") as fh:
            text = fh.read()
    except FileNotFoundError:
        raise ConfigError("device profile not found (known: %s)" % ", ".join(available_profiles()), file=path)
    return parse_profile(text, os.path.abspath(path))


def parse_profile(text: str, where: str = "<profile>") -> DeviceProfile:
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        raise ConfigError("invalid YAML: %s" % getattr(exc, "problem", exc), file=where,
                          line=mark.line + 1 if mark else None)
    lines = {}  # type: Dict[Tuple[str, ...], int]
    _line_index(root, (), lines)
    if not isinstance(data, dict):
        raise ConfigError("a device profile is a mapping", file=where)
    _check(data, SCHEMA, (), lines, where)
    for key in REQUIRED:
        if key not in data:
            raise ConfigError("required key missing", file=where, key=key)

    def bad(msg: str, key: Tuple[str, ...]) -> ConfigError:
        return ConfigError(msg, file=where, line=lines.get(key), key=".".join(key))

    runtime = data["runtime"]
    if runtime not in RUNTIMES:
        raise bad("runtime %r is not one of %s" % (runtime, ", ".join(RUNTIMES)), ("runtime",))
    precisions = tuple(str(p) for p in data["precisions"])
    for p in precisions:
        if p not in PRECISIONS:
            raise bad("precision %r is not one of %s" % (p, ", ".join(PRECISIONS)), ("precisions",))
    plat = data.get("platform", {})
    build = data["build"]
    calib = data.get("calibration", {})
    quant = data.get("quantization", {})
    bench = data.get("bench", {})
    dla_cores = int(plat.get("dla_cores", 0))

    int8_mode = build.get("int8_mode", "qdq")
    if int8_mode not in INT8_MODES:
        raise bad("int8_mode %r is not one of %s" % (int8_mode, ", ".join(INT8_MODES)), ("build", "int8_mode"))
    method = calib.get("method", "minmax")
    if method not in CALIB_METHODS:
        raise bad("method %r is not one of %s" % (method, ", ".join(CALIB_METHODS)), ("calibration", "method"))
    formats = tuple(str(f) for f in quant.get("formats", ["qdq"]))
    for f in formats:
        if f not in QUANT_FORMATS:
            raise bad("format %r is not one of %s" % (f, ", ".join(QUANT_FORMATS)), ("quantization", "formats"))
    for key in ("activation_type", "weight_type"):
        if quant.get(key, "int8") not in ("int8", "uint8"):
            raise bad("%s must be int8 or uint8" % key, ("quantization", key))
    if build.get("workspace_mib", 1) <= 0:
        raise bad("workspace_mib must be positive", ("build", "workspace_mib"))
    if build.get("batch", 1) < 1:
        raise bad("batch must be >= 1", ("build", "batch"))
    level = build.get("builder_optimization_level")
    if level is not None and not 0 <= level <= 5:
        raise bad("builder_optimization_level must be 0..5", ("build", "builder_optimization_level"))

    models = {}
    for role, raw in (data.get("models") or {}).items():
        if role not in ROLES:
            raise bad("unknown model role %r (allowed: %s)" % (role, ", ".join(ROLES)), ("models", role))
        pl = Placement(precision=raw.get("precision", "fp16"), dla_core=raw.get("dla_core"),
                       gpu_fallback=raw.get("gpu_fallback", True),
                       fp16_layers=tuple(raw.get("fp16_layers", [])),
                       fp16_op_types=tuple(raw.get("fp16_op_types", [])))
        if pl.precision not in precisions:
            raise bad("precision %r is not allowed on %s (allowed: %s)" % (pl.precision, data["name"],
                      ", ".join(precisions)), ("models", role, "precision"))
        if pl.dla_core is not None:
            if runtime != "tensorrt" or not 0 <= pl.dla_core < dla_cores:
                raise bad("dla_core %s does not exist (this device has %d DLA core(s))" % (pl.dla_core, dla_cores),
                          ("models", role, "dla_core"))
            if pl.precision == "fp32":
                raise bad("DLA runs only fp16 or int8", ("models", role, "precision"))
        models[role] = pl
    parity = {}
    for prec, raw in data["parity"].items():
        if prec not in PRECISIONS:
            raise bad("parity for unknown precision %r" % prec, ("parity", prec))
        missing = [k for k in _TOL if k not in raw]
        if missing:
            raise bad("missing %s" % ", ".join(missing), ("parity", prec))
        parity[prec] = Tolerance(float(raw["max_abs_diff"]), float(raw["max_prob_diff"]), float(raw["min_dice"]))
    for prec in precisions:
        if prec not in parity:
            raise bad("no parity tolerance for allowed precision %s" % prec, ("parity",))
    budget_raw = data.get("int8_budget", {})
    budget = Int8Budget(float(budget_raw.get("max_prob_diff", 0.05)), float(budget_raw.get("min_dice", 0.90)),
                        tuple(budget_raw.get("fallback_op_types", [])))
    return DeviceProfile(
        name=data["name"], runtime=runtime, description=data.get("description", ""), precisions=precisions,
        compute_capability=plat.get("compute_capability"), tensorrt=plat.get("tensorrt"), l4t=plat.get("l4t"),
        cuda=plat.get("cuda"), dla_cores=dla_cores, memory_gib=float(plat.get("memory_gib", 0)),
        workspace_mib=int(build.get("workspace_mib", 1024)),
        builder_optimization_level=level, timing_cache=build.get("timing_cache"),
        max_opset=int(build.get("max_opset", 17)), batch=int(build.get("batch", 1)), int8_mode=int8_mode,
        calibration_images=int(calib.get("images", 64)), calibration_batch=int(calib.get("batch", 8)),
        calibrate_method=method, quant_formats=formats,
        activation_type=quant.get("activation_type", "int8"), weight_type=quant.get("weight_type", "int8"),
        per_channel=bool(quant.get("per_channel", True)), bench_runs=int(bench.get("runs", 30)),
        bench_warmup=int(bench.get("warmup", 3)), golden_images=int(bench.get("golden_images", 8)),
        models=models, parity=parity, int8_budget=budget, path=where,
    )
