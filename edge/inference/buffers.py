"""Host/device buffer plans from an engine's tensor names, shapes and dtypes.

The TensorRT adapter asks the engine for (name, mode, shape, dtype) of each
I/O tensor and hands them here; this module decides the concrete shapes
(dynamic axes pinned to the optimisation profile's batch), numpy dtypes and
byte sizes. Pure Python so it is tested without a GPU.
"""
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from edge.errors import ModelError

# TensorRT DataType names (str(trt.DataType.X) is "DataType.X") -> numpy.
_TRT_DTYPES = {
    "FLOAT": np.float32,
    "HALF": np.float16,
    "INT8": np.int8,
    "INT32": np.int32,
    "INT64": np.int64,
    "BOOL": np.bool_,
    "UINT8": np.uint8,
}


@dataclass(frozen=True)
class TensorDesc:
    name: str
    is_input: bool
    shape: Tuple[int, ...]        # -1 for a dynamic axis, as TensorRT reports it
    dtype: str                    # TensorRT name: "FLOAT", "HALF", ... (or "DataType.FLOAT")


@dataclass(frozen=True)
class BufferPlan:
    name: str
    is_input: bool
    shape: Tuple[int, ...]        # concrete
    dtype: np.dtype
    nbytes: int


def numpy_dtype(trt_dtype: str) -> np.dtype:
    key = str(trt_dtype).rsplit(".", 1)[-1].upper()
    if key not in _TRT_DTYPES:
        raise ModelError("engine tensor dtype %s has no numpy equivalent this runtime handles" % trt_dtype)
    return np.dtype(_TRT_DTYPES[key])


def concrete_shape(shape: Sequence[int], fixed: Optional[Sequence[int]] = None, batch: int = 1) -> Tuple[int, ...]:
    """Resolve -1 axes: from `fixed` (the input shape we will set) if given,
    else the batch axis (0) to `batch`. Any other dynamic axis is an error:
    our profiles are static (min = opt = max)."""
    if fixed is not None:
        fixed = tuple(int(v) for v in fixed)
        if len(fixed) != len(shape):
            raise ModelError("shape %s does not fit the engine's %s" % (fixed, tuple(shape)))
        for want, have in zip(shape, fixed):
            if want != -1 and want != have:
                raise ModelError("shape %s does not fit the engine's %s" % (fixed, tuple(shape)))
        return fixed
    out = []
    for axis, dim in enumerate(shape):
        if dim >= 0:
            out.append(int(dim))
        elif axis == 0:
            out.append(int(batch))
        else:
            raise ModelError("axis %d of %s is dynamic; build the engine with a static optimisation profile"
                             % (axis, tuple(shape)))
    return tuple(out)


def plan_buffers(tensors: Sequence[TensorDesc], input_shapes: Optional[Dict[str, Sequence[int]]] = None,
                 batch: int = 1) -> List[BufferPlan]:
    """One BufferPlan per I/O tensor, in engine order.

    `input_shapes` pins dynamic inputs; outputs with dynamic axes other than
    the batch cannot be sized here (the adapter then asks the context after
    set_input_shape and calls this again with the resolved shapes).
    """
    input_shapes = input_shapes or {}
    names = [t.name for t in tensors]
    if len(set(names)) != len(names):
        raise ModelError("engine has duplicate tensor names: %s" % names)
    if not any(t.is_input for t in tensors) or all(t.is_input for t in tensors):
        raise ModelError("engine needs at least one input and one output, has %s" % names)
    plans = []
    for t in tensors:
        shape = concrete_shape(t.shape, input_shapes.get(t.name) if t.is_input else None, batch)
        dtype = numpy_dtype(t.dtype)
        nbytes = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
        plans.append(BufferPlan(t.name, t.is_input, shape, dtype, nbytes))
    return plans


def total_bytes(plans: Sequence[BufferPlan]) -> int:
    return sum(p.nbytes for p in plans)


def check_input(plan: BufferPlan, tensor: np.ndarray) -> np.ndarray:
    """The caller's tensor, contiguous and in the engine's dtype, or a clear error."""
    if tuple(tensor.shape) != plan.shape:
        raise ModelError("input '%s' expects shape %s, got %s" % (plan.name, plan.shape, tuple(tensor.shape)))
    return np.ascontiguousarray(tensor, dtype=plan.dtype)
