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


OOD_GAIN = 10.0


def write_tiny_models(directory: str, size: int = 64, intended_use: str = "untrained",
                      gate: bool = False) -> Tuple[str, str]:
    """Write classifier.onnx/.json and segmenter.onnx/.json; return the ONNX paths.

    gate=True makes them like the bundled models: the classifier outputs
    [logit, "feature distance" = OOD_GAIN * mean pixel, "layout distance" =
    mean pixel] (output_columns, ood_max 5: a mostly bright image is "not a
    chest"; layout_max 5, which the layout column never reaches: the layout
    refusal is pinned on the bundled models), and the segmenter's manifest
    carries a calibration of the classifier logit and the log area."""
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
    yc = helper.make_tensor_value_info("logits", TensorProto.FLOAT, [1, 3 if gate else 1])
    nodes = [
        helper.make_node("AveragePool", ["image"], ["pooled"], kernel_shape=[4, 4], strides=[4, 4]),
        helper.make_node("GlobalMaxPool", ["pooled"], ["peak"]),
        helper.make_node("Reshape", ["peak", "shape"], ["flat"]),
        helper.make_node("Mul", ["flat", "g"], ["scaled"]),
        helper.make_node("Add", ["scaled", "c"], ["logit" if gate else "logits"]),
    ]
    inits = [g, c, shape]
    if gate:
        inits.append(numpy_helper.from_array(np.array([OOD_GAIN], np.float32), "og"))
        nodes += [helper.make_node("GlobalAveragePool", ["image"], ["mean"]),
                  helper.make_node("Reshape", ["mean", "shape"], ["mean_flat"]),
                  helper.make_node("Mul", ["mean_flat", "og"], ["distance"]),
                  helper.make_node("Concat", ["logit", "distance", "mean_flat"], ["logits"], axis=1)]
    cls = helper.make_model(helper.make_graph(nodes, "tiny_cls", [x], [yc], inits))
    cls_path = os.path.join(directory, "classifier.onnx")
    cls_sha = _save(cls, cls_path)

    cls_th = {"positive": 0.5, "skip_segmenter_below": 0.02}
    seg_th = {"pixel_high": 0.5, "min_area_fraction": 0.002, "pixel_low": 0.3}
    if gate:
        cls_th.update(ood_max=5.0, layout_max=5.0, skip_segmenter_below=0.0)
        seg_th.update(probability=0.5)
    for name, task, path, sha, out_shape, th in (
        ("tiny-classifier", "classification", cls_path, cls_sha, [1, 3 if gate else 1], cls_th),
        ("tiny-segmenter", "segmentation", seg_path, seg_sha, [1, 1, size, size], seg_th),
    ):
        m = _manifest(name, task, os.path.basename(path), sha, size, out_shape, th, intended_use)
        if gate and task == "classification":
            m["output_columns"] = ["pneumothorax", "ood_distance", "layout_distance"]
        if gate and task == "segmentation":
            # p = sigmoid(0.1 * logit + 2 * (log10 area + 2)): a confident area of 1 % gives p = 0.5
            # whatever the classifier says (its logit is bounded by GAIN here).
            m["calibration"] = {"method": "logistic", "inputs": ["classifier_logit", "log_area"],
                                "coef": [0.1, 2.0], "intercept": 4.0, "area_floor": 1e-4}
        with open(path[:-5] + ".json", "w") as fh:
            json.dump(m, fh, indent=1)
    return cls_path, seg_path
