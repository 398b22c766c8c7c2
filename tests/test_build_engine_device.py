"""Asking for a TensorRT engine where TensorRT is absent: everything possible is produced,
the exit is non-zero and the message names the files and the command for the device."""
import json
import os

import numpy as np
import onnx
import pytest

from build_engine.__main__ import EXIT_NEEDS_DEVICE, main
from build_engine.calibration import (StaleCalibrationCache, batches, cache_key, read_keyed_cache, spread,
                                      write_keyed_cache)
from build_engine.device_plan import max_opset_for, read_plan
from build_engine.layers import summarise
from build_engine.tiny_models import make_classifier, make_segmenter
from edge.inference.tensorrt import tensorrt_available

pytestmark = pytest.mark.skipif(tensorrt_available()[0], reason="this file pins behaviour without TensorRT")


@pytest.fixture
def calib(tmp_path):
    import cv2
    from edge.phantom import chest_phantom
    folder = tmp_path / "calib"
    folder.mkdir()
    for i in range(8):
        cv2.imwrite(str(folder / ("c%d.png" % i)), (chest_phantom(300, 300, seed=i) * 255).astype(np.uint8))
    return str(folder)


def test_xavier_int8_without_tensorrt_produces_qdq_calibration_and_plan(tmp_path, calib, capsys):
    onnx_path = make_classifier(str(tmp_path / "models"), size=32, width=4)
    out = str(tmp_path / "engines")
    code = main(["--onnx", onnx_path, "--device", "xavier_nx", "--precision", "int8", "--out", out,
                 "--calib-dir", calib, "--golden-dir", calib, "--quiet"])
    err = capsys.readouterr().err
    assert code == EXIT_NEEDS_DEVICE
    assert "TensorRT is not available here" in err
    command = "python3 -m build_engine --onnx %s --device xavier_nx --precision int8 --out %s" % (onnx_path, out)
    assert command in err and "docker run" in err
    for name in ("classifier.int8.qdq.onnx", "classifier.xavier_nx.calib.npz", "classifier.golden.npz",
                 "classifier.int8.xavier_nx.engine.plan.json"):
        assert os.path.join(out, name) in err
        assert os.path.exists(os.path.join(out, name))
    assert not os.path.exists(os.path.join(out, "classifier.int8.xavier_nx.engine"))

    plan = read_plan(os.path.join(out, "classifier.int8.xavier_nx.engine.plan.json"))
    assert plan.dla_core == 0 and plan.gpu_fallback            # profile: classifier on DLA 0
    assert plan.workspace_bytes == 1024 << 20
    assert plan.input_shape == [1, 1, 32, 32] and plan.opset == 17 and plan.max_opset == 17
    assert plan.int8_mode == "qdq" and plan.command == command

    # TensorRT-compatible QDQ: int8 zero points that are all zero (symmetric), on both sides
    model = onnx.load(plan.qdq_onnx)
    inits = {i.name: onnx.numpy_helper.to_array(i) for i in model.graph.initializer}
    zps = [inits[n.input[2]] for n in model.graph.node if n.op_type in ("QuantizeLinear", "DequantizeLinear")
           and len(n.input) > 2 and n.input[2] in inits]
    assert zps and all(z.dtype == np.int8 and not z.any() for z in zps)
    # Sigmoid is kept FP16 by the profile; the tiny classifier has none, so nothing excluded
    assert plan.fp16_layers == []

    with np.load(plan.golden) as z:
        assert z["inputs"].shape[1:] == (1, 32, 32) and z["reference"].shape[0] == z["inputs"].shape[0]


def test_fp16_segmenter_plan_goes_to_the_gpu(tmp_path, calib, capsys):
    onnx_path = make_segmenter(str(tmp_path / "models"), size=32, width=4)
    out = str(tmp_path / "engines")
    code = main(["--onnx", onnx_path, "--device", "xavier_nx", "--precision", "fp16", "--out", out,
                 "--golden-dir", calib, "--quiet"])
    assert code == EXIT_NEEDS_DEVICE
    plan = json.load(open(os.path.join(out, "segmenter.fp16.xavier_nx.engine.plan.json")))
    assert plan["dla_core"] is None and plan["int8_mode"] == "" and plan["qdq_onnx"] == ""
    assert "segmenter.fp16.xavier_nx.engine.plan.json" in capsys.readouterr().err


def test_fp32_on_a_dla_core_is_refused(tmp_path, capsys):
    onnx_path = make_classifier(str(tmp_path / "m"), size=32, width=4)
    assert main(["--onnx", onnx_path, "--device", "xavier_nx", "--precision", "fp32", "--out",
                 str(tmp_path / "e"), "--quiet"]) == 2
    assert "DLA core 0 runs only fp16 or int8" in capsys.readouterr().err


def test_an_opset_above_what_tensorrt_reads_is_named(tmp_path, capsys):
    onnx_path = make_classifier(str(tmp_path / "m"), size=32, width=4)
    model = onnx.load(onnx_path)
    model.opset_import[0].version = 19
    onnx.save(model, onnx_path)
    from build_engine.tiny_models import _manifest
    _manifest(onnx_path, "tiny-classifier", "classification", 32, "logit", [1, 1],
              {"positive": 0.5, "skip_segmenter_below": 0.1})
    assert main(["--onnx", onnx_path, "--device", "xavier_nx", "--precision", "fp16", "--out",
                 str(tmp_path / "e"), "--quiet"]) == 1
    assert "uses ONNX opset 19; TensorRT 8.5 reads opset <= 17" in capsys.readouterr().err


