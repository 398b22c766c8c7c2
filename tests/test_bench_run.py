"""`python -m bench --quick` on tiny models: the real appliance, a real
mosquitto, generated films. Checks what is written, never how fast."""
import json
import os

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from bench import inputs
from bench.cli import parse_args, run_bench
from bench.flops import onnx_flops
from bench.goals import limits
from edge.decode import decode_bytes
from edge.settings import Settings
from tests.mosquitto import SKIP_REASON, mosquitto_binary
from tests.tiny_models import write_tiny_models


def test_generated_inputs_decode_and_unique_copies_differ_but_decode_alike():
    items = inputs.generate(["dicom", "png"], [300], notes=[])
    assert [i.kind for i in items] == ["dicom", "png"]
    for item in items:
        a, b = inputs.unique_bytes(item, 1), inputs.unique_bytes(item, 2)
        assert a != b
        ia, ib = decode_bytes(a), decode_bytes(b)
        assert ia.pixels.shape == (300, 300)
        assert (ia.pixels == ib.pixels).all()
    assert decode_bytes(inputs.unique_bytes(items[0], 7)).sop_instance_uid.endswith("900000000007")


def test_folder_dicoms_get_a_new_sop_instance_uid_per_copy_so_each_copy_is_its_own_alert(tmp_path):
    # The alert id follows the SOP Instance UID: copies that differ only in bytes
    # would all be one alert, and the latency read from its outbox row a lie.
    from tests.dicom_factory import write_dicom, write_png
    px = (np.arange(300 * 300) % 4096).reshape(300, 300).astype(np.uint16)
    write_dicom(str(tmp_path / "a.dcm"), px, sop_instance_uid="1.2.3.4.5")
    write_png(str(tmp_path / "b.png"), np.full((300, 300), 80, np.uint8))
    dicom, png = inputs.from_folder(str(tmp_path))
    assert (dicom.kind, png.kind) == ("dicom", "folder")
    one, two = decode_bytes(inputs.unique_bytes(dicom, 1)), decode_bytes(inputs.unique_bytes(dicom, 2))
    assert one.sop_instance_uid != two.sop_instance_uid != "1.2.3.4.5"
    assert (one.pixels == two.pixels).all() and (one.pixels == decode_bytes(open(str(tmp_path / "a.dcm"), "rb")
                                                                           .read()).pixels).all()
    assert inputs.unique_bytes(png, 1) != inputs.unique_bytes(png, 2)


def test_onnx_flops_count_conv_and_gemm_exactly(tmp_path):
    # Conv 3x3, 1 -> 4 channels, 8x8 output; then Gemm 256 -> 2.
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 1, 8, 8])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 2])
    w = numpy_helper.from_array(np.ones((4, 1, 3, 3), np.float32), "w")
    g = numpy_helper.from_array(np.ones((256, 2), np.float32), "g")
    shape = numpy_helper.from_array(np.array([1, 256], np.int64), "shape")
    graph = helper.make_graph([
        helper.make_node("Conv", ["x", "w"], ["c"], pads=[1, 1, 1, 1]),
        helper.make_node("Reshape", ["c", "shape"], ["flat"]),
        helper.make_node("Gemm", ["flat", "g"], ["y"])], "t", [x], [y], [w, g, shape])
    path = str(tmp_path / "m.onnx")
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)
    counted = onnx_flops(path)
    assert counted["Conv"] == 2 * 9 * 4 * 8 * 8
    assert counted["Gemm"] == 2 * 256 * 2


def test_limit_is_each_model_at_its_best_thread_count_and_follows_the_gate_mix():
    sweep = {"fp32": {
        "c": {"task": "classification", "best_threads": 1, "best_ms": 10.0},
        "s": {"task": "segmentation", "best_threads": 2, "best_ms": 40.0}}}
    lim = limits({"thread_sweep": sweep, "end_to_end": {"burst": {"images": 4, "segmenter_ran": 2}}})["fp32"]
    assert lim["best_ips"] == pytest.approx(20.0)          # 1000 / (10 + 40)
    assert lim["mix_ips"] == pytest.approx(1000.0 / 30.0)  # the segmenter ran on half
    assert lim["threads"] == {"classifier": 1, "segmenter": 2}


