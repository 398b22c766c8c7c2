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


def test_a_refused_mmap_threshold_sets_nothing_and_says_why(monkeypatch):
    calls = []

    class FakeLibc:
        @staticmethod
        def mallopt(option, value):
            calls.append(option)
            return 0 if option == allocator.M_MMAP_THRESHOLD else 1

        @staticmethod
        def gnu_get_libc_version():
            return b"2.31"

    monkeypatch.setattr(allocator, "_applied", None)
    monkeypatch.setattr(allocator.ctypes, "CDLL", lambda name: FakeLibc())
    got = allocator.keep_large_blocks()
    assert got == {"allocator": "default", "reason": "glibc 2.31 refused the mmap threshold"}
    assert calls == [allocator.M_MMAP_THRESHOLD]     # no trim threshold alone: it would freeze mmap at 128 KiB
