"""postprocess.sigmoid after its CPU cut gives the same float32 values as
the masked-gather version it replaced (kept here as the reference), on
random logits, the extremes, and the shipped segmenter's real output."""
import os
from pathlib import Path

import numpy as np
import pytest

from edge.postprocess import sigmoid

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("PNEUMO_SHARED_DATA") or ROOT.parent / "shared" / "data")
FILMS = sorted((SHARED / "siim-ptx-png" / "val" / "images").glob("*.png"))[:2]


def _reference(x):
    x = np.asarray(x, dtype=np.float32)
    out = np.empty_like(x)
    pos = x >= 0
    out[pos] = 1.0 / (1.0 + np.exp(-x[pos]))
    ex = np.exp(x[~pos])
    out[~pos] = ex / (1.0 + ex)
    return out


@pytest.mark.parametrize("scale", [0.5, 8.0, 200.0])
def test_same_values_as_before_on_random_logits(scale):
    x = (np.random.RandomState(int(scale)).randn(256, 256) * scale).astype(np.float32)
    got = sigmoid(x)
    assert got.dtype == np.float32 and got.shape == x.shape
    assert np.array_equal(got, _reference(x))


def test_extremes_and_shapes():
    x = np.array([np.nan, np.inf, -np.inf, -0.0, 0.0, 88.8, -88.8, 1e-30, -1e-30, 3.4e38, -3.4e38], np.float32)
    assert np.array_equal(sigmoid(x), _reference(x), equal_nan=True)
    assert sigmoid(np.array([-1000.0], np.float32))[0] == 0.0 and sigmoid(np.array([1000.0]))[0] == 1.0
    assert np.array_equal(sigmoid(np.array([[2.0]])), _reference(np.array([[2.0]])))
    assert sigmoid(np.float32(0.0)).shape == ()


@pytest.mark.shared_data
@pytest.mark.skipif(not FILMS, reason="../shared/data is absent")
def test_same_values_on_the_shipped_segmenters_logits():
    from edge.decode import decode_file
    from edge.inference.manifest import load_manifest
    from edge.inference.onnxruntime import OnnxRuntimeBackend
    from edge.preprocess import preprocess
    seg = OnnxRuntimeBackend(load_manifest(str(ROOT / "models" / "segmenter" / "segmenter.onnx")), threads=1)
    for path in FILMS:
        tensor, _ = preprocess(decode_file(str(path)).pixels, seg.manifest.preprocessing)
        logits = np.asarray(seg.run(tensor), np.float32)
        assert np.array_equal(sigmoid(logits), _reference(logits))
    seg.close()
