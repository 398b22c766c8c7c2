"""The typed records that flow between stages.

decode -> Image -> preprocess -> (tensor, Geometry) -> backends -> postprocess
-> Finding -> pipeline -> Result -> alerts.
Python 3.8: typing generics only, no `X | None`.
"""
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Tuple

import numpy as np


@dataclass(frozen=True)
class Image:
    """A decoded radiograph.

    pixels: 2-D float32 in [0, 1], MONOCHROME2 (bright = dense, bone white),
    after modality rescale and VOI windowing. Everything downstream (runtime,
    calibration, training) starts from this, so they all see the same numbers.
    """
    pixels: np.ndarray
    source_format: str                      # "dicom" | "png" | "jpeg"
    modality: Optional[str] = None          # DICOM Modality, e.g. "CR", "DX"
    view_position: Optional[str] = None     # "PA", "AP", "LL", ... when tagged
    pixel_spacing_mm: Optional[Tuple[float, float]] = None  # (row, column)
    sop_instance_uid: Optional[str] = None
    study_instance_uid: Optional[str] = None
    series_instance_uid: Optional[str] = None
    accession_number: Optional[str] = None  # emitted only when a site enables it
    photometric: Optional[str] = None       # as stored, before inversion
    bits_stored: Optional[int] = None
    transfer_syntax: Optional[str] = None   # UID name, DICOM only
    # The film's size when `pixels` were decoded at a reduced resolution (JPEG 2000
    # levels); None = pixels are full size. Findings are always in original pixels.
    original_hw: Optional[Tuple[int, int]] = None
    body_part_examined: Optional[str] = None  # DICOM (0018,0015) as stored, when present

    @property
    def height(self) -> int:
        """The original image's height (what Finding coordinates refer to)."""
        return int(self.original_hw[0] if self.original_hw else self.pixels.shape[0])

    @property
    def width(self) -> int:
        return int(self.original_hw[1] if self.original_hw else self.pixels.shape[1])


@dataclass(frozen=True)
class Geometry:
    """How a model input was cut from the original image, so that outputs
    can be mapped back. Model pixel (x, y) corresponds to original
    ((x - pad_x) / scale_x, (y - pad_y) / scale_y)."""
    original_hw: Tuple[int, int]
    input_hw: Tuple[int, int]
    scale_x: float
    scale_y: float
    pad_x: int = 0
    pad_y: int = 0

    @property
    def inner_hw(self) -> Tuple[int, int]:
        """(h, w) of the model input that shows the image: all of it, less any letterbox padding."""
        h, w = self.original_hw
        return max(1, int(round(h * self.scale_y))), max(1, int(round(w * self.scale_x)))

    @property
    def inner(self) -> Tuple[slice, slice]:
        """The rows and columns of the model input that show the image."""
        nh, nw = self.inner_hw
        return slice(self.pad_y, self.pad_y + nh), slice(self.pad_x, self.pad_x + nw)


@dataclass(frozen=True)
class Finding:
    """What the models say about one image, in the original image's geometry."""
    pneumothorax: bool
    probability: Optional[float]           # calibrated p of the decision (classifier p without calibration)
    seg_max_probability: Optional[float]   # None when the segmenter was skipped
    area_px: int
    area_fraction: float
    area_cm2: Optional[float]              # None without pixel spacing
    side: Optional[str]                    # "right" | "left" | "bilateral" | None (patient's side)
    bbox: Optional[Tuple[int, int, int, int]]  # x, y, width, height in original pixels
    contours: List[List[Tuple[int, int]]] = field(default_factory=list)
    segmenter_skipped: bool = False
    reasons: List[str] = field(default_factory=list)  # which rule(s) decided
    # The classifier's own output; `probability` is the calibrated probability of the
    # decision rule when the manifests carry a calibration (then equal only by chance).
    classifier_probability: Optional[float] = None


@dataclass(frozen=True)
class ModelInfo:
    """Identity of a model as it ran: enough to reproduce and to key alerts."""
    name: str
    version: str
    sha256: str
    task: str
    precision: str
    backend: str
    intended_use: str


@dataclass(frozen=True)
class Result:
    """The pipeline's output for one image; no files, no MQTT."""
    finding: Finding
    models: List[ModelInfo]
    timings_ms: Dict[str, float]
    thresholds: Dict[str, float]
