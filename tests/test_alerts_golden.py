"""docs/ALERTS.md against the wire: every JSON example there is compared,
key by key and type by type, with the message the appliance really emits.

A real appliance (tiny ONNX models like the bundled ones: calibration and
not-a-chest gate) runs against a real mosquitto; a positive film, the same
film again, an MR film, an escalation, a database found missing, a disk
below the floor and an engine-build announcement give the payloads, read
off the broker. Values (ids, times, probabilities) may differ from the doc;
the keys, the nesting and the JSON type of every value may not. So a key
added to the code but not to the doc fails here, and so does a documented
key the code never emits.

Each example in the doc is preceded by `<!-- example: LABEL -->`; an
unlabelled JSON block fails the test, so a new example cannot go unchecked.
The field tables are held to the same payloads: every key emitted has a row,
every row (but a "present only" one) names a key that is emitted.
"""
import json
import os
import re
import shutil
import time

import pytest

from edge.alerts.announce import announce_state
from edge.alerts.schema import build_ack, decode
from edge.app import Appliance
from edge.settings import CaptureSettings, ModelSettings, MqttSettings, Settings
from tests.mosquitto import SKIP_REASON, Mosquitto, Subscriber, mosquitto_binary
from tests.test_appliance import drop_dicom, received, wait_until
from tests.tiny_models import write_tiny_models

pytestmark = pytest.mark.slow
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DOC = os.path.join(ROOT, "docs", "ALERTS.md")
LABELLED = re.compile(r"<!-- example: ([\w-]+) -->\s*```json\n(.*?)```", re.S)
# Objects whose keys are data (model names, thread counts), not schema: each
# entry is compared with the doc's first entry.
DATA_KEYED = {("inference_threads",), ("inference_threads", "*", "measured_ms")}
WAIT_S = 30.0


def doc_text():
    with open(DOC, encoding="utf-8") as fh:
        return fh.read()


def doc_examples():
    return {label: json.loads(body) for label, body in LABELLED.findall(doc_text())}


def mismatches(doc, code, path=()):
    """Where the code's JSON differs from the doc's in keys, nesting or value types."""
    where = ".".join(path) or "(top)"
    if isinstance(doc, dict) and isinstance(code, dict):
        if tuple("*" if p.startswith("*") else p for p in path) in DATA_KEYED:
            first = next(iter(doc.values()), None)
            return [m for k, v in code.items() if first is not None
                    for m in mismatches(first, v, path + ("*" + k,))]
        out = ["%s.%s: documented, never emitted" % (where, k) for k in sorted(set(doc) - set(code))]
        out += ["%s.%s: emitted, not documented" % (where, k) for k in sorted(set(code) - set(doc))]
        for k in sorted(set(doc) & set(code)):
            out += mismatches(doc[k], code[k], path + (k,))
        return out
    if isinstance(doc, list) and isinstance(code, list):
        return [m for i, v in enumerate(code) if doc
                for m in mismatches(doc[min(i, len(doc) - 1)], v, path + ("[%d]" % i,))]
    if type(doc) is not type(code):
        return ["%s: doc has %s %r, code emits %s %r" % (where, type(doc).__name__, doc,
                                                         type(code).__name__, code)]
    return []


def _settings(tmp, port, device, **capture):
    cls, seg = write_tiny_models(str(tmp / "models"), gate=True)
    return Settings(
        site="ward-3", device=device, state_dir=str(tmp / device / "state"),
        capture=CaptureSettings(dir=str(tmp / device / "capture"), settle_s=0.1, poll_interval_s=0.05,
                                **capture),
        models=ModelSettings(classifier=cls, segmenter=seg, threads=1, warmup=1),
        mqtt=MqttSettings(host="127.0.0.1", port=port, reconnect_min_s=0.2, reconnect_max_s=1.0,
                          keepalive_s=5))


def _one(sub, topic, what, predicate=lambda body: True):
    """The first message on `topic` whose JSON satisfies `predicate`."""
    def found():
        return [b for b in (decode(m.payload) for m in received(sub, topic)) if predicate(b)]
    if not sub.wait_for(lambda _s: found(), WAIT_S):
        raise AssertionError("timed out waiting for %s on %s; got %s" % (what, topic, sub.messages))
    return found()[0]


def _event(sub, topics, kind, code=None):
    return _one(sub, topics.event, "a %s event" % kind, lambda b: b["kind"] == kind and (
        code is None or b["fields"].get("code") == code))