def test_max_opset_follows_the_installed_tensorrt():
    assert max_opset_for("8.5.2.2", 99) == 17
    assert max_opset_for(None, 15) == 15
    assert max_opset_for("9.9.9", 16) == 16


def test_calibration_batches_are_whole_and_ordered():
    tensors = [np.full((1, 1, 2, 2), i, np.float32) for i in range(7)]
    out = list(batches(tensors, 3))
    assert [b.shape for b in out] == [(3, 1, 2, 2), (3, 1, 2, 2)]
    assert out[1][:, 0, 0, 0].tolist() == [3, 4, 5]


def test_spread_covers_the_set_deterministically():
    items = ["%03d" % i for i in range(100)]
    assert spread(items, 4) == ["000", "025", "050", "075"]
    assert spread(items[:3], 10) == items[:3]


def test_tensorrt_calibration_table_with_another_key_is_refused(tmp_path):
    path = str(tmp_path / "m.calib.cache")
    key = cache_key("onnx", "pre", "set")
    write_keyed_cache(path, b"TRT-8502-EntropyCalibration2\n", key)
    assert read_keyed_cache(path, key).startswith(b"TRT-")
    with pytest.raises(StaleCalibrationCache):
        read_keyed_cache(path, cache_key("onnx", "other-preprocessing", "set"))
    os.remove(path + ".key.json")
    with pytest.raises(StaleCalibrationCache, match="none recorded"):
        read_keyed_cache(path, key)
    assert cache_key("a", "b", "c") != cache_key("a", "b", "d")


def test_a_changed_calib_dir_recalibrates_the_device_plan_and_drops_the_old_table(tmp_path, calib, capsys):
    import shutil
    onnx_path = make_classifier(str(tmp_path / "models"), size=32, width=4)
    out = str(tmp_path / "engines")
    args = ["--onnx", onnx_path, "--device", "xavier_nx", "--precision", "int8", "--out", out,
            "--golden-dir", calib]
    assert main(args + ["--calib-dir", calib]) == EXIT_NEEDS_DEVICE
    plan = read_plan(os.path.join(out, "classifier.int8.xavier_nx.engine.plan.json"))
    write_keyed_cache(plan.calib_table, b"TRT-8502-EntropyCalibration2\n", plan.calib_key)  # as the device would
    other = str(tmp_path / "calib-other")
    shutil.copytree(calib, other)
    os.remove(os.path.join(other, "c0.png"))
    capsys.readouterr()
    assert main(args + ["--calib-dir", other]) == EXIT_NEEDS_DEVICE
    err = capsys.readouterr().err
    assert "made for another calibration set" in err and "calibrating again" in err
    assert "TensorRT will calibrate again" in err and not os.path.exists(plan.calib_table)
    new = read_plan(os.path.join(out, "classifier.int8.xavier_nx.engine.plan.json"))
    assert new.calib_key != plan.calib_key and other in new.calib_describe


def test_inspector_summary_counts_precisions_and_gpu_fallbacks():
    info = {"Layers": [
        {"Name": "conv0", "LayerType": "CaskConvolution", "Outputs": [{"Format/Datatype": "Row major linear INT8"}]},
        {"Name": "{ForeignNode[conv1...relu2]}", "LayerType": "DLA",
         "Outputs": [{"Format/Datatype": "Channel major FP16 format where channel % 16 == 0"}]},
        {"Name": "sigmoid", "LayerType": "PointWise", "Outputs": [{"Format/Datatype": "Row major linear FP32"}]},
    ]}
    s = summarise(info, dla_requested=True)
    assert s["precisions"] == {"int8": 1, "fp16": 1, "fp32": 1}
    assert s["dla_layers"] == ["{ForeignNode[conv1...relu2]}"]
    assert s["gpu_layers"] == ["conv0", "sigmoid"]
    assert summarise(info, dla_requested=False)["gpu_layers"] == []


def test_ensure_sees_missing_and_stale_engines(tmp_path):
    from build_engine.ensure import engine_status
    from edge.inference.engine_sidecar import DeviceFacts, EngineSidecar, write_sidecar
    from edge.inference.manifest import load_manifest
    onnx_path = make_segmenter(str(tmp_path / "m"), size=32, width=4)
    engines = str(tmp_path / "engines")
    facts = DeviceFacts("8.5.2.2", "11.4", "35.3.1", "7.2", "Xavier", 2)
    assert engine_status(onnx_path, "xavier_nx", "fp16", engines, facts)[0].startswith("missing")
    os.makedirs(engines)
    engine = os.path.join(engines, "segmenter.fp16.xavier_nx.engine")
    open(engine, "wb").close()
    m = load_manifest(onnx_path)
    write_sidecar(engine + ".json", EngineSidecar("segmenter", "xavier_nx", "fp16", onnx_path, m.sha256,
                                                  m.preprocessing.digest(), "8.5.2.2", "11.4", "35.3.1", "7.2"))
    assert engine_status(onnx_path, "xavier_nx", "fp16", engines, facts) == []
    upgraded = DeviceFacts("8.6.2", "12.2", "36.2.0", "7.2", "Xavier", 2)
    assert any("TensorRT 8.6.2 here" in r for r in engine_status(onnx_path, "xavier_nx", "fp16", engines, upgraded))
