"""DICOM -> Image with pydicom (2.4 on Python 3.8, or 3.x).

Header first, rules second, pixels last: a file that would be rejected is
never decoded. Rescale and linear windowing are folded into one float32
affine map over the stored values (one pass, no float64 copy); only the rare
LUT sequences go through pydicom's own LUT functions.
"""
import io
import re
from dataclasses import replace
from typing import FrozenSet, Optional, Tuple

import numpy as np
import pydicom
from pydicom.uid import (ExplicitVRBigEndian, ExplicitVRLittleEndian,
                         ImplicitVRLittleEndian, UID)

try:  # pydicom 3.x
    from pydicom.pixels import apply_modality_lut, apply_voi_lut
except ImportError:  # pydicom 2.x
    from pydicom.pixel_data_handlers.util import apply_modality_lut, apply_voi_lut

from edge.errors import CorruptImage, DecodeError, MissingDecoder, NotAnImage, Truncated, UnsupportedImage
from edge.settings import DecodeSettings
from edge.types import Image

from .deflate import DEFLATED, inflate_if_deflated
from .header_walk import check_header_elements
from .j2k import decode_reduced
from .jpeg_baseline import decode_baseline
from .native_reduce import reduce_native
from .native_view import native_view
from .raster import check_jpeg_scans
from .withheld import patient_words, scrub, scrub_within, withheld
from .checks import (VIEW_POSITIONS, check_dimensions, check_frames, check_grey,
                     check_float32_map, check_modality, check_pixel_cells, check_rescale, check_view, code_string,
                     first_value, plausible_spacing)

# What a UID and a Short String may look like; anything else is not emitted
# (a damaged length can make a value run into the patient's name).
_UID = re.compile(r"^[0-9]+(\.[0-9]+)*$")
_SHORT_STRING = re.compile(r"^[^\\\x00-\x1f\x7f]{1,16}$")

# What to install, per transfer-syntax family, when pydicom has no working plugin.
_JPEG = ("1.2.840.10008.1.2.4.50", "1.2.840.10008.1.2.4.51", "1.2.840.10008.1.2.4.57",
         "1.2.840.10008.1.2.4.70")
_JPEG_LS = ("1.2.840.10008.1.2.4.80", "1.2.840.10008.1.2.4.81")
_JPEG_2000 = ("1.2.840.10008.1.2.4.90", "1.2.840.10008.1.2.4.91", "1.2.840.10008.1.2.4.201",
              "1.2.840.10008.1.2.4.202", "1.2.840.10008.1.2.4.203")
_NATIVE = (ImplicitVRLittleEndian, ExplicitVRLittleEndian, ExplicitVRBigEndian,
           "1.2.840.10008.1.2.1.99")  # deflated: inflated by pydicom while reading

PERCENTILE_WINDOW = (0.5, 99.5)


def install_hint(transfer_syntax: str) -> str:
    """The pip package(s) that decode this transfer syntax in pydicom."""
    if transfer_syntax in _JPEG_LS:
        return "pip install pyjpegls (or python-gdcm, or pylibjpeg-libjpeg with pylibjpeg)"
    if transfer_syntax in _JPEG_2000:
        return "pip install pylibjpeg pylibjpeg-openjpeg (or python-gdcm)"
    if transfer_syntax in _JPEG:
        return "pip install pylibjpeg pylibjpeg-libjpeg (or python-gdcm)"
    if transfer_syntax == "1.2.840.10008.1.2.5":
        return "pip install pylibjpeg-rle (or upgrade numpy/pydicom)"
    return ("pydicom has no decoder for it; configure the modality to send uncompressed, "
            "JPEG lossless or JPEG 2000")


def decode_dicom(data: bytes, settings: DecodeSettings, min_side: int = 0) -> Image:
    """min_side > 0: a JPEG 2000 or JPEG Baseline film may be decoded at a
    reduced resolution whose shorter side is still >= min_side
    (edge/decode/j2k.py, edge/decode/jpeg_baseline.py).
    Whatever it says (a refusal, the header values an Image carries) has this
    film's own patient name and birth date masked (withheld.py)."""
    data, deflated = inflate_if_deflated(data, int(settings.max_file_mb * 1048576))
    check_header_elements(data)
    header, fp = _read(data, stop_before_pixels=True)
    words = patient_words(header)
    try:
        image = _decode_dicom(data, header, fp, settings, min_side, words)
        return replace(image, transfer_syntax=UID(DEFLATED).name) if deflated else image
    except DecodeError as exc:
        message = scrub(str(exc), words)
        if message == str(exc):
            raise
        raise type(exc)(message) from None


