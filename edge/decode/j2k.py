"""JPEG 2000 decoded at the resolution the models need, not the film's.

A JPEG 2000 codestream holds its image as a pyramid of wavelet resolution
levels; OpenJPEG can stop at level r and hand back the image at 1/2^r of its
size, skipping most of the work. The models read 256-512 px while carts
store 2-3k px films, so decoding level 2 instead of level 0 cuts a 2048 px
film's decode several-fold (measured in `python -m bench`).

glymur (ctypes over the system's libopenjp2, >= 2.3 on Ubuntu 20.04) does
the reduced decode; pydicom's plugins decode only full size. Without glymur
or libopenjp2 the caller falls back to the full decode, logged once.
"""
import logging
import os
import tempfile
import threading
from typing import Any, Optional, Tuple

import numpy as np

from .frames import single_frame

log = logging.getLogger(__name__)

_lock = threading.Lock()
_state = {"checked": False, "glymur": None, "why": ""}   # type: dict
_SHM = "/dev/shm"


def reduced_level(hw: Tuple[int, int], min_side: int, levels: int) -> int:
    """The deepest level r <= levels whose image, ceil(h / 2^r) x ceil(w / 2^r),
    still has its shorter side >= min_side (0 when even level 1 is too small)."""
    h, w = hw
    r = 0
    while r < levels:
        nxt = r + 1
        if min(-(-h // (1 << nxt)), -(-w // (1 << nxt))) < min_side:
            break
        r = nxt
    return r


def _glymur() -> Optional[Any]:
    """glymur with a working libopenjp2, or None (the reason logged once)."""
    with _lock:
        if not _state["checked"]:
            _state["checked"] = True
            try:
                import glymur
                if glymur.version.openjpeg_version in ("0.0.0", "", None):
                    raise ImportError("libopenjp2 not found by glymur")
                _state["glymur"] = glymur
            except Exception as exc:  # ImportError, or glymur's own config errors
                _state["why"] = "%s: %s" % (type(exc).__name__, exc)
                log.warning("JPEG 2000 reduced-resolution decoding unavailable (%s); decoding at full "
                            "size (install glymur and libopenjp2-7)", _state["why"])
        return _state["glymur"]


def available() -> Tuple[bool, str]:
    g = _glymur()
    if g is None:
        return False, _state["why"]
    return True, "glymur %s, OpenJPEG %s" % (g.__version__, g.version.openjpeg_version)


def _levels(jp2: Any) -> int:
    for seg in jp2.codestream.segment:
        if getattr(seg, "marker_id", "") == "COD":
            return int(seg.num_res)   # decomposition levels = the reductions available
    return 0


def decode_reduced(ds: Any, min_side: int) -> Optional[np.ndarray]:
    """Stored values at the deepest level whose shorter side is >= min_side,
    or None when a reduced decode is not possible or not worth it (no
    glymur, no level to drop, anything unexpected): the caller then decodes
    at full size with pydicom, which also reports damaged data properly."""
    glymur = _glymur()
    if glymur is None or min_side <= 0:
        return None
    hw = (int(ds.Rows), int(ds.Columns))
    try:
        data = single_frame(ds)
    except Exception:  # odd encapsulation: pydicom's full decode says what is wrong
        return None
    folder = _SHM if os.path.isdir(_SHM) and os.access(_SHM, os.W_OK) else None
    fd, path = tempfile.mkstemp(suffix=".j2k", dir=folder)   # glymur reads files only
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        jp2 = glymur.Jp2k(path)
        if tuple(jp2.shape[:2]) != hw or len(jp2.shape) > 2 and jp2.shape[2] != 1:
            return None
        r = reduced_level(hw, min_side, _levels(jp2))
        if r == 0:
            return None
        step = 1 << r
        pixels = jp2[::step, ::step]
    except Exception as exc:  # damaged codestream: let the full decode report it
        log.debug("reduced JPEG 2000 decode failed (%s: %s); decoding at full size", type(exc).__name__, exc)
        return None
    finally:
        os.unlink(path)
    return pixels[:, :, 0] if pixels.ndim == 3 else pixels
