"""bench.cpu: the exclusive stage clock, the side-by-side figures, and one
real pass of the appliance's path over two real films (skipped without them)."""
import os
from pathlib import Path

import pytest

from bench import cpu
from bench.stage_clock import StageClock


class FakeClock:
    """A clock the test moves by hand (seconds)."""

    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


def test_stage_clock_times_each_stage_exclusive_of_the_stages_inside():
    clock = FakeClock()
    stages = StageClock(clock)

    def inner():
        clock.now += 0.002
    timed_inner = stages.wrap("inner", inner)

    def outer():
        clock.now += 0.001
        timed_inner()
        timed_inner()
        clock.now += 0.003
        return "done"
    assert stages.wrap("outer", outer)() == "done"
    ms = stages.take()
    assert ms["inner"] == pytest.approx(4.0) and ms["outer"] == pytest.approx(4.0)
    assert stages.take() == {}


def test_stage_clock_counts_a_stage_that_raises():
    clock = FakeClock()
    stages = StageClock(clock)

    def boom():
        clock.now += 0.005
        raise ValueError("x")
    with pytest.raises(ValueError):
        stages.wrap("boom", boom)()
    assert stages.take()["boom"] == pytest.approx(5.0)


def test_per_stage_takes_each_films_fastest_round_and_the_table_names_both_sides():
    def run(decode, total):
        return {"films": [{"film": "a", "total_ms": total, "ms": {"decode": decode, cpu.MODELS: 50.0}},
                          {"film": "b", "total_ms": total + 10, "ms": {"decode": decode + 2, cpu.MODELS: 50.0}}]}
    stages, total, models = cpu.per_stage([run(10.0, 80.0), run(12.0, 70.0)])
    assert stages["decode"] == pytest.approx(11.0) and total == pytest.approx(75.0) and models == 50.0
    before = {"stages": dict(stages, decode=22.0), "total": 86.0, "models": 50.0}
    after = {"stages": stages, "total": total, "models": models}
    text = cpu.table({"before": before, "after": after})
    assert "before" in text.splitlines()[0] and "after" in text.splitlines()[0]
    decode_row = [l for l in text.splitlines() if l.startswith("decode")][0]
    assert decode_row.split()[-3:] == ["22.00", "11.00", "0.50"]
    outside = [l for l in text.splitlines() if l.startswith("outside the models")][0]
    assert outside.split()[-3:] == ["36.00", "25.00", "0.69"]


ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("PNEUMO_SHARED_DATA") or ROOT.parent / "shared" / "data")


@pytest.mark.slow
@pytest.mark.shared_data
@pytest.mark.skipif(not (SHARED / "siim-ptx-dicom").is_dir(), reason="../shared/data is absent")
def test_one_real_pass_adds_up_and_records_outputs(tmp_path):
    films = [f for f in cpu.default_films(str(SHARED), 4) if f.endswith((".dcm", ".png"))][1:3]
    result = cpu.run_child(str(ROOT / "config" / "edge.yaml"), films, str(tmp_path), profile=False)
    assert result["missing_stages"] == []
    assert len(result["films"]) == 2
    for row in result["films"]:
        assert row["state"] == "alerted"
        assert sum(row["ms"].values()) == pytest.approx(row["total_ms"])
        assert row["ms"][cpu.MODELS] > 0 and row["ms"]["decode"] > 0
        assert row["finding"]["pneumothorax"] in (True, False)
        assert open(row["overlay"], "rb").read(2) == b"\xff\xd8"
    cmp = cpu.compare_outputs(result, result)
    assert cmp["alerts_identical"] == 2 and cmp["overlays_identical"] == 2 and cmp["decisions_differ"] == 0


def test_decode_table_has_jpeg_baseline_rows_at_the_runtimes_scale():
    from bench import decode as decode_bench
    files = decode_bench.jpeg_baseline_files([512])
    res = decode_bench.measure_decoders(files, {"models": 256, "models+overlay": 512}, 1)
    row = res["files"][0]
    assert row["transfer_syntax"].startswith("JPEG Baseline") and row["size"] == [512, 512]
    assert row["models"]["decoded"] == [256, 256] and row["models+overlay"]["decoded"] == [512, 512]
