"""CPU INT8 variants: built from tiny ONNX models, loadable by the runtime, measured in one run."""
import json
import os

import numpy as np
import pytest

from build_engine.__main__ import main
from build_engine.calibration import StaleCalibrationCache, cache_key, load_batches, save_batches
from build_engine.cpu_variant import build_cpu_int8
from build_engine.profiles import load_profile
from build_engine.tiny_models import make_classifier, make_segmenter
from edge.inference.manifest import file_sha256, load_manifest
from edge.inference.onnxruntime import OnnxRuntimeBackend

FAST_CPU = """
name: cpu-fast
runtime: onnxruntime
precisions: [fp32, int8]
build: {workspace_mib: 64, max_opset: 21, batch: 1}
calibration: {images: 8, batch: 1, method: minmax}
quantization: {formats: [qdq, qoperator], activation_type: uint8, weight_type: int8, per_channel: true}
bench: {runs: 5, warmup: 1, golden_images: 4}
parity:
  fp32: {max_abs_diff: 0.0001, max_prob_diff: 0.0001, min_dice: 0.999}
  int8: {max_abs_diff: 1.0, max_prob_diff: 0.2, min_dice: 0.5}
int8_budget: {max_prob_diff: 0.2, min_dice: 0.5, fallback_op_types: [Resize]}
"""


@pytest.fixture
def fast_profile(tmp_path):
    path = tmp_path / "cpu-fast.yaml"
    path.write_text(FAST_CPU)
    return str(path)


@pytest.fixture
def images(tmp_path):
    """A calibration folder of real PNG files (made here, not shared data)."""
    import cv2
    from edge.phantom import chest_phantom
    folder = tmp_path / "calib"
    folder.mkdir()
    for i in range(10):
        cv2.imwrite(str(folder / ("img%02d.png" % i)), (chest_phantom(300, 280, seed=i) * 255).astype(np.uint8))
    return str(folder)


@pytest.mark.parametrize("make", [make_classifier, make_segmenter])
def test_cli_builds_an_int8_variant_the_runtime_runs(tmp_path, fast_profile, images, make, capsys):
    onnx_path = make(str(tmp_path / "models"), size=64, width=8)
    code = main(["--onnx", onnx_path, "--device", fast_profile, "--precision", "int8", "--calib-dir", images,
                 "--golden-dir", images, "--quiet"])
    assert code == 0
    variant = onnx_path[:-5] + ".int8.onnx"
    man = load_manifest(variant)
    assert man.precision == "int8"
    assert man.derived_from == file_sha256(onnx_path)
    assert man.sha256 == file_sha256(variant)
    backend = OnnxRuntimeBackend(man)
    fp32 = OnnxRuntimeBackend(load_manifest(onnx_path))
    x = np.random.RandomState(0).uniform(-2, 2, (1, 1, 64, 64)).astype(np.float32)
    assert backend.run(x).shape == fp32.run(x).shape
    assert backend.precision == "int8"

    report = json.loads(open(onnx_path[:-5] + ".int8.report.json").read())
    assert set(report["formats"]) == {"qdq", "qoperator"}
    assert report["chosen_format"] in ("qdq", "qoperator")
    for key in ("median", "p95"):
        assert report["speedup_vs_fp32"][key] > 0
    assert report["fp32"]["latency"]["runs"] == 5
    assert report["parity"]["n"] == 4 and report["parity"]["max_abs_diff"] >= 0
    assert (report["parity"]["min_dice"] is not None) == (man.task == "segmentation")
    assert report["calibration"]["source"] == "images" and "warning" not in report
    md = open(onnx_path[:-5] + ".int8.report.md").read()
    assert "speed-up" in md and "max probability diff" in md
    assert "speed-up" in capsys.readouterr().out


def test_phantom_calibration_is_said_loudly(tmp_path, fast_profile):
    onnx_path = make_classifier(str(tmp_path / "m"), size=32, width=4)
    empty = tmp_path / "empty"
    empty.mkdir()
    report = build_cpu_int8(onnx_path, load_profile(fast_profile), calib_dir=str(empty), golden_dir=str(empty))
    assert report["calibration"]["source"] == "phantoms"
    assert "PHANTOMS" in report["warning"]
    assert "WARNING" in open(onnx_path[:-5] + ".int8.report.md").read()


def test_a_calibration_cache_for_something_else_is_rebuilt_and_said(tmp_path, fast_profile, images, capsys):
    onnx_path = make_classifier(str(tmp_path / "m"), size=32, width=4)
    cache = onnx_path[:-5] + ".calib.npz"
    save_batches(cache, np.zeros((2, 1, 32, 32), np.float32), cache_key("other-model", "d", "s"), "foreign")
    report = build_cpu_int8(onnx_path, load_profile(fast_profile), calib_dir=images, golden_dir=images)
    assert report["calibration"]["decoders"] != ["cache"]            # calibrated again, not reused
    assert "foreign" in report["calibration"]["replaced_stale_cache"]
    assert "calibrating again" in capsys.readouterr().err
    # the fresh cache is reused by the next run
    report = build_cpu_int8(onnx_path, load_profile(fast_profile), calib_dir=images, golden_dir=images)
    assert report["calibration"]["decoders"] == ["cache"] and report["calibration"]["replaced_stale_cache"] is None


