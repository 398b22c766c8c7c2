"""Tiny, deterministic ONNX models built with onnx.helper at test time.

They follow the real models' contract (manifests, input/output layout,
logits) and react to image content in a known way, so tests can make
positive and negative radiographs on purpose:
- the segmenter's logit is GAIN * (pixel - LEVEL): pixels brighter than
  LEVEL are "pneumothorax";
- the classifier's logit is GAIN * (max of 4x4-averaged pixels - LEVEL).
A phantom with a saturated block is positive; one below LEVEL is negative.
"""
import hashlib
import json
import os
from typing import Tuple

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

LEVEL = 0.9
GAIN = 40.0


def _save(model, path: str) -> str:
    model.opset_import[0].version = 17
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, path)
    with open(path, "rb") as fh:
        return hashlib.sha256(fh.read()).hexdigest()


def _manifest(name, task, file, sha, size, out_shape, thresholds, intended_use):
    return {
        "schema_version": 1, "name": name, "version": "0.0.1-test", "task": task,
        "architecture": "tiny-test-" + task, "file": file, "sha256": sha,
        "input": {"name": "image", "shape": [1, 1, size, size], "dtype": "float32"},
        "output": {"name": "logits", "shape": out_shape, "dtype": "float32"},
        "output_kind": "logit",
        "preprocessing": {"size": [size, size], "channels": 1, "mean": [0.0], "std": [1.0],
                          "resize": "stretch", "interpolation": "area"},
        "thresholds": thresholds, "intended_use": intended_use,
        "operating_points": [], "training_data": "none (generated test model)",
        "metrics": {}, "notes": "test model: reacts to pixels brighter than %.2f" % LEVEL,
    }


def write_tiny_models(directory: str, size: int = 64, intended_use: str = "untrained") -> Tuple[str, str]:
    """Write classifier.onnx/.json and segmenter.onnx/.json; return the ONNX paths."""
    os.makedirs(directory, exist_ok=True)
    x = helper.make_tensor_value_info("image", TensorProto.FLOAT, [1, 1, size, size])

    # Segmenter: 1x1 conv = GAIN * x - GAIN * LEVEL.
    w = numpy_helper.from_array(np.full((1, 1, 1, 1), GAIN, np.float32), "w")
    b = numpy_helper.from_array(np.array([-GAIN * LEVEL], np.float32), "b")
    y = helper.make_tensor_value_info("logits", TensorProto.FLOAT, [1, 1, size, size])
    seg = helper.make_model(helper.make_graph(
        [helper.make_node("Conv", ["image", "w", "b"], ["logits"])], "tiny_seg", [x], [y], [w, b]))
    seg_path = os.path.join(directory, "segmenter.onnx")
    seg_sha = _save(seg, seg_path)

    # Classifier: 4x4 average pool, global max, then the same affine map.
    g = numpy_helper.from_array(np.array([GAIN], np.float32), "g")
    c = numpy_helper.from_array(np.array([-GAIN * LEVEL], np.float32), "c")
    shape = numpy_helper.from_array(np.array([1, 1], np.int64), "shape")
    yc = helper.make_tensor_value_info("logits", TensorProto.FLOAT, [1, 1])
    cls = helper.make_model(helper.make_graph([
        helper.make_node("AveragePool", ["image"], ["pooled"], kernel_shape=[4, 4], strides=[4, 4]),
        helper.make_node("GlobalMaxPool", ["pooled"], ["peak"]),
        helper.make_node("Reshape", ["peak", "shape"], ["flat"]),
        helper.make_node("Mul", ["flat", "g"], ["scaled"]),
        helper.make_node("Add", ["scaled", "c"], ["logits"]),
    ], "tiny_cls", [x], [yc], [g, c, shape]))
    cls_path = os.path.join(directory, "classifier.onnx")
    cls_sha = _save(cls, cls_path)

    for name, task, path, sha, out_shape, th in (
        ("tiny-classifier", "classification", cls_path, cls_sha, [1, 1],
         {"positive": 0.5, "skip_segmenter_below": 0.02}),
        ("tiny-segmenter", "segmentation", seg_path, seg_sha, [1, 1, size, size],
         {"pixel_high": 0.5, "min_area_fraction": 0.002, "pixel_low": 0.3}),
    ):
        with open(path[:-5] + ".json", "w") as fh:
            json.dump(_manifest(name, task, os.path.basename(path), sha, size, out_shape, th, intended_use), fh, indent=1)
    return cls_path, seg_path