def _decode_dicom(data: bytes, header: "pydicom.Dataset", fp: io.BytesIO, settings: DecodeSettings,
                  min_side: int, words: FrozenSet[str]) -> Image:
    pixels_follow = fp.tell() < stream_end(fp)
    ts = _transfer_syntax(header)
    _check_header(header, ts, settings, pixels_follow)

    raw = native_view(data, fp.tell() - _prefixed(data), header, ts)     # None: not this path
    if raw is not None:
        ds = header            # read in place: the header holds every element used below
    else:
        ds, raw = _decode_pixels(data, header, ts, settings, min_side)
    if min_side and settings.reduced_resolution and ts in _NATIVE:
        raw = reduce_native(raw, min_side)
    if raw.ndim != 2:
        raise UnsupportedImage("DICOM pixel data has shape %s; expected one grey frame"
                               % (raw.shape,))

    photometric = str(ds.get("PhotometricInterpretation", "MONOCHROME2")).strip().upper()
    pixels = to_display(raw, ds, invert=photometric == "MONOCHROME1")
    return Image(
        pixels=pixels,
        source_format="dicom",
        modality=code_string(_text(ds, "Modality")),
        view_position=_view_position(ds),
        pixel_spacing_mm=_spacing(ds),
        sop_instance_uid=_uid(ds, "SOPInstanceUID"),
        study_instance_uid=_uid(ds, "StudyInstanceUID"),
        series_instance_uid=_uid(ds, "SeriesInstanceUID"),
        accession_number=_unless_mentioned(_short_string(ds, "AccessionNumber"), words),
        photometric=photometric,
        bits_stored=int(ds.get("BitsStored") or 0) or None,
        transfer_syntax=UID(ts).name,
        original_hw=(int(ds.Rows), int(ds.Columns)) if raw.shape != (int(ds.Rows), int(ds.Columns)) else None,
        body_part_examined=withheld(_text(ds, "BodyPartExamined"), words),   # masked: the gate quotes it
    )


def _decode_pixels(data: bytes, header: "pydicom.Dataset", ts: str, settings: DecodeSettings,
                   min_side: int) -> Tuple["pydicom.Dataset", np.ndarray]:
    """pydicom's path: the file parsed again with its pixel data, then the
    codec for its transfer syntax (reduced where one allows it)."""
    ds = _read(data, stop_before_pixels=False)[0]
    _set_transfer_syntax(ds, ts)
    check_pixel_cells(ds)       # the float pixel elements: the header read stopped before them
    if "PixelData" not in ds:
        # pydicom drops an encapsulated Pixel Data element that ends early.
        raise Truncated("DICOM declares a %d x %d image but its pixel data is missing "
                        "(file truncated or damaged)" % (int(header.Columns), int(header.Rows)))
    if ts in _NATIVE:
        _check_native_length(ds)
    elif ts in _JPEG:
        check_jpeg_scans(ds.PixelData)       # the same decoding-time bomb as a .jpg file
    raw = None
    if min_side and settings.reduced_resolution and ts in _JPEG_2000:
        raw = decode_reduced(ds, min_side)     # None: not possible here, decode at full size
    if raw is None:       # JPEG Baseline: OpenCV, DCT-scaled when allowed (None: not this path)
        raw = decode_baseline(ds, ts, min_side if settings.reduced_resolution else 0)
    if raw is None:
        raw = _pixel_array(ds, ts)
    return ds, raw


def _prefixed(data: bytes) -> int:
    """Bytes _read puts before `data`: the 128-byte preamble of a file that
    starts at its 'DICM' prefix (preamble stripped); offsets in the stream
    _read returns are this much past the same bytes in `data`."""
    return 128 if data[:4] == b"DICM" else 0


# --- header -------------------------------------------------------------

