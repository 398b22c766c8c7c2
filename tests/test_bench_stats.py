"""The bench's maths, exact on known data."""
import numpy as np
import pytest

from bench import stats


def test_percentiles_interpolate_between_ranks_like_numpy():
    data = [15.0, 20.0, 35.0, 40.0, 50.0]
    assert stats.percentile(data, 50) == 35.0
    assert stats.percentile(data, 90) == pytest.approx(46.0)      # 40 + 0.6 * 10
    assert stats.percentile(data, 0) == 15.0
    assert stats.percentile(data, 100) == 50.0
    rng = np.random.default_rng(3)
    values = list(rng.exponential(100.0, 257))
    for q in (50, 90, 95, 99):
        assert stats.percentile(values, q) == pytest.approx(float(np.percentile(values, q)))


def test_percentile_refuses_no_values_and_out_of_range_q():
    with pytest.raises(ValueError):
        stats.percentile([], 50)
    with pytest.raises(ValueError):
        stats.percentile([1.0], 101)


def test_summary_of_1_to_100():
    s = stats.summarize([float(v) for v in range(1, 101)])
    assert s["n"] == 100 and s["mean"] == 50.5 and s["min"] == 1.0 and s["max"] == 100.0
    assert s["p50"] == pytest.approx(50.5)
    assert s["p90"] == pytest.approx(90.1)
    assert s["p95"] == pytest.approx(95.05)
    assert s["p99"] == pytest.approx(99.01)
    assert stats.summarize([]) == {"n": 0}


def test_throughput_and_ratios():
    assert stats.throughput(30, 12.0) == 2.5
    with pytest.raises(ValueError):
        stats.throughput(1, 0.0)
    assert stats.ratio(9.0, 10.0) == 0.9
    assert stats.ratio(None, 10.0) is None
    assert stats.ratio(1.0, 0.0) is None


def test_stage_table_leaves_out_stages_a_sample_lacks():
    samples = [{"decode_ms": 10.0, "segment_ms": 100.0}, {"decode_ms": 20.0}, {"decode_ms": 30.0}]
    table = stats.stage_table(samples, ["decode_ms", "segment_ms", "overlay_ms"])
    assert table["decode_ms"]["p50"] == 20.0 and table["decode_ms"]["n"] == 3
    assert table["segment_ms"]["n"] == 1
    assert "overlay_ms" not in table
