"""Claiming, finishing, rejecting and crash recovery on real folders."""
import datetime
import hashlib
import json
import os

import pytest

from edge.capture.folders import CaptureFolders, Claimed
from edge.errors import CaptureError
from edge.settings import CaptureSettings


def _folders(tmp_path, **kw) -> CaptureFolders:
    return CaptureFolders(str(tmp_path / "capture"), CaptureSettings(**kw))


def _drop(folders, name, data=b"radiograph bytes") -> str:
    path = os.path.join(folders.incoming, name)
    with open(path, "wb") as f:
        f.write(data)
    return path


def test_creates_the_four_folders(tmp_path):
    f = _folders(tmp_path)
    for sub in ("incoming", "processing", "done", "rejected"):
        assert os.path.isdir(str(tmp_path / "capture" / sub))
    assert f.incoming == str(tmp_path / "capture" / "incoming")


def test_a_root_that_cannot_hold_folders_is_a_clear_capture_error(tmp_path):
    (tmp_path / "capture").write_bytes(b"a file where the folder should be")
    with pytest.raises(CaptureError, match="cannot create capture folder"):
        _folders(tmp_path)


def test_claim_moves_into_processing_and_hashes_the_content(tmp_path):
    f = _folders(tmp_path)
    data = os.urandom(3 * 1024 * 1024 + 17)     # several hashing chunks
    src = _drop(f, "scan.dcm", data)
    claimed = f.claim(src)
    assert claimed.path == os.path.join(f.processing, "scan.dcm")
    assert claimed.name == "scan.dcm"
    assert claimed.sha256 == hashlib.sha256(data).hexdigest()
    assert claimed.size == len(data)
    assert claimed.claimed_at > 0
    assert not os.path.exists(src)
    with open(claimed.path, "rb") as fh:
        assert fh.read() == data


def test_claim_of_a_vanished_file_is_none(tmp_path):
    f = _folders(tmp_path)
    assert f.claim(os.path.join(f.incoming, "gone.dcm")) is None


def test_claim_picks_a_unique_name_when_processing_holds_the_same_name(tmp_path):
    f = _folders(tmp_path)
    first = f.claim(_drop(f, "scan.dcm", b"one"))
    second = f.claim(_drop(f, "scan.dcm", b"two"))
    assert first.path == os.path.join(f.processing, "scan.dcm")
    assert second.path == os.path.join(f.processing, "scan-1.dcm")
    assert second.name == "scan.dcm"
    with open(first.path, "rb") as a, open(second.path, "rb") as b:
        assert (a.read(), b.read()) == (b"one", b"two")


def test_finish_moves_to_done_with_unique_names(tmp_path):
    f = _folders(tmp_path)
    first = f.finish(f.claim(_drop(f, "scan.dcm", b"one")))
    second = f.finish(f.claim(_drop(f, "scan.dcm", b"two")))
    assert first == os.path.join(f.done, "scan.dcm")
    assert second == os.path.join(f.done, "scan-1.dcm")
    assert os.listdir(f.processing) == []
    with open(second, "rb") as fh:
        assert fh.read() == b"two"


def test_finish_deletes_when_on_success_is_delete(tmp_path):
    f = _folders(tmp_path, on_success="delete")
    claimed = f.claim(_drop(f, "scan.dcm"))
    assert f.finish(claimed) is None
    assert os.listdir(f.processing) == [] and os.listdir(f.done) == []


def test_finish_of_a_file_removed_from_processing_is_a_capture_error(tmp_path):
    f = _folders(tmp_path)
    claimed = f.claim(_drop(f, "scan.dcm"))
    os.unlink(claimed.path)
    with pytest.raises(CaptureError, match="cannot finish"):
        f.finish(claimed)


def test_reject_moves_the_file_and_writes_its_reason(tmp_path):
    f = _folders(tmp_path)
    claimed = f.claim(_drop(f, "scan.dcm", b"not a dicom"))
    path = f.reject(claimed, "not_an_image", "no DICOM, PNG or JPEG signature",
                    {"first_bytes": "6e6f7420"})
    assert path == os.path.join(f.rejected, "scan.dcm")
    with open(path, "rb") as fh:
        assert fh.read() == b"not a dicom"
    with open(path + ".reason.json") as fh:
        reason = json.load(fh)
    rejected_at = reason.pop("rejected_at")
    assert reason == {
        "code": "not_an_image",
        "reason": "no DICOM, PNG or JPEG signature",
        "details": {"first_bytes": "6e6f7420"},
        "sha256": hashlib.sha256(b"not a dicom").hexdigest(),
        "original_name": "file-" + hashlib.sha256(b"not a dicom").hexdigest()[:12],
    }   # not looked at (Job.start does that): a neutral label, never the name
    assert rejected_at.endswith("Z")
    when = datetime.datetime.fromisoformat(rejected_at[:-1] + "+00:00")
    now = datetime.datetime.now(datetime.timezone.utc)
    assert abs((now - when).total_seconds()) < 3600
    assert sorted(os.listdir(f.rejected)) == ["scan.dcm", "scan.dcm.reason.json"]
    assert os.listdir(f.processing) == []


