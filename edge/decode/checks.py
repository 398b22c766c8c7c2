"""Rules that decide whether an image may be shown to the models.

Pure functions over header values, so they run before any pixel is decoded:
a wrong modality or an absurd declared size is refused without allocating.
"""
import math
import re
from typing import Any, FrozenSet, Optional, Sequence

import numpy as np

from edge.errors import (CorruptImage, ImageTooLarge, UnsupportedImage, UnsupportedModality)
from edge.settings import DecodeSettings

# DICOM ViewPosition values for side views. Decubitus (LLD/RLD) are listed
# too: side-lying, horizontal-beam films are not what the models were trained
# on (frontal films); a site that wants them can turn reject_lateral off.
LATERAL_VIEWS = frozenset({"LL", "RL", "LLD", "RLD", "LAT", "LATERAL",
                           "LEFT LATERAL", "RIGHT LATERAL"})

# DICOM's defined terms for ViewPosition, plus the lateral spellings above.
VIEW_POSITIONS = frozenset({"AP", "PA", "LL", "RL", "RLD", "LLD", "RLO", "LLO"}) | LATERAL_VIEWS

GREY_PHOTOMETRICS = frozenset({"MONOCHROME1", "MONOCHROME2"})
# PS3.3 C.7.6.3.1.2, current and retired.
PHOTOMETRICS = GREY_PHOTOMETRICS | frozenset({
    "PALETTE COLOR", "RGB", "HSV", "ARGB", "CMYK", "YBR_FULL", "YBR_FULL_422", "YBR_PARTIAL_422",
    "YBR_PARTIAL_420", "YBR_ICT", "YBR_RCT", "XYB"})
# PS3.3 C.7.3.1.1.1 Modality defined terms, current and retired.
MODALITIES = frozenset((
    "AR ASMT AU BDUS BI BMD CFM CR CT CTPROTOCOL DMS DG DOC DX ECG EEG EMG EOG EPS ES FID GM HC HD "
    "IO IOL IVOCT IVUS KER KO LEN LS MG MR M3D NM OAM OCT OP OPM OPT OPTBSV OPTENF OPV OSS OT PA PLAN "
    "POS PR PT PX REG RESP RF RG RTDOSE RTIMAGE RTINTENT RTPLAN RTRAD RTRECORD RTSEGANN RTSTRUCT RWV "
    "SEG SM SMR SR SRF STAIN TEXTUREMAP TG US VA XA XAPROTOCOL XC "
    "AS CD CF CP CS DD DF DM DS EC FA FS LP MA MS OPR ST VF").split())

# DICOM Code String: upper case, digits, space, underscore, at most 16 characters.
_CODE_STRING = re.compile(r"^[A-Z0-9 _]{1,16}$")


def shown_value(value: Optional[str], vocabulary: FrozenSet[str]) -> str:
    """A header value as it may appear in a message: one of the standard's
    terms (`vocabulary`) as is, anything else only described. A well-formed
    code string can still be the patient's name or birth date run into a term
    (Modality "DX19480213"), and a corrupted length makes a value run on into
    the next elements, so a value outside the vocabulary is never quoted."""
    if value is None:
        return "none"
    text = value.strip().upper()
    if text in vocabulary:
        return text
    return "an unlisted value (%d characters, not quoted)" % len(value)


def code_string(value: Optional[str]) -> Optional[str]:
    """`value` if it is a well-formed code string, else None (not emitted)."""
    if value is None:
        return None
    text = value.strip()
    return text if _CODE_STRING.match(text) else None


def check_file_size(n_bytes: int, settings: DecodeSettings) -> None:
    limit = settings.max_file_mb * 1024 * 1024
    if n_bytes > limit:
        raise ImageTooLarge("file is %.1f MB, larger than the %.0f MB limit (decode.max_file_mb)"
                            % (n_bytes / 1048576.0, settings.max_file_mb))


def check_dimensions(rows: int, columns: int, settings: DecodeSettings) -> None:
    """Declared size, checked before decoding so a huge header never allocates."""
    if rows <= 0 or columns <= 0:
        raise UnsupportedImage("image declares an empty size (%d x %d px)" % (columns, rows))
    longest, shortest = max(rows, columns), min(rows, columns)
    if longest > settings.max_side:
        raise ImageTooLarge("image is %d x %d px; a side longer than %d px is refused (decode.max_side)"
                            % (columns, rows, settings.max_side))
    if rows * columns > settings.max_pixels:
        raise ImageTooLarge("image is %d x %d px = %d pixels, more than the %d limit (decode.max_pixels)"
                            % (columns, rows, rows * columns, settings.max_pixels))
    if shortest < settings.min_side:
        raise UnsupportedImage("image is %d x %d px; a side shorter than %d px is not a diagnostic "
                               "radiograph (decode.min_side)" % (columns, rows, settings.min_side))


