"""PNG and JPEG -> Image via OpenCV, with the size read from the header first."""
import struct
from typing import Optional, Tuple

import cv2
import numpy as np

from edge.errors import CorruptImage, NotAChestRadiograph, Truncated, UnsupportedImage
from edge.settings import DecodeSettings
from edge.types import Image

from .checks import check_dimensions
from .dct_scale import reduced_flag, reduced_scale

# JPEG start-of-frame markers carry the size; C4 (DHT), C8 (JPG), CC (DAC) do not.
_SOF_MARKERS = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}

# A radiograph has no colour. A grey film saved as RGB (or through JPEG's
# chroma subsampling) differs between channels by a few levels; a photograph
# by tens over much of its area. A coloured annotation on a film stays under
# the share.
CHROMA_LEVEL = 40 / 255.0          # max - min channel, as a share of full scale
COLOUR_SHARE_MAX = 0.05            # share of (sampled) pixels above CHROMA_LEVEL


def png_size(data: bytes) -> Tuple[int, int]:
    """(rows, columns) from the IHDR chunk, which PNG requires to come first."""
    if len(data) < 33 or data[12:16] != b"IHDR":
        raise Truncated("PNG is truncated or damaged: its IHDR header is missing")
    width, height = struct.unpack(">II", data[16:24])
    return height, width


def jpeg_size(data: bytes) -> Optional[Tuple[int, int]]:
    """(rows, columns) from the first SOF segment, or None if none is found
    before the scan data (then the decoder decides)."""
    header = jpeg_frame_header(data)
    return None if header is None else (header[1], header[2])


def jpeg_frame_header(data: bytes) -> Optional[Tuple[int, int, int, int]]:
    """(marker, rows, columns, components) of the first SOF segment (0
    components when the segment is cut short), or None if none is found
    before the scan data."""
    pos, n = 2, len(data)
    while pos + 4 <= n:
        if data[pos] != 0xFF:
            return None
        marker = data[pos + 1]
        if marker == 0xFF:          # fill byte
            pos += 1
            continue
        if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7:   # no length field
            pos += 2
            continue
        if marker == 0xDA:          # start of scan: no SOF before it
            return None
        (length,) = struct.unpack(">H", data[pos + 2:pos + 4])
        if marker in _SOF_MARKERS and pos + 9 <= n:
            height, width = struct.unpack(">HH", data[pos + 5:pos + 9])
            return marker, height, width, data[pos + 9] if pos + 10 <= n else 0
        pos += 2 + length
    return None


# A progressive JPEG has about 10 scans (libjpeg's default scripts); libjpeg
# re-reads the whole coefficient buffer for each, and puts no bound on their
# number: 20,000 empty scans (240 KB) held a 2048 px decode for 7 s, a few MB
# of them the pipeline for many minutes. libjpeg-turbo's djpeg -maxscans exists for this.
MAX_JPEG_SCANS = 100


def check_jpeg_scans(data: bytes) -> None:
    """Refuse a JPEG with more start-of-scan markers than any encoder writes.
    FF DA never occurs inside entropy-coded data (FF there is followed by 00
    or a restart marker), so counting the bytes is an upper bound on scans."""
    scans = data.count(b"\xff\xda")
    if scans > MAX_JPEG_SCANS:
        raise CorruptImage("JPEG has %d scans, more than the %d any encoder writes (a decoding-time bomb)"
                           % (scans, MAX_JPEG_SCANS))


def check_png_chunks(data: bytes) -> None:
    """Every chunk's declared length must fit in the file. OpenCV's PNG
    reader allocates what a chunk header declares before reading it: a
    170-byte file with a damaged length made it allocate 3 GB (found by
    `make fuzz`), which on an 8 GB Xavier is an OOM kill."""
    pos, n = 8, len(data)
    while pos + 8 <= n:
        (length,) = struct.unpack(">I", data[pos:pos + 4])
        kind = data[pos + 4:pos + 8]
        if length > n - pos - 12:
            raise Truncated("PNG is damaged: a chunk declares %d bytes, more than the file holds"
                            % length)
        pos += 12 + length
        if kind == b"IEND":
            return
    raise Truncated("PNG is truncated: it has no IEND end chunk")


