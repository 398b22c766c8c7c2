"""edge/allocator.py: glibc's thresholds are set once per process, and status says so."""
import platform

import pytest

from edge import allocator


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="glibc only")
def test_glibc_thresholds_are_set_and_reported():
    got = allocator.keep_large_blocks()
    assert got["allocator"].startswith("glibc ")
    assert (got["mmap_threshold_mb"], got["trim_threshold_mb"]) == (32, 128)
    assert allocator.keep_large_blocks() is got       # once per process


def test_a_library_without_mallopt_leaves_the_allocator_alone(monkeypatch):
    monkeypatch.setattr(allocator, "_applied", None)
    monkeypatch.setattr(allocator.ctypes, "CDLL", lambda name: object())   # no mallopt attribute
    assert allocator.keep_large_blocks() == {"allocator": "default", "reason": "not glibc"}