def test_limit_counts_each_model_as_often_as_the_pipeline_runs_it():
    sweep = {"fp32": {
        "c": {"task": "classification", "best_threads": 1, "best_ms": 10.0, "passes": 2},
        "s": {"task": "segmentation", "best_threads": 2, "best_ms": 40.0, "passes": 2}}}
    lim = limits({"thread_sweep": sweep})["fp32"]
    assert lim["best_ips"] == pytest.approx(10.0)          # 1000 / (2 x 10 + 2 x 40): h-flip TTA
    assert lim["passes"] == {"classifier": 2, "segmenter": 2}


def test_the_limit_runs_the_mirrored_film_too_when_the_manifest_asks(tmp_path):
    from bench.runner import passes
    from edge.inference.manifest import load_manifest
    shipped = load_manifest(os.path.join(os.path.dirname(__file__), "..", "models", "segmenter", "segmenter.json"))
    assert passes(shipped) == 2                               # the bundled models ship h-flip TTA
    cls, _ = write_tiny_models(str(tmp_path))
    assert passes(load_manifest(cls)) == 1


def test_quick_bench_writes_table_json_and_plot(tmp_path, capsys):
    if mosquitto_binary() is None:
        pytest.skip(SKIP_REASON)
    cls, seg = write_tiny_models(str(tmp_path / "models"))
    settings = Settings()
    settings.models.classifier, settings.models.segmenter = cls, seg
    settings.capture.settle_s = 0.1
    out = tmp_path / "results"
    args = parse_args(["--quick", "--baseline-images", "0", "--samples", "", "--threads", "1",
                       "--out", str(out)])
    assert args.images == 4 and args.burst == 4          # --quick's defaults ...
    assert args.baseline_images == 0                      # ... but explicit flags win
    assert run_bench(args, settings) == 0

    printed = capsys.readouterr().out
    assert "machine peak:" in printed and "goals (one run" in printed
    assert "fp32/threads=auto/gate=on" in printed and "fp32/threads=1/gate=on" in printed
    (json_path,) = out.glob("bench-*.json")
    result = json.loads(json_path.read_text())
    main = result["variants"][0]
    assert main["threads_chosen"]["tiny-classifier"]["how"] == "calibrated"
    assert result["variants"][1]["threads_chosen"]["tiny-segmenter"] == {"threads": 1, "how": "configured"}
    assert set(result["thread_sweep"]["fp32"]) == {"tiny-classifier", "tiny-segmenter"}
    assert result["flops"]["tiny-segmenter"]["Conv"] == 2 * 64 * 64     # 1x1 conv, 1 channel, 64x64
    assert main["limit"]["images"] == 4 and main["pipeline_gate_off"]["segmenter_ran"] == 4
    e2e = result["end_to_end"]
    assert e2e["one_at_a_time"]["arrival_to_puback_ms"]["n"] == 2 and e2e["burst"]["images"] == 4
    assert set(result["spinning"]) == {"on", "run", "off"} and result["spinning"]["on"]["images"] == 2
    assert "tiny-segmenter" in e2e["inference_threads"]
    assert e2e["before_start"]["waited_s"] >= 0.2           # the appliance started on an idle bench process
    check = result["threads_check"]                          # its calibration beside the sweep, per model
    assert set(check) == {"tiny-classifier", "tiny-segmenter"}
    assert all(c["appliance"] == e2e["inference_threads"][n]["threads"] for n, c in check.items())
    assert "threads: appliance's start-up calibration" in printed
    assert "per stage in the burst" in printed
    assert [r["images"] for r in result["growth"]["checkpoints"]] == [2, 4]
    assert result["baseline"] == {"skipped": "--baseline-images 0"}
    names = [g["name"] for g in result["goals"]]
    assert names[0].startswith("appliance, 4 films dropped at once")
    assert any(n.startswith("file-to-PUBACK p95") for n in names)
    (png,) = out.glob("bench-*.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not list(out.glob("work-*"))        # work files cleaned up


def test_the_matmul_peak_is_the_better_of_numpy_and_onnx_runtime():
    from bench.flops import matmul_peak_gflops
    peak = matmul_peak_gflops(128, seconds=0.05)
    assert peak["numpy_gflops"] > 0 and peak["onnxruntime_gflops"] > 0
    assert peak["gflops"] == max(peak["numpy_gflops"], peak["onnxruntime_gflops"])
    assert peak["source"] == ("onnxruntime" if peak["onnxruntime_gflops"] > peak["numpy_gflops"] else "numpy")
