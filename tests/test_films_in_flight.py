"""Several films through the models at once (models.films_in_flight): the
layout's rules, its start-up timing, and a real appliance with two films in
flight that alerts every film once and loses none."""
import json
import os
import threading
import time

import pytest

from edge.app import Appliance
from edge.capture.folders import CaptureFolders
from edge.config import load_config
from edge.errors import ConfigError
from edge.inference import layout
from edge.inference.threads import usable_cores
from edge.settings import CaptureSettings
from edge.stages.models import build_pipelines
from tests.mosquitto import Subscriber
from tests.test_appliance import drop_dicom, make_settings, received, wait_msgs


def test_films_in_flight_is_auto_or_one_to_four():
    assert layout.parse("auto") is None and layout.parse(" AUTO ") is None
    assert layout.parse(1) == 1 and layout.parse(4) == 4
    for bad in (0, 5, -1, True, 2.0, "two"):
        with pytest.raises(ValueError, match="films_in_flight"):
            layout.parse(bad)


def test_a_bad_films_in_flight_is_a_config_error_naming_the_key(tmp_path):
    path = tmp_path / "edge.yaml"
    path.write_text("models:\n  films_in_flight: 9\n")
    with pytest.raises(ConfigError, match="models.films_in_flight"):
        load_config(str(path), check_files=False)


def test_candidates_keep_a_core_per_film_and_share_the_cores_out():
    assert layout.candidates(1) == [1]
    assert layout.candidates(2) == [1, 2]
    assert layout.candidates(6) == [1, 2, 4]          # the Jetson's six cores: 6, 3 or 1 thread(s) each
    assert [layout.threads_for(n, 6) for n in (1, 2, 4)] == [6, 3, 1]
    assert layout.threads_for(2, 2) == 1 and layout.threads_for(4, 2) == 1


def test_calibration_keeps_the_fewest_films_within_the_tolerance_of_the_fastest():
    fast_two = {1: 60.0, 2: 50.0}
    assert layout.calibrate(lambda n: fast_two[n], [1, 2], sleep=lambda s: None).films == 2
    close = {1: 52.0, 2: 50.0}                        # 4 %: one film at a time (shorter latency) wins
    chosen = layout.calibrate(lambda n: close[n], [1, 2], sleep=lambda s: None)
    assert chosen.films == 1 and chosen.how == "calibrated" and chosen.measured_ms == close


def test_side_by_side_runs_the_films_at_once_and_reports_ms_per_film():
    ms = layout.side_by_side_ms([lambda: time.sleep(0.2), lambda: time.sleep(0.2)])
    assert 90 <= ms <= 190            # 200 ms of wall for two films, not 400


def test_side_by_side_reraises_a_films_error_on_the_caller():
    def boom():
        raise RuntimeError("session failed")
    with pytest.raises(RuntimeError, match="session failed"):
        layout.side_by_side_ms([lambda: None, boom])


def test_configured_films_get_their_own_sessions_and_the_cores_shared_out(tmp_path):
    settings = make_settings(tmp_path, 1883)
    settings.models.threads, settings.models.films_in_flight = "auto", 2
    pipelines, alone, chosen = build_pipelines(settings)
    try:
        assert len(pipelines) == 2 and pipelines[0].classifier is not pipelines[1].classifier
        assert pipelines[0].classifier.session is not pipelines[1].classifier.session
        want = layout.threads_for(2, usable_cores())
        assert chosen.as_dict() == {"films": 2, "threads_per_film": want, "how": "configured"}
        assert all(b.threads.threads == want for p in pipelines for b in (p.classifier, p.segmenter))
        # threads auto: a lone film gets the one-film pipeline where its calibration
        # chose more threads than a film in flight has (tiny models may not)
        if alone is not None:
            assert max(b.threads.threads for b in (alone.classifier, alone.segmenter)) > want
    finally:
        for p in pipelines + ([alone] if alone is not None else []):
            p.close()


def test_auto_times_the_layouts_and_keeps_one_of_them(tmp_path):
    settings = make_settings(tmp_path, 1883)              # threads 1, films_in_flight auto
    pipelines, alone, chosen = build_pipelines(settings)
    try:
        assert chosen.how in ("calibrated", "one core")
        assert len(pipelines) == chosen.films
        if chosen.how == "calibrated":
            assert sorted(chosen.measured_ms) == layout.candidates(usable_cores())
        assert alone is None             # fixed threads: nothing for a lone film to gain
    finally:
        for p in pipelines:
            p.close()


