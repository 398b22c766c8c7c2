"""The bench sets the appliance's calibrated thread counts beside its own sweep's."""
from bench.goals import threads_check


def _sweep(p50_by_threads):
    return {"task": "classification", "best_threads": min(p50_by_threads, key=p50_by_threads.get),
            "by_threads": {str(t): {"p50": ms} for t, ms in p50_by_threads.items()}}


def _result(appliance_threads):
    return {"thread_sweep": {"fp32": {"cls": _sweep({1: 11.4, 2: 7.0}), "seg": _sweep({1: 29.5, 2: 16.6}),
                                      "fixed": _sweep({1: 5.0, 2: 3.0})}},
            "end_to_end": {"inference_threads": {
                "cls": {"threads": appliance_threads, "how": "calibrated", "measured_ms": {"1": 11.1, "2": 11.4}},
                "seg": {"threads": 2, "how": "calibrated", "measured_ms": {"1": 29.3, "2": 16.6}},
                "fixed": {"threads": 1, "how": "configured"}}}}


def test_a_calibration_that_kept_one_thread_against_the_sweeps_two_is_flagged():
    check = threads_check(_result(1))
    assert check["cls"]["appliance"] == 1 and check["cls"]["sweep"] == 2 and not check["cls"]["match"]
    assert check["seg"]["match"]
    assert "fixed" not in check                     # configured, not calibrated: nothing to compare


def test_matching_choices_are_not_flagged():
    assert all(c["match"] for c in threads_check(_result(2)).values())


def test_the_sweep_side_uses_the_runtimes_tie_rule():
    result = _result(1)
    result["thread_sweep"]["fp32"]["cls"] = _sweep({1: 7.1, 2: 7.0})      # within 5 %: 1 thread
    assert threads_check(result)["cls"] == {"appliance": 1, "appliance_ms": {"1": 11.1, "2": 11.4},
                                            "sweep": 1, "sweep_p50_ms": {"1": 7.1, "2": 7.0}, "match": True}
