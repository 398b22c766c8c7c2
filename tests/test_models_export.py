"""Export: ONNX opset 17 matches torch within the bound, the manifest loads in
the runtime, and the runtime's preprocessing of a file equals training's."""
import json
import os

import cv2
import numpy as np
import pytest

torch = pytest.importorskip("torch")
ort = pytest.importorskip("onnxruntime")

from edge.decode import decode_file  # noqa: E402
from edge.inference.manifest import PreprocessSpec, load_manifest, verify_model_file  # noqa: E402
from edge.preprocess import preprocess  # noqa: E402

from models import data as D  # noqa: E402
from models.export import ExportError, export_run  # noqa: E402
from models.nets import build_classifier  # noqa: E402
from models.train import to_tensor  # noqa: E402

pytestmark = pytest.mark.models
torch.set_num_threads(1)   # two shared cores: oversubscribed threads make this file 10x slower

CFG = {"task": "classification", "name": "classifier", "version": "0.0.1", "seed": 0,
       "input": {"size": [64, 48], "channels": 3, "mean": [0.5, 0.5, 0.5], "std": [0.25, 0.25, 0.25],
                 "resize": "letterbox", "interpolation": "area"},
       "net": {"width_mult": 0.5}, "data": {"sources": []}}
EVAL = {"task": "classification", "thresholds": {"positive": 0.3, "skip_segmenter_below": 0.05},
        "sensitivity_target": 0.9,
        "val": {"auc": {"value": 0.8, "ci95": [0.6, 0.9]},
                "at_positive": {"threshold": 0.3, "sensitivity": {"value": 0.9}, "specificity": {"value": 0.6}},
                "at_skip": {"threshold": 0.05, "sensitivity": {"value": 1.0}, "specificity": {"value": 0.2}}},
        "data": {"train": {"images": 10, "patients": 10, "positive": 3,
                           "by_source": {"nih": {"positive": 3, "negative": 7}}}}}


def _fake_run(tmp_path):
    torch.manual_seed(0)
    net = build_classifier(3, width_mult=0.5)
    run = tmp_path / "run"
    run.mkdir()
    torch.save({"model": net.state_dict(), "config": CFG, "epoch": 1, "val": {}}, str(run / "best.pt"))
    (run / "eval.json").write_text(json.dumps(EVAL))
    return str(run), net


def test_export_parity_and_manifest_load(tmp_path, capsys):
    run, net = _fake_run(tmp_path)
    out = str(tmp_path / "out")
    manifest = export_run(run, out)
    assert "max |diff|" in capsys.readouterr().out
    verify_model_file(load_manifest(os.path.join(out, "classifier.onnx")))
    assert manifest.input.shape == (1, 3, 64, 48) and manifest.output.shape == (1, 1)
    assert manifest.preprocessing.resize == "letterbox" and manifest.preprocessing.channels == 3
    assert manifest.thresholds == {"positive": 0.3, "skip_segmenter_below": 0.05}
    assert "not for clinical use" in manifest.notes.lower()
    assert manifest.metrics["parity_max_abs_diff"] <= 1e-3
    # ORT on the file gives torch's numbers for an input the runtime would build
    x = np.random.default_rng(1).normal(size=(1, 3, 64, 48)).astype(np.float32)
    sess = ort.InferenceSession(os.path.join(out, "classifier.onnx"), providers=["CPUExecutionProvider"])
    with torch.no_grad():
        ref = net.eval()(torch.from_numpy(x)).numpy()
    assert np.abs(sess.run(None, {"input": x})[0] - ref).max() < 1e-3


def test_export_refuses_past_the_parity_bound(tmp_path):
    run, _ = _fake_run(tmp_path)
    out = tmp_path / "out"
    with pytest.raises(ExportError):
        export_run(run, str(out), max_abs_diff=-1.0)        # no real difference can pass a negative bound
    assert not (out / "classifier.json").exists() and not (out / "classifier.onnx").exists()


def test_export_needs_an_evaluation(tmp_path):
    run, _ = _fake_run(tmp_path)
    os.remove(os.path.join(run, "eval.json"))
    with pytest.raises(ExportError, match="evaluate"):
        export_run(run, str(tmp_path / "out"))


@pytest.mark.parametrize("kind", ["png", "dicom"])
def test_runtime_preprocessing_equals_training_for_the_same_file(tmp_path, kind):
    rng = np.random.default_rng(2)
    path = str(tmp_path / ("img." + ("png" if kind == "png" else "dcm")))
    if kind == "png":
        cv2.imwrite(path, rng.integers(0, 256, (300, 280)).astype(np.uint8))
    else:
        from dicom_factory import write_dicom
        write_dicom(path, rng.integers(0, 4096, (320, 300)), photometric="MONOCHROME1", bits_stored=12)
    spec = PreprocessSpec(size=(128, 96), channels=3, mean=(0.5,), std=(0.25,), resize="letterbox")
    device, _ = preprocess(decode_file(path).pixels, spec)
    plane, mask = D.plane_and_mask(D.Sample(image=path, label=0), spec)
    training = to_tensor([plane], spec).numpy()
    assert training.shape == device.shape == (1, 3, 128, 96)
    assert np.array_equal(training, device)
    assert mask is not None and not mask.any()