def check_modality(modality: Optional[str], settings: DecodeSettings) -> None:
    allowed = [m.upper() for m in settings.allowed_modalities]
    listed = ", ".join(allowed)
    if not modality:
        raise UnsupportedModality("DICOM has no Modality; only chest radiographs are accepted "
                                  "(allowed: %s)" % listed)
    if modality.strip().upper() not in allowed:
        raise UnsupportedModality("modality %s is not a chest radiograph (allowed: %s)"
                                  % (shown_value(modality, MODALITIES), listed))


def check_view(view_position: Optional[str], settings: DecodeSettings) -> None:
    if not settings.reject_lateral or not view_position:
        return
    view = view_position.strip().upper()
    if view in LATERAL_VIEWS or "LATERAL" in view:
        raise UnsupportedImage("view position %s is a lateral view; the models read frontal "
                               "(PA/AP) chest radiographs only (decode.reject_lateral)"
                               % shown_value(view, VIEW_POSITIONS))


def check_frames(n_frames: int) -> None:
    if n_frames > 1:
        raise UnsupportedImage("DICOM has %d frames; only single-frame radiographs are accepted"
                               % n_frames)


def check_grey(samples_per_pixel: int, photometric: str) -> None:
    if samples_per_pixel != 1 or photometric not in GREY_PHOTOMETRICS:
        raise UnsupportedImage("DICOM is colour (%s, %d samples per pixel); only greyscale "
                               "MONOCHROME1/MONOCHROME2 radiographs are accepted"
                               % (shown_value(photometric, PHOTOMETRICS) if photometric
                                  else "no photometric interpretation", samples_per_pixel))


# Pixel cell sizes a grey radiograph is stored in (PS3.5 8.1.1; 12 is packed, not a radiograph's).
_BITS_ALLOCATED = (8, 16, 32)


def check_pixel_cells(ds: Any) -> None:
    """Refuse pixels the decoder does not read, naming them, before pydicom
    fails on them with an error that reads like damage."""
    for keyword in ("FloatPixelData", "DoubleFloatPixelData"):
        if keyword in ds:
            raise UnsupportedImage("DICOM holds %s (a parametric map), not the integer pixel data of a "
                                   "radiograph" % keyword)
    try:
        bits = int(ds.get("BitsAllocated") or 16)
    except (TypeError, ValueError):
        raise CorruptImage("DICOM BitsAllocated is not a number (header damaged)") from None
    if bits not in _BITS_ALLOCATED:
        raise UnsupportedImage("DICOM BitsAllocated is %d; only 8-, 16- or 32-bit pixel cells are read "
                               "(packed 12-bit pixels are not)" % bits)


# Pixel Spacing beyond this is not a radiograph's (films are 0.05-1 mm a pixel):
# a damaged value would make every area in the alert absurd or infinite.
MIN_PIXEL_SPACING_MM, MAX_PIXEL_SPACING_MM = 0.01, 10.0


def first_value(value: object) -> Optional[float]:
    """First number of a possibly multi-valued DICOM element (WindowCenter ...);
    None when absent, not a number, or not finite (NaN/inf would turn every
    pixel into NaN, and the alert into invalid JSON)."""
    if value is None:
        return None
    if isinstance(value, (str, bytes)) or not isinstance(value, Sequence):
        items = [value]
    else:
        items = list(value)
    if not items:
        return None
    try:
        number = float(items[0])
    except (TypeError, ValueError, OverflowError):
        return None
    return number if math.isfinite(number) else None


def check_rescale(keyword: str, value: object) -> None:
    """A Rescale Slope/Intercept that is present must be a finite number, and a
    slope not 0: the stored values mean nothing without it, so the film is damaged."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return
    number = first_value(value)
    if number is None:
        raise CorruptImage("DICOM %s is present but not a finite number (header damaged)" % keyword)
    if keyword == "RescaleSlope" and number == 0:
        raise CorruptImage("DICOM RescaleSlope is 0: every pixel would have the same value (header damaged)")


def check_float32_map(a: float, b: float) -> None:
    """The folded rescale/window map y = a * stored + b must be finite in float32:
    an absurd slope or window overflows to inf, and inf * 0 is NaN."""
    limit = float(np.finfo(np.float32).max)
    if not all(math.isfinite(v) and abs(v) < limit for v in (a, b)):
        raise CorruptImage("DICOM rescale/window values are out of range (header damaged)")


def plausible_spacing(row: float, col: float) -> bool:
    """Pixel spacing a radiograph can have (some CRs write 0\\0 for "unknown")."""
    return all(math.isfinite(v) and MIN_PIXEL_SPACING_MM <= v <= MAX_PIXEL_SPACING_MM for v in (row, col))
