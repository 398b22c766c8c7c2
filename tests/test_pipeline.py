"""The pipeline on real ONNX Runtime with tiny models that react to bright pixels."""
import numpy as np
import pytest

from edge.errors import ManifestError, ModelError
from edge.inference.manifest import load_manifest
from edge.inference.onnxruntime import OnnxRuntimeBackend
from edge.pipeline import Pipeline
from edge.settings import DecisionSettings
from edge.types import Image
from tests.tiny_models import write_tiny_models


@pytest.fixture
def pipeline(tmp_path):
    cls, seg = write_tiny_models(str(tmp_path))
    p = Pipeline(OnnxRuntimeBackend(load_manifest(cls), threads=1),
                 OnnxRuntimeBackend(load_manifest(seg), threads=1))
    yield p
    p.close()


def radiograph(bright_block=None, h=512, w=640):
    pixels = np.full((h, w), 0.4, np.float32)
    if bright_block:
        r0, r1, c0, c1 = bright_block
        pixels[r0:r1, c0:c1] = 1.0
    return Image(pixels=pixels, source_format="png", pixel_spacing_mm=(0.2, 0.2))


def test_bright_block_on_image_left_is_a_right_sided_pneumothorax(pipeline):
    result = pipeline.run(radiograph((64, 192, 40, 200)))
    f = result.finding
    assert f.pneumothorax and f.side == "right"
    x, y, w, h = f.bbox
    assert abs(x - 40) <= 10 and abs(y - 64) <= 8 and abs(w - 160) <= 20 and abs(h - 128) <= 16
    assert f.area_cm2 == pytest.approx(160 * 128 * 0.04 / 100, rel=0.15)
    assert set(result.timings_ms) == {"preprocess_ms", "classify_ms", "segment_ms", "postprocess_ms"}
    assert [m.name for m in result.models] == ["tiny-classifier", "tiny-segmenter"]
    assert all(m.backend == "onnxruntime" and m.precision == "fp32" for m in result.models)


def test_uniform_image_is_negative_and_segmenter_skipped_by_the_gate(pipeline):
    f = pipeline.run(radiograph()).finding
    assert not f.pneumothorax and f.segmenter_skipped and f.probability < 0.02


def test_site_can_turn_the_gate_off(tmp_path):
    cls, seg = write_tiny_models(str(tmp_path))
    p = Pipeline(OnnxRuntimeBackend(load_manifest(cls)), OnnxRuntimeBackend(load_manifest(seg)),
                 DecisionSettings(gate_segmenter=False))
    f = p.run(radiograph()).finding
    assert not f.segmenter_skipped and f.seg_max_probability is not None and not f.pneumothorax


def test_model_file_that_does_not_match_its_manifest_is_refused(tmp_path):
    cls, _ = write_tiny_models(str(tmp_path))
    with open(cls, "ab") as fh:
        fh.write(b"tampered")
    with pytest.raises(ManifestError, match="sha256"):
        OnnxRuntimeBackend(load_manifest(cls))


def test_models_swapped_between_roles_are_refused(tmp_path):
    cls, seg = write_tiny_models(str(tmp_path))
    with pytest.raises(ValueError, match="expected classification"):
        Pipeline(OnnxRuntimeBackend(load_manifest(seg)), OnnxRuntimeBackend(load_manifest(cls)))


def test_warmup_reports_times(pipeline):
    w = pipeline.warmup(2)
    assert set(w) == {"tiny-classifier", "tiny-segmenter"}
    assert all(v["first_ms"] >= 0 for v in w.values())
