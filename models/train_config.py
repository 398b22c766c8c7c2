"""The training config (`python -m models train CONFIG.yaml`) as typed dataclasses.

Read by the runtime's strict YAML walker (edge/strict_yaml.py), so a training
config is checked like the appliance's own: an unknown key or a wrong type is
an edge.errors.ConfigError naming file:line [key], with "did you mean". The
trainer itself works on the plain dict `load_config` returns (it is what the
run folder's config.yaml and every checkpoint keep).

Data paths in sources are relative to the config file's folder; run_dir and
cache_dir to the working directory.
"""
import dataclasses
import os
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional

from edge.errors import ConfigError
from edge.inference.manifest import RESIZE_MODES, TASKS
from edge.strict_yaml import Walker, Where, compose_file, resolve_path, set_dotted

from .augment import AugmentSpec

SPLITS = ("train", "val", "test")
# The keys each source kind reads (models/data.py); the first is its reader's.
SOURCE_KINDS = {"mask_folders": ("path",), "rle_dicoms": ("csv", "dicoms"),
                "labelled_folders": ("path",), "nih_labels": ("path",)}
SOURCE_PATHS = ("path", "csv", "dicoms")
NET_KEYS = ("width_mult", "dropout", "decoder_channels")   # models.nets.NetSpec, less task and channels
LOSS_KEYS = ("bce", "dice", "focal", "gamma", "pos_weight")   # ClsLoss and SegLoss arguments
AUGMENT_KEYS = tuple(f.name for f in dataclasses.fields(AugmentSpec))

_SPLIT_KEYS = {"keys": SPLITS}
_POSITIVE = {"gt": 0}


@dataclass
class InputConfig:
    size: List[int] = field(default_factory=lambda: [256, 256], metadata=_POSITIVE)
    channels: int = field(default=1, metadata={"choices": (1, 3)})
    mean: List[float] = field(default_factory=lambda: [0.5])
    std: List[float] = field(default_factory=lambda: [0.25], metadata=_POSITIVE)
    resize: str = field(default="stretch", metadata={"choices": RESIZE_MODES})
    interpolation: str = field(default="area", metadata={"choices": ("area", "linear", "cubic", "nearest")})


@dataclass
class SplitFractions:
    train: float = field(default=0.6, metadata={"ge": 0})
    val: float = field(default=0.2, metadata={"ge": 0})
    test: float = field(default=0.2, metadata={"ge": 0})


@dataclass
class Source:
    kind: str = field(default="", metadata={"required": True, "choices": tuple(SOURCE_KINDS),
                                            "what": "a data source kind"})
    name: str = ""                      # empty: the kind
    path: str = ""
    csv: str = ""
    dicoms: str = ""
    hint_splits: Dict[str, str] = field(default_factory=dict)   # folder hint -> split
    split: Dict[str, float] = field(default_factory=dict, metadata=_SPLIT_KEYS)   # empty: data.split
    only_split: Optional[str] = field(default=None, metadata={"choices": SPLITS})
    only_negatives: bool = False
    only_positives: bool = False
    mask_as_label: bool = False


@dataclass
class DataConfig:
    sources: List[Source] = field(default_factory=list)
    split: SplitFractions = field(default_factory=SplitFractions)
    cache_dir: Optional[str] = "runs/cache"


@dataclass
class LoopConfig:
    epochs: int = field(default=30, metadata={"ge": 1})
    max_minutes: float = field(default=0.0, metadata={"ge": 0, "hint": "0 = no time budget"})
    batch_size: int = field(default=8, metadata={"ge": 1})
    lr: float = field(default=1e-3, metadata=_POSITIVE)
    weight_decay: float = field(default=1e-4, metadata={"ge": 0})
    warmup: float = field(default=0.05, metadata={"ge": 0.0, "le": 1.0})
    min_lr_ratio: float = field(default=0.02, metadata={"ge": 0.0, "le": 1.0})
    negatives_per_positive: float = 2.0   # 0 or less: every negative, every epoch
    patience: int = field(default=8, metadata={"ge": 0})
    select: str = field(default="auc", metadata={"choices": ("auc", "loss", "dice")})
    eval_batch: int = field(default=8, metadata={"ge": 1})


@dataclass
class TrainConfig:
    task: str = field(default="classification", metadata={"choices": TASKS})
    name: str = field(default="model", metadata={"nonempty": True})
    version: str = field(default="0.1.0", metadata={"nonempty": True})
    notes: str = ""                      # free text for the model card (e.g. how the run went)
    seed: int = 0
    threads: int = field(default=2, metadata={"ge": 1})
    run_dir: str = field(default="runs/model", metadata={"nonempty": True})
    input: InputConfig = field(default_factory=InputConfig)
    net: Dict[str, Any] = field(default_factory=dict, metadata={"keys": NET_KEYS})
    data: DataConfig = field(default_factory=DataConfig)
    train: LoopConfig = field(default_factory=LoopConfig)
    loss: Dict[str, float] = field(default_factory=dict, metadata={"keys": LOSS_KEYS})
    augment: Dict[str, float] = field(default_factory=dict, metadata={"keys": AUGMENT_KEYS})


def load_config(path: str, overrides: Optional[Dict[str, Any]] = None) -> Dict[str, Any]:
    """The config at `path`, then `overrides` (dotted keys, e.g. {"train.epochs": 3}),
    as the plain dict the trainer reads. Raises ConfigError naming file, line and key."""
    cfg = TrainConfig()
    origins = {}  # type: Dict[str, Where]
    base = os.path.dirname(os.path.abspath(path))
    root = compose_file(path, "training config")
    if root is not None:
        Walker(path, base, origins, TrainConfig).mapping(cfg, root, "")
    where = Where("command line", None)
    for dotted, value in (overrides or {}).items():
        set_dotted(cfg, dotted, value, where, os.getcwd())
        origins[dotted] = where
    for i, src in enumerate(cfg.data.sources):
        key = "data.sources[%d]" % i
        missing = [k for k in SOURCE_KINDS[src.kind] if not getattr(src, k)]
        if missing:
            at = origins[key + ".kind"]
            raise ConfigError("a %s source needs %s" % (src.kind, " and ".join(missing)), at.file, at.line,
                              key + "." + missing[0])
        for k in SOURCE_PATHS:
            setattr(src, k, resolve_path(getattr(src, k), base))
    return dataclasses.asdict(cfg)