def test_a_changed_calib_dir_recalibrates_without_a_flag(tmp_path, fast_profile, images, capsys):
    import shutil
    onnx_path = make_classifier(str(tmp_path / "m"), size=32, width=4)
    build_cpu_int8(onnx_path, load_profile(fast_profile), calib_dir=images, golden_dir=images)
    other = str(tmp_path / "calib-other")
    shutil.copytree(images, other)
    os.remove(os.path.join(other, sorted(os.listdir(other))[0]))   # another set of images
    capsys.readouterr()
    code = main(["--onnx", onnx_path, "--device", fast_profile, "--precision", "int8", "--calib-dir", other,
                 "--golden-dir", images])
    err = capsys.readouterr().err
    assert code == 0, err
    assert "made for another calibration set" in err and "calibrating again" in err and images in err
    with np.load(onnx_path[:-5] + ".calib.npz") as z:
        assert other in str(z["describe"])          # the cache now belongs to the new set
    with pytest.raises(StaleCalibrationCache, match="refusing to reuse"):   # never silently reused
        load_batches(onnx_path[:-5] + ".calib.npz", cache_key("another", "d", "s"))


def test_parity_past_tolerance_installs_nothing_unless_forced(tmp_path, fast_profile, images, capsys):
    strict = open(fast_profile).read().replace("int8: {max_abs_diff: 1.0, max_prob_diff: 0.2, min_dice: 0.5}",
                                               "int8: {max_abs_diff: 0.0, max_prob_diff: 0.0, min_dice: 1.0}")
    path = tmp_path / "strict.yaml"
    path.write_text(strict)
    onnx_path = make_segmenter(str(tmp_path / "m"), size=32, width=4)
    code = main(["--onnx", onnx_path, "--device", str(path), "--precision", "int8", "--calib-dir", images,
                 "--golden-dir", images, "--quiet"])
    assert code == 4
    assert "PARITY FAILURE" in capsys.readouterr().err
    assert not os.path.exists(onnx_path[:-5] + ".int8.onnx")
    assert json.load(open(onnx_path[:-5] + ".int8.report.json"))["status"] == "failed"
    assert main(["--onnx", onnx_path, "--device", str(path), "--precision", "int8", "--calib-dir", images,
                 "--golden-dir", images, "--quiet", "--force"]) == 0
    assert json.load(open(onnx_path[:-5] + ".int8.report.json"))["status"] == "forced"
    assert load_manifest(onnx_path[:-5] + ".int8.onnx").precision == "int8"


def test_a_precision_the_cpu_profile_lacks_is_refused(tmp_path, capsys):
    onnx_path = make_classifier(str(tmp_path / "m"), size=32, width=4)
    assert main(["--onnx", onnx_path, "--device", "cpu", "--precision", "fp16", "--quiet"]) == 2
    assert "does not support fp16" in capsys.readouterr().err


def test_nodes_are_kept_float_by_name_pattern_op_type_or_outside_the_int8_scope(tmp_path):
    from build_engine.quantize import nodes_matching
    onnx_path = make_classifier(str(tmp_path / "m"), size=32, width=4)
    assert nodes_matching(onnx_path, ["conv1"], []) == ["conv1"]
    assert nodes_matching(onnx_path, ["conv?_relu"], ["Gemm"]) == [
        "conv0_relu", "conv1_relu", "conv2_relu", "conv3_relu", "fc"]
    assert nodes_matching(onnx_path, [], [], int8_only=["conv[01]*"]) == [
        "conv2", "conv2_relu", "conv3", "conv3_relu", "gap", "flatten", "fc"]
    assert nodes_matching(onnx_path, ["fc"], [], int8_only=["/encoder/*"]) == ["fc"]   # names nothing: ignored


def test_a_profile_int8_scope_quantises_only_the_nodes_it_names(tmp_path, fast_profile, images):
    scoped = open(fast_profile).read() + "models:\n  classifier: {precision: int8, int8_only: [\"conv0*\"]}\n"
    path = tmp_path / "scoped.yaml"
    path.write_text(scoped)
    onnx_path = make_classifier(str(tmp_path / "m"), size=32, width=4)
    report = build_cpu_int8(onnx_path, load_profile(str(path)), calib_dir=images, golden_dir=images)
    assert report["excluded_nodes"] == ["conv1", "conv1_relu", "conv2", "conv2_relu", "conv3", "conv3_relu",
                                        "gap", "flatten", "fc"]
    import onnx
    ops = [n.op_type for n in onnx.load(report["variant"]).graph.node]
    quantised = [op for op in ops if op in ("QLinearConv", "ConvInteger", "DequantizeLinear")]
    assert quantised and ops.count("Conv") + ops.count("QLinearConv") == 4
    assert ops.count("Gemm") == 1           # the head left float