def _check_complete(data: bytes, fmt: str) -> None:
    """libjpeg fills a truncated JPEG with grey and only warns, so look for
    the end markers ourselves."""
    tail = data[-64:]
    if fmt == "png" and b"IEND" not in tail:
        raise Truncated("PNG is truncated: it has no IEND end chunk")
    if fmt == "jpeg" and b"\xff\xd9" not in tail:
        raise Truncated("JPEG is truncated: it has no end-of-image marker")


def decode_raster(data: bytes, fmt: str, settings: DecodeSettings, min_side: int = 0) -> Image:
    """min_side > 0 (and decode.reduced_resolution): a JPEG at least twice
    that size is decoded DCT-scaled (edge/decode/jpeg_baseline.py) and the
    Image keeps its original size; a PNG is always decoded whole (zlib has
    no cheaper way to a smaller image)."""
    size = png_size(data) if fmt == "png" else jpeg_size(data)
    if size is not None:
        check_dimensions(size[0], size[1], settings)
    _check_complete(data, fmt)
    if fmt == "png":
        check_png_chunks(data)
    else:
        check_jpeg_scans(data)

    original_hw = None
    img = None
    if fmt == "jpeg" and min_side > 0 and settings.reduced_resolution:
        img, original_hw = _reduced_jpeg(data, min_side)
    if img is None:
        img = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), cv2.IMREAD_UNCHANGED)
    if img is None:
        raise Truncated("%s is damaged: OpenCV could not decode it" % fmt.upper())
    if original_hw is None:
        check_dimensions(img.shape[0], img.shape[1], settings)

    if img.ndim == 3:
        img = _to_grey(img)
    if img.dtype == np.uint8:
        scale = 1.0 / 255.0
    elif img.dtype == np.uint16:
        scale = 1.0 / 65535.0
    else:
        raise UnsupportedImage("%s has %s samples; only 8- and 16-bit images are accepted"
                               % (fmt.upper(), img.dtype))
    pixels = np.multiply(img, np.float32(scale), dtype=np.float32)
    return Image(pixels=pixels, source_format=fmt, bits_stored=img.dtype.itemsize * 8, original_hw=original_hw)


def _reduced_jpeg(data: bytes, min_side: int) -> Tuple[Optional[np.ndarray], Optional[Tuple[int, int]]]:
    """(pixels at 1/2, 1/4 or 1/8, original (h, w)) for a 1- or 3-component
    8-bit JPEG whose shorter side allows it, else (None, None)."""
    header = jpeg_frame_header(data)
    if header is None or header[3] not in (1, 3):
        return None, None
    hw = (header[1], header[2])
    n = reduced_scale(hw, min_side)
    if n == 1:
        return None, None
    img = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), reduced_flag(n, header[3]))
    if img is None or img.dtype != np.uint8 or img.shape[:2] != (-(-hw[0] // n), -(-hw[1] // n)):
        return None, None             # decoded whole instead; that decode reports any damage
    return img, hw


def _to_grey(img: np.ndarray) -> np.ndarray:
    channels = img.shape[2]
    if channels == 1:
        return img[:, :, 0]
    if channels == 2:                 # grey + alpha
        return img[:, :, 0]
    if channels not in (3, 4):
        raise UnsupportedImage("image has %d channels; expected grey, RGB or RGBA" % channels)
    check_greyscale(img[:, :, :3])
    return cv2.cvtColor(img, cv2.COLOR_BGR2GRAY if channels == 3 else cv2.COLOR_BGRA2GRAY)   # alpha ignored


def colour_share(rgb: np.ndarray, step: int = 4) -> float:
    """Share of pixels (every `step`-th row and column) whose channels differ by
    more than CHROMA_LEVEL of full scale."""
    sample = rgb[::step, ::step].astype(np.float32)
    full = 65535.0 if rgb.dtype == np.uint16 else 255.0
    chroma = (sample.max(axis=2) - sample.min(axis=2)) / full
    return float(np.mean(chroma > CHROMA_LEVEL))


def check_greyscale(rgb: np.ndarray) -> None:
    """Refuse a colour picture: no radiograph is one (the learned gate then
    never has to judge a colour photograph turned grey)."""
    share = colour_share(rgb)
    if share > COLOUR_SHARE_MAX:
        raise NotAChestRadiograph("the image is in colour (%.0f %% of its pixels are strongly coloured); a "
                                  "radiograph is greyscale" % (100 * share))
