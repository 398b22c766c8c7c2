"""The ledger in a real SQLite store, beside a stand-in outbox table."""
import hashlib

import pytest

from edge.capture.ledger import Ledger, LedgerEntry
from edge.errors import StoreError
from edge.store import Store

OUTBOX = "CREATE TABLE IF NOT EXISTS test_outbox (alert_id TEXT PRIMARY KEY);"


def _sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


@pytest.fixture
def store(tmp_path):
    s = Store(str(tmp_path / "state"))
    s.add_schema(OUTBOX)
    yield s
    s.close()


@pytest.fixture
def ledger(store):
    return Ledger(store)


def test_a_claim_is_recorded_with_its_name(ledger):
    entry = ledger.record_claim(_sha("a"), "a.dcm")
    assert isinstance(entry, LedgerEntry)
    assert (entry.sha256, entry.name, entry.state, entry.duplicates) == (_sha("a"), "a.dcm",
                                                                        "claimed", 0)
    assert entry.first_seen > 0
    assert ledger.lookup(_sha("a")) == entry
    assert ledger.lookup(_sha("unknown")) is None


def test_done_commits_with_the_outbox_row(store, ledger):
    ledger.record_claim(_sha("a"), "a.dcm")
    with store.transaction() as conn:
        ledger.mark_done(conn, _sha("a"), "alert-1")
        conn.execute("INSERT INTO test_outbox VALUES ('alert-1')")
    entry = ledger.lookup(_sha("a"))
    assert (entry.state, entry.alert_id) == ("done", "alert-1")


def test_a_rolled_back_transaction_leaves_no_done_mark(store, ledger):
    ledger.record_claim(_sha("a"), "a.dcm")
    with pytest.raises(RuntimeError):
        with store.transaction() as conn:
            ledger.mark_done(conn, _sha("a"), "alert-1")
            conn.execute("INSERT INTO test_outbox VALUES ('alert-1')")
            raise RuntimeError("power cut while building the overlay")
    assert ledger.lookup(_sha("a")).state == "claimed"
    assert store.connection().execute("SELECT COUNT(*) FROM test_outbox").fetchone()[0] == 0


def test_rejected_keeps_code_and_reason(store, ledger):
    ledger.record_claim(_sha("b"), "b.txt")
    with store.transaction() as conn:
        ledger.mark_rejected(conn, _sha("b"), "not_an_image", "no image signature")
    entry = ledger.lookup(_sha("b"))
    assert (entry.state, entry.reason_code, entry.reason, entry.alert_id) == (
        "rejected", "not_an_image", "no image signature", None)


def test_a_content_whose_alert_is_queued_stays_done_when_a_later_step_rejects_it(store, ledger):
    """A fault after the alert's transaction (or on another copy in flight) must
    not turn an alerted content into a rejected one: its alert stands, and a
    resend is a duplicate, not a second alert."""
    ledger.record_claim(_sha("c"), "c.dcm")
    with store.transaction() as conn:
        ledger.mark_done(conn, _sha("c"), "alert-9")
    with store.transaction() as conn:
        ledger.mark_rejected(conn, _sha("c"), "fault", "overlay failed")
    entry = ledger.lookup(_sha("c"))
    assert (entry.state, entry.alert_id, entry.reason_code) == ("done", "alert-9", None)


def test_a_resent_identical_file_is_seen_as_done_and_counted_as_duplicate(store, ledger):
    ledger.record_claim(_sha("a"), "a.dcm")
    with store.transaction() as conn:
        ledger.mark_done(conn, _sha("a"), "alert-1")
    again = ledger.record_claim(_sha("a"), "a-resent.dcm")
    assert again.state == "done" and again.alert_id == "alert-1"
    assert again.name == "a.dcm"                  # the first name is kept
    assert again.duplicates == 1
    assert ledger.lookup(_sha("a")) == again


def test_reclaiming_after_a_crash_is_not_a_duplicate(ledger):
    ledger.record_claim(_sha("a"), "a.dcm")
    again = ledger.record_claim(_sha("a"), "a.dcm")   # leftover processed again
    assert (again.state, again.duplicates) == ("claimed", 0)


def test_marking_an_unclaimed_file_is_a_store_error(store, ledger):
    with pytest.raises(StoreError, match="never claimed"):
        with store.transaction() as conn:
            ledger.mark_done(conn, _sha("ghost"), "alert-9")


def test_a_rejected_file_claimed_again_keeps_its_verdict_and_counts_the_resend(store, ledger):
    ledger.record_claim(_sha("c"), "c")
    with store.transaction() as conn:
        ledger.mark_rejected(conn, _sha("c"), "corrupt", "truncated")
    again = ledger.record_claim(_sha("c"), "c-again")
    assert (again.state, again.reason_code, again.duplicates) == ("rejected", "corrupt", 1)


def test_the_ledger_survives_reopening_the_store(tmp_path):
    first = Store(str(tmp_path / "state"))
    Ledger(first).record_claim(_sha("a"), "a.dcm")
    first.close()
    second = Store(str(tmp_path / "state"))
    try:
        assert Ledger(second).lookup(_sha("a")).state == "claimed"
    finally:
        second.close()
