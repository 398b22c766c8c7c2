"""Pure reading of TensorRT's engine-inspector JSON: per-layer precision and DLA placement."""
from typing import Any, Dict

PRECISION_WORDS = (("INT8", "int8"), ("FP16", "fp16"), ("HALF", "fp16"), ("FP32", "fp32"), ("FLOAT", "fp32"),
                   ("INT32", "int32"), ("BOOL", "bool"))


def layer_precision(layer: Dict[str, Any]) -> str:
    """The precision of a layer's first output as the inspector formats it
    ("Row major linear FP32", "Channel major FP16 format where channel % 8 == 0", ...)."""
    outputs = layer.get("Outputs") or []
    text = ""
    if outputs and isinstance(outputs[0], dict):
        text = str(outputs[0].get("Format/Datatype", "")).upper()
    for word, name in PRECISION_WORDS:
        if word in text:
            return name
    return "unknown"


def on_dla(layer: Dict[str, Any]) -> bool:
    name = str(layer.get("Name", ""))
    kind = str(layer.get("LayerType", ""))
    return "DLA" in kind.upper() or ("ForeignNode" in name and "DLA" in str(layer.get("Metadata", "")).upper())


def summarise(info: Dict[str, Any], dla_requested: bool) -> Dict[str, Any]:
    """{"precisions": {fp16: n, ...}, "dla_layers": [...], "gpu_layers": [...]} from
    json.loads(inspector.get_engine_information(LayerInformationFormat.JSON))."""
    layers = info.get("Layers") or []
    counts = {}  # type: Dict[str, int]
    dla, gpu = [], []  # type: List[str], List[str]
    for layer in layers:
        if not isinstance(layer, dict):   # ProfilingVerbosity below DETAILED gives bare names
            counts["unknown"] = counts.get("unknown", 0) + 1
            continue
        p = layer_precision(layer)
        counts[p] = counts.get(p, 0) + 1
        (dla if on_dla(layer) else gpu).append(str(layer.get("Name", "?")))
    return {"precisions": counts, "dla_layers": dla, "gpu_layers": gpu if dla_requested else [],
            "layers": len(layers)}
