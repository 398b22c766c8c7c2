"""The classifier and the segmenter as one ONNX graph, their shared encoder run once.

The bundled models are one network exported twice (models export-cv): the
classifier graph runs the encoder on [film, mirror] (its h-flip TTA, inside
the graph) for the image-level head and the not-a-chest gate; the segmenter
graph runs the same encoder, with the same node names and weights, once per
call, and edge.pipeline calls it twice (film, mirror). Joined, the
segmenter's decoder reads the classifier graph's encoder features, and the
graph itself does what the pipeline did with the segmenter's two outputs:
sigmoid, the mirror's mask flipped back, the mean. Output `logits` is the
classifier's, unchanged; `mask` is the h-flip-averaged mask probability.
A film then costs one encoder pass on [film, mirror] instead of two
(measured 0.72-0.77 of the two graphs' time: `python -m bench.one_graph`).

Only for ONNX Runtime, and only when the structure is exactly that (checked
here, else the two graphs run as before, and the status says why): a site's
own models trained apart, an INT8 variant of one of them, or a segmenter
without h-flip TTA are not joined. Needs the `onnx` package; without it the
two graphs run. TensorRT engines are still built per model.
"""
from typing import Dict, List, Optional, Set, Tuple

import numpy as np

from edge.errors import ModelError
from edge.inference.manifest import ModelManifest

ENCODER = "/encoder/"
PREFIX = "seg:"
MASK = "mask"

_cache = {}  # type: Dict[Tuple[str, str, str, str], Tuple[Optional[bytes], str]]   # by both files' path and sha256


class GraphMismatch(ModelError):
    """The two graphs do not share an encoder in the form this module joins."""


def _constants(graph) -> Dict[str, np.ndarray]:
    from onnx import numpy_helper
    values = {i.name: numpy_helper.to_array(i) for i in graph.initializer}
    for n in graph.node:
        if n.op_type == "Constant" and n.attribute and n.attribute[0].name == "value":
            values[n.output[0]] = numpy_helper.to_array(n.attribute[0].t)
    return values


def check_mirror_batch(classifier) -> None:
    """The classifier's encoder must read Concat(input, input flipped along the width)."""
    g = classifier.graph
    source = g.input[0].name
    producers = {o: n for n in g.node for o in n.output}
    stem = next((n for n in g.node if n.name.startswith(ENCODER)), None)
    concat = producers.get(stem.input[0]) if stem is not None else None
    if concat is None or concat.op_type != "Concat" or len(concat.input) != 2 or concat.input[0] != source:
        raise GraphMismatch("the classifier's encoder does not read [film, mirror]")
    flip = producers.get(concat.input[1])
    consts = _constants(g)
    if flip is None or flip.op_type != "Slice" or flip.input[0] != source or len(flip.input) < 5:
        raise GraphMismatch("the classifier's second batch item is not a mirror of the film")
    axes, steps = consts.get(flip.input[3]), consts.get(flip.input[4])
    if axes is None or steps is None or list(np.ravel(axes)) not in ([3], [-1]) or list(np.ravel(steps)) != [-1]:
        raise GraphMismatch("the classifier's second batch item is not flipped along the width")


def check_shared_encoder(classifier, segmenter) -> int:
    """Number of encoder nodes; raises GraphMismatch unless every segmenter
    encoder node is in the classifier graph by name with the same weights."""
    from onnx import numpy_helper

    def weights(graph):
        inits = {i.name: i for i in graph.initializer}
        return {n.name: [numpy_helper.to_array(inits[i]) for i in n.input if i in inits]
                for n in graph.node if n.name.startswith(ENCODER)}
    cw, sw = weights(classifier.graph), weights(segmenter.graph)
    if not sw:
        raise GraphMismatch("the segmenter graph has no %s* nodes" % ENCODER)
    for name, ws in sw.items():
        other = cw.get(name)
        if other is None or len(other) != len(ws) or any(
                a.shape != b.shape or not np.array_equal(a, b) for a, b in zip(ws, other)):
            raise GraphMismatch("encoder node %s differs between the graphs" % name)
    return len(sw)


def _averaging_tail(mask_logits: str) -> List:
    """sigmoid, then (film + mirror flipped back) / 2: edge.pipeline's h-flip TTA of the segmenter."""
    from onnx import helper, numpy_helper

    def const(name, values, dtype=np.int64):
        return helper.make_node("Constant", [], [name], value=numpy_helper.from_array(np.asarray(values, dtype), name))
    p = PREFIX
    return [
        helper.make_node("Sigmoid", [mask_logits], [p + "prob2"]),
        const(p + "zero", [0]), const(p + "one", [1]), const(p + "two", [2]), const(p + "batch", [0]),
        helper.make_node("Slice", [p + "prob2", p + "zero", p + "one", p + "batch"], [p + "film"]),
        helper.make_node("Slice", [p + "prob2", p + "one", p + "two", p + "batch"], [p + "mirror"]),
        const(p + "last", [-1]), const(p + "before_first", [-(2 ** 62)]), const(p + "width", [3]),
        const(p + "back", [-1]),
        helper.make_node("Slice", [p + "mirror", p + "last", p + "before_first", p + "width", p + "back"],
                         [p + "unmirrored"]),
        helper.make_node("Add", [p + "film", p + "unmirrored"], [p + "sum"]),
        const(p + "half", np.float32(0.5), np.float32),
        helper.make_node("Mul", [p + "sum", p + "half"], [MASK]),
    ]


def join(classifier, segmenter):
    """The classifier graph (onnx.ModelProto) with the segmenter's decoder and the TTA mean appended."""
    import onnx
    from onnx import TensorProto, helper
    check_mirror_batch(classifier)
    check_shared_encoder(classifier, segmenter)
    sg = segmenter.graph
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
    g.node.extend(_averaging_tail(PREFIX + sg.output[0].name))
    g.output.append(helper.make_tensor_value_info(MASK, TensorProto.FLOAT, [1, 1] + dims[-2:]))
    onnx.checker.check_model(joined)
    return joined


def _unsuitable(cls: ModelManifest, seg: ModelManifest) -> Optional[str]:
    if cls.preprocessing != seg.preprocessing:
        return "the two models' preprocessing differs"
    if "hflip" in cls.tta or seg.tta != ["hflip"] or seg.output_kind != "logit":
        return "the models' TTA or output kind is not the bundled form"
    if cls.precision != "fp32" or seg.precision != "fp32":
        return "an INT8/FP16 variant is loaded"
    return None


def joined_bytes(cls: ModelManifest, seg: ModelManifest) -> Tuple[Optional[bytes], str]:
    """(the joined graph serialised, why) or (None, why not). Joined once per
    pair of files in a process (several pipelines share the bytes)."""
    why_not = _unsuitable(cls, seg)          # the manifests' side: checked every time
    if why_not is not None:
        return None, "two graphs: " + why_not
    key = (cls.model_path, cls.sha256, seg.model_path, seg.sha256)
    if key not in _cache:
        _cache[key] = _join_files(cls, seg)
    return _cache[key]


def _join_files(cls: ModelManifest, seg: ModelManifest) -> Tuple[Optional[bytes], str]:
    try:
        import onnx
    except ImportError:
        return None, "two graphs: the onnx package is not installed (pip install onnx joins them)"
    try:
        joined = join(onnx.load(cls.model_path), onnx.load(seg.model_path))
    except GraphMismatch as exc:
        return None, "two graphs: %s" % exc
    return joined.SerializeToString(), "one graph: the shared encoder runs once per film"