def stream_end(fp: io.BytesIO) -> int:
    """The stream's length, its position kept. Not len(fp.getbuffer()): a
    BytesIO shares the bytes it was made from until a buffer is exported,
    and getbuffer() then copies them (3-4 ms for a 2048 px film, per call)."""
    here = fp.tell()
    end = fp.seek(0, io.SEEK_END)
    fp.seek(here)
    return end


def _read(data: bytes, stop_before_pixels: bool) -> Tuple["pydicom.Dataset", io.BytesIO]:
    pad = _prefixed(data)
    if pad:
        fp, has_preamble = io.BytesIO(b"\0" * pad + data), True
    else:
        fp, has_preamble = io.BytesIO(data), data[128:132] == b"DICM"
    try:
        ds = pydicom.dcmread(fp, force=not has_preamble, stop_before_pixels=stop_before_pixels)
        return ds, fp
    except Exception as exc:  # InvalidDicomError, EOFError, struct.error, zlib.error ...
        raise Truncated("DICOM header cannot be read (%s)" % type(exc).__name__)


def _transfer_syntax(ds: "pydicom.Dataset") -> str:
    meta = getattr(ds, "file_meta", None)
    ts = meta.get("TransferSyntaxUID") if meta is not None else None
    if ts:
        text = str(ts).strip("\0 ")
        if len(text) > 64 or not _UID.match(text):
            raise CorruptImage("DICOM transfer syntax UID is malformed (%d characters)" % len(text))
        return text
    # No file meta: pydicom guessed the encoding while reading.
    implicit, little = _read_encoding(ds)
    if implicit:
        return ImplicitVRLittleEndian
    return ExplicitVRLittleEndian if little else ExplicitVRBigEndian


def _read_encoding(ds: "pydicom.Dataset") -> Tuple[bool, bool]:
    encoding = getattr(ds, "original_encoding", None)     # pydicom 3
    if encoding is not None and encoding[0] is not None:
        return bool(encoding[0]), bool(encoding[1])
    return bool(getattr(ds, "read_implicit_vr", True)), bool(getattr(ds, "read_little_endian", True))


def _set_transfer_syntax(ds: "pydicom.Dataset", ts: str) -> None:
    if not hasattr(ds, "file_meta") or ds.file_meta is None:
        ds.file_meta = pydicom.dataset.FileMetaDataset()
    if "TransferSyntaxUID" not in ds.file_meta:
        ds.file_meta.TransferSyntaxUID = UID(ts)


def _check_header(ds: "pydicom.Dataset", ts: str, settings: DecodeSettings,
                  pixels_follow: bool) -> None:
    modality = _text(ds, "Modality")
    if modality:                    # the most useful reason first, even for a cut file
        check_modality(modality, settings)
    if not pixels_follow and ("Modality" not in ds or "Rows" not in ds):
        raise Truncated("DICOM file ends before its image data (truncated, or not an image)")
    check_modality(modality, settings)
    if "Rows" not in ds or "Columns" not in ds:
        raise NotAnImage("DICOM has no Rows/Columns (it is not an image object)")
    check_frames(int(ds.get("NumberOfFrames") or 1))
    check_grey(int(ds.get("SamplesPerPixel") or 1),
               str(ds.get("PhotometricInterpretation", "MONOCHROME2")).strip().upper())
    check_dimensions(int(ds.Rows), int(ds.Columns), settings)
    check_pixel_cells(ds)
    check_view(_text(ds, "ViewPosition"), settings)
    problem = decoder_problem(ts)
    if problem:
        raise MissingDecoder(problem)


def decoder_problem(ts: str) -> Optional[str]:
    """Why pydicom cannot decode this transfer syntax here, or None if it can."""
    name = UID(ts).name
    if ts in _NATIVE:
        return None
    try:
        from pydicom.pixels import get_decoder  # pydicom 3
    except ImportError:
        return _decoder_problem_v2(ts, name)
    try:
        decoder = get_decoder(ts)
    except NotImplementedError:
        return "no decoder exists for transfer syntax %s: %s" % (name, install_hint(ts))
    if decoder.is_available:
        return None
    return ("no installed plugin decodes transfer syntax %s: %s (pydicom reports: %s)"
            % (name, install_hint(ts), "; ".join(decoder.missing_dependencies)))


