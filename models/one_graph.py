"""`python -m models one-graph`: the joined graph of edge.inference.one_graph written to a file
(to inspect it, or to build one engine from it); the runtime joins the bundled pair itself."""
from typing import Dict

import onnx

from edge.inference.one_graph import ENCODER, GraphMismatch, join  # noqa: F401  (the CLI's and tests' names)


def write(classifier_onnx: str, segmenter_onnx: str, out: str) -> Dict[str, int]:
    joined = join(onnx.load(classifier_onnx), onnx.load(segmenter_onnx))
    onnx.save(joined, out)
    return {"nodes": len(joined.graph.node), "encoder_nodes": sum(
        1 for n in joined.graph.node if n.name.startswith(ENCODER))}
