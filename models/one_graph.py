"""Both heads in one ONNX graph, the shared encoder run once: `python -m models one-graph`.

The shipped classifier graph already runs the encoder on [film, mirror] (its h-flip
TTA) for the image-level head and the not-a-chest gate; the segmenter graph runs
the same encoder (same node names, same weights: export-cv writes both from one
network) once per call, and the pipeline calls it twice (film, mirror). This joins
the segmenter's decoder to the classifier graph's encoder features and appends what
edge.pipeline does with the segmenter's two outputs: sigmoid, the mirror's mask
flipped back, the mean. Outputs: `logits` (the classifier's, unchanged) and `mask`
(the h-flip-averaged mask probability, [1, 1, H, W]).

Not yet read by the runtime (which still runs classifier.onnx and segmenter.onnx):
this is the graph a one-call pipeline and a one-engine device build would load.
"""
from typing import Dict, List, Set

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

ENCODER = "/encoder/"
PREFIX = "seg:"
MASK = "mask"


class GraphMismatch(ValueError):
    """The two graphs do not share an encoder this tool can join."""


def _encoder_weights(graph: onnx.GraphProto) -> Dict[str, List[np.ndarray]]:
    inits = {i.name: i for i in graph.initializer}
    return {n.name: [numpy_helper.to_array(inits[i]) for i in n.input if i in inits]
            for n in graph.node if n.name.startswith(ENCODER)}


def check_shared_encoder(classifier: onnx.ModelProto, segmenter: onnx.ModelProto) -> int:
    """Number of encoder nodes; raises GraphMismatch unless every segmenter encoder node
    is in the classifier graph under the same name with the same weights."""
    cw, sw = _encoder_weights(classifier.graph), _encoder_weights(segmenter.graph)
    if not sw:
        raise GraphMismatch("the segmenter graph has no %s* nodes" % ENCODER)
    for name, weights in sw.items():
        other = cw.get(name)
        if other is None or len(other) != len(weights) or any(
                a.shape != b.shape or not np.array_equal(a, b) for a, b in zip(weights, other)):
            raise GraphMismatch("encoder node %s differs between the graphs" % name)
    return len(sw)


def _const(name: str, values, dtype=np.int64) -> onnx.NodeProto:
    return helper.make_node("Constant", [], [name], value=numpy_helper.from_array(np.asarray(values, dtype), name))


def _averaging_tail(mask_logits: str) -> List[onnx.NodeProto]:
    """sigmoid, then (film + mirror flipped back) / 2: edge.pipeline's h-flip TTA of the segmenter."""
    p = PREFIX
    return [
        helper.make_node("Sigmoid", [mask_logits], [p + "prob2"]),
        _const(p + "zero", [0]), _const(p + "one", [1]), _const(p + "two", [2]), _const(p + "batch", [0]),
        helper.make_node("Slice", [p + "prob2", p + "zero", p + "one", p + "batch"], [p + "film"]),
        helper.make_node("Slice", [p + "prob2", p + "one", p + "two", p + "batch"], [p + "mirror"]),
        _const(p + "last", [-1]), _const(p + "before_first", [-(2 ** 62)]), _const(p + "width", [3]),
        _const(p + "back", [-1]),
        helper.make_node("Slice", [p + "mirror", p + "last", p + "before_first", p + "width", p + "back"],
                         [p + "unmirrored"]),
        helper.make_node("Add", [p + "film", p + "unmirrored"], [p + "sum"]),
        _const(p + "half", np.float32(0.5), np.float32),
        helper.make_node("Mul", [p + "sum", p + "half"], [MASK]),
    ]


def join(classifier: onnx.ModelProto, segmenter: onnx.ModelProto) -> onnx.ModelProto:
    """The classifier graph with the segmenter's decoder and the TTA mean appended."""
    check_shared_encoder(classifier, segmenter)
    cg, sg = classifier.graph, segmenter.graph
    if len(sg.output) != 1:
        raise GraphMismatch("the segmenter graph has %d outputs, expected 1" % len(sg.output))
    decoder = [n for n in sg.node if not n.name.startswith(ENCODER)]
    made = {o for n in decoder for o in n.output}
    inits = {i.name: i for i in sg.initializer}
    inputs = {i.name for i in sg.input}

    def renamed(name: str) -> str:
        if name in inputs:
            raise GraphMismatch("the decoder reads the graph input %s directly" % name)
        return PREFIX + name if name in made or name in inits else name   # encoder tensors keep their names

    joined = onnx.ModelProto()
    joined.CopyFrom(classifier)
    g = joined.graph
    used = set()  # type: Set[str]
    for n in decoder:
        m = onnx.NodeProto()
        m.CopyFrom(n)
        m.name = PREFIX + n.name
        del m.input[:]
        m.input.extend(renamed(i) if i else i for i in n.input)
        del m.output[:]
        m.output.extend(renamed(o) for o in n.output)
        g.node.append(m)
        used.update(i for i in n.input if i in inits)
    for name in sorted(used):
        t = onnx.TensorProto()
        t.CopyFrom(inits[name])
        t.name = PREFIX + name
        g.initializer.append(t)
    dims = [d.dim_value for d in sg.output[0].type.tensor_type.shape.dim]
    height, width = dims[-2], dims[-1]
    g.node.extend(_averaging_tail(PREFIX + sg.output[0].name))
    g.output.append(helper.make_tensor_value_info(MASK, TensorProto.FLOAT, [1, 1, height, width]))
    onnx.checker.check_model(joined)
    return joined


def write(classifier_onnx: str, segmenter_onnx: str, out: str) -> Dict[str, int]:
    joined = join(onnx.load(classifier_onnx), onnx.load(segmenter_onnx))
    onnx.save(joined, out)
    return {"nodes": len(joined.graph.node), "encoder_nodes": sum(
        1 for n in joined.graph.node if n.name.startswith(ENCODER))}
