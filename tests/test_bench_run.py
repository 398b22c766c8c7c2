"""A tiny end-to-end bench run: tiny models, a handful of generated images,
the real appliance and a real mosquitto. Checks what is written, never how fast."""
import json
import os

import pytest

from edge.bench import inputs
from edge.cli import build_parser
from edge.decode import decode_bytes
from edge.settings import Settings
from tests.mosquitto import SKIP_REASON, mosquitto_binary
from tests.tiny_models import write_tiny_models


def test_generated_inputs_decode_and_unique_copies_differ_but_decode_alike():
    notes = []
    items = inputs.generate(["dicom", "png"], [300], notes=notes)
    assert [i.kind for i in items] == ["dicom", "png"]
    for item in items:
        a, b = inputs.unique_bytes(item, 1), inputs.unique_bytes(item, 2)
        assert a != b
        ia, ib = decode_bytes(a), decode_bytes(b)
        assert ia.pixels.shape == (300, 300)
        assert (ia.pixels == ib.pixels).all()
    dicom = decode_bytes(inputs.unique_bytes(items[0], 7))
    assert dicom.sop_instance_uid.endswith("900000000007")


def test_bench_writes_table_json_and_plot(tmp_path, capsys):
    if mosquitto_binary() is None:
        pytest.skip(SKIP_REASON)
    cls, seg = write_tiny_models(str(tmp_path / "models"))
    settings = Settings()
    settings.models.classifier, settings.models.segmenter = cls, seg
    settings.capture.settle_s = 0.1
    out = tmp_path / "results"
    args = build_parser().parse_args([
        "bench", "--images", "5", "--size", "300", "--latency-images", "2", "--burst", "2",
        "--baseline-images", "0", "--growth", "2,4", "--sizes", "300", "--kinds", "dicom,png",
        "--repeats", "1", "--gate", "off,on", "--out", str(out)])
    from edge.bench.cli import run_bench
    assert run_bench(args, settings) == 0

    printed = capsys.readouterr().out
    assert "throughput (images/s)" in printed and "goals:" in printed
    # the variant names follow the configured thread count (default 1)
    assert "fp32/threads=1/gate=off" in printed and "fp32/threads=1/gate=on" in printed
    (json_path,) = out.glob("bench-*.json")
    result = json.loads(json_path.read_text())
    for key in ("schema", "created", "host", "models", "options", "notes", "variants", "baseline",
                "end_to_end", "growth", "sizes", "goals", "peak_rss_mb"):
        assert key in result, key
    assert result["models"]["source"] == "configured"
    main = result["variants"][0]
    assert main["limit"]["images"] == 5
    assert set(main["pipeline"]["sequential"]["stages"]) == {
        "read_ms", "decode_ms", "preprocess_ms", "classify_ms", "segment_ms", "postprocess_ms"}
    one = result["end_to_end"]["one_at_a_time"]
    assert one["images"] == 2 and one["arrival_to_puback_ms"]["n"] == 2
    assert {"overlay_ms", "outbox_ms", "publish_ms"} <= set(one["stages"])
    assert result["end_to_end"]["burst"]["images"] == 2
    assert [r["images"] for r in result["growth"]["checkpoints"]] == [2, 4]
    assert [(r["kind"], r["size"]) for r in result["sizes"]] == [("dicom", 300), ("png", 300)]
    assert result["baseline"] == {"skipped": "--baseline-images 0"}
    assert [g["name"] for g in result["goals"]][0].startswith("pipeline / models' limit")
    assert len(result["goals"]) == 4
    (png,) = out.glob("bench-*.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not list(out.glob("work-*"))        # work files cleaned up
