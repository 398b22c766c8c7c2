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
    assert m.preprocessing.window is not None          # per-image percentile window
    assert "parity_max_abs_diff" in m.metrics and m.metrics["parity_max_abs_diff"] < 2e-3


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


def test_segmenter_manifest_carries_the_calibrated_rule_and_its_cross_validated_figures():
    from edge.postprocess import parse_calibration
    seg = load_manifest(MODELS["segmenter"])
    cal = parse_calibration(seg)
    assert cal is not None and 0 < seg.thresholds["probability"] < 1
    assert all(c > 0 for c in cal.coef)                 # p rises with each score
    cv = seg.metrics
    assert cv["sensitivity_masked"]["n"] == 46 and cv["specificity_nih_neg"]["n"] == 346
    assert seg.operating_points and seg.operating_points[0].sensitivity == cv["sensitivity_masked"]["value"]
    cls = load_manifest(MODELS["classifier"])
    assert cls.output_columns == ["pneumothorax", "ood_distance", "layout_distance"]
    assert cls.thresholds["ood_max"] > 1 and cls.thresholds["layout_max"] > 1


def _pipeline():
    from edge.inference.onnxruntime import OnnxRuntimeBackend
    from edge.pipeline import Pipeline
    return Pipeline(OnnxRuntimeBackend(load_manifest(MODELS["classifier"]), threads=1),
                    OnnxRuntimeBackend(load_manifest(MODELS["segmenter"]), threads=1))


def _refused(name: str) -> bool:
    skdata = pytest.importorskip("skimage.data")
    return _refuses_picture(np.asarray(getattr(skdata, name)()))


def _refuses_picture(img: np.ndarray) -> bool:
    """A picture in grey, scaled to [0, 1]: does the committed pipeline refuse it as no chest film?"""
    from edge.errors import NotAChestRadiograph
    from edge.types import Image
    img = np.asarray(img, np.float32)
    grey = img if img.ndim == 2 else img[..., :3].mean(axis=2)
    grey = (grey - grey.min()) / max(float(grey.max() - grey.min()), 1e-6)
    pipe = _pipeline()
    try:
        pipe.run(Image(pixels=grey.astype(np.float32), source_format="png"))
        return False
    except NotAChestRadiograph:
        return True
    finally:
        pipe.close()


# Grey versions, so the learned gate decides (a colour picture is refused at decode). The
# fundus photograph passed 0.3.1's gate in grey; the frozen-encoder gate of 0.4.0 refuses it.
@pytest.mark.parametrize("name", ["camera", "coffee", "cat", "horse", "text", "astronaut", "retina"])
def test_committed_pipeline_refuses_grey_photographs_as_not_a_chest(name):
    pytest.importorskip("onnxruntime")
    assert _refused(name)


# Pictures the 0.4.0 gate was not designed on (models/gate_eval.py lists them all; three here):
# a photograph, an MR slice and a CT frame.
@pytest.mark.parametrize("name", ["motorcycle_left.png", "s1045_mr", "CT_small.dcm"])
def test_committed_pipeline_refuses_fresh_pictures_as_not_a_chest(name):
    pytest.importorskip("onnxruntime")
    pytest.importorskip("skimage")
    from models.gate_eval import _fresh_pictures
    pictures = dict(_fresh_pictures())
    if name not in pictures:
        pytest.skip("%s is not on this machine" % name)
    assert _refuses_picture(pictures[name])


def test_the_classifier_averages_its_mirror_inside_the_graph_and_the_segmenter_in_the_pipeline():
    ort = pytest.importorskip("onnxruntime")
    cls, seg = load_manifest(MODELS["classifier"]), load_manifest(MODELS["segmenter"])
    assert cls.tta == [] and seg.tta == ["hflip"]      # the calibration was fitted on both averaged
    x = np.random.default_rng(3).normal(size=tuple(cls.input.shape)).astype(np.float32)
    sess = ort.InferenceSession(cls.model_path, providers=["CPUExecutionProvider"])
    a, b = (sess.run(None, {cls.input.name: v})[0][0, 0] for v in (x, np.ascontiguousarray(x[..., ::-1])))
    assert abs(a - b) < 1e-4


@pytest.mark.parametrize("kind", ["black", "white", "grey", "noise", "gradient"])
def test_committed_pipeline_refuses_blank_and_synthetic_frames(kind):
    pytest.importorskip("onnxruntime")
    from edge.errors import NotAChestRadiograph
    from edge.types import Image
    rng = np.random.default_rng(0)
    frame = {"black": np.zeros((512, 512)), "white": np.ones((512, 512)), "grey": np.full((512, 512), 0.5),
             "noise": rng.random((512, 512)), "gradient": np.tile(np.linspace(0, 1, 512), (512, 1))}[kind]
    pipe = _pipeline()
    try:
        with pytest.raises(NotAChestRadiograph):
            pipe.run(Image(pixels=frame.astype(np.float32), source_format="png"))
    finally:
        pipe.close()


SHARED = os.path.join(os.path.dirname(__file__), "..", "..", "shared", "data")


@pytest.mark.shared_data
def test_committed_pipeline_reads_real_chest_films_and_p_agrees_with_every_decision():
    pytest.importorskip("onnxruntime")
    import glob
    from edge.decode import decode_file
    files = sorted(glob.glob(os.path.join(SHARED, "siim-ptx-png", "val", "images", "*.png")))[:3] + \
        sorted(glob.glob(os.path.join(SHARED, "nih-cxr14-subset", "images", "*.png")))[:5] + \
        [os.path.join(SHARED, "dicom-samples", "RG1_J2KI.dcm")]
    files = [f for f in files if os.path.exists(f)]
    if not files:
        pytest.skip("../shared/data is absent")
    pipe = _pipeline()
    try:
        t = pipe.thresholds.probability
        for path in files:
            f = pipe.run(decode_file(path)).finding       # no chest film is refused
            assert f.pneumothorax == (f.probability >= t)
            assert f.classifier_probability is not None
    finally:
        pipe.close()
