"""Device profiles (config/devices/<name>.yaml): what a target can run and how to build for it.

Read by the runtime (which engine precision to look for) and by build_engine
(how to build it), through this one loader. Validated strictly by the same
walker as the runtime config: an unknown key or a wrong type is an error
naming the file, line and key, so a typo in `worspace_mib` cannot silently
fall back to a default that does not fit an 8 GB board.
"""
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Tuple

from edge.errors import ConfigError
from edge.inference.manifest import ROLES
from edge.strict_yaml import Walker, Where, compose_file, compose_text

RUNTIMES = ("tensorrt", "onnxruntime")
PRECISIONS = ("fp32", "fp16", "int8")
INT8_MODES = ("qdq", "calibrator")
QUANT_FORMATS = ("qdq", "qoperator")
QUANT_TYPES = ("int8", "uint8")
CALIB_METHODS = ("minmax", "entropy", "percentile")

REPO_ROOT = str(Path(__file__).resolve().parents[2])


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
    fp16_layers: Tuple[str, ...] = ()     # ONNX node names (or shell patterns) always kept FP16 in an INT8 build
    fp16_op_types: Tuple[str, ...] = ()   # op types always kept FP16 in an INT8 build
    int8_only: Tuple[str, ...] = ()       # when set, only nodes these name or match go INT8; the rest stay float


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


# --- the file's layout, as the walker reads it (defaults = what an absent key means) ---

_REQUIRED = {"required": True}


@dataclass
class _Platform:
    compute_capability: Optional[str] = None
    tensorrt: Optional[str] = None
    l4t: Optional[str] = None
    cuda: Optional[str] = None
    dla_cores: int = field(default=0, metadata={"ge": 0})
    memory_gib: float = field(default=0.0, metadata={"ge": 0})


@dataclass
class _Build:
    workspace_mib: int = field(default=1024, metadata={"gt": 0})
    builder_optimization_level: Optional[int] = field(default=None, metadata={"ge": 0, "le": 5})
    timing_cache: Optional[str] = None
    max_opset: int = field(default=17, metadata={"gt": 0})
    batch: int = field(default=1, metadata={"ge": 1})
    int8_mode: str = field(default="qdq", metadata={"choices": INT8_MODES})


@dataclass
class _Calibration:
    images: int = field(default=64, metadata={"ge": 1})
    batch: int = field(default=8, metadata={"ge": 1})
    method: str = field(default="minmax", metadata={"choices": CALIB_METHODS})


@dataclass
class _Quantization:
    formats: List[str] = field(default_factory=lambda: ["qdq"], metadata={"choices": QUANT_FORMATS})
    activation_type: str = field(default="int8", metadata={"choices": QUANT_TYPES})
    weight_type: str = field(default="int8", metadata={"choices": QUANT_TYPES})
    per_channel: bool = True


@dataclass
class _Bench:
    runs: int = field(default=30, metadata={"ge": 1})
    warmup: int = field(default=3, metadata={"ge": 0})
    golden_images: int = field(default=8, metadata={"ge": 1})


@dataclass
class _Placement:
    precision: str = field(default="fp16", metadata={"choices": PRECISIONS})
    dla_core: Optional[int] = None
    gpu_fallback: bool = True
    fp16_layers: List[str] = field(default_factory=list)
    fp16_op_types: List[str] = field(default_factory=list)
    int8_only: List[str] = field(default_factory=list)


@dataclass
class _Tolerance:
    max_abs_diff: float = field(default=0.0, metadata=_REQUIRED)
    max_prob_diff: float = field(default=0.0, metadata=_REQUIRED)
    min_dice: float = field(default=0.0, metadata=_REQUIRED)


@dataclass
class _Budget:
    max_prob_diff: float = field(default=0.05, metadata={"ge": 0})
    min_dice: float = field(default=0.90, metadata={"ge": 0.0, "le": 1.0})
    fallback_op_types: List[str] = field(default_factory=list)


