"""The manifest's per-image percentile window: what it does to a plane, how
the manifest carries it, and that the runtime's preprocess applies it."""
import json

import numpy as np
import pytest

from edge.errors import ManifestError
from edge.inference.manifest import PreprocessSpec, WindowSpec, parse_manifest
from edge.preprocess import preprocess, window_plane

SPEC = PreprocessSpec(size=(64, 64), channels=1, mean=(0.5,), std=(0.5,))
WINDOWED = PreprocessSpec(size=(64, 64), channels=1, mean=(0.5,), std=(0.5,), window=WindowSpec("percentile", 1, 99))


def test_window_maps_percentiles_to_the_full_range():
    plane = np.random.default_rng(0).uniform(0.3, 0.6, (64, 64)).astype(np.float32)
    out = window_plane(plane, WINDOWED)
    assert out.dtype == np.float32 and out.shape == plane.shape
    assert out.min() == 0.0 and out.max() == 1.0
    assert np.mean(out == 0.0) == pytest.approx(0.01, abs=0.003)
    assert np.mean(out == 1.0) == pytest.approx(0.01, abs=0.003)
    assert np.all(np.diff(out.ravel()[np.argsort(plane.ravel())]) >= 0)     # order kept


def test_two_sources_differing_by_grey_level_and_contrast_look_alike_after_it():
    rng = np.random.default_rng(1)
    film = rng.beta(2, 3, (64, 64)).astype(np.float32)
    other = (0.35 + 0.4 * film).astype(np.float32)            # brighter floor, less contrast
    assert abs(film.mean() - other.mean()) > 0.05
    np.testing.assert_allclose(window_plane(film, WINDOWED), window_plane(other, WINDOWED), atol=1e-4)


def test_no_window_and_flat_images_are_left_alone():
    plane = np.full((64, 64), 0.25, np.float32)
    assert window_plane(plane, SPEC) is plane
    np.testing.assert_array_equal(window_plane(plane, WINDOWED), plane)


def test_preprocess_applies_the_window():
    pixels = np.random.default_rng(2).uniform(0.4, 0.5, (200, 180)).astype(np.float32)
    plain, _ = preprocess(pixels, SPEC)
    windowed, _ = preprocess(pixels, WINDOWED)
    assert plain.max() < 0.01 and windowed.max() == pytest.approx(1.0)   # (x - 0.5) / 0.5


def _manifest(window):
    pp = {"size": [64, 64], "channels": 1, "mean": [0.5], "std": [0.5]}
    if window is not None:
        pp["window"] = window
    return {"name": "m", "version": "1", "task": "classification", "file": "m.onnx", "sha256": "0" * 64,
            "input": {"name": "input", "shape": [1, 1, 64, 64]}, "output": {"name": "logits", "shape": [1, 1]},
            "output_kind": "logit", "preprocessing": pp, "intended_use": "demo",
            "thresholds": {"positive": 0.5, "skip_segmenter_below": 0.1}}


def test_manifest_round_trip_and_digest():
    m = parse_manifest(_manifest({"kind": "percentile", "low": 1, "high": 99}))
    assert m.preprocessing.window == WindowSpec("percentile", 1.0, 99.0)
    again = parse_manifest(json.loads(json.dumps(m.to_json())))
    assert again.preprocessing == m.preprocessing
    plain = parse_manifest(_manifest(None)).preprocessing
    assert plain.window is None and plain.digest() != m.preprocessing.digest()
    # a spec without a window hashes as before the field existed (calibration caches stay valid)
    assert plain.digest() == PreprocessSpec((64, 64), 1, (0.5,), (0.5,)).digest()


@pytest.mark.parametrize("window", [{"kind": "histogram"}, {"low": 50, "high": 10}, {"low": -1, "high": 99}, "p1"])
def test_bad_windows_are_refused(window):
    with pytest.raises(ManifestError, match="window"):
        parse_manifest(_manifest(window))


def test_tta_field_is_checked():
    assert parse_manifest(dict(_manifest(None), tta=["hflip"])).tta == ["hflip"]
    assert parse_manifest(_manifest(None)).tta == []
    with pytest.raises(ManifestError, match="tta"):
        parse_manifest(dict(_manifest(None), tta=["rotate"]))
