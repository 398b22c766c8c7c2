"""Tiny conv classifier/segmenter ONNX files with valid manifests.

For smoke-testing the whole tool chain without the trained models: the
tests here, and on a cart `python -m build_engine selftest` builds these
through TensorRT before the real models are touched.
"""
import json
import os
from typing import Tuple

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from edge.inference.manifest import file_sha256

OPSET = 17


def _conv(name: str, x: str, cin: int, cout: int, k: int, stride: int, rng: np.random.RandomState, inits: list,
          relu: bool = True) -> Tuple[list, str]:
    w = (rng.standard_normal((cout, cin, k, k)) * np.sqrt(2.0 / (cin * k * k))).astype(np.float32)
    b = (rng.standard_normal(cout) * 0.05).astype(np.float32)
    inits += [numpy_helper.from_array(w, name + ".w"), numpy_helper.from_array(b, name + ".b")]
    nodes = [helper.make_node("Conv", [x, name + ".w", name + ".b"], [name + ".y"], name=name,
                              kernel_shape=[k, k], strides=[stride, stride], pads=[k // 2] * 4)]
    out = name + ".y"
    if relu:
        nodes.append(helper.make_node("Relu", [out], [name + ".r"], name=name + "_relu"))
        out = name + ".r"
    return nodes, out


def _save(graph: onnx.GraphProto, path: str) -> None:
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="tiny_models")
    model.ir_version = 8   # readable by TensorRT 8.5's parser and ONNX Runtime >= 1.14
    onnx.checker.check_model(model)
    onnx.save(model, path)


def _manifest(path: str, name: str, task: str, size: int, output: str, out_shape: list, thresholds: dict) -> str:
    man = {
        "schema_version": 1, "name": name, "version": "0.0-tiny", "task": task, "architecture": "tiny-conv",
        "file": os.path.basename(path), "sha256": file_sha256(path),
        "input": {"name": "image", "shape": [1, 1, size, size], "dtype": "float32"},
        "output": {"name": output, "shape": out_shape, "dtype": "float32"},
        "output_kind": "logit",
        "preprocessing": {"size": [size, size], "channels": 1, "mean": [0.5], "std": [0.25],
                          "resize": "stretch", "interpolation": "area"},
        "thresholds": thresholds, "intended_use": "untrained",
        "notes": "random weights; tool-chain smoke tests only",
    }
    mpath = path[:-5] + ".json"
    with open(mpath, "w", encoding="utf-8") as fh:
        json.dump(man, fh, indent=2)
    return mpath


def make_classifier(folder: str, size: int = 128, width: int = 16, seed: int = 1) -> str:
    """`<folder>/classifier.onnx` (+ .json): conv stack -> GAP -> Gemm -> one logit."""
    rng = np.random.RandomState(seed)
    inits, nodes = [], []
    x = "image"
    for i, (cin, cout) in enumerate([(1, width), (width, width * 2), (width * 2, width * 2), (width * 2, width * 4)]):
        n, x = _conv("conv%d" % i, x, cin, cout, 3, 2, rng, inits)
        nodes += n
    nodes.append(helper.make_node("GlobalAveragePool", [x], ["gap"], name="gap"))
    nodes.append(helper.make_node("Flatten", ["gap"], ["flat"], name="flatten", axis=1))
    w = (rng.standard_normal((1, width * 4)) * 0.3).astype(np.float32)
    inits += [numpy_helper.from_array(w, "fc.w"), numpy_helper.from_array(np.zeros(1, np.float32), "fc.b")]
    nodes.append(helper.make_node("Gemm", ["flat", "fc.w", "fc.b"], ["logit"], name="fc", transB=1))
    graph = helper.make_graph(
        nodes, "tiny_classifier", [helper.make_tensor_value_info("image", TensorProto.FLOAT, [1, 1, size, size])],
        [helper.make_tensor_value_info("logit", TensorProto.FLOAT, [1, 1])], inits)
    os.makedirs(folder, exist_ok=True)
    path = os.path.join(folder, "classifier.onnx")
    _save(graph, path)
    _manifest(path, "tiny-classifier", "classification", size, "logit", [1, 1],
              {"positive": 0.5, "skip_segmenter_below": 0.1})
    return path


def make_segmenter(folder: str, size: int = 128, width: int = 16, seed: int = 2) -> str:
    """`<folder>/segmenter.onnx` (+ .json): encoder, nearest upsample, 1x1 head -> mask logits."""
    rng = np.random.RandomState(seed)
    inits, nodes = [], []
    n, x = _conv("enc0", "image", 1, width, 3, 1, rng, inits)
    nodes += n
    n, x = _conv("enc1", x, width, width * 2, 3, 2, rng, inits)
    nodes += n
    n, x = _conv("enc2", x, width * 2, width * 2, 3, 1, rng, inits)
    nodes += n
    inits.append(numpy_helper.from_array(np.array([1, 1, 2, 2], np.float32), "up.scales"))
    nodes.append(helper.make_node("Resize", [x, "", "up.scales"], ["up"], name="up", mode="nearest"))
    n, x = _conv("dec0", "up", width * 2, width, 3, 1, rng, inits)
    nodes += n
    n, x = _conv("head", x, width, 1, 1, 1, rng, inits, relu=False)
    nodes += n
    # centre the logits so the 0.5 mask covers a sizeable, input-dependent region
    inits.append(numpy_helper.from_array(np.array(-1.0, np.float32), "shift"))
    nodes.append(helper.make_node("Add", [x, "shift"], ["mask"], name="shift"))
    graph = helper.make_graph(
        nodes, "tiny_segmenter", [helper.make_tensor_value_info("image", TensorProto.FLOAT, [1, 1, size, size])],
        [helper.make_tensor_value_info("mask", TensorProto.FLOAT, [1, 1, size, size])], inits)
    os.makedirs(folder, exist_ok=True)
    path = os.path.join(folder, "segmenter.onnx")
    _save(graph, path)
    _manifest(path, "tiny-segmenter", "segmentation", size, "mask", [1, 1, size, size],
              {"pixel_high": 0.9, "min_area_fraction": 0.001, "pixel_low": 0.5})
    return path
