"""Buffer plans from an engine's tensor names, shapes and dtypes."""
import numpy as np
import pytest

from edge.errors import ModelError
from edge.inference.buffers import TensorDesc, check_input, concrete_shape, numpy_dtype, plan_buffers, total_bytes


def test_static_classifier_plan():
    plans = plan_buffers([TensorDesc("image", True, (1, 3, 224, 224), "DataType.FLOAT"),
                          TensorDesc("logit", False, (1, 1), "DataType.FLOAT")])
    assert [(p.name, p.is_input, p.shape) for p in plans] == [("image", True, (1, 3, 224, 224)),
                                                               ("logit", False, (1, 1))]
    assert plans[0].nbytes == 3 * 224 * 224 * 4 and total_bytes(plans) == plans[0].nbytes + 4


def test_dynamic_batch_is_pinned_and_half_outputs_sized():
    plans = plan_buffers([TensorDesc("image", True, (-1, 1, 512, 512), "FLOAT"),
                          TensorDesc("mask", False, (-1, 1, 512, 512), "HALF")], batch=2)
    assert plans[0].shape == (2, 1, 512, 512) and plans[1].dtype == np.float16
    assert plans[1].nbytes == 2 * 512 * 512 * 2


def test_input_shapes_pin_dynamic_axes_and_must_fit():
    assert concrete_shape((-1, 1, -1, -1), (1, 1, 64, 48)) == (1, 1, 64, 48)
    with pytest.raises(ModelError, match="does not fit"):
        concrete_shape((1, 1, 64, 64), (1, 1, 32, 32))
    with pytest.raises(ModelError, match="static optimisation profile"):
        concrete_shape((1, 1, -1, 64))


@pytest.mark.parametrize("name, dtype", [("DataType.INT8", np.int8), ("INT32", np.int32), ("BOOL", np.bool_),
                                         ("DataType.HALF", np.float16)])
def test_dtypes(name, dtype):
    assert numpy_dtype(name) == np.dtype(dtype)


def test_bad_engines_are_refused():
    with pytest.raises(ModelError, match="no numpy equivalent"):
        numpy_dtype("DataType.FP8")
    with pytest.raises(ModelError, match="duplicate"):
        plan_buffers([TensorDesc("x", True, (1,), "FLOAT"), TensorDesc("x", False, (1,), "FLOAT")])
    with pytest.raises(ModelError, match="at least one input and one output"):
        plan_buffers([TensorDesc("x", True, (1,), "FLOAT")])


def test_check_input_converts_dtype_and_rejects_wrong_shapes():
    plan = plan_buffers([TensorDesc("i", True, (1, 2), "HALF"), TensorDesc("o", False, (1, 2), "HALF")])[0]
    out = check_input(plan, np.ones((1, 2), np.float32))
    assert out.dtype == np.float16 and out.flags["C_CONTIGUOUS"]
    with pytest.raises(ModelError, match="expects shape"):
        check_input(plan, np.ones((2, 2), np.float32))