def render(tmp, port):
    """label -> the JSON object the appliance put on the wire."""
    out = {}
    settings = _settings(tmp, port, "cart-1")
    done = os.path.join(settings.capture.dir, "done")
    os.makedirs(done)
    with open(os.path.join(done, "IM0000.dcm"), "wb") as fh:   # films done, database gone
        fh.write(b"earlier film")
    app = Appliance(settings)
    topics = app.topics
    with Subscriber(port, [topics.base + "/#"]) as sub:
        assert announce_state(settings, "building-engines")
        out["status-building-engines"] = _one(sub, topics.status, "the announcement")
        app.start()
        try:
            incoming = app.folders.incoming
            drop_dicom(incoming, "IM0001.dcm", seed=1, positive=True)
            out["alert"] = alert = _one(sub, topics.alert, "the alert")
            # the alert goes out before the overlay's commit, which moves the film to done/
            wait_until(lambda: os.path.exists(os.path.join(done, "IM0001.dcm")), WAIT_S, "the film in done/")
            shutil.copy(os.path.join(done, "IM0001.dcm"), os.path.join(incoming, "..", "again.part"))
            os.rename(os.path.join(incoming, "..", "again.part"), os.path.join(incoming, "IM0001-again.dcm"))
            out["event-duplicate"] = _event(sub, topics, "duplicate")
            drop_dicom(incoming, "IM0002.dcm", seed=2, positive=False, modality="MR")
            out["event-rejected"] = _event(sub, topics, "rejected")
            out["event-recovered-store_missing"] = _event(sub, topics, "recovered", "store_missing")
            app.acks.escalate(now=time.time() + settings.alerts.escalate_after_s + 1)
            app.publisher.notify()
            out["event-escalated"] = _event(sub, topics, "escalated")
            out["ack"] = build_ack(alert["alert_id"], "ward-3-monitor", "JD")
            wait_until(lambda: app.counts()["rejected"], WAIT_S, "the rejection to be counted")
            app.publisher.publish_status()
            out["status-online"] = _one(sub, topics.status, "an online status after the films",
                                        lambda b: b["state"] == "online" and b["counts"]["rejected"])
            # the will is registered with the broker at connect; this is its payload
            out["status-offline-lastwill"] = decode(app.publisher._status_bytes("offline", clean=False))
        finally:
            app.stop()

    low = Appliance(_settings(tmp, port, "cart-2", min_free_mb=1e12))   # no disk is this big
    with Subscriber(port, [low.topics.event]) as sub:
        low.start()
        try:
            out["event-recovered-disk_low"] = _event(sub, low.topics, "recovered", "disk_low")
        finally:
            low.stop()
    return out


@pytest.fixture(scope="module")
def emitted(tmp_path_factory):
    if mosquitto_binary() is None:
        pytest.skip(SKIP_REASON)
    tmp = tmp_path_factory.mktemp("golden")
    broker = Mosquitto(str(tmp / "mosquitto")).start()
    try:
        yield render(tmp, broker.port)
    finally:
        broker.stop()


def test_every_json_block_in_the_doc_is_a_labelled_example():
    text = doc_text()
    labels = [label for label, _ in LABELLED.findall(text)]
    assert len(labels) == text.count("```json"), \
        "every ```json block in docs/ALERTS.md needs an <!-- example: LABEL --> line before it"
    assert len(set(labels)) == len(labels), "duplicate example labels: %s" % labels


def test_the_doc_has_an_example_of_every_message_the_appliance_emits(emitted):
    assert sorted(doc_examples()) == sorted(emitted)


@pytest.mark.parametrize("label", sorted(doc_examples()))
def test_the_doc_example_has_the_keys_and_types_the_code_emits(emitted, label):
    problems = mismatches(doc_examples()[label], emitted[label])
    assert not problems, "docs/ALERTS.md example %r drifted from the code:\n  %s\ncode emits: %s" % (
        label, "\n  ".join(problems), json.dumps(emitted[label], sort_keys=True))


def doc_table(heading):
    """{field name: its row's meaning} from the first field table under `heading`."""
    section = doc_text().split("\n" + heading + "\n", 1)[1].split("\n## ", 1)[0]
    lines = section.split("\n| Field |", 1)[1].splitlines()[2:]
    rows = {}
    for line in lines:
        if not line.startswith("|"):
            break
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        for name in re.findall(r"`([^`]+)`", cells[0]):
            rows[name.replace("[]", "")] = cells[-1]
    return rows


@pytest.mark.parametrize("heading, prefix", [("## Alert", "alert"), ("## Event", "event-"),
                                             ("## Status (retained) and last-will", "status-"),
                                             ("## Ack (published by displays)", "ack")])
def test_the_field_tables_name_what_the_code_emits(emitted, heading, prefix):
    rows = doc_table(heading)
    payloads = [body for label, body in emitted.items() if label.startswith(prefix)]
    top = {name.split(".")[0] for name in rows}
    assert top == set().union(*payloads), "%s table: documented %s, emitted %s" % (
        heading, sorted(top), sorted(set().union(*payloads)))
    for parent in {name.split(".")[0] for name in rows if "." in name}:
        listed = {name.split(".", 1)[1]: meaning for name, meaning in rows.items()
                  if name.startswith(parent + ".")}
        seen = set().union(*(body[parent] for body in payloads if isinstance(body.get(parent), dict)))
        optional = {k for k, meaning in listed.items() if "present only" in meaning}
        assert seen <= set(listed) and set(listed) - optional <= seen, \
            "%s table: %s.* documented %s, emitted %s" % (heading, parent, sorted(listed), sorted(seen))


def test_the_comparison_catches_added_missing_and_retyped_keys():
    doc = {"a": 1, "b": {"c": [1.5]}, "d": None, "inference_threads": {"x": {"threads": 1}}}
    assert mismatches(doc, {"a": 2, "b": {"c": [2.5, 3.5]}, "d": None,
                            "inference_threads": {"y": {"threads": 2}, "z": {"threads": 1}}}) == []
    assert mismatches(doc, dict(doc, e=1)) == ["(top).e: emitted, not documented"]
    assert mismatches(doc, {k: v for k, v in doc.items() if k != "a"}) == ["(top).a: documented, never emitted"]
    assert mismatches(doc, dict(doc, b={"c": [True]})) == ["b.c.[0]: doc has float 1.5, code emits bool True"]
    assert mismatches(doc, dict(doc, d="x")) == ["d: doc has NoneType None, code emits str 'x'"]
    assert mismatches(doc, dict(doc, inference_threads={"y": {"threads": 1, "how": "x"}})) == [
        "inference_threads.*y.how: emitted, not documented"]
