"""The runtime's settings as typed dataclasses, with their defaults.

config.py loads YAML into these (unknown keys rejected, errors with
file:line); the rest of the runtime only ever sees these objects.
Defaults here are the embedded defaults `make run` uses.

A field's own limits sit on the field, in `metadata` (choices, gt/ge/le,
nonempty, format: a check in config.FORMATS; edge/field_rules.py lists them),
checked as each value is read so the error names its line. Rules that span
several keys are in config._Validator.
"""
from dataclasses import dataclass, field
from typing import Any, List, Optional

from edge.logsetup import LEVELS as LOG_LEVELS

BACKENDS = ("onnxruntime", "tensorrt", "auto")   # registry.py and the CLI use this list too
WATCH_MODES = ("auto", "inotify", "poll")
ON_SUCCESS = ("move", "delete")
DECISION_RULES = ("mask", "mask_or_classifier")

_PATH = {"nonempty": True}
_POSITIVE = {"gt": 0}
_FRACTION = {"ge": 0.0, "le": 1.0, "hint": "or null for the manifest's value"}
_LEVEL = {"choices": LOG_LEVELS, "upper": True, "what": "a logging level"}


@dataclass
class CaptureSettings:
    dir: str = field(default="capture", metadata=_PATH)   # holds incoming/ processing/ done/ rejected/
    watch: str = field(default="auto", metadata={"choices": WATCH_MODES})   # auto = inotify, else poll
    poll_interval_s: float = field(default=0.25, metadata=_POSITIVE)
    settle_s: float = field(default=0.5, metadata=_POSITIVE)   # size and mtime unchanged this long = written
    # A file that decodes as cut off is rejected only once unchanged this long: its writer may just have paused.
    write_grace_s: float = field(default=15.0, metadata={"ge": 0.0})
    trust_rename: bool = True            # inotify: a file renamed into incoming/ is complete (no settle wait)
    on_success: str = field(default="move", metadata={"choices": ON_SUCCESS})   # move (to done/) | delete
    ignore: List[str] = field(default_factory=lambda: [".*", "*.part", "*.tmp"])
    min_free_mb: float = 200.0           # below this free space (capture or state dir) no new file is claimed


@dataclass
class DecodeSettings:
    allowed_modalities: List[str] = field(default_factory=lambda: ["CR", "DX"])
    reject_lateral: bool = True
    min_side: int = field(default=256, metadata=_POSITIVE)   # px; smaller is not a diagnostic radiograph
    max_side: int = field(default=8192, metadata=_POSITIVE)
    max_pixels: int = field(default=40_000_000, metadata=_POSITIVE)   # checked before allocating; 6000x6000 = 36 M
    max_file_mb: float = field(default=512.0, metadata=_POSITIVE)
    # JPEG 2000: decode the smallest resolution level still >= the models' input and the
    # overlay; JPEG (DICOM Baseline or file): 1/2, 1/4 or 1/8 in the DCT likewise
    # (measurements stay in original pixels); false = always full size.
    reduced_resolution: bool = True


@dataclass
class ModelSettings:
    classifier: str = field(default="models/classifier/classifier.onnx", metadata=_PATH)   # manifest: the .json beside
    segmenter: str = field(default="models/segmenter/segmenter.onnx", metadata=_PATH)
    backend: str = field(default="onnxruntime", metadata={"choices": BACKENDS})
    # ONNX Runtime intra-op threads: "auto" times each model at start-up over 1, 2, 4 ..
    # cores and keeps the fastest (edge/inference/threads.py); an integer fixes it, 0 = all cores.
    threads: Any = field(default="auto", metadata={"format": "threads"})
    # Films through the models at once, each with its own sessions: "auto" times 1, 2, 4 ..
    # side by side at start-up (cores shared out) and keeps the fewest within 5 % of the
    # fastest (edge/inference/layout.py); an integer fixes it. TensorRT: always 1.
    films_in_flight: Any = field(default="auto", metadata={"format": "films_in_flight"})
    # ONNX Runtime: "auto" joins the classifier and segmenter into one graph when they share
    # their encoder (edge/inference/one_graph.py: one encoder pass per film, same outputs);
    # "off" runs the two graphs. TensorRT: always one engine per model.
    one_graph: str = field(default="auto", metadata={"choices": ("auto", "off")})
    engine_dir: str = field(default="engines", metadata=_PATH)   # TensorRT engines + sidecars
    device_profile: str = field(default="xavier_nx", metadata={"format": "profile_name"})   # config/devices/<name>.yaml
    warmup: int = field(default=2, metadata={"ge": 0})