def _decoder_problem_v2(ts: str, name: str) -> Optional[str]:
    handlers = [h for h in pydicom.config.pixel_data_handlers
                if h.supports_transfer_syntax(UID(ts))]
    if not handlers:
        return "no decoder exists for transfer syntax %s: %s" % (name, install_hint(ts))
    if any(h.is_available() for h in handlers):
        return None
    return "no installed plugin decodes transfer syntax %s: %s" % (name, install_hint(ts))


# --- pixels -------------------------------------------------------------

def _check_native_length(ds: "pydicom.Dataset") -> None:
    bits = int(ds.get("BitsAllocated") or 16)
    expected = int(ds.Rows) * int(ds.Columns) * ((bits + 7) // 8)
    got = len(ds.PixelData)
    if got < expected:
        raise Truncated("DICOM pixel data is truncated: %d bytes of the %d a %d x %d image needs"
                        % (got, expected, int(ds.Columns), int(ds.Rows)))


def _pixel_array(ds: "pydicom.Dataset", ts: str) -> np.ndarray:
    try:
        return ds.pixel_array
    except (NotImplementedError, ImportError) as exc:
        raise MissingDecoder("transfer syntax %s cannot be decoded here: %s (%s)"
                             % (UID(ts).name, install_hint(ts), type(exc).__name__))
    except Exception as exc:  # each plugin raises its own types on damaged data
        raise Truncated("DICOM pixel data (%s) cannot be decoded (%s)"
                        % (UID(ts).name, type(exc).__name__))


def to_display(raw: np.ndarray, ds: "pydicom.Dataset", invert: bool) -> np.ndarray:
    """Stored values -> float32 [0, 1]: modality LUT, then VOI (first LUT or
    window; else the 0.5-99.5 percentile range), then MONOCHROME1 inversion."""
    if "ModalityLUTSequence" in ds:
        values = apply_modality_lut(raw, ds)
        slope, intercept = 1.0, 0.0
    else:
        values = raw
        check_rescale("RescaleSlope", ds.get("RescaleSlope"))
        check_rescale("RescaleIntercept", ds.get("RescaleIntercept"))
        slope = first_value(ds.get("RescaleSlope"))
        slope = 1.0 if slope is None else float(slope)        # absent; 0 was refused above
        intercept = float(first_value(ds.get("RescaleIntercept")) or 0.0)

    if "VOILUTSequence" in ds:
        out = _apply_voi_lut_sequence(values, slope, intercept, ds)
        if invert:
            np.subtract(np.float32(1.0), out, out=out)
        return out

    center = first_value(ds.get("WindowCenter"))
    width = first_value(ds.get("WindowWidth"))
    function = str(ds.get("VOILUTFunction", "LINEAR")).strip().upper() or "LINEAR"
    if center is not None and width is not None and width >= 1.0:
        if function == "SIGMOID":
            return _sigmoid(values, slope, intercept, center, width, invert)
        if function == "LINEAR_EXACT":
            a = 1.0 / width
            b = 0.5 - center / width
        elif width > 1.0:
            a = 1.0 / (width - 1.0)
            b = 0.5 - (center - 0.5) / (width - 1.0)
        else:   # width 1: a step at the centre
            a, b = 1e6, 0.5 - (center - 0.5) * 1e6
    else:
        lo, hi = _percentiles(values)
        lo, hi = sorted((lo * slope + intercept, hi * slope + intercept))
        a = 1.0 / (hi - lo) if hi > lo else 0.0
        b = -lo * a
    # Fold rescale (and inversion) into y = A * stored + B.
    big_a, big_b = a * slope, a * intercept + b
    if invert:
        big_a, big_b = -big_a, 1.0 - big_b
    check_float32_map(big_a, big_b)
    return _affine_clip(values, big_a, big_b)


def _affine_clip(values: np.ndarray, a: float, b: float) -> np.ndarray:
    out = np.multiply(values, np.float32(a), dtype=np.float32)
    out += np.float32(b)
    np.clip(out, 0.0, 1.0, out=out)
    return out


def _sigmoid(values: np.ndarray, slope: float, intercept: float, center: float,
             width: float, invert: bool) -> np.ndarray:
    k = -4.0 / width
    if invert:
        k = -k    # 1 - sigmoid(z) == sigmoid(-z)
    check_float32_map(k * slope, k * (intercept - center))
    out = _affine_clip_free(values, k * slope, k * (intercept - center))
    np.exp(out, out=out)
    out += np.float32(1.0)
    np.reciprocal(out, out=out)
    return out


def _affine_clip_free(values: np.ndarray, a: float, b: float) -> np.ndarray:
    out = np.multiply(values, np.float32(a), dtype=np.float32)
    out += np.float32(b)
    return out


def _apply_voi_lut_sequence(values: np.ndarray, slope: float, intercept: float,
                            ds: "pydicom.Dataset") -> np.ndarray:
    """pydicom applies the first VOI LUT; we scale by the LUT's own output range."""
    if slope != 1.0 or intercept != 0.0:
        values = np.rint(values * slope + intercept).astype(np.int64)
    try:
        mapped = apply_voi_lut(values, ds, index=0, prefer_lut=True)
        item = ds.VOILUTSequence[0]
        n_entries, first = int(item.LUTDescriptor[0]) or 65536, int(item.LUTDescriptor[1])
        domain = np.arange(first, first + n_entries, dtype=np.int64)
        table = apply_voi_lut(domain, ds, index=0, prefer_lut=True)
    except Exception as exc:  # damaged LUT descriptor/data
        raise CorruptImage("DICOM VOI LUT cannot be applied (%s)" % type(exc).__name__)
    lo, hi = float(table.min()), float(table.max())
    scale = 1.0 / (hi - lo) if hi > lo else 0.0
    return _affine_clip(mapped, scale, -lo * scale)


def _percentiles(values: np.ndarray) -> Tuple[float, float]:
    """0.5 and 99.5 percentiles; exact and fast for integers via a histogram."""
    lo_q, hi_q = PERCENTILE_WINDOW
    if values.dtype.kind in "ui" and values.size:
        vmin = int(values.min())
        vmax = int(values.max())
        if vmax - vmin < (1 << 20):
            shifted = values.ravel()
            if vmin != 0 or shifted.dtype.kind == "i":
                shifted = (shifted.astype(np.int64) - vmin)
            counts = np.cumsum(np.bincount(shifted, minlength=vmax - vmin + 1))
            n = counts[-1]
            lo = int(np.searchsorted(counts, lo_q / 100.0 * n, side="right")) + vmin
            hi = int(np.searchsorted(counts, hi_q / 100.0 * n, side="left")) + vmin
            return float(lo), float(hi)
    lo, hi = np.percentile(values[::2, ::2], [lo_q, hi_q])
    return float(lo), float(hi)


# --- metadata -----------------------------------------------------------

def _text(ds: "pydicom.Dataset", keyword: str) -> Optional[str]:
    value = ds.get(keyword)
    if value is None:
        return None
    text = str(value).strip()
    return text or None


def _view_position(ds: "pydicom.Dataset") -> Optional[str]:
    # Only the standard's terms are emitted: a free-text value could be anything a person typed.
    view = code_string(_text(ds, "ViewPosition"))
    return view if view in VIEW_POSITIONS else None


def _uid(ds: "pydicom.Dataset", keyword: str) -> Optional[str]:
    text = _text(ds, keyword)
    if text is None:
        return None
    text = text.rstrip("\0")
    return text if len(text) <= 64 and _UID.match(text) else None


def _unless_mentioned(value: Optional[str], words: FrozenSet[str]) -> Optional[str]:
    """An identifier that names the patient, or holds the birth date, is not emitted at all."""
    return None if value is None or scrub_within(value, words) != value else value


def _short_string(ds: "pydicom.Dataset", keyword: str) -> Optional[str]:
    text = _text(ds, keyword)
    return text if text is not None and _SHORT_STRING.match(text) else None


def _spacing(ds: "pydicom.Dataset") -> Optional[Tuple[float, float]]:
    for keyword in ("PixelSpacing", "ImagerPixelSpacing"):
        value = ds.get(keyword)
        try:
            row, col = float(value[0]), float(value[1])
        except (TypeError, ValueError, IndexError, OverflowError):
            continue
        if plausible_spacing(row, col):
            return row, col
    return None
