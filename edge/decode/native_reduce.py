"""Uncompressed DICOM pixels reduced to the size the appliance needs.

An uncompressed film has no resolution levels to decode, but every later
step (the display mapping, the models' resize, the overlay's resize) reads
the whole array: on a 2048 px film that is four times the pixels the
1024 px decode floor (edge/resolution.py) keeps. The stored values are
averaged over n x n blocks (n = 2, 4 or 8, the same rule as the DCT-scaled
JPEG path) before the display mapping, as a JPEG 2000 reduced level is;
the Image keeps the original size, so findings stay in original pixels.
Only 16-bit stored values: averaged 8-bit values would lose a visible
share of a grey level to rounding.
"""
import cv2
import numpy as np

from .dct_scale import reduced_scale

_REDUCIBLE = (np.dtype(np.uint16), np.dtype(np.int16))


def reduce_native(raw: np.ndarray, min_side: int) -> np.ndarray:
    """`raw` area-averaged by the largest n of 2, 4, 8 that keeps its shorter
    side >= min_side; `raw` itself when no n fits or it is not 16-bit grey."""
    if raw.ndim != 2 or raw.dtype not in _REDUCIBLE or min_side <= 0:
        return raw
    h, w = raw.shape
    n = reduced_scale((h, w), min_side)
    if n == 1:
        return raw
    return cv2.resize(raw, (-(-w // n), -(-h // n)), interpolation=cv2.INTER_AREA)
