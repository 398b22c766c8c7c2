"""The committed default models: manifests the runtime accepts, files that
match their sha256, within the size budget, and runnable through ONNX
Runtime on an input built by the runtime's preprocessing."""
import os

import numpy as np
import pytest

from edge.inference.manifest import load_manifest, verify_model_file
from edge.preprocess import preprocess

ROOT = os.path.join(os.path.dirname(__file__), "..", "models")
MODELS = {"classifier": os.path.join(ROOT, "classifier", "classifier.json"),
          "segmenter": os.path.join(ROOT, "segmenter", "segmenter.json")}


@pytest.mark.parametrize("name", sorted(MODELS))
def test_committed_manifest_loads_and_matches_its_file(name):
    m = load_manifest(MODELS[name])
    verify_model_file(m)
    assert m.intended_use == "demo" and "not for clinical use" in m.notes.lower()
    assert m.precision == "fp32" and m.output_kind == "logit"
    assert m.operating_points and all(op.sensitivity is not None for op in m.operating_points)
    assert "test" in m.metrics and "val" in m.metrics


def test_committed_models_fit_the_size_budget():
    total = sum(os.path.getsize(load_manifest(p).model_path) for p in MODELS.values())
    assert total <= 40 * 1000 * 1000


@pytest.mark.parametrize("name", sorted(MODELS))
def test_committed_model_runs_on_the_runtime_tensor(name):
    ort = pytest.importorskip("onnxruntime")
    m = load_manifest(MODELS[name])
    pixels = np.random.default_rng(0).random((600, 500)).astype(np.float32)
    x, _ = preprocess(pixels, m.preprocessing)
    sess = ort.InferenceSession(m.model_path, providers=["CPUExecutionProvider"])
    assert [i.name for i in sess.get_inputs()] == [m.input.name]
    y = sess.run(None, {m.input.name: x})[0]
    assert y.shape == tuple(m.output.shape) and np.isfinite(y).all()