def test_two_films_in_flight_alert_every_film_once_and_lose_none(tmp_path, mosquitto):
    settings = make_settings(tmp_path, mosquitto.port)
    settings.models.films_in_flight = 2
    app = Appliance(settings)
    n = 12
    try:
        with Subscriber(mosquitto.port, [app.topics.alert, app.topics.base + "/overlay/#"]) as sub:
            app.start()
            for i in range(n):
                drop_dicom(app.folders.incoming, "film%02d.dcm" % i, seed=40 + i, positive=(i % 3 == 0))
            outcomes = [app.outcomes.get(timeout=60) for _ in range(n)]
            wait_msgs(sub, lambda: len({m.topic for m in received(sub, app.topics.base + "/overlay/#")}) >= n, 30)
            status = app.status()
        wait_until_empty(app.folders.processing)
    finally:
        app.stop()
    assert [o.state for o in outcomes] == ["alerted"] * n
    assert len({o.alert_id for o in outcomes}) == n
    assert sorted(os.listdir(app.folders.done)) == ["film%02d.dcm" % i for i in range(n)]
    alerts = [json.loads(m.payload) for m in received(sub, app.topics.alert)]
    assert {a["source"]["file_name"] for a in alerts} == {"film%02d.dcm" % i for i in range(n)}
    positives = {a["source"]["file_name"] for a in alerts if a["finding"]["pneumothorax"]}
    assert positives == {"film%02d.dcm" % i for i in range(0, n, 3)}
    assert status["films_in_flight"]["films"] == 2


def wait_until_empty(folder: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while os.listdir(folder) and time.monotonic() < deadline:
        time.sleep(0.05)


def test_two_threads_finishing_files_of_the_same_name_keep_both(tmp_path):
    """The films in flight finish on their own threads: a free name in done/
    is chosen and taken by one at a time, so neither rename replaces the other."""
    folders = CaptureFolders(str(tmp_path / "capture"), CaptureSettings(dir=str(tmp_path / "capture")))
    rounds, per_round = 20, 2
    for r in range(rounds):
        claimed = []
        for k in range(per_round):
            src = os.path.join(folders.incoming, "same-%d-%d" % (r, k))
            with open(src, "wb") as fh:
                fh.write(b"film %d %d" % (r, k))
            c = folders.claim(src)
            c.name = "same.dcm"              # as the cart named both
            claimed.append(c)
        barrier = threading.Barrier(per_round)

        def finish(c):
            barrier.wait()
            folders.finish(c)
        workers = [threading.Thread(target=finish, args=(c,)) for c in claimed]
        for w in workers:
            w.start()
        for w in workers:
            w.join()
    assert len(os.listdir(folders.done)) == rounds * per_round
    contents = {open(os.path.join(folders.done, f), "rb").read() for f in os.listdir(folders.done)}
    assert len(contents) == rounds * per_round


@pytest.mark.skipif(usable_cores() < 2, reason="one core: nothing for a lone film to gain")
def test_a_film_alone_runs_on_the_one_film_pipeline_and_a_burst_on_the_films_own(tmp_path, mosquitto):
    settings = make_settings(tmp_path, mosquitto.port)
    settings.models.threads, settings.models.films_in_flight = 0, 2      # 0: all cores for a lone film
    app = Appliance(settings)
    assert app._alone is not None and app.status()["films_in_flight"]["threads_per_film"] == 1
    runs = {"alone": 0, "films": 0}

    def counted(backend, key):
        original = backend.run

        def run(tensor):
            runs[key] += 1
            return original(tensor)
        backend.run = run
    counted(app._alone.classifier, "alone")
    for p in app.pipelines:
        counted(p.classifier, "films")
    try:
        app.start()
        runs.update(alone=0, films=0)                  # warm-up runs do not count
        drop_dicom(app.folders.incoming, "lone.dcm", seed=90, positive=True)
        assert app.outcomes.get(timeout=30).state == "alerted"
        assert runs == {"alone": 1, "films": 0}
        for i in range(8):
            drop_dicom(app.folders.incoming, "burst%d.dcm" % i, seed=91 + i, positive=False)
        assert [app.outcomes.get(timeout=60).state for _ in range(8)] == ["alerted"] * 8
        assert runs["alone"] + runs["films"] == 9 and app._in_flight == 0 and not app._alone_busy
    finally:
        app.stop()