@dataclass
class DecisionSettings:
    """The decision rule and per-site overrides of the manifests' thresholds (None = manifest's)."""
    # mask: the calibrated p where the segmenter manifest has a calibration, else the mask (SIIM-ACR)
    rule: str = field(default="mask", metadata={"choices": DECISION_RULES})
    gate_segmenter: bool = True          # skip the segmenter below skip_segmenter_below (bundled: 0, never)
    classifier_positive: Optional[float] = field(default=None, metadata=_FRACTION)
    skip_segmenter_below: Optional[float] = field(default=None, metadata=_FRACTION)
    pixel_high: Optional[float] = field(default=None, metadata=_FRACTION)
    min_area_fraction: Optional[float] = field(default=None, metadata=_FRACTION)
    pixel_low: Optional[float] = field(default=None, metadata=_FRACTION)
    probability: Optional[float] = field(default=None, metadata=_FRACTION)   # calibrated-p decision threshold (manifests with a calibration)


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
    host: str = field(default="127.0.0.1", metadata={"nonempty": True})
    port: int = field(default=1883, metadata={"ge": 1, "le": 65535})
    topic_prefix: str = field(default="pneumo", metadata={"format": "topic_prefix"})
    client_id: str = ""                  # default: pneumo-edge-<site>-<device>
    keepalive_s: int = field(default=30, metadata=_POSITIVE)
    username: str = ""
    password_file: str = ""              # the secret comes from a file ...
    password_env: str = ""               # ... or from this environment variable
    tls: TlsSettings = field(default_factory=TlsSettings)
    reconnect_min_s: float = field(default=0.5, metadata=_POSITIVE)
    reconnect_max_s: float = field(default=30.0, metadata=_POSITIVE)
    inflight: int = field(default=20, metadata={"ge": 1})   # outbox rows awaiting PUBACK at once
    publish_overlay: bool = True


@dataclass
class AlertSettings:
    identify_by: List[str] = field(default_factory=list)   # e.g. ["accession_number"]; off by default
    overlay_max_side: int = field(default=1024, metadata={"ge": 16})   # render_overlay needs 16 px or more
    overlay_quality: int = field(default=85, metadata={"ge": 1, "le": 100, "hint": "JPEG quality"})
    overlay_region: bool = False         # also paint the region into the JPEG (displays draw it from finding.contours)
    escalate_after_s: float = field(default=300.0, metadata={"ge": 0})   # re-announce an unacknowledged positive this often; 0 = never


@dataclass
class DisplayTlsSettings:
    cert_file: str = ""                  # HTTPS when both are set (the display's own certificate)
    key_file: str = ""


@dataclass
class DisplaySettings:
    """`pneumo-edge display`: the bedside web page and the upload-and-predict API."""
    host: str = field(default="127.0.0.1", metadata=_PATH)   # 0.0.0.0 to serve the ward network (then set token_file)
    port: int = field(default=8080, metadata={"ge": 0, "le": 65535, "hint": "0 = any free port"})
    display_id: str = ""                 # names this display in acks; empty = display-<hostname>
    sites: List[str] = field(default_factory=lambda: ["+"])   # sites to follow; "+" = all
    history: int = field(default=50, metadata={"ge": 1})   # alerts kept on the page (deduplicated by alert_id)
    stale_after_s: float = field(default=150.0, metadata=_POSITIVE)   # a cart silent this long is marked stale (heartbeat 60 s)
    token_file: str = ""                 # file holding the API token; empty = no authentication
    tls: DisplayTlsSettings = field(default_factory=DisplayTlsSettings)
    predict: bool = True                 # serve the upload page and POST /api/v1/predict


