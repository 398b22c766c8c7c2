"""Settle detection with synthetic monotonic times: no sleeping."""
from edge.capture.settle import SettleTracker, is_ignored

IGNORE = [".*", "*.part", "*.tmp"]


def test_growing_file_is_not_ready_while_it_grows():
    t = SettleTracker(1.0)
    for i, now in enumerate([0.0, 0.6, 1.2, 1.8, 2.4]):
        assert t.observe("a.dcm", 100 * (i + 1), 1000 + i, now) is False


def test_stable_file_is_ready_after_settle_s_and_only_once():
    t = SettleTracker(1.0)
    assert t.observe("a.dcm", 500, 7, 10.0) is False
    assert t.observe("a.dcm", 500, 7, 10.99) is False
    assert t.observe("a.dcm", 500, 7, 11.0) is True
    assert t.observe("a.dcm", 500, 7, 12.0) is False
    assert t.observe("a.dcm", 500, 7, 99.0) is False


def test_settle_clock_restarts_when_size_or_mtime_changes():
    t = SettleTracker(1.0)
    t.observe("a.dcm", 500, 7, 0.0)
    assert t.observe("a.dcm", 500, 8, 0.9) is False      # mtime changed, same size
    assert t.observe("a.dcm", 500, 8, 1.5) is False      # only 0.6 s since the change
    assert t.observe("a.dcm", 500, 8, 2.0) is True


def test_file_changed_after_being_handed_on_is_handed_on_again():
    t = SettleTracker(1.0)
    t.observe("a.dcm", 500, 7, 0.0)
    assert t.observe("a.dcm", 500, 7, 1.0) is True
    assert t.observe("a.dcm", 900, 9, 2.0) is False
    assert t.observe("a.dcm", 900, 9, 3.0) is True


def test_zero_byte_file_settles_like_any_other():
    t = SettleTracker(0.5)
    assert t.observe("empty.dcm", 0, 1, 0.0) is False
    assert t.observe("empty.dcm", 0, 1, 0.5) is True


def test_update_forgets_vanished_names_and_a_returning_name_settles_afresh():
    t = SettleTracker(1.0)
    assert t.update({"a": (1, 1), "b": (2, 2)}, 0.0) == []
    assert t.update({"b": (2, 2)}, 0.5) == []
    assert len(t) == 1
    # "a" comes back with the same size and mtime: it has not been seen
    # stable for settle_s since it reappeared.
    assert t.update({"a": (1, 1), "b": (2, 2)}, 1.0) == ["b"]
    assert t.update({"a": (1, 1), "b": (2, 2)}, 1.9) == []
    assert t.update({"a": (1, 1), "b": (2, 2)}, 2.0) == ["a"]


def test_update_returns_ready_names_oldest_mtime_first():
    t = SettleTracker(0.0)
    assert t.update({"z": (1, 100), "a": (1, 300), "m": (1, 200)}, 0.0) == ["z", "m", "a"]


def test_next_due_says_when_the_earliest_pending_file_can_settle():
    t = SettleTracker(1.0)
    assert t.next_due(0.0) is None
    t.observe("a", 1, 1, 0.0)
    t.observe("b", 1, 1, 0.5)
    assert t.next_due(0.25) == 0.75
    assert t.next_due(5.0) == 0.0
    t.observe("a", 1, 1, 5.0)
    t.observe("b", 1, 1, 5.0)
    assert t.next_due(5.0) is None     # both handed on: nothing pending


def test_ignored_names():
    assert is_ignored(".hidden.dcm", IGNORE)
    assert is_ignored("scan.dcm.part", IGNORE)
    assert is_ignored("scan.TMP", IGNORE)
    assert not is_ignored("scan.dcm", IGNORE)
    assert not is_ignored("partial.dcm", IGNORE)
    assert not is_ignored("scan.dcm", [])


def test_a_held_file_is_ready_at_the_holds_end_unless_it_changes():
    t = SettleTracker(0.5)
    t.hold("cut.dcm", until=12.0)                        # returned cut off at 10.0, read again at 12
    assert t.observe("cut.dcm", 500, 7, 10.1) is False
    assert t.observe("cut.dcm", 500, 7, 11.9) is False
    assert t.observe("cut.dcm", 500, 7, 12.0) is True
    t.hold("cut.dcm", until=22.0)
    assert t.observe("cut.dcm", 500, 7, 20.0) is False
    assert t.observe("cut.dcm", 900, 8, 20.1) is False   # its writer resumed: the hold is off
    assert t.observe("cut.dcm", 900, 8, 20.6) is True    # settled as any file
    assert t.next_due(20.7) is None
