"""Display names (one safe form for logs, payloads, the ledger) and
255-byte-safe names for the capture folders; the retry queue; the
free-space floor."""
import os

import pytest

from edge.capture.diskspace import DiskFloor, free_mb
from edge.capture.folders import Claimed
from edge.capture.names import display_name, fit_name
from edge.capture.retry import BACKOFF_MAX_S, RetryQueue


@pytest.mark.parametrize("raw,shown", [
    ("scan.dcm", "scan.dcm"),
    (os.fsdecode(b"bad\xff.dcm"), "bad\\xff.dcm"),
    ("a\\b.dcm", "a\\\\b.dcm"),
    ("line\nforged", "line\\x0aforged"),
    ("tab\there", "tab\\x09here"),
    ("evil\u202egpj.dcm", "evil\\u202egpj.dcm"),     # right-to-left override
    ("Röntgen-ü.dcm", "Röntgen-ü.dcm"),              # ordinary non-ASCII stays readable
])
def test_display_name_is_one_printable_line(raw, shown):
    assert display_name(raw) == shown
    display_name(raw).encode("utf-8")                 # storable in SQLite and JSON


def test_fit_name_keeps_short_names_and_shortens_long_ones_within_the_limit():
    assert fit_name("scan.dcm", reserve=20) == "scan.dcm"
    long_a, long_b = "a" * 250 + "x.dcm", "a" * 250 + "y.dcm"
    fa, fb = fit_name(long_a, reserve=20), fit_name(long_b, reserve=20)
    assert len(os.fsencode(fa)) <= 235 and fa.endswith(".dcm")
    assert fa != fb                                   # a hash keeps them apart
    multi = "é" * 127 + ".dcm"                        # 258 bytes of UTF-8
    assert len(os.fsencode(fit_name(multi, reserve=13))) <= 242


def _claimed(path="/p/x.dcm"):
    return Claimed(path=path, name="x.dcm", sha256="", size=0, claimed_at=0.0, data=b"abc")


def test_retry_queue_backs_off_doubling_to_a_cap_and_forgets_on_success():
    now = [0.0]
    q = RetryQueue(clock=lambda: now[0])
    c = _claimed()
    waits = []
    for _ in range(9):
        item = q.defer(c, "locked", successes=0)
        waits.append(item.due - now[0])
        assert c.data is None                         # no bytes held while waiting
        assert q.due() == []
        now[0] = item.due
        assert [d.claimed for d in q.due()] == [c]
    assert waits[:4] == [1.0, 2.0, 4.0, 8.0] and waits[-1] == BACKOFF_MAX_S
    assert q.attempts(c.path) == 9
    q.forget(c.path)
    assert len(q) == 0


def test_disk_floor_pauses_below_and_resumes_above(tmp_path):
    free = free_mb(str(tmp_path))
    floor = DiskFloor([str(tmp_path)], floor_mb=free * 10 + 1)
    assert floor.check() is False and floor.status()["paused"] is True
    floor.floor_mb = 0.0
    assert floor.check() is True and floor.status()["free_mb"] > 0
