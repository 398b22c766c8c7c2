"""The SQLite outbox: transactional enqueue, once-only alerts, ordering, survival."""
import pytest

from edge.alerts.outbox import Outbox
from edge.alerts.schema import build_event, decode
from tests.alert_factory import make_alert
from edge.alerts.topics import Topics
from edge.errors import StoreError
from edge.store import Store

TOPICS = Topics("pneumo", "ward-3", "cart-1")


@pytest.fixture
def store(tmp_path):
    s = Store(str(tmp_path / "state"))
    yield s
    s.close()


def queue(outbox, n, kind="alert"):
    with outbox.store.transaction() as conn:
        return [outbox.enqueue(conn, kind, TOPICS.alert, b'{"n":%d}' % i, alert_id="a%d" % i)
                for i in range(n)]


def test_pending_is_oldest_first_and_sent_rows_leave(store):
    outbox = Outbox(store)
    ids = queue(outbox, 5)
    assert [r.id for r in outbox.pending(10)] == ids
    assert [r.id for r in outbox.pending(2)] == ids[:2]
    assert outbox.depth() == 5
    outbox.mark_sent(ids[1])
    outbox.mark_sent_many([ids[0], ids[3]])
    assert [r.id for r in outbox.pending(10)] == [ids[2], ids[4]]
    assert outbox.depth() == 2
    row = outbox.pending(1)[0]
    assert (row.kind, row.topic, row.payload, row.qos, row.retain) == \
        ("alert", "pneumo/ward-3/cart-1/alert", b'{"n":2}', 1, False)


def test_same_alert_is_queued_once(store):
    outbox = Outbox(store)
    first = queue(outbox, 1)[0]
    again = queue(outbox, 1)[0]
    assert again == first and outbox.depth() == 1
    with store.transaction() as conn:   # events have no alert_id and are never collapsed
        for _ in range(2):
            outbox.enqueue_event(conn, TOPICS, build_event("fault", "x", site="s", device="d"))
    assert outbox.depth() == 3


def test_enqueue_rolls_back_with_the_callers_transaction(store):
    outbox = Outbox(store)
    store.add_schema("CREATE TABLE IF NOT EXISTS ledger (sha TEXT PRIMARY KEY, state TEXT)")
    with pytest.raises(RuntimeError):
        with store.transaction() as conn:
            conn.execute("INSERT INTO ledger VALUES ('abc', 'done')")
            outbox.enqueue(conn, "alert", TOPICS.alert, b"{}", alert_id="abc")
            raise RuntimeError("power cut before commit")
    assert outbox.depth() == 0
    assert store.connection().execute("SELECT COUNT(*) FROM ledger").fetchone()[0] == 0


def test_enqueue_alert_queues_alert_then_overlay(store):
    outbox = Outbox(store)
    alert = make_alert("f" * 32)
    with store.transaction() as conn:
        outbox.enqueue_alert(conn, TOPICS, alert, overlay_jpeg=b"\xff\xd8jpeg")
    rows = outbox.pending(10)
    assert [(r.kind, r.topic) for r in rows] == [
        ("alert", TOPICS.alert), ("overlay", TOPICS.overlay("f" * 32))]
    assert decode(rows[0].payload) == alert.to_json() and rows[1].payload == b"\xff\xd8jpeg"


def test_attempts_errors_and_pruning(store):
    outbox = Outbox(store)
    a, b = queue(outbox, 2)
    outbox.mark_attempt(a, "not connected")
    outbox.mark_attempt(a)
    row = outbox.pending(1)[0]
    assert (row.attempts, row.last_error) == (2, "not connected")
    outbox.mark_sent(a)
    assert outbox.prune_sent(3600) == 0     # sent just now: kept
    assert outbox.prune_sent(-1) == 1       # older than "now + 1 s": gone
    assert [r.id for r in outbox.pending(10)] == [b]


def test_rows_survive_a_new_store_instance(tmp_path):
    first = Store(str(tmp_path / "state"))
    ids = queue(Outbox(first), 3)
    first.close()
    again = Outbox(Store(str(tmp_path / "state")))
    assert [r.id for r in again.pending(10)] == ids


def test_rejects_unknown_kind(store):
    outbox = Outbox(store)
    with pytest.raises(StoreError):
        with store.transaction() as conn:
            outbox.enqueue(conn, "mail", TOPICS.alert, b"{}")
