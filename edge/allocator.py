"""Keep glibc's allocator from handing a film's large buffers back to the
kernel between films.

Every film allocates a few arrays of several MB (the file's bytes, pixel
arrays, float planes, the overlay). With glibc's defaults each one above the
mmap threshold (128 KiB, rising on its own to at most 32 MiB) is a fresh
mapping, and memory freed at the top of the heap beyond the trim threshold
is returned: the next film page-faults the same megabytes in again, CPU
the models do not get. Measured with `python -m bench.cpu` on 2048 px DICOM
films (2-core x86): decode 9.1 -> 5.0 ms and overlay 6.4 -> 4.6 ms per film.
With both thresholds fixed, blocks up to MMAP_THRESHOLD come from the heap
and up to TRIM_THRESHOLD of free heap is kept for the next film; peak
memory is what one film needs, and stays flat (the bench's memory check).

glibc only (Ubuntu on the Jetson, Debian here); elsewhere nothing is changed.
"""
import ctypes
import ctypes.util
import logging
from typing import Any, Dict, Optional

log = logging.getLogger(__name__)

M_TRIM_THRESHOLD = -1      # glibc's malloc.h
M_MMAP_THRESHOLD = -3
# glibc up to 2.34 (Ubuntu 20.04 on JetPack 5 has 2.31) refuses an mmap threshold above 32 MiB on
# 64-bit. 32 MiB keeps every buffer of a 16-bit film below 4096 x 4096 in the heap.
MMAP_THRESHOLD = 32 << 20
TRIM_THRESHOLD = 128 << 20

_applied = None  # type: Optional[Dict[str, Any]]


def keep_large_blocks() -> Dict[str, Any]:
    """Set both thresholds once per process; what was set, for status."""
    global _applied
    if _applied is not None:
        return _applied
    _applied = {"allocator": "default", "reason": "not glibc"}
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or None)
        mallopt = libc.mallopt
        libc.gnu_get_libc_version.restype = ctypes.c_char_p
        version = libc.gnu_get_libc_version().decode("ascii", "replace")
    except Exception:  # noqa: BLE001 - best effort: no glibc (musl, macOS, Windows), nothing changes
        return _applied
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    # The trim threshold only with the mmap one: setting either freezes glibc's dynamic mmap
    # threshold, so a trim threshold alone would leave every large block an mmap of its own.
    if mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD) != 1:
        _applied = {"allocator": "default", "reason": "glibc %s refused the mmap threshold" % version}
        log.warning("allocator: glibc %s refused an mmap threshold of %d MiB; films page-fault their "
                    "buffers in afresh", version, MMAP_THRESHOLD >> 20)
        return _applied
    trim = mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD) == 1
    _applied = {"allocator": "glibc %s" % version, "mmap_threshold_mb": MMAP_THRESHOLD >> 20,
                "trim_threshold_mb": TRIM_THRESHOLD >> 20 if trim else None}
    return _applied