def test_rejected_names_collide_into_unique_names_with_their_own_reasons(tmp_path):
    f = _folders(tmp_path)
    f.reject(f.claim(_drop(f, "scan.dcm", b"one")), "corrupt", "truncated")
    second = f.reject(f.claim(_drop(f, "scan.dcm", b"two")), "too_large", "huge")
    assert second == os.path.join(f.rejected, "scan-1.dcm")
    with open(second + ".reason.json") as fh:
        assert json.load(fh)["code"] == "too_large"
    with open(os.path.join(f.rejected, "scan.dcm.reason.json")) as fh:
        assert json.load(fh)["code"] == "corrupt"


def test_reject_without_details_writes_an_empty_object(tmp_path):
    f = _folders(tmp_path)
    path = f.reject(f.claim(_drop(f, "empty.dcm", b"")), "not_an_image", "empty file")
    with open(path + ".reason.json") as fh:
        assert json.load(fh)["details"] == {}


def test_leftovers_are_rehashed_from_processing(tmp_path):
    f = _folders(tmp_path)
    a = f.claim(_drop(f, "a.dcm", b"alpha"))
    b = f.claim(_drop(f, "b.dcm", b"beta"))
    # A crash here; the next start builds the folders afresh.
    again = CaptureFolders(f.root, CaptureSettings())
    leftovers = again.leftovers()
    assert [(c.path, c.name, c.sha256, c.size) for c in leftovers] == [
        (a.path, "a.dcm", a.sha256, 5), (b.path, "b.dcm", b.sha256, 4)]
    assert all(isinstance(c, Claimed) and c.claimed_at > 0 for c in leftovers)
    assert again.finish(leftovers[0]) == os.path.join(f.done, "a.dcm")
    assert [c.name for c in again.leftovers()] == ["b.dcm"]


def test_no_leftovers_after_a_clean_run(tmp_path):
    f = _folders(tmp_path)
    f.finish(f.claim(_drop(f, "a.dcm")))
    assert f.leftovers() == []


@pytest.mark.parametrize("end", ["finish", "finish_delete", "reject", "unclaim"])
def test_a_claim_syncs_processing_at_once_and_its_source_before_the_file_moves_on(tmp_path, monkeypatch, end):
    # The real calls, recorded in order: which folder each fsync reached, and each rename.
    f = _folders(tmp_path, on_success="delete" if end == "finish_delete" else "move")
    events = []
    real_fsync, real_rename, real_unlink = os.fsync, os.rename, os.unlink

    def fsync(fd):
        events.append(("fsync", os.path.basename(os.readlink("/proc/self/fd/%d" % fd))))
        return real_fsync(fd)

    def rename(src, dst):
        events.append(("rename", os.path.basename(os.path.dirname(src)), os.path.basename(os.path.dirname(dst))))
        return real_rename(src, dst)

    def unlink(path):
        events.append(("unlink", os.path.basename(os.path.dirname(path))))
        return real_unlink(path)
    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "rename", rename)
    monkeypatch.setattr(os, "unlink", unlink)
    claimed = f.claim(_drop(f, "a.dcm"))
    assert events == [("rename", "incoming", "processing"), ("fsync", "processing")]   # one fsync before the models
    del events[:]
    if end == "reject":
        f.reject(claimed, "bad", "bad file")
    elif end == "unclaim":
        f.unclaim(claimed)
    else:
        f.finish(claimed)
    moved = [e for e in events if e[0] in ("rename", "unlink") and e[1] == "processing"][0]
    assert events.index(("fsync", "incoming")) < events.index(moved)
    # once synced, a second file's end does not sync incoming/ again for the first
    del events[:]
    other = f.claim(_drop(f, "b.dcm"))
    f.finish(other)
    assert events.count(("fsync", "incoming")) == 1


def _read_as_if_sized(tmp_path, content, size, max_bytes):
    """_read_and_hash on a real file whose fstat said `size` (less than it
    holds: the writer appended after the stat)."""
    from edge.capture.folders import _read_and_hash
    path = tmp_path / "growing.dcm"
    path.write_bytes(content)
    with open(str(path), "rb") as f:
        return _read_and_hash(f, size, max_bytes)


def test_a_file_read_at_its_stat_size_is_read_whole(tmp_path):
    data, digest, n = _read_as_if_sized(tmp_path, b"x" * 1000, 1000, 512 * 1048576)
    assert data == b"x" * 1000 and n == 1000 and digest == hashlib.sha256(data).hexdigest()


def test_a_file_that_grew_after_its_stat_is_read_on_to_its_end(tmp_path):
    content = bytes(range(256)) * 4
    data, digest, n = _read_as_if_sized(tmp_path, content, 10, None)
    assert data == content and n == len(content) and digest == hashlib.sha256(content).hexdigest()
    data, _, n = _read_as_if_sized(tmp_path, content, 10, 10 ** 6)
    assert data == content


def test_a_file_that_grew_past_the_limit_is_read_only_one_byte_past_it(tmp_path):
    content = b"y" * 5000
    data, _, n = _read_as_if_sized(tmp_path, content, 100, 1000)
    assert n == 1001 and data == content[:1001]             # the caller sees it grew past the limit
