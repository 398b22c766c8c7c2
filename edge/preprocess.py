"""Image -> model input tensor, driven only by the model's PreprocessSpec.

Pure numpy/cv2. The runtime, the INT8 calibrator and training all call
`preprocess`, so a model never sees numbers at the bedside that differ from
the ones it was calibrated or trained on.
"""
from typing import Optional, Tuple

import cv2
import numpy as np

from edge.inference.manifest import PreprocessSpec
from edge.types import Geometry

_INTERP = {"area": cv2.INTER_AREA, "linear": cv2.INTER_LINEAR, "cubic": cv2.INTER_CUBIC,
           "nearest": cv2.INTER_NEAREST}


def plan_geometry(original_hw: Tuple[int, int], spec: PreprocessSpec) -> Geometry:
    """Where the original image lands inside the model input."""
    h, w = original_hw
    th, tw = spec.size
    if spec.resize == "letterbox":
        s = min(th / h, tw / w)
        nh, nw = max(1, int(round(h * s))), max(1, int(round(w * s)))
        return Geometry((h, w), (th, tw), nw / w, nh / h, (tw - nw) // 2, (th - nh) // 2)
    return Geometry((h, w), (th, tw), tw / w, th / h, 0, 0)


def resize_to_input(pixels: np.ndarray, spec: PreprocessSpec) -> Tuple[np.ndarray, Geometry]:
    """Resize a 2-D float32 image into the model's input plane (H, W)."""
    geo = plan_geometry((pixels.shape[0], pixels.shape[1]), spec)
    th, tw = spec.size
    interp = _INTERP.get(spec.interpolation, cv2.INTER_AREA)
    src = pixels if pixels.dtype == np.float32 else pixels.astype(np.float32)
    if spec.resize == "letterbox":
        nh, nw = geo.inner_hw
        plane = np.zeros((th, tw), np.float32)
        plane[geo.inner] = cv2.resize(src, (nw, nh), interpolation=interp)
    else:
        plane = cv2.resize(src, (tw, th), interpolation=interp)
    return plane, geo


def window_plane(plane: np.ndarray, spec: PreprocessSpec) -> np.ndarray:
    """The manifest's per-image window (percentiles -> 0..1), or the plane as is.

    Applied on the resized plane: the percentiles of a 256 px plane are those
    of the film to within a grey level, at a fraction of the cost."""
    w = spec.window
    if w is None:
        return plane
    lo, hi = np.percentile(plane, (w.low, w.high))
    if hi - lo < 1e-6:                  # a flat image: nothing to stretch
        return plane
    out = (plane - np.float32(lo)) * np.float32(1.0 / (hi - lo))
    return np.clip(out, 0.0, 1.0, out=out).astype(np.float32, copy=False)


def normalise(plane: np.ndarray, spec: PreprocessSpec, out: Optional[np.ndarray] = None) -> np.ndarray:
    """(H, W) plane in [0, 1] -> (1, C, H, W) float32, (x - mean) / std per channel.

    `out` lets a caller reuse a preallocated tensor of the right shape.
    """
    c = spec.channels
    h, w = plane.shape
    if out is None:
        out = np.empty((1, c, h, w), np.float32)
    for ch in range(c):
        mean = spec.mean[ch] if len(spec.mean) > 1 else spec.mean[0]
        std = spec.std[ch] if len(spec.std) > 1 else spec.std[0]
        np.subtract(plane, mean, out=out[0, ch])
        out[0, ch] *= 1.0 / std
    return out


def preprocess(pixels: np.ndarray, spec: PreprocessSpec,
               out: Optional[np.ndarray] = None) -> Tuple[np.ndarray, Geometry]:
    """Image pixels (2-D, [0, 1]) -> ((1, C, H, W) float32 tensor, Geometry)."""
    if pixels.ndim != 2:
        raise ValueError("preprocess expects a 2-D grey image, got shape %s" % (pixels.shape,))
    plane, geo = resize_to_input(pixels, spec)
    return normalise(window_plane(plane, spec), spec, out), geo


def map_to_original(plane: np.ndarray, geo: Geometry, interpolation: int = cv2.INTER_LINEAR) -> np.ndarray:
    """A model-space map (H, W) -> the original image's (h, w), undoing any letterbox."""
    h, w = geo.original_hw
    crop = plane[geo.inner]
    return cv2.resize(np.ascontiguousarray(crop, dtype=np.float32), (w, h), interpolation=interpolation)
