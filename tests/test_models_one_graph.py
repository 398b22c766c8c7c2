"""One graph for both heads: the committed classifier and segmenter joined on their
shared encoder give exactly what the pipeline computes from the two graphs."""
import os

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import numpy_helper

from edge.inference.manifest import load_manifest
from edge.phantom import chest_phantom
from edge.preprocess import preprocess
from models.one_graph import ENCODER, GraphMismatch, join

ROOT = os.path.join(os.path.dirname(__file__), "..", "models")
CLASSIFIER = os.path.join(ROOT, "classifier", "classifier.onnx")
SEGMENTER = os.path.join(ROOT, "segmenter", "segmenter.onnx")


def _session(model):
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    return ort.InferenceSession(model.SerializeToString() if isinstance(model, onnx.ModelProto) else model,
                                opts, providers=["CPUExecutionProvider"])


def _sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def test_the_joined_graph_gives_the_two_graphs_outputs_with_the_encoder_run_once():
    joined = join(onnx.load(CLASSIFIER), onnx.load(SEGMENTER))
    encoder_convs = [n for n in joined.graph.node if n.name.startswith(ENCODER) and n.op_type == "Conv"]
    assert len(encoder_convs) == len({n.name for n in encoder_convs})       # each encoder node once
    spec = load_manifest(CLASSIFIER[:-5] + ".json").preprocessing
    one, cls, seg = _session(joined), _session(CLASSIFIER), _session(SEGMENTER)
    assert [o.name for o in one.get_outputs()] == ["logits", "mask"]
    for seed in range(3):
        x = preprocess(chest_phantom(400, 380, seed=seed), spec)[0]
        logits, mask = one.run(None, {"input": x})
        film = _sigmoid(seg.run(None, {"input": x})[0])
        mirror = _sigmoid(seg.run(None, {"input": np.ascontiguousarray(x[..., ::-1])})[0])
        np.testing.assert_allclose(logits, cls.run(None, {"input": x})[0], atol=1e-5)
        np.testing.assert_allclose(mask, 0.5 * (film + mirror[..., ::-1]), atol=1e-6)


def test_graphs_whose_encoders_differ_are_not_joined():
    segmenter = onnx.load(SEGMENTER)
    conv = next(n for n in segmenter.graph.node if n.name.startswith(ENCODER) and n.op_type == "Conv")
    weight = next(i for i in segmenter.graph.initializer if i.name == conv.input[1])
    changed = numpy_helper.to_array(weight).copy()
    changed.flat[0] += 1.0
    weight.CopyFrom(numpy_helper.from_array(changed, weight.name))
    with pytest.raises(GraphMismatch, match=conv.name):
        join(onnx.load(CLASSIFIER), segmenter)


def test_the_bench_times_both_ways_and_prints_their_agreement(capsys):
    from bench.one_graph import main
    assert main(["--films", "2", "--rounds", "1", "--threads", "1"]) == 0
    out = capsys.readouterr().out
    assert "classifier + segmenter x 2" in out and "one / two = " in out
    assert "max |diff| logits" in out
