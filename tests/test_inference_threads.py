"""models.threads: a number, or "auto" = measured at start-up and reported in status."""
import pytest

from edge.config import load_config
from edge.errors import ConfigError
from edge.inference import threads
from edge.inference.manifest import load_manifest
from edge.inference.onnxruntime import OnnxRuntimeBackend
from edge.pipeline import Pipeline
from tests.tiny_models import write_tiny_models


def test_candidates_grow_by_doubling_and_end_at_the_core_count():
    assert threads.candidates(1) == [1]
    assert threads.candidates(2) == [1, 2]
    assert threads.candidates(6) == [1, 2, 4, 6]
    assert threads.candidates(8) == [1, 2, 4, 8]


def test_pick_takes_the_fewest_threads_within_the_tolerance():
    assert threads.pick({1: 77.0, 2: 41.0}) == 2
    assert threads.pick({1: 10.0, 2: 9.8, 4: 9.0}) == 4          # 10.0 is 11 % slower than 9.0
    assert threads.pick({1: 9.3, 2: 9.0, 4: 8.9}) == 1           # all within 5 %: keep the cores free


def test_calibrate_keeps_each_counts_best_run_and_more_runs_when_cheap():
    calls = []
    noisy = {1: [50.0, 40.0, 45.0], 2: [30.0, 90.0, 31.0]}

    def time_once(t):
        calls.append(t)
        return noisy[t][(len([c for c in calls if c == t]) - 1) % 3]
    choice = threads.calibrate(time_once, [1, 2], min_runs=3, max_runs=10, budget_ms=100.0, windows=1)
    assert choice.measured_ms == {1: 40.0, 2: 30.0} and choice.threads == 2 and choice.how == "calibrated"
    assert calls.count(1) == 3                 # 135 ms after 3 runs: over budget
    assert calls.count(2) == 3                 # 151 ms


class _Cart:
    """A model whose true times are 11 ms at 1 thread and 6.5 ms at 2, on a
    machine where something else takes a core for `busy` consecutive runs
    starting at run `start`: a 2-thread run then takes the 1-thread time
    plus a little (its second thread waits for the core)."""

    def __init__(self, start, busy):
        self.start, self.busy, self.calls = start, busy, []

    def time_once(self, t):
        self.calls.append(t)
        loaded = self.start <= len(self.calls) - 1 < self.start + self.busy
        return {1: 11.0, 2: 11.4 if loaded else 6.5}[t]


@pytest.mark.parametrize("start", range(0, 12))
def test_calibrate_picks_the_right_count_through_a_transient_slowdown(start):
    # The slowdown lasts as long as max_runs runs: timed one count after the
    # other, it could cover every run of the 2-thread count and make 1 win.
    cart = _Cart(start, busy=10)
    choice = threads.calibrate(cart.time_once, [1, 2], min_runs=3, max_runs=10, budget_ms=200.0, windows=1)
    assert choice.threads == 2, (start, cart.calls, choice.measured_ms)
    assert choice.measured_ms == {1: 11.0, 2: 6.5}


def test_calibrate_interleaves_counts_and_varies_which_runs_first():
    calls = []
    threads.calibrate(lambda t: calls.append(t) or 1.0, [1, 2, 4], min_runs=3, max_runs=3, budget_ms=0.0,
                      windows=1)
    assert calls == [1, 2, 4, 2, 4, 1, 4, 1, 2]


def test_load_that_spoils_a_whole_window_is_outlasted_by_the_second():
    # The 2-thread count is slowed for every run of the first window (as in one
    # bench run: 29.5 ms at 2 threads against 29.8 at 1); the second window,
    # after the gap, sees it quiet.
    slept = []
    cart = _Cart(0, busy=20)
    one = threads.calibrate(cart.time_once, [1, 2], min_runs=3, max_runs=10, budget_ms=200.0, windows=1)
    assert one.threads == 1                               # one window alone is fooled
    cart = _Cart(0, busy=20)
    two = threads.calibrate(cart.time_once, [1, 2], min_runs=3, max_runs=10, budget_ms=200.0, windows=2,
                            gap_s=0.5, sleep=slept.append)
    assert two.threads == 2 and two.measured_ms == {1: 11.0, 2: 6.5} and slept == [0.5]


def test_parse_accepts_auto_and_non_negative_integers_only():
    assert threads.parse("auto") is None and threads.parse("AUTO") is None
    assert threads.parse(0) == 0 and threads.parse(3) == 3
    for bad in (-1, "many", True, 1.5):
        with pytest.raises(ValueError):
            threads.parse(bad)


@pytest.mark.parametrize("text, expected", [("auto", "auto"), ("2", 2), ("0", 0)])
def test_config_takes_auto_or_a_number(tmp_path, text, expected):
    path = tmp_path / "c.yaml"
    path.write_text("models:\n  threads: %s\n" % text)
    assert load_config(str(path)).models.threads == expected


def test_config_refuses_other_values_with_the_line(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("site: a\nmodels:\n  threads: lots\n")
    with pytest.raises(ConfigError) as err:
        load_config(str(path))
    assert err.value.key == "models.threads" and err.value.line == 3
    assert "'auto' or an integer" in str(err.value)


def test_auto_backend_measures_every_candidate_and_status_reports_it(tmp_path):
    cls, seg = write_tiny_models(str(tmp_path))
    auto = OnnxRuntimeBackend(load_manifest(seg), threads="auto")
    assert auto.threads.how == "calibrated"
    assert sorted(auto.threads.measured_ms) == threads.candidates(threads.usable_cores())
    assert auto.threads.threads in auto.threads.measured_ms
    fixed = OnnxRuntimeBackend(load_manifest(cls), threads=1)
    report = Pipeline(fixed, auto).thread_report()
    assert report["tiny-classifier"] == {"threads": 1, "how": "configured"}
    assert report["tiny-segmenter"]["how"] == "calibrated"
    assert set(report["tiny-segmenter"]["measured_ms"]) == {str(t) for t in auto.threads.measured_ms}


def test_spinning_modes_map_to_onnx_runtime_session_entries():
    from edge.inference.onnxruntime import spin_entries
    assert spin_entries("off") == {"session.intra_op.allow_spinning": "0", "session.force_spinning_stop": "0"}
    assert spin_entries("on") == {"session.intra_op.allow_spinning": "1", "session.force_spinning_stop": "0"}
    assert spin_entries("run") == {"session.intra_op.allow_spinning": "1", "session.force_spinning_stop": "1"}
    with pytest.raises(ValueError):
        spin_entries("sometimes")


@pytest.mark.parametrize("mode", ["off", "on", "run"])
def test_every_spinning_mode_loads_and_runs(tmp_path, mode):
    import numpy as np
    cls, _ = write_tiny_models(str(tmp_path))
    backend = OnnxRuntimeBackend(load_manifest(cls), threads=2, spinning=mode)
    m = backend.manifest
    out = backend.run(np.zeros([1, m.preprocessing.channels] + list(m.preprocessing.size), np.float32))
    assert backend.spinning == mode and out.dtype == np.float32
