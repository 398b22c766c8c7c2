"""The model contract: a JSON sidecar beside each ONNX file.

The runtime takes preprocessing and thresholds from here and never from
constants of its own, so a retrained model with another input size or
normalisation needs no code change. `models/` writes these files;
`build_engine` hashes `preprocessing` to key calibration caches.
"""
import hashlib
import json
import os
from dataclasses import asdict, dataclass, field
from typing import Any, Dict, List, Optional, Tuple

from edge.errors import ManifestError
from edge.hashing import sha256_file

MANIFEST_SCHEMA_VERSION = 1
# The two models' roles, by task; a role also names its ModelSettings path key
# (models.classifier, models.segmenter) and its entry in a device profile.
ROLE_OF_TASK = {"classification": "classifier", "segmentation": "segmenter"}
TASKS = tuple(ROLE_OF_TASK)
ROLES = tuple(ROLE_OF_TASK.values())
INTENDED_USES = ("untrained", "demo", "validated")
RESIZE_MODES = ("stretch", "letterbox")
OUTPUT_KINDS = ("logit", "probability")


WINDOW_KINDS = ("percentile",)


@dataclass(frozen=True)
class WindowSpec:
    """Per-image intensity window on the resized plane: the `low`..`high`
    percentiles map to 0..1 (clipped). It makes films from differently
    processed sources look alike, so a model cannot tell them apart by grey
    level alone."""
    kind: str = "percentile"
    low: float = 1.0
    high: float = 99.0


@dataclass(frozen=True)
class PreprocessSpec:
    size: Tuple[int, int]               # model input (height, width)
    channels: int                       # 1, or 3 = grey replicated
    mean: Tuple[float, ...]             # per channel, on [0, 1] pixels
    std: Tuple[float, ...]
    resize: str = "stretch"             # "stretch" | "letterbox"
    interpolation: str = "area"         # cv2 name: "area" | "linear" | "cubic"
    window: Optional[WindowSpec] = None  # None: pixels as decoded

    def digest(self) -> str:
        """Stable hash of everything that changes the input tensor."""
        d = asdict(self)
        if d["window"] is None:
            del d["window"]             # specs without a window keep their old digest
        blob = json.dumps(d, sort_keys=True).encode()
        return hashlib.sha256(blob).hexdigest()


@dataclass(frozen=True)
class TensorSpec:
    name: str
    shape: Tuple[Any, ...]              # ints, or a string for a dynamic axis
    dtype: str = "float32"


@dataclass(frozen=True)
class OperatingPoint:
    name: str
    threshold: float
    sensitivity: Optional[float] = None
    specificity: Optional[float] = None
    note: str = ""


@dataclass(frozen=True)
class ModelManifest:
    name: str
    version: str
    task: str
    architecture: str
    file: str
    sha256: str
    input: TensorSpec
    output: TensorSpec
    output_kind: str                    # "logit" | "probability"
    preprocessing: PreprocessSpec
    # classification: {"positive": p, "skip_segmenter_below": p}, optional "ood_max", "layout_max"
    # segmentation:   {"pixel_high": p, "min_area_fraction": f, "pixel_low": p}, optional "probability"
    thresholds: Dict[str, float]
    intended_use: str
    operating_points: List[OperatingPoint] = field(default_factory=list)
    training_data: str = ""
    metrics: Dict[str, Any] = field(default_factory=dict)
    notes: str = ""
    precision: str = "fp32"             # weights/activations of this file: fp32 | fp16 | int8
    derived_from: str = ""              # sha256 of the FP32 ONNX a variant was made from
    # What each column of a (1, K) classifier output means, e.g. ["pneumothorax", "ood_distance"];
    # empty: 1 logit/probability, or 2 softmax columns (pneumothorax last).
    output_columns: List[str] = field(default_factory=list)
    # Test-time augmentation the model's figures assume: ["hflip"] = run the mirrored input too and
    # average (logits for a classifier, probabilities for a segmenter).
    tta: List[str] = field(default_factory=list)
    # How the decision's score becomes a calibrated probability (see edge/postprocess.py); empty: none.
    calibration: Dict[str, Any] = field(default_factory=dict)
    path: str = ""                      # where the manifest was read from (not serialised)

    @property
    def model_path(self) -> str:
        return os.path.join(os.path.dirname(self.path), self.file)

    def to_json(self) -> Dict[str, Any]:
        d = asdict(self)
        d.pop("path")
        d["schema_version"] = MANIFEST_SCHEMA_VERSION
        return d


REQUIRED_THRESHOLDS = {
    "classification": ("positive", "skip_segmenter_below"),
    "segmentation": ("pixel_high", "min_area_fraction", "pixel_low"),
}


def _need(d: Dict[str, Any], key: str, where: str) -> Any:
    if key not in d:
        raise ManifestError("%s: missing '%s'" % (where, key))
    return d[key]


TTA_KINDS = ("hflip",)


def _tta(raw: Any, where: str) -> List[str]:
    if not isinstance(raw, list) or any(t not in TTA_KINDS for t in raw):
        raise ManifestError("%s: tta must be a list drawn from %s" % (where, TTA_KINDS))
    return [str(t) for t in raw]


