"""The watcher on real files, in both modes. Waits are short and timeouts
generous; nothing asserts on durations."""
import os
import time

import pytest

from edge.capture.inotify import IN_CLOSE_WRITE, Inotify, InotifyUnavailable
from edge.capture.watcher import Watcher, filesystem_type
from edge.errors import CaptureError
from edge.settings import CaptureSettings

GENEROUS_S = 10.0


def _inotify_works(path) -> bool:
    try:
        Inotify(str(path)).close()
        return True
    except InotifyUnavailable:
        return False


@pytest.fixture(params=["inotify", "poll"])
def mode(request, tmp_path):
    if request.param == "inotify" and not _inotify_works(tmp_path):
        pytest.skip("inotify is not available here")
    return request.param


@pytest.fixture
def incoming(tmp_path):
    path = tmp_path / "incoming"
    path.mkdir()
    return path


def _watcher(incoming, mode, settle_s=0.2):
    settings = CaptureSettings(dir=str(incoming.parent), watch=mode, settle_s=settle_s,
                               poll_interval_s=0.05)
    watcher = Watcher(str(incoming), settings)
    assert watcher.mode == mode
    return watcher


def _collect(watcher, count):
    found = []
    deadline = time.monotonic() + GENEROUS_S
    while len(found) < count and time.monotonic() < deadline:
        found += watcher.wait_ready(0.5)
    return found


def test_file_written_in_chunks_is_reported_once_after_the_last_write(incoming, mode):
    path = incoming / "scan.dcm"
    chunk = b"x" * 4096
    with _watcher(incoming, mode) as watcher, open(str(path), "wb") as f:
        for _ in range(6):                  # ~0.3 s of writing, 0.05 s apart
            f.write(chunk)
            f.flush()
            assert watcher.wait_ready(0.05) == []   # still growing: never reported
        f.close()
        assert _collect(watcher, 1) == [str(path)]
        assert path.stat().st_size == 6 * len(chunk)
        assert watcher.wait_ready(0.6) == []        # reported once only


def test_partial_and_hidden_files_are_ignored_until_renamed(incoming, mode):
    (incoming / "scan.dcm.part").write_bytes(b"partial")
    (incoming / ".hidden").write_bytes(b"hidden")
    with _watcher(incoming, mode, settle_s=0.1) as watcher:
        assert watcher.wait_ready(0.6) == []        # would have settled if not ignored
        os.rename(str(incoming / "scan.dcm.part"), str(incoming / "scan.dcm"))
        assert _collect(watcher, 1) == [str(incoming / "scan.dcm")]


def test_files_present_at_start_are_found(incoming, mode):
    names = ["a.dcm", "b.png", "empty.dcm"]
    for name in names:
        (incoming / name).write_bytes(b"" if name.startswith("empty") else b"data")
    with _watcher(incoming, mode, settle_s=0.1) as watcher:
        found = _collect(watcher, len(names))
    assert sorted(found) == sorted(str(incoming / n) for n in names)


def test_directories_and_symlinks_are_not_reported(incoming, mode, tmp_path):
    (incoming / "subdir").mkdir()
    target = tmp_path / "elsewhere.dcm"
    target.write_bytes(b"data")
    os.symlink(str(target), str(incoming / "link.dcm"))
    (incoming / "real.dcm").write_bytes(b"data")
    with _watcher(incoming, mode, settle_s=0.1) as watcher:
        assert _collect(watcher, 1) == [str(incoming / "real.dcm")]
        assert watcher.wait_ready(0.4) == []


def test_a_file_rewritten_after_being_reported_is_reported_again(incoming, mode):
    path = incoming / "scan.dcm"
    path.write_bytes(b"first")
    with _watcher(incoming, mode, settle_s=0.1) as watcher:
        assert _collect(watcher, 1) == [str(path)]
        path.write_bytes(b"second, longer")
        assert _collect(watcher, 1) == [str(path)]


