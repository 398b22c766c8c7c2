"""The after-alert thread (edge.stages.after_thread): a film's overlay and
PACS step runs off the models' threads, at a lower priority, in order; a full
queue hands the step back to the caller; stop finishes what is queued; and
in the appliance the Outcome still comes once the file is in done/."""
import json
import logging
import os
import shutil
import sys
import threading

import pytest

from edge.app import Appliance
from edge.stages.after_thread import AfterThread, lower_priority
from edge.stages.job import Outcome
from tests.mosquitto import Subscriber
from tests.test_appliance import drop_dicom, make_settings, received, wait_msgs


class _Claimed:
    def __init__(self, label):
        self.label = label


def _plain_guard(claimed, step):
    try:
        return step()
    except RuntimeError as exc:
        return Outcome(claimed.label, "rejected", reason=str(exc))


def _collector():
    got, ready = [], threading.Condition()

    def publish(outcome):
        with ready:
            got.append((outcome, threading.current_thread().name))
            ready.notify_all()

    def wait(n, timeout=10.0):
        with ready:
            assert ready.wait_for(lambda: len(got) >= n, timeout), got
        return got
    return publish, wait


def test_a_thread_not_started_hands_every_step_back():
    later = AfterThread(_plain_guard, lambda o: None)
    assert later.offer(_Claimed("a"), lambda: None, 10) is False
    assert later.status()["ran_inline"] == 1


def test_steps_run_in_order_on_the_after_alert_thread_and_publish_their_outcomes():
    publish, wait = _collector()
    later = AfterThread(_plain_guard, publish)
    later.start()
    try:
        for i in range(5):
            assert later.offer(_Claimed("f%d" % i), lambda i=i: Outcome("f%d" % i, "alerted"), 100)
        got = wait(5)
    finally:
        assert later.stop(5.0)
    assert [o.name for o, _ in got] == ["f0", "f1", "f2", "f3", "f4"]
    assert {name for _, name in got} == {"after-alert"}
    assert later.status()["ran"] == 5 and later.status()["queued"] == 0


def test_a_full_queue_hands_the_step_back_by_count_and_by_bytes():
    release = threading.Event()
    publish, wait = _collector()
    later = AfterThread(_plain_guard, publish, max_queued=2, max_bytes=1000)
    later.start()
    try:
        assert later.offer(_Claimed("busy"), lambda: release.wait(10) and Outcome("busy", "alerted"), 600)
        assert later.offer(_Claimed("big"), lambda: Outcome("big", "alerted"), 500) is False   # 1100 bytes
        assert later.offer(_Claimed("small"), lambda: Outcome("small", "alerted"), 300)
        assert later.offer(_Claimed("third"), lambda: Outcome("third", "alerted"), 1) is False  # 2 queued
        assert later.status()["ran_inline"] == 2
        release.set()
        assert [o.name for o, _ in wait(2)] == ["busy", "small"]
    finally:
        release.set()
        later.stop(5.0)


def test_one_step_failing_leaves_the_thread_running_the_next():
    publish, wait = _collector()
    later = AfterThread(_plain_guard, publish)
    later.start()
    try:
        def broken():
            raise RuntimeError("the overlay could not be queued")
        later.offer(_Claimed("bad"), broken, 1)
        later.offer(_Claimed("good"), lambda: Outcome("good", "alerted"), 1)
        got = wait(2)
    finally:
        later.stop(5.0)
    assert [(o.name, o.state) for o, _ in got] == [("bad", "rejected"), ("good", "alerted")]


def test_stop_finishes_what_is_queued_and_says_when_it_could_not():
    publish, wait = _collector()
    later = AfterThread(_plain_guard, publish)
    later.start()
    for i in range(3):
        later.offer(_Claimed("q%d" % i), lambda i=i: Outcome("q%d" % i, "alerted"), 1)
    assert later.stop(5.0) is True
    assert len(wait(3)) == 3
    assert later.offer(_Claimed("late"), lambda: None, 1) is False       # closed: the caller runs it

    stuck = AfterThread(_plain_guard, lambda o: None)
    stuck.start()
    hold = threading.Event()
    stuck.offer(_Claimed("slow"), lambda: hold.wait(10) and None, 1)
    try:
        assert stuck.stop(0.3) is False
    finally:
        hold.set()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="a thread's own nice value is Linux's")
def test_lowering_the_priority_changes_only_the_calling_thread():
    mine = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
    seen = {}

    def worker():
        seen["said"] = lower_priority(5)
        seen["nice"] = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
    t = threading.Thread(target=worker)
    t.start()
    t.join()
    if seen["said"].startswith("unchanged"):
        pytest.skip("this system refuses a thread its own nice value: %s" % seen["said"])
    assert seen["nice"] == min(19, mine + 5) and seen["said"] == "nice %d" % seen["nice"]
    assert os.getpriority(os.PRIO_PROCESS, threading.get_native_id()) == mine