@dataclass
class _ProfileFile:
    name: str = field(default="", metadata={"required": True, "nonempty": True})
    runtime: str = field(default="", metadata={"required": True, "choices": RUNTIMES})
    description: str = ""
    precisions: List[str] = field(default_factory=list, metadata={"required": True, "choices": PRECISIONS})
    platform: _Platform = field(default_factory=_Platform)
    build: _Build = field(default_factory=_Build, metadata=_REQUIRED)
    calibration: _Calibration = field(default_factory=_Calibration)
    quantization: _Quantization = field(default_factory=_Quantization)
    bench: _Bench = field(default_factory=_Bench)
    models: Dict[str, _Placement] = field(default_factory=dict, metadata={"keys": ROLES})
    parity: Dict[str, _Tolerance] = field(default_factory=dict, metadata={"required": True, "keys": PRECISIONS})
    int8_budget: _Budget = field(default_factory=_Budget)


# --- loading -------------------------------------------------------------------------

def resolve_profile_path(name_or_path: str) -> str:
    """A profile name (xavier_nx: config/devices/ under the working directory, else the
    repository) or a path to a YAML file."""
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
    if not os.path.exists(path):
        raise ConfigError("device profile not found (known: %s)" % ", ".join(available_profiles()), file=path)
    where = os.path.abspath(path)
    return _build(compose_file(path, "device profile"), where)


def parse_profile(text: str, where: str = "<profile>") -> DeviceProfile:
    return _build(compose_text(text, where), where)


def profile_precision(name_or_path: str, role: str) -> Optional[str]:
    """The precision the profile places this model role at; None where no such profile file
    exists or it places the role nowhere (then any engine precision will do). An invalid
    profile is a ConfigError naming its file and line."""
    if not os.path.isfile(resolve_profile_path(name_or_path)):
        return None
    placement = load_profile(name_or_path).models.get(role)
    return placement.precision if placement is not None else None


def _build(root, where: str) -> DeviceProfile:
    raw = _ProfileFile()
    origins = {}  # type: Dict[str, Where]
    walker = Walker(where, os.path.dirname(where), origins, _ProfileFile)
    if root is None:
        root = compose_text("{}", where)  # an empty file: the required keys are reported missing
    walker.mapping(raw, root, "")

    def bad(msg: str, key: str) -> ConfigError:
        line = origins.get(key, Where(where, None)).line
        return ConfigError(msg, file=where, line=line, key=key)

    precisions = tuple(raw.precisions)
    plat, build, calib, quant, bench = raw.platform, raw.build, raw.calibration, raw.quantization, raw.bench
    models = {}
    for role, pl in raw.models.items():
        key = "models.%s" % role
        if pl.precision not in precisions:
            raise bad("precision %r is not allowed on %s (allowed: %s)" % (
                pl.precision, raw.name, ", ".join(precisions)), key + ".precision")
        if pl.dla_core is not None:
            if raw.runtime != "tensorrt" or not 0 <= pl.dla_core < plat.dla_cores:
                raise bad("dla_core %s does not exist (this device has %d DLA core(s))"
                          % (pl.dla_core, plat.dla_cores), key + ".dla_core")
            if pl.precision == "fp32":
                raise bad("DLA runs only fp16 or int8", key + ".precision")
        models[role] = Placement(pl.precision, pl.dla_core, pl.gpu_fallback, tuple(pl.fp16_layers),
                                 tuple(pl.fp16_op_types), tuple(pl.int8_only))
    parity = {prec: Tolerance(t.max_abs_diff, t.max_prob_diff, t.min_dice) for prec, t in raw.parity.items()}
    for prec in precisions:
        if prec not in parity:
            raise bad("no parity tolerance for allowed precision %s" % prec, "parity")
    budget = raw.int8_budget
    return DeviceProfile(
        name=raw.name, runtime=raw.runtime, description=raw.description, precisions=precisions,
        compute_capability=plat.compute_capability, tensorrt=plat.tensorrt, l4t=plat.l4t, cuda=plat.cuda,
        dla_cores=plat.dla_cores, memory_gib=plat.memory_gib, workspace_mib=build.workspace_mib,
        builder_optimization_level=build.builder_optimization_level, timing_cache=build.timing_cache,
        max_opset=build.max_opset, batch=build.batch, int8_mode=build.int8_mode,
        calibration_images=calib.images, calibration_batch=calib.batch, calibrate_method=calib.method,
        quant_formats=tuple(quant.formats), activation_type=quant.activation_type,
        weight_type=quant.weight_type, per_channel=quant.per_channel, bench_runs=bench.runs,
        bench_warmup=bench.warmup, golden_images=bench.golden_images, models=models, parity=parity,
        int8_budget=Int8Budget(budget.max_prob_diff, budget.min_dice, tuple(budget.fallback_op_types)),
        path=where,
    )