def test_auto_uses_inotify_on_a_local_disk(incoming):
    if not _inotify_works(incoming):
        pytest.skip("inotify is not available here")
    with Watcher(str(incoming), CaptureSettings(watch="auto")) as watcher:
        assert watcher.mode == "inotify"


def test_a_missing_folder_is_a_capture_error(tmp_path):
    # an unknown capture.watch mode is refused by load_config (tests/test_config.py)
    with pytest.raises(CaptureError, match="does not exist"):
        Watcher(str(tmp_path / "nope"), CaptureSettings())


def test_inotify_on_a_missing_directory_says_why(tmp_path):
    with pytest.raises(InotifyUnavailable) as info:
        Inotify(str(tmp_path / "missing"))
    assert isinstance(info.value, CaptureError)
    if "only on Linux" not in str(info.value):
        assert "no such directory" in str(info.value)


def test_inotify_reports_a_closed_write_by_name(tmp_path):
    if not _inotify_works(tmp_path):
        pytest.skip("inotify is not available here")
    with Inotify(str(tmp_path)) as watch:
        assert watch.read_events(0.0) == []
        (tmp_path / "x.dcm").write_bytes(b"data")
        events = []
        deadline = time.monotonic() + GENEROUS_S
        while not any(e.mask & IN_CLOSE_WRITE for e in events) and time.monotonic() < deadline:
            events += watch.read_events(0.5)
    assert any(e.name == "x.dcm" and e.mask & IN_CLOSE_WRITE for e in events)


MOUNTS = """\
/dev/vda / ext4 rw,relatime 0 0
server:/export /mnt/cart nfs4 rw,relatime 0 0
//pacs/share /mnt/cart/smb cifs rw 0 0
/dev/sdb1 /media/my\\040disk exfat rw 0 0
"""


def test_filesystem_type_picks_the_deepest_mount():
    assert filesystem_type("/var/capture/incoming", MOUNTS) == "ext4"
    assert filesystem_type("/mnt/cart/incoming", MOUNTS) == "nfs4"
    assert filesystem_type("/mnt/cart", MOUNTS) == "nfs4"
    assert filesystem_type("/mnt/cart/smb/incoming", MOUNTS) == "cifs"
    assert filesystem_type("/mnt/cartridge", MOUNTS) == "ext4"
    assert filesystem_type("/media/my disk/incoming", MOUNTS) == "exfat"


def test_inotify_takes_a_file_renamed_into_place_without_the_settle_wait(incoming, tmp_path):
    if not _inotify_works(tmp_path):
        pytest.skip("inotify is not available here")
    with _watcher(incoming, "inotify", settle_s=3600) as watcher:   # settling would take an hour
        watcher.wait_ready(0.1)
        part = incoming / "film.dcm.part"
        part.write_bytes(b"x" * 1000)
        os.rename(str(part), str(incoming / "film.dcm"))
        assert _collect(watcher, 1) == [str(incoming / "film.dcm")]


def test_a_file_written_in_place_still_waits_to_settle(incoming, tmp_path):
    if not _inotify_works(tmp_path):
        pytest.skip("inotify is not available here")
    with _watcher(incoming, "inotify", settle_s=3600) as watcher:
        (incoming / "film.dcm").write_bytes(b"x" * 1000)
        assert watcher.wait_ready(1.0) == []


def test_trust_rename_off_settles_renamed_files_too(incoming, tmp_path):
    if not _inotify_works(tmp_path):
        pytest.skip("inotify is not available here")
    settings = CaptureSettings(dir=str(incoming.parent), watch="inotify", settle_s=3600,
                               trust_rename=False)
    with Watcher(str(incoming), settings) as watcher:
        part = incoming / "film.dcm.part"
        part.write_bytes(b"x" * 1000)
        os.rename(str(part), str(incoming / "film.dcm"))
        assert watcher.wait_ready(1.0) == []
