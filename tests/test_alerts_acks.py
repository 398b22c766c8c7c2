"""Acks from displays: recorded in the appliance's SQLite store, reported in
status, and positives nobody acknowledged re-announced (escalation)."""
import json

import pytest

from edge.alerts.acks import ESCALATE_FOR_S, Acks
from edge.alerts.outbox import Outbox
from edge.alerts.schema import build_ack, decode, encode
from edge.alerts.topics import Topics
from edge.app import Appliance
from edge.store import Store
from tests.alert_factory import make_alert
from tests.mosquitto import Subscriber
from tests.test_appliance import drop_dicom, make_settings, received, wait_msgs, wait_until

TOPICS = Topics("pneumo", "ward-4", "cart-7")
POS, NEG = "a1" * 16, "b2" * 16


def alert(alert_id, positive):
    return make_alert(alert_id, positive, file_name=alert_id[:4] + ".dcm")


def make(tmp_path, after=300.0):
    store = Store(str(tmp_path / "state"))
    outbox = Outbox(store)
    acks = Acks(store, outbox, TOPICS, after)
    with store.transaction() as conn:
        acks.record_alert(conn, alert(POS, True))
        acks.record_alert(conn, alert(NEG, False))
    return store, outbox, acks


def test_positives_are_unacknowledged_until_an_ack_arrives_and_the_ack_is_kept(tmp_path):
    store, _, acks = make(tmp_path)
    assert acks.unacknowledged() == [POS]               # negatives need no acknowledgement
    assert acks.status() == {"unacknowledged": 1, "unacknowledged_ids": [POS]}
    assert acks.record_ack(encode(build_ack(POS, "monitor-1", "JD")))
    assert not acks.record_ack(encode(build_ack(POS, "monitor-2")))     # the first ack stands
    assert acks.unacknowledged() == [] and acks.status()["unacknowledged"] == 0
    store.close()
    again = Acks(Store(str(tmp_path / "state")), None, TOPICS, 300.0)   # a restart
    assert again.ack_of(POS)["display_id"] == "monitor-1" and again.ack_of(POS)["initials"] == "JD"


@pytest.mark.parametrize("payload", [b"not json", b"[]", encode({"alert_id": "short"}),
                                     encode({"alert_id": POS, "display_id": "", "acked_at": "x"})])
def test_malformed_acks_are_ignored(tmp_path, payload):
    _, _, acks = make(tmp_path)
    assert not acks.record_ack(payload)
    assert acks.unacknowledged() == [POS]


def test_an_unacknowledged_positive_is_re_announced_every_interval_until_acked(tmp_path):
    store, outbox, acks = make(tmp_path, after=60.0)
    t0 = store.connection().execute("SELECT created_at FROM positives").fetchone()[0]
    assert acks.escalate(now=t0 + 59) == []
    assert acks.escalate(now=t0 + 61) == [POS]
    assert acks.escalate(now=t0 + 100) == []              # not again before another interval
    assert acks.escalate(now=t0 + 122) == [POS]
    events = [decode(r.payload) for r in outbox.pending() if r.kind == "event"]
    assert [e["kind"] for e in events] == ["escalated", "escalated"]
    assert events[0]["fields"]["alert_id"] == POS and events[1]["fields"]["announcement"] == 3
    assert events[0]["fields"]["file_name"] == "a1a1.dcm"
    acks.record_ack(encode(build_ack(POS, "monitor-1")))
    assert acks.escalate(now=t0 + 500) == []
    assert acks.escalate(now=t0 + ESCALATE_FOR_S + 1000) == []


def test_escalation_off_and_for_at_most_a_day(tmp_path):
    store, _, acks = make(tmp_path, after=0)
    assert acks.escalate(now=10 ** 10) == []
    acks.escalate_after_s = 60.0
    t0 = store.connection().execute("SELECT created_at FROM positives").fetchone()[0]
    assert acks.escalate(now=t0 + ESCALATE_FOR_S + 1) == []


def test_appliance_records_an_ack_from_mqtt_and_re_announces_what_nobody_acked(tmp_path, mosquitto):
    settings = make_settings(tmp_path, mosquitto.port)
    settings.alerts.escalate_after_s = 1.0
    app = Appliance(settings)
    topics = app.topics
    try:
        with Subscriber(mosquitto.port, [topics.alert, topics.event, topics.status]) as sub:
            app.start()
            drop_dicom(app.folders.incoming, "p1.dcm", seed=1, positive=True)
            drop_dicom(app.folders.incoming, "p2.dcm", seed=2, positive=True)
            wait_msgs(sub, lambda: len(received(sub, topics.alert)) >= 2, 30)
            ids = {decode(m.payload)["source"]["file_name"]: decode(m.payload)["alert_id"]
                   for m in received(sub, topics.alert)}
            sub.client.publish(topics.ack, encode(build_ack(ids["p1.dcm"], "monitor-1", "JD")), qos=1)
            wait_until(lambda: app.acks.ack_of(ids["p1.dcm"]), 20, "the ack to be recorded")
            queued_for_p1 = queued_escalations(app, ids["p1.dcm"])

            def escalated():
                return [decode(m.payload)["fields"]["alert_id"] for m in received(sub, topics.event)
                        if decode(m.payload)["kind"] == "escalated"]
            wait_msgs(sub, lambda: escalated().count(ids["p2.dcm"]) >= 2, 20, "p2 re-announced twice")

            def unacked():
                status = json.loads(received(sub, topics.status)[-1].payload)
                return status.get("acks", {}).get("unacknowledged_ids")
            wait_msgs(sub, lambda: unacked() == [ids["p2.dcm"]], 20, "the status to list p2 only")
        assert queued_escalations(app, ids["p1.dcm"]) == queued_for_p1   # none after its ack
    finally:
        app.stop()


def queued_escalations(app, alert_id):
    rows = app.store.connection().execute("SELECT payload FROM outbox WHERE kind = 'event'").fetchall()
    return sum(1 for (p,) in rows if decode(bytes(p))["kind"] == "escalated"
               and decode(bytes(p))["fields"]["alert_id"] == alert_id)