_AE = {"format": "ae_title"}
_PORT = {"ge": 1, "le": 65535}


@dataclass
class DicomIntakeSettings:
    """DICOM C-STORE receiver (edge/intake): films pushed by the cart or PACS."""
    listen: bool = False
    ae_title: str = field(default="PNEUMO_EDGE", metadata=_AE)
    port: int = field(default=11112, metadata=_PORT)
    bind_address: str = field(default="0.0.0.0", metadata={"nonempty": True})
    # Lists are checked item by item in config._Validator.intake_dicom.
    allowed_calling_aes: List[str] = field(default_factory=list)   # empty = any calling AE
    sop_classes: List[str] = field(default_factory=lambda: [       # edge/intake/names.py
        "cr", "dx_presentation", "dx_processing", "secondary_capture"])
    transfer_syntaxes: List[str] = field(default_factory=lambda: [
        "explicit_le", "implicit_le", "jpeg_baseline", "jpeg_lossless", "jpeg2000", "rle"])
    max_associations: int = field(default=4, metadata={"ge": 1})
    # Bytes per PDU we receive (0 = unlimited); 16 KiB PDUs cost an 8 MB film ~50 ms more
    # in pure-Python pynetdicom.
    max_pdu: int = field(default=1048576, metadata={"format": "max_pdu"})
    # pynetdicom holds a data set in memory until it is whole: past this many MB
    # received for one film the association is aborted (the decoder's own limit,
    # decode.max_file_mb, is the same default).
    max_dataset_mb: int = field(default=512, metadata={"ge": 1})
    acse_timeout_s: float = field(default=30.0, metadata=_POSITIVE)
    dimse_timeout_s: float = field(default=60.0, metadata=_POSITIVE)
    network_timeout_s: float = field(default=60.0, metadata=_POSITIVE)


@dataclass
class IntakeSettings:
    dicom: DicomIntakeSettings = field(default_factory=DicomIntakeSettings)


@dataclass
class PacsSettings:
    """Results back to PACS by C-STORE (edge/pacs): off by default."""
    enabled: bool = False
    host: str = ""
    port: int = field(default=104, metadata=_PORT)
    called_ae: str = ""                  # the PACS's AE title (checked when enabled)
    calling_ae: str = field(default="PNEUMO_EDGE", metadata=_AE)
    send_overlay: bool = True            # Secondary Capture of the overlay
    send_report: bool = True             # Enhanced SR with the finding
    retry_min_s: float = field(default=2.0, metadata=_POSITIVE)
    retry_max_s: float = field(default=300.0, metadata=_POSITIVE)
    timeout_s: float = field(default=30.0, metadata=_POSITIVE)   # association, DIMSE and network timeouts


@dataclass
class Settings:
    site: str = field(default="demo-site", metadata={"format": "topic_level"})
    device: str = field(default="cart-1", metadata={"format": "topic_level"})
    state_dir: str = field(default="state", metadata=_PATH)   # SQLite ledger + outbox
    log_level: str = field(default="INFO", metadata=_LEVEL)
    capture: CaptureSettings = field(default_factory=CaptureSettings)
    decode: DecodeSettings = field(default_factory=DecodeSettings)
    models: ModelSettings = field(default_factory=ModelSettings)
    decision: DecisionSettings = field(default_factory=DecisionSettings)
    mqtt: MqttSettings = field(default_factory=MqttSettings)
    alerts: AlertSettings = field(default_factory=AlertSettings)
    display: DisplaySettings = field(default_factory=DisplaySettings)
    intake: IntakeSettings = field(default_factory=IntakeSettings)
    pacs: PacsSettings = field(default_factory=PacsSettings)
    source_file: Optional[str] = field(default=None, metadata={"internal": True})
