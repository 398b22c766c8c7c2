"""The pipeline on real ONNX Runtime with tiny models that react to bright pixels."""
import json

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


class CountingBackend(OnnxRuntimeBackend):
    """A real ONNX Runtime backend that counts its runs."""

    def __init__(self, manifest):
        super().__init__(manifest, threads=1)
        self.calls = 0

    def run(self, tensor):
        self.calls += 1
        return super().run(tensor)


def test_warmup_runs_each_model_the_asked_number_of_times_and_times_the_runs(tmp_path):
    cls, seg = (CountingBackend(load_manifest(p)) for p in write_tiny_models(str(tmp_path)))
    pipeline = Pipeline(cls, seg)
    try:
        w = pipeline.warmup(3)
    finally:
        pipeline.close()
    assert (cls.calls, seg.calls) == (3, 3)
    assert set(w) == {"tiny-classifier", "tiny-segmenter"}
    assert all(v["first_ms"] > 0 and v["last_ms"] > 0 for v in w.values())


def test_infer_leaves_its_input_as_it_was(tmp_path):
    """A deferred segmenter input is made inside infer, not stored on the Prepared."""
    cls, seg = write_tiny_models(str(tmp_path))
    sidecar = seg[:-len(".onnx")] + ".json"
    manifest = json.load(open(sidecar))
    manifest["preprocessing"]["interpolation"] = "linear"   # inputs differ: the segmenter's can be deferred
    json.dump(manifest, open(sidecar, "w"))
    pipeline = Pipeline(OnnxRuntimeBackend(load_manifest(cls), threads=1),
                        OnnxRuntimeBackend(load_manifest(seg), threads=1))
    try:
        prepared = pipeline.prepare(radiograph((64, 192, 40, 200)), segmenter_input=False)
        assert prepared.seg_in is None
        timings = dict(prepared.timings_ms)
        result = pipeline.infer(prepared)
    finally:
        pipeline.close()
    assert result.finding.pneumothorax and "segment_ms" in result.timings_ms
    assert prepared.seg_in is None and prepared.seg_geo is None and prepared.timings_ms == timings


@pytest.fixture
def gated(tmp_path):
    cls, seg = write_tiny_models(str(tmp_path), gate=True)
    p = Pipeline(OnnxRuntimeBackend(load_manifest(cls), threads=1),
                 OnnxRuntimeBackend(load_manifest(seg), threads=1))
    yield p
    p.close()


def test_calibrated_p_decides_and_the_classifier_output_keeps_its_own_field(gated):
    pos = gated.run(radiograph((64, 192, 40, 200))).finding
    neg = gated.run(radiograph()).finding
    assert pos.pneumothorax and not neg.pneumothorax
    assert pos.probability > 0.5 > neg.probability
    # p is the manifest's calibration of the classifier logit and the confident area, not the classifier's p
    logit = np.log(pos.classifier_probability / (1 - pos.classifier_probability))
    expected = 1 / (1 + np.exp(-(0.1 * logit + 2.0 * np.log10(pos.area_fraction) + 4.0)))
    assert pos.probability == pytest.approx(expected, abs=1e-4)
    assert abs(pos.probability - pos.classifier_probability) > 0.05
    assert neg.classifier_probability < 0.02 and not neg.segmenter_skipped   # skip_segmenter_below 0
    assert gated.thresholds.as_dict()["probability"] == 0.5 and "ood_max" in gated.thresholds.as_dict()


def test_decision_never_disagrees_with_p_over_many_images(gated):
    rng = np.random.default_rng(3)
    seen = []
    for _ in range(40):
        r0, c0 = rng.integers(0, 400), rng.integers(0, 500)
        side = int(rng.integers(4, 120))
        f = gated.run(radiograph((r0, r0 + side, c0, c0 + side))).finding
        seen.append((f.probability, f.pneumothorax))
        assert f.pneumothorax == (f.probability >= 0.5)
    assert {d for _, d in seen} == {True, False}      # both outcomes were exercised


def test_image_far_from_every_chest_film_is_refused_not_alerted(gated):
    from edge.errors import DecodeError, NotAChestRadiograph
    bright = Image(pixels=np.full((300, 300), 0.8, np.float32), source_format="png")   # distance 8 > 5
    with pytest.raises(NotAChestRadiograph) as exc:
        gated.run(bright)
    assert exc.value.code == "not_a_chest_radiograph" and isinstance(exc.value, DecodeError)


def test_dicom_of_another_body_part_is_refused_before_the_models_run(gated):
    from edge.errors import NotAChestRadiograph
    img = Image(pixels=np.full((300, 300), 0.4, np.float32), source_format="dicom", modality="CR",
                body_part_examined="EXTREMITY")
    with pytest.raises(NotAChestRadiograph, match="EXTREMITY"):
        gated.run(img)
    ok = Image(pixels=np.full((300, 300), 0.4, np.float32), source_format="dicom", modality="CR",
               body_part_examined="CHEST")
    assert not gated.run(ok).finding.pneumothorax


def _ramp_segmenter(directory, size=64, tta=False):
    """A segmenter that is not mirror-symmetric: logit = 20 * x * (ramp from -1 at the image's left
    to +1 at its right); a uniform image is 'pneumothorax' on its right half only."""
    import hashlib
    import json
    import os
    import onnx
    from onnx import TensorProto, helper, numpy_helper
    ramp = np.tile(np.linspace(-20.0, 20.0, size, dtype=np.float32), (size, 1))[None, None]
    x = helper.make_tensor_value_info("image", TensorProto.FLOAT, [1, 1, size, size])
    y = helper.make_tensor_value_info("logits", TensorProto.FLOAT, [1, 1, size, size])
    model = helper.make_model(helper.make_graph([helper.make_node("Mul", ["image", "ramp"], ["logits"])],
                                                "ramp", [x], [y], [numpy_helper.from_array(ramp, "ramp")]))
    model.opset_import[0].version = 17
    model.ir_version = 8
    path = os.path.join(directory, "segmenter.onnx")
    onnx.save(model, path)
    meta = json.load(open(path[:-5] + ".json"))
    meta["sha256"] = hashlib.sha256(open(path, "rb").read()).hexdigest()
    meta["tta"] = ["hflip"] if tta else []
    json.dump(meta, open(path[:-5] + ".json", "w"))
    return path


@pytest.mark.parametrize("tta", [False, True])
def test_hflip_tta_averages_the_mirrored_segmenter_output(tmp_path, tta):
    cls, _ = write_tiny_models(str(tmp_path))
    seg = _ramp_segmenter(str(tmp_path), tta=tta)
    p = Pipeline(OnnxRuntimeBackend(load_manifest(cls), threads=1), OnnxRuntimeBackend(load_manifest(seg), threads=1),
                 DecisionSettings(gate_segmenter=False))
    try:
        f = p.run(Image(pixels=np.full((200, 200), 0.5, np.float32), source_format="png")).finding
    finally:
        p.close()
    # without TTA only the image's right half lights up (the patient's left); the average is symmetric
    assert f.pneumothorax and f.side == ("bilateral" if tta else "left")
