"""Is the film's grey scale the right way round? A pure check on the
classifier's input.

A film whose grey scale is inverted (a MONOCHROME1 film labelled
MONOCHROME2, a negative RescaleSlope, a PNG exported inverted) shows bright
lungs and a dark spine; the models read it as another film (a positive one
fell from p 0.81 to 0.31, attack campaign, session 9) and the not-a-chest
gate passes it, its distances being nearly symmetric in the sign of a
standardised input. A right-way-round chest film correlates positively with
the mean chest layout (polarity_template.py); an inverted one negatively.
"""
import numpy as np
import cv2

from edge.polarity_template import TEMPLATE

SIDE = 16                 # blocks a side; the outer ring is dropped: INNER x INNER are compared
INNER = SIDE - 2
_T = np.asarray(TEMPLATE, np.float64).reshape(-1)
# Leading/trailing rows and columns this flat (std below this fraction of the plane's range) are
# padding or a collimator's frame, trimmed first unless that would keep under MIN_KEEP of a side:
# without it a zoomed-out film in a white frame scored <= 0 for about a third of the shared films
# (a helper's study, session 10).
FLAT, MIN_KEEP = 0.02, 0.4


def _trim_flat(plane: np.ndarray) -> np.ndarray:
    tol = FLAT * float(plane.max() - plane.min())
    rows = np.flatnonzero(plane.std(axis=1) >= tol)
    cols = np.flatnonzero(plane.std(axis=0) >= tol)
    if tol <= 0 or rows.size == 0 or cols.size == 0:
        return plane
    r0, r1, c0, c1 = rows[0], rows[-1] + 1, cols[0], cols[-1] + 1
    h, w = plane.shape
    if r1 - r0 < MIN_KEEP * h or c1 - c0 < MIN_KEEP * w:
        return plane
    return plane[r0:r1, c0:c1]


def thumbnail(tensor: np.ndarray) -> np.ndarray:
    """The (N, C, H, W) model input's first plane, flat borders trimmed,
    block-averaged to SIDE x SIDE, its inner INNER x INNER blocks
    standardised (zero mean, unit deviation), flattened. Odd: the
    thumbnail of an inverted plane is minus this one."""
    plane = np.asarray(tensor, np.float32)
    plane = np.ascontiguousarray(plane[(0,) * (plane.ndim - 2)])      # first film, first channel
    if min(plane.shape) < SIDE:
        return np.zeros(INNER * INNER)
    small = cv2.resize(_trim_flat(plane), (SIDE, SIDE), interpolation=cv2.INTER_AREA)
    inner = small[1:-1, 1:-1].reshape(-1).astype(np.float64)
    spread = inner.std()
    return (inner - inner.mean()) / spread if spread > 1e-9 else np.zeros_like(inner)


def correlation(tensor: np.ndarray) -> float:
    """Pearson correlation of the film's thumbnail with the mean chest layout, in [-1, 1]."""
    return float(np.dot(thumbnail(tensor), _T) / _T.size)
