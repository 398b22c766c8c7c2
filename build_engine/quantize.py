"""ONNX Runtime static quantisation: u8s8 for x86 CPUs, symmetric s8s8 QDQ for TensorRT.

TensorRT's explicit-quantisation path wants QuantizeLinear/DequantizeLinear
pairs with zero-point 0 (symmetric), int8 on both sides, per-channel weights;
ONNX Runtime's CPU kernels are fastest with uint8 activations and int8 weights.
"""
import fnmatch
import logging
import os
import tempfile
from typing import Dict, List, Optional, Sequence

import numpy as np
import onnx

log = logging.getLogger(__name__)

# Ops worth quantising in these CNNs; the rest stay float (and FP16 on TensorRT).
TRT_QDQ_OP_TYPES = ["Conv", "ConvTranspose", "Gemm", "MatMul", "Add", "Mul", "GlobalAveragePool",
                    "AveragePool", "MaxPool", "Concat", "Resize"]


class TensorReader(object):
    """CalibrationDataReader over preprocessed (N, C, H, W) tensors, one sample per call."""

    def __init__(self, input_name: str, tensors: np.ndarray):
        self.input_name = input_name
        self.tensors = tensors
        self.i = 0

    def get_next(self) -> Optional[Dict[str, np.ndarray]]:
        if self.i >= len(self.tensors):
            return None
        t = self.tensors[self.i:self.i + 1]
        self.i += 1
        return {self.input_name: t}

    def rewind(self) -> None:
        self.i = 0


def _named(name: str, patterns: Sequence[str]) -> bool:
    """An exact node name, or a shell pattern ("/head/*") when it has one."""
    return any(fnmatch.fnmatchcase(name, p) if any(c in p for c in "*?[") else name == p for p in patterns)


def nodes_matching(onnx_path: str, names: Sequence[str], op_types: Sequence[str],
                   int8_only: Sequence[str] = ()) -> List[str]:
    """ONNX node names kept out of INT8 (for nodes_to_exclude): selected by name or
    pattern, by op type, or, when int8_only is given, every node it does not name."""
    model = onnx.load(onnx_path, load_external_data=False)
    want_types = set(op_types)
    if int8_only and not any(n.name and _named(n.name, int8_only) for n in model.graph.node):
        # the scope was written for another network (the bundled one): a model it names
        # nothing of is quantised whole, not left all float
        log.warning("%s: int8_only %s names none of its nodes; ignored", os.path.basename(onnx_path),
                    list(int8_only))
        int8_only = ()
    return [n.name for n in model.graph.node if n.name and (
        _named(n.name, names) or n.op_type in want_types or (int8_only and not _named(n.name, int8_only)))]


def onnx_opset(onnx_path: str) -> int:
    model = onnx.load(onnx_path, load_external_data=False)
    for imp in model.opset_import:
        if imp.domain in ("", "ai.onnx"):
            return int(imp.version)
    return 0


def _preprocessed(onnx_path: str, workdir: str) -> str:
    """Shape inference + graph optimisation before quantising, as ORT recommends; the
    original model when that step fails (older ORT, unusual graphs)."""
    try:
        from onnxruntime.quantization.shape_inference import quant_pre_process
    except ImportError:
        return onnx_path
    out = os.path.join(workdir, "prep.onnx")
    try:
        quant_pre_process(onnx_path, out, skip_symbolic_shape=True)
        return out
    except Exception as exc:  # ORT raises assorted types here
        log.warning("quant_pre_process failed (%s); quantising the model as is", exc)
        return onnx_path


def _calib_method(name: str):
    from onnxruntime.quantization import CalibrationMethod
    return {"minmax": CalibrationMethod.MinMax, "entropy": CalibrationMethod.Entropy,
            "percentile": CalibrationMethod.Percentile}[name]


def _qtype(name: str):
    from onnxruntime.quantization import QuantType
    return QuantType.QUInt8 if name == "uint8" else QuantType.QInt8


def quantize_cpu(onnx_in: str, onnx_out: str, input_name: str, tensors: np.ndarray, fmt: str,
                 per_channel: bool = True, activation_type: str = "uint8", weight_type: str = "int8",
                 method: str = "minmax", nodes_to_exclude: Sequence[str] = ()) -> None:
    """u8s8 static quantisation for ONNX Runtime on x86 (fmt: "qdq" | "qoperator")."""
    from onnxruntime.quantization import QuantFormat, quantize_static
    with tempfile.TemporaryDirectory() as tmp:
        src = _preprocessed(onnx_in, tmp)
        quantize_static(
            src, onnx_out, TensorReader(input_name, tensors),
            quant_format=QuantFormat.QDQ if fmt == "qdq" else QuantFormat.QOperator,
            per_channel=per_channel, activation_type=_qtype(activation_type), weight_type=_qtype(weight_type),
            calibrate_method=_calib_method(method), nodes_to_exclude=list(nodes_to_exclude) or None)


def quantize_trt_qdq(onnx_in: str, onnx_out: str, input_name: str, tensors: np.ndarray,
                     method: str = "entropy", nodes_to_exclude: Sequence[str] = ()) -> None:
    """Explicit QDQ in the form TensorRT 8.5 builds as INT8: s8s8, symmetric, per-channel weights,
    a dedicated Q/DQ pair per consumer. Excluded nodes keep float inputs and run FP16 on the device."""
    from onnxruntime.quantization import QuantFormat, quantize_static
    with tempfile.TemporaryDirectory() as tmp:
        src = _preprocessed(onnx_in, tmp)
        quantize_static(
            src, onnx_out, TensorReader(input_name, tensors), quant_format=QuantFormat.QDQ,
            op_types_to_quantize=TRT_QDQ_OP_TYPES, per_channel=True,
            activation_type=_qtype("int8"), weight_type=_qtype("int8"), calibrate_method=_calib_method(method),
            nodes_to_exclude=list(nodes_to_exclude) or None,
            extra_options={"ActivationSymmetric": True, "WeightSymmetric": True, "AddQDQPairToWeight": True,
                           "QuantizeBias": False,   # TensorRT wants float bias, not int32 DQ
                           "DedicatedQDQPair": True, "QDQOpTypePerChannelSupportToAxis": {"MatMul": 1}})