def _window(raw: Any, where: str) -> Optional[WindowSpec]:
    if raw is None:
        return None
    if not isinstance(raw, dict):
        raise ManifestError("%s: preprocessing.window must be an object or null" % where)
    w = WindowSpec(kind=str(raw.get("kind", "percentile")), low=float(raw.get("low", 1.0)),
                   high=float(raw.get("high", 99.0)))
    if w.kind not in WINDOW_KINDS:
        raise ManifestError("%s: preprocessing.window.kind %r is not one of %s" % (where, w.kind, WINDOW_KINDS))
    if not 0.0 <= w.low < w.high <= 100.0:
        raise ManifestError("%s: preprocessing.window needs 0 <= low < high <= 100" % where)
    return w


def parse_manifest(data: Dict[str, Any], where: str = "manifest") -> ModelManifest:
    """Validate a manifest dict; every error names the file and the key."""
    if not isinstance(data, dict):
        raise ManifestError("%s: not a JSON object" % where)
    ver = data.get("schema_version", MANIFEST_SCHEMA_VERSION)
    if ver != MANIFEST_SCHEMA_VERSION:
        raise ManifestError("%s: schema_version %r, this runtime reads %d"
                            % (where, ver, MANIFEST_SCHEMA_VERSION))
    task = _need(data, "task", where)
    if task not in TASKS:
        raise ManifestError("%s: task %r is not one of %s" % (where, task, TASKS))
    use = _need(data, "intended_use", where)
    if use not in INTENDED_USES:
        raise ManifestError("%s: intended_use %r is not one of %s" % (where, use, INTENDED_USES))
    kind = _need(data, "output_kind", where)
    if kind not in OUTPUT_KINDS:
        raise ManifestError("%s: output_kind %r is not one of %s" % (where, kind, OUTPUT_KINDS))
    try:
        pp = dict(_need(data, "preprocessing", where))
        spec = PreprocessSpec(
            size=(int(pp["size"][0]), int(pp["size"][1])),
            channels=int(pp["channels"]),
            mean=tuple(float(v) for v in pp["mean"]),
            std=tuple(float(v) for v in pp["std"]),
            resize=str(pp.get("resize", "stretch")),
            interpolation=str(pp.get("interpolation", "area")),
            window=_window(pp.get("window"), where),
        )
        inp = dict(_need(data, "input", where))
        out = dict(_need(data, "output", where))
        input_spec = TensorSpec(str(inp["name"]), tuple(inp["shape"]), str(inp.get("dtype", "float32")))
        output_spec = TensorSpec(str(out["name"]), tuple(out["shape"]), str(out.get("dtype", "float32")))
        ops = [OperatingPoint(**op) for op in data.get("operating_points", [])]
        thresholds = {str(k): float(v) for k, v in dict(_need(data, "thresholds", where)).items()}
    except ManifestError:
        raise
    except (KeyError, TypeError, ValueError, IndexError) as exc:
        raise ManifestError("%s: malformed field: %s" % (where, exc))
    if spec.channels not in (1, 3):
        raise ManifestError("%s: preprocessing.channels must be 1 or 3" % where)
    if len(spec.mean) not in (1, spec.channels) or len(spec.std) not in (1, spec.channels):
        raise ManifestError("%s: preprocessing.mean/std need 1 or %d values" % (where, spec.channels))
    if any(s <= 0 for s in spec.std):
        raise ManifestError("%s: preprocessing.std must be positive" % where)
    if spec.resize not in RESIZE_MODES:
        raise ManifestError("%s: preprocessing.resize %r is not one of %s" % (where, spec.resize, RESIZE_MODES))
    for key in REQUIRED_THRESHOLDS[task]:
        if key not in thresholds:
            raise ManifestError("%s: thresholds.%s is required for %s" % (where, key, task))
    return ModelManifest(
        name=str(_need(data, "name", where)), version=str(_need(data, "version", where)),
        task=task, architecture=str(data.get("architecture", "")),
        file=str(_need(data, "file", where)), sha256=str(_need(data, "sha256", where)),
        input=input_spec, output=output_spec, output_kind=kind, preprocessing=spec,
        thresholds=thresholds, intended_use=use, operating_points=ops,
        training_data=str(data.get("training_data", "")), metrics=dict(data.get("metrics", {})),
        notes=str(data.get("notes", "")), precision=str(data.get("precision", "fp32")),
        derived_from=str(data.get("derived_from", "")),
        output_columns=[str(c) for c in data.get("output_columns", [])],
        tta=_tta(data.get("tta", []), where),
        calibration=dict(data.get("calibration") or {}), path=where,
    )


def load_manifest(path: str) -> ModelManifest:
    """Read `<model>.json`. Accepts the ONNX path too (looks beside it)."""
    if path.endswith(".onnx"):
        path = path[:-5] + ".json"
    try:
        with open(path, "r", encoding="utf-8") as fh:
            data = json.load(fh)
    except FileNotFoundError:
        raise ManifestError("%s: manifest not found (every model needs its JSON sidecar)" % path)
    except ValueError as exc:
        raise ManifestError("%s: not valid JSON: %s" % (path, exc))
    return parse_manifest(data, where=os.path.abspath(path))


def file_sha256(path: str) -> str:
    return sha256_file(path)[0]


def verify_model_file(manifest: ModelManifest) -> None:
    """Refuse a model file that is not the one the manifest describes."""
    path = manifest.model_path
    if not os.path.exists(path):
        raise ManifestError("%s: model file %s not found" % (manifest.path, path))
    actual = file_sha256(path)
    if actual != manifest.sha256:
        raise ManifestError("%s: sha256 of %s is %s, manifest says %s (re-export the model or fix the manifest)"
                            % (manifest.path, path, actual, manifest.sha256))
