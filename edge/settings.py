"""The runtime's settings as typed dataclasses, with their defaults.

config.py loads YAML into these (unknown keys rejected, errors with
file:line); the rest of the runtime only ever sees these objects.
Defaults here are the embedded defaults `make run` uses.
"""
from dataclasses import dataclass, field
from typing import List, Optional


@dataclass
class CaptureSettings:
    dir: str = "capture"                 # holds incoming/ processing/ done/ rejected/
    watch: str = "auto"                  # auto (inotify, else poll) | inotify | poll
    poll_interval_s: float = 0.25
    settle_s: float = 0.5                # size and mtime unchanged this long = written
    trust_rename: bool = True            # inotify: a file renamed into incoming/ is complete (no settle wait)
    on_success: str = "move"             # move (to done/) | delete
    ignore: List[str] = field(default_factory=lambda: [".*", "*.part", "*.tmp"])


@dataclass
class DecodeSettings:
    allowed_modalities: List[str] = field(default_factory=lambda: ["CR", "DX"])
    reject_lateral: bool = True
    min_side: int = 256                  # px; smaller is not a diagnostic radiograph
    max_side: int = 8192
    max_pixels: int = 40_000_000         # refuse before allocating (a 6000x6000 CR is 36 M)
    max_file_mb: float = 512.0


@dataclass
class ModelSettings:
    classifier: str = "models/classifier/classifier.onnx"   # manifest is the .json beside
    segmenter: str = "models/segmenter/segmenter.onnx"
    backend: str = "onnxruntime"         # onnxruntime | tensorrt | auto
    # ONNX Runtime intra-op threads; 0 = all cores. 1 leaves a core to decode the next
    # image: on 2 cores `pneumo-edge bench` measured 91 % of the models' limit vs 79 % with 0.
    threads: int = 1
    engine_dir: str = "engines"          # TensorRT engines + sidecars
    device_profile: str = "xavier_nx"    # config/devices/<name>.yaml, for engine checks
    warmup: int = 2


@dataclass
class DecisionSettings:
    """The decision rule and per-site overrides of the manifests' thresholds (None = manifest's)."""
    rule: str = "mask"                   # mask (SIIM-ACR: the mask decides) | mask_or_classifier
    gate_segmenter: bool = True          # skip the segmenter on confident negatives
    classifier_positive: Optional[float] = None
    skip_segmenter_below: Optional[float] = None
    pixel_high: Optional[float] = None
    min_area_fraction: Optional[float] = None
    pixel_low: Optional[float] = None
    probability: Optional[float] = None  # calibrated-p decision threshold (manifests with a calibration)


@dataclass
class TlsSettings:
    enabled: bool = False
    ca_file: str = ""
    cert_file: str = ""                  # client certificate (optional)
    key_file: str = ""
    key_password_env: str = ""           # name of an environment variable, never the secret
    insecure: bool = False               # skip hostname check; test benches only


@dataclass
class MqttSettings:
    host: str = "127.0.0.1"
    port: int = 1883
    topic_prefix: str = "pneumo"
    client_id: str = ""                  # default: pneumo-edge-<site>-<device>
    keepalive_s: int = 30
    username: str = ""
    password_file: str = ""              # the secret comes from a file ...
    password_env: str = ""               # ... or from this environment variable
    tls: TlsSettings = field(default_factory=TlsSettings)
    reconnect_min_s: float = 0.5
    reconnect_max_s: float = 30.0
    inflight: int = 20                   # outbox rows awaiting PUBACK at once
    publish_overlay: bool = True


@dataclass
class AlertSettings:
    identify_by: List[str] = field(default_factory=list)   # e.g. ["accession_number"]; off by default
    overlay_max_side: int = 1024
    overlay_quality: int = 85


@dataclass
class Settings:
    site: str = "demo-site"
    device: str = "cart-1"
    state_dir: str = "state"             # SQLite ledger + outbox
    log_level: str = "INFO"
    capture: CaptureSettings = field(default_factory=CaptureSettings)
    decode: DecodeSettings = field(default_factory=DecodeSettings)
    models: ModelSettings = field(default_factory=ModelSettings)
    decision: DecisionSettings = field(default_factory=DecisionSettings)
    mqtt: MqttSettings = field(default_factory=MqttSettings)
    alerts: AlertSettings = field(default_factory=AlertSettings)
    source_file: Optional[str] = field(default=None, metadata={"internal": True})