def test_the_appliance_renders_overlays_on_the_after_alert_thread_and_finishes_each_file(
        tmp_path, mosquitto, caplog):
    settings = make_settings(tmp_path, mosquitto.port)
    app = Appliance(settings)
    n = 6
    try:
        with Subscriber(mosquitto.port, [app.topics.alert, app.topics.base + "/overlay/#"]) as sub:
            app.start()
            with caplog.at_level(logging.INFO, logger="edge.stages.commit"):
                for i in range(n):
                    drop_dicom(app.folders.incoming, "a%02d.dcm" % i, seed=60 + i, positive=(i % 2 == 0))
                outcomes = []
                for _ in range(n):
                    outcome = app.outcomes.get(timeout=60)
                    # An Outcome still means the file is finished: it is in done/ already.
                    assert outcome.name in os.listdir(app.folders.done)
                    outcomes.append(outcome)
            wait_msgs(sub, lambda: len(received(sub, app.topics.base + "/overlay/#")) >= n, 30)
            status = app.status()["after_alert"]
    finally:
        app.stop()
    assert sorted(o.state for o in outcomes) == ["alerted"] * n
    assert all("overlay_ms" in o.timings_ms for o in outcomes)
    finished_on = {r.threadName for r in caplog.records if "-> alert" in r.getMessage()}
    assert finished_on == {"after-alert"}
    assert status["ran"] == n and status["ran_inline"] == 0 and status["queued"] == 0
    assert status["priority"].startswith(("nice ", "unchanged"))
    assert os.listdir(app.folders.processing) == []
    assert not app._after._in_hand          # every hold released: a later copy is a duplicate again


def test_a_full_queue_draws_the_overlay_on_the_models_thread_before_the_next_film(tmp_path, mosquitto, caplog):
    app = Appliance(make_settings(tmp_path, mosquitto.port))
    app._later._max_queued = 0               # every step handed back
    try:
        app.start()
        with caplog.at_level(logging.INFO, logger="edge.stages.commit"):
            for i in range(3):
                drop_dicom(app.folders.incoming, "i%d.dcm" % i, seed=70 + i, positive=False)
            outcomes = [app.outcomes.get(timeout=60) for _ in range(3)]
        status = app.status()["after_alert"]
    finally:
        app.stop()
    assert [o.state for o in outcomes] == ["alerted"] * 3
    assert all("overlay_ms" in o.timings_ms for o in outcomes)
    assert {r.threadName for r in caplog.records if "-> alert" in r.getMessage()} <= {
        "inference", "inference-1", "inference-2", "inference-3", "inference-4"}
    assert status["ran"] == 0 and status["ran_inline"] == 3
    assert sorted(os.listdir(app.folders.done)) == ["i0.dcm", "i1.dcm", "i2.dcm"]
    assert not app._after._in_hand


def test_a_failed_overlay_transaction_on_the_after_thread_is_retried_and_finished(tmp_path, mosquitto, monkeypatch):
    from edge.errors import StoreError
    from edge.stages import overlay_recovery
    real_queue, failures = overlay_recovery.AfterAlert.queue, []

    def fails_once(self, claimed, image, alert, overlay):
        if not failures:
            failures.append(alert["alert_id"])
            raise StoreError("database is locked (injected)")
        return real_queue(self, claimed, image, alert, overlay)
    monkeypatch.setattr(overlay_recovery.AfterAlert, "queue", fails_once)
    app = Appliance(make_settings(tmp_path, mosquitto.port))
    try:
        with Subscriber(mosquitto.port, [app.topics.alert, app.topics.base + "/overlay/#"]) as sub:
            app.start()
            drop_dicom(app.folders.incoming, "retry.dcm", seed=80, positive=True)
            first, second = app.outcomes.get(timeout=30), app.outcomes.get(timeout=60)
            wait_msgs(sub, lambda: received(sub, app.topics.base + "/overlay/#"), 30)
            alerts = received(sub, app.topics.alert)
    finally:
        app.stop()
    assert (first.state, second.state) == ("deferred", "recovered")
    assert "database is locked" in first.reason and second.alert_id == failures[0]
    assert len({json.loads(m.payload)["alert_id"] for m in alerts}) == 1     # the alert once, not redone
    assert os.listdir(app.folders.done) == ["retry.dcm"] and os.listdir(app.folders.processing) == []
    assert not app._after._in_hand


def test_a_copy_arriving_while_its_overlay_waits_is_a_duplicate(tmp_path, mosquitto, monkeypatch):
    from edge.stages import overlay_recovery
    real_render, hold, drawing = overlay_recovery.AfterAlert.render, threading.Event(), threading.Event()

    def slow_render(self, image, finding, label, name):
        drawing.set()
        hold.wait(30)
        return real_render(self, image, finding, label, name)
    monkeypatch.setattr(overlay_recovery.AfterAlert, "render", slow_render)
    app = Appliance(make_settings(tmp_path, mosquitto.port))
    try:
        app.start()
        drop_dicom(app.folders.incoming, "first.dcm", seed=85, positive=False)
        assert drawing.wait(30), "the overlay step never started"
        shutil.copy(os.path.join(app.folders.processing, "first.dcm"), str(tmp_path / "copy.part"))
        os.rename(str(tmp_path / "copy.part"), os.path.join(app.folders.incoming, "copy.dcm"))
        copy = app.outcomes.get(timeout=30)
        hold.set()
        first = app.outcomes.get(timeout=30)
    finally:
        hold.set()
        app.stop()
    assert (copy.name, copy.state) == ("copy.dcm", "duplicate")
    assert (first.name, first.state) == ("first.dcm", "alerted") and copy.alert_id == first.alert_id
    assert not app._after._in_hand
