"""The physical limit: FLOPs of a model from its ONNX graph, and the
machine's measured float32 matmul peak, so achieved GFLOP/s can be set
against what the cores can do.

Counted: Conv, ConvTranspose, Gemm, MatMul (2 x multiply-accumulates); the
element-wise rest (activations, adds, resizes) is memory-bound and small in
FLOPs, so it is left out and says so in the report.
"""
import os
import time
from typing import Dict, Sequence, Tuple

import numpy as np

COUNTED_OPS = ("Conv", "ConvTranspose", "Gemm", "MatMul")


def _shapes(model) -> Dict[str, Sequence[int]]:
    """Every counted node's input and output shapes, observed by running the
    graph once on zeros (ONNX shape inference stops at some Resize nodes)."""
    import onnx
    import onnxruntime as ort
    out = {init.name: list(init.dims) for init in model.graph.initializer}
    probe = onnx.ModelProto()
    probe.CopyFrom(model)
    known = {o.name for o in probe.graph.output}
    wanted = []
    for node in probe.graph.node:
        if node.op_type in COUNTED_OPS:
            wanted.extend(n for n in list(node.input[:1]) + list(node.output[:1]) if n not in out)
    for name in dict.fromkeys(wanted):
        if name not in known:
            probe.graph.output.append(onnx.helper.make_empty_tensor_value_info(name))
    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL   # keep the nodes named
    opts.log_severity_level = 3
    session = ort.InferenceSession(probe.SerializeToString(), sess_options=opts, providers=["CPUExecutionProvider"])
    init_names = set(out)
    feed = {}
    for i in session.get_inputs():
        if i.name in init_names:
            continue
        dims = [d if isinstance(d, int) else 1 for d in i.shape]
        feed[i.name] = np.zeros(dims, np.float32)
    names = [o.name for o in session.get_outputs()]
    for name, value in zip(names, session.run(names, feed)):
        out[name] = list(value.shape)
    return out


def _attr(node, name, default):
    for a in node.attribute:
        if a.name == name:
            import onnx
            return onnx.helper.get_attribute_value(a)
    return default


def onnx_flops(path: str) -> Dict[str, int]:
    """{op_type: FLOPs} for one forward pass at the graph's static input shape."""
    import onnx
    model = onnx.load(path)
    shapes = _shapes(model)
    totals = {op: 0 for op in COUNTED_OPS}
    for node in model.graph.node:
        if node.op_type not in COUNTED_OPS:
            continue
        if node.op_type in ("Conv", "ConvTranspose"):
            w = shapes.get(node.input[1])
            out = shapes.get(node.output[0])
            if not w or not out:
                continue
            if node.op_type == "Conv":
                per_out = int(np.prod(w[1:]))                    # (Cin/groups) * kh * kw
                totals["Conv"] += 2 * per_out * int(np.prod(out))
            else:
                inp = shapes.get(node.input[0])
                per_in = int(w[1]) * int(np.prod(w[2:]))          # Cout/groups * kh * kw
                totals["ConvTranspose"] += 2 * per_in * int(np.prod(inp)) if inp else 0
        else:
            a, b = shapes.get(node.input[0]), shapes.get(node.input[1])
            if not a or not b:
                continue
            if node.op_type == "Gemm":
                m = a[1] if int(_attr(node, "transA", 0)) else a[0]
                k = a[0] if int(_attr(node, "transA", 0)) else a[1]
                n = b[0] if int(_attr(node, "transB", 0)) else b[1]
                totals["Gemm"] += 2 * int(m) * int(k) * int(n)
            else:
                out = shapes.get(node.output[0]) or []
                k = a[-1]
                totals["MatMul"] += 2 * int(np.prod(out)) * int(k) if out else 0
    return totals


def _best_of(run, seconds: float) -> Tuple[float, int]:
    run()                                                   # warm-up: thread pool, pages
    best, runs, start = float("inf"), 0, time.perf_counter()
    while runs < 10 or time.perf_counter() - start < seconds:
        t0 = time.perf_counter()
        run()
        best = min(best, time.perf_counter() - t0)
        runs += 1
        if runs >= 200:
            break
    return best, runs


def _ort_matmul(n: int, threads: int):
    """One float32 MatMul node on ONNX Runtime: the kernels (MLAS) the models'
    convolutions run on, which can beat numpy's BLAS on the same cores."""
    import onnx
    import onnxruntime as ort
    from onnx import TensorProto, helper
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["a", "b"], ["c"])], "peak",
        [helper.make_tensor_value_info("a", TensorProto.FLOAT, [n, n]),
         helper.make_tensor_value_info("b", TensorProto.FLOAT, [n, n])],
        [helper.make_tensor_value_info("c", TensorProto.FLOAT, [n, n])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = min(model.ir_version, 8)             # readable by the floor's onnxruntime 1.15
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    sess = ort.InferenceSession(model.SerializeToString(), opts, providers=["CPUExecutionProvider"])
    return sess


def matmul_peak_gflops(n: int = 1024, seconds: float = 3.0, threads: int = 0) -> Dict[str, float]:
    """Best float32 GFLOP/s of an n x n matmul: numpy's BLAS (all its threads)
    and ONNX Runtime's MatMul (`threads`, 0 = every core), the better of the
    two. A peak from numpy alone was beaten by the models themselves on an
    AMD EPYC VM (106 %): a ceiling must be what the cores can do, not what one
    library does. n = 1024 takes tens of ms a run, like the models, so on a
    shared machine the best of many runs is as likely to catch a quiet moment
    as theirs."""
    a = np.random.default_rng(0).standard_normal((n, n)).astype(np.float32)
    b = np.random.default_rng(1).standard_normal((n, n)).astype(np.float32)
    flops = 2.0 * n ** 3
    best_np, runs_np = _best_of(lambda: a @ b, seconds / 2)
    out = {"n": n, "runs": runs_np, "best_s": best_np, "gflops": flops / best_np / 1e9,
           "numpy_gflops": flops / best_np / 1e9, "source": "numpy"}
    try:
        sess = _ort_matmul(n, threads or (os.cpu_count() or 1))
    except Exception as e:  # noqa: BLE001 - the numpy figure still stands; say why there is no other
        out["onnxruntime_error"] = "%s: %s" % (type(e).__name__, e)
        return out
    best_ort, runs_ort = _best_of(lambda: sess.run(None, {"a": a, "b": b}), seconds / 2)
    out["onnxruntime_gflops"] = flops / best_ort / 1e9
    if best_ort < best_np:
        out.update(runs=runs_ort, best_s=best_ort, gflops=flops / best_ort / 1e9, source="onnxruntime")
    return out
