"""ONNX Runtime backend: the CPU path (laptops, CI, a server beside PACS)."""
import logging

import numpy as np

from edge.errors import BackendUnavailable, ModelError
from edge.inference.backend import Backend
from edge.inference.manifest import ModelManifest, verify_model_file

log = logging.getLogger(__name__)


def onnxruntime_available():
    try:
        import onnxruntime  # noqa: F401
    except ImportError as exc:
        return False, "onnxruntime not importable (%s): pip install 'pneumo-edge[cpu]'" % exc
    return True, "onnxruntime %s" % onnxruntime.__version__


class OnnxRuntimeBackend(Backend):
    name = "onnxruntime"

    def __init__(self, manifest: ModelManifest, threads: int = 0, verify: bool = True,
                 inter_op_threads: int = 1):
        super().__init__(manifest)
        try:
            import onnxruntime as ort
        except ImportError as exc:
            raise BackendUnavailable("onnxruntime is not installed (%s): pip install 'pneumo-edge[cpu]'" % exc)
        if verify:
            verify_model_file(manifest)
        opts = ort.SessionOptions()
        # 0 lets ORT use every core; the app sizes this so decode threads are not starved.
        opts.intra_op_num_threads = int(threads)
        opts.inter_op_num_threads = int(inter_op_threads)
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        opts.log_severity_level = 3
        try:
            self.session = ort.InferenceSession(manifest.model_path, sess_options=opts,
                                                providers=["CPUExecutionProvider"])
        except Exception as exc:  # ORT raises its own untyped errors
            raise ModelError("%s: ONNX Runtime cannot load %s: %s" % (manifest.name, manifest.model_path, exc))
        inputs = self.session.get_inputs()
        names = [i.name for i in inputs]
        if manifest.input.name not in names:
            raise ModelError("%s: manifest input '%s' not in the ONNX graph inputs %s"
                             % (manifest.name, manifest.input.name, names))
        self._input = manifest.input.name
        outputs = [o.name for o in self.session.get_outputs()]
        self._output = manifest.output.name if manifest.output.name in outputs else outputs[0]
        self._threads = int(threads)

    @property
    def precision(self) -> str:
        return self.manifest.precision

    def run(self, tensor: np.ndarray) -> np.ndarray:
        out = self.session.run([self._output], {self._input: tensor})[0]
        return out if out.dtype == np.float32 else out.astype(np.float32)

    def close(self) -> None:
        self.session = None
