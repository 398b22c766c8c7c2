"""On-device acceptance suite: `pytest -m tensorrt` on a Jetson (JetPack 5.1) or in the L4T container.

Builds the tiny models through TensorRT, runs them through TensorRTBackend and
checks them against ONNX Runtime FP32; refuses a tampered sidecar; honours
DLA placement. Deselected everywhere else by the `-m 'not tensorrt'` default.
"""
import json
import os

import numpy as np
import pytest

from build_engine.__main__ import main
from build_engine.tiny_models import make_classifier, make_segmenter
from edge.errors import EngineMismatch
from edge.inference.engine_sidecar import read_sidecar, write_sidecar
from edge.inference.manifest import load_manifest
from edge.inference.tensorrt import TensorRTBackend, device_facts, tensorrt_available
from edge.settings import ModelSettings

pytestmark = [pytest.mark.tensorrt,
              pytest.mark.skipif(not tensorrt_available()[0], reason="needs TensorRT and a CUDA GPU")]


def build(tmp_path, make, precision, device="xavier_nx", extra=()):
    onnx_path = make(str(tmp_path / "models"), size=64, width=8)
    out = str(tmp_path / "engines")
    code = main(["--onnx", onnx_path, "--device", device, "--precision", precision, "--out", out] + list(extra))
    return code, onnx_path, out


def settings_for(onnx_path, out, device="xavier_nx"):
    return ModelSettings(classifier=onnx_path, segmenter=onnx_path, backend="tensorrt", engine_dir=out,
                         device_profile=device)


def reference(onnx_path, x):
    import onnxruntime as ort
    return ort.InferenceSession(onnx_path, providers=["CPUExecutionProvider"]).run(None, {"image": x})[0]


@pytest.mark.parametrize("make, precision", [(make_segmenter, "fp16"), (make_classifier, "int8")])
def test_built_engine_runs_and_matches_onnxruntime(tmp_path, make, precision):
    code, onnx_path, out = build(tmp_path, make, precision)
    assert code == 0
    manifest = load_manifest(onnx_path)
    backend = TensorRTBackend.from_settings(manifest, settings_for(onnx_path, out))
    try:
        assert backend.precision == precision
        x = np.random.RandomState(0).uniform(-2, 2, (1, 1, 64, 64)).astype(np.float32)
        got, ref = backend.run(x), reference(onnx_path, x)
        assert got.shape == ref.shape and got.dtype == np.float32
        prob = lambda v: 1 / (1 + np.exp(-v))
        assert np.max(np.abs(prob(got) - prob(ref))) < (0.02 if precision == "fp16" else 0.1)
        assert backend.warmup(2)["last_ms"] > 0
    finally:
        backend.close()
    sidecar = read_sidecar(backend.engine_path + ".json")
    facts = device_facts()
    assert sidecar.tensorrt_version == facts.tensorrt_version
    assert sidecar.compute_capability == facts.compute_capability
    assert sidecar.parity["max_prob_diff"] >= 0 and sidecar.build_seconds > 0
    assert sum(sidecar.layer_precisions.values()) > 0


def test_classifier_is_placed_on_dla_core_0_with_gpu_fallback(tmp_path):
    if device_facts().dla_cores < 1:
        pytest.skip("this GPU has no DLA")
    code, onnx_path, out = build(tmp_path, make_classifier, "fp16")
    assert code == 0
    sidecar = read_sidecar(os.path.join(out, "classifier.fp16.xavier_nx.engine.json"))
    assert sidecar.dla_core == 0 and sidecar.gpu_fallback
    # GlobalAveragePool/Gemm tails usually fall back to the GPU: the sidecar lists what did
    assert isinstance(sidecar.dla_fallback_layers, list)


def test_tampered_sidecar_is_refused_with_the_rebuild_command(tmp_path):
    code, onnx_path, out = build(tmp_path, make_segmenter, "fp16")
    assert code == 0
    path = os.path.join(out, "segmenter.fp16.xavier_nx.engine.json")
    sidecar = read_sidecar(path)
    sidecar.tensorrt_version = "7.1.3"
    write_sidecar(path, sidecar)
    with pytest.raises(EngineMismatch) as e:
        TensorRTBackend.from_settings(load_manifest(onnx_path), settings_for(onnx_path, out))
    assert "engine built with TensorRT 7.1.3" in str(e.value)
    assert "python3 -m build_engine --onnx %s --device xavier_nx --precision fp16" % onnx_path in str(e.value)


def test_int8_calibrator_mode_writes_a_keyed_table(tmp_path):
    profile = open(os.path.join(os.path.dirname(__file__), "..", "config", "devices", "xavier_nx.yaml")).read()
    custom = tmp_path / "xavier_nx.yaml"
    custom.write_text(profile.replace("int8_mode: qdq", "int8_mode: calibrator"))
    onnx_path = make_classifier(str(tmp_path / "models"), size=64, width=8)
    out = str(tmp_path / "engines")
    assert main(["--onnx", onnx_path, "--device", str(custom), "--precision", "int8", "--out", out]) == 0
    assert os.path.exists(os.path.join(out, "classifier.xavier_nx.calib.cache.key.json"))
    assert json.load(open(os.path.join(out, "classifier.int8.xavier_nx.engine.json")))["int8_mode"] == "calibrator"


def test_an_opset_too_new_for_this_tensorrt_is_named(tmp_path, capsys):
    import onnx
    onnx_path = make_classifier(str(tmp_path / "models"), size=64, width=8)
    model = onnx.load(onnx_path)
    model.opset_import[0].version = 21
    onnx.save(model, onnx_path)
    from build_engine.tiny_models import _manifest
    _manifest(onnx_path, "tiny-classifier", "classification", 64, "logit", [1, 1],
              {"positive": 0.5, "skip_segmenter_below": 0.1})
    assert main(["--onnx", onnx_path, "--device", "xavier_nx", "--precision", "fp16", "--out",
                 str(tmp_path / "e")]) == 1
    assert "opset 21" in capsys.readouterr().err
