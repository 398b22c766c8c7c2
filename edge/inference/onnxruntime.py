"""ONNX Runtime backend: the CPU path (laptops, CI, a server beside PACS)."""
import logging
from typing import Any, Dict, List, Optional, Tuple, Union

import numpy as np

from edge.errors import BackendUnavailable, ModelError
from edge.inference import threads as thread_choice
from edge.inference.backend import Backend
from edge.inference.manifest import ModelManifest, verify_model_file
from edge.inference.one_graph import MASK

log = logging.getLogger(__name__)


def onnxruntime_available():
    try:
        import onnxruntime  # noqa: F401
    except ImportError as exc:
        return False, "onnxruntime not importable (%s): pip install 'pneumo-edge[cpu]'" % exc
    return True, "onnxruntime %s" % onnxruntime.__version__


# What ONNX Runtime's intra-op threads do when they have no work:
#   "off"  sleep at once (allow_spinning=0);
#   "on"   spin on a core for a while after each run, waiting for more (ORT's default);
#   "run"  spin only while a run is in progress, stopped the moment it returns
#          (allow_spinning=1 + session.force_spinning_stop=1, ONNX Runtime >= 1.12).
SPINNING = ("off", "on", "run")
# Off: the intake thread (claim, hash, decode) shares the cores with the models,
# and a spinning thread holds its core even during a run, while it waits between
# parallel sections. Alone, the classifier runs 6.0 ms with "run" against 6.5 with
# "off" (2 threads, quiet machine); in the appliance (2 cores, 2 threads) it did
# not clearly beat "off": python -m bench's 16-film bursts over five runs, off
# 12.2-14.4 images/s, run 12.6-14.1 (ahead in three, 2 % on the mean: within this
# machine's noise), on 7.3-8.7; one 40-film burst off 10.4, run 6.6.
DEFAULT_SPINNING = "off"


def spin_entries(spinning: str) -> Dict[str, str]:
    """The session config entries for a SPINNING mode."""
    if spinning not in SPINNING:
        raise ValueError("spinning must be one of %s, got %r" % (", ".join(SPINNING), spinning))
    return {"session.intra_op.allow_spinning": "0" if spinning == "off" else "1",
            "session.force_spinning_stop": "1" if spinning == "run" else "0"}


class OnnxRuntimeBackend(Backend):
    name = "onnxruntime"

    def __init__(self, manifest: ModelManifest, threads: Union[int, str] = 0, verify: bool = True,
                 inter_op_threads: int = 1, spinning: str = DEFAULT_SPINNING,
                 joined: Optional[bytes] = None):
        """joined: the classifier's and segmenter's graphs as one (edge.inference.one_graph),
        loaded instead of the manifest's file, which is still verified: it is one of the two."""
        super().__init__(manifest)
        self._joined = joined
        self.provides_mask = joined is not None
        try:
            import onnxruntime  # noqa: F401
        except ImportError as exc:
            raise BackendUnavailable("onnxruntime is not installed (%s): pip install 'pneumo-edge[cpu]'" % exc)
        if verify:
            verify_model_file(manifest)
        self._inter_op = int(inter_op_threads)
        self._spin = spin_entries(spinning)
        self.spinning = spinning
        fixed = thread_choice.parse(threads)
        if fixed is not None:
            self.session = self._session(fixed)
            self._bind(self.session)
            self.threads = thread_choice.ThreadChoice(fixed, "configured")
        else:
            self.session, self.threads = self._calibrated()
        log.info("%s: ONNX Runtime with %d intra-op thread(s) (%s%s)", manifest.name, self.threads.threads,
                 self.threads.how, ", measured ms %s" % self.threads.as_dict()["measured_ms"]
                 if self.threads.measured_ms else "")

    def _bind(self, session) -> None:
        names = [i.name for i in session.get_inputs()]
        if self.manifest.input.name not in names:
            raise ModelError("%s: manifest input '%s' not in the ONNX graph inputs %s"
                             % (self.manifest.name, self.manifest.input.name, names))
        self._input = self.manifest.input.name
        outputs = [o.name for o in session.get_outputs()]
        self._output = self.manifest.output.name if self.manifest.output.name in outputs else outputs[0]
        if self.provides_mask and MASK not in outputs:
            raise ModelError("%s: the joined graph has no '%s' output" % (self.manifest.name, MASK))
        self._outputs = [self._output, MASK] if self.provides_mask else [self._output]

    def _session(self, intra_op: int):
        import onnxruntime as ort
        opts = ort.SessionOptions()
        # 0 lets ORT use every core.
        opts.intra_op_num_threads = int(intra_op)
        opts.inter_op_num_threads = self._inter_op
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        opts.log_severity_level = 3
        for key, value in self._spin.items():
            opts.add_session_config_entry(key, value)
        try:
            return ort.InferenceSession(self._joined if self._joined is not None else self.manifest.model_path,
                                        sess_options=opts, providers=["CPUExecutionProvider"])
        except Exception as exc:  # ORT raises its own untyped errors
            raise ModelError("%s: ONNX Runtime cannot load %s: %s"
                             % (self.manifest.name, self.manifest.model_path, exc))

    def _calibrated(self):
        """One session per candidate thread count, each timed on zeros; the
        chosen one is kept, the others are released."""
        m = self.manifest
        shape = [1, m.preprocessing.channels] + list(m.preprocessing.size)
        feed = {m.input.name: np.zeros(shape, np.float32)}
        counts = thread_choice.candidates(thread_choice.usable_cores())
        sessions = {counts[0]: self._session(counts[0])}   # type: Dict[int, Any]
        self._bind(sessions[counts[0]])                    # a wrong input name fails here, clearly
        sessions[counts[0]].run(None, feed)

        def time_once(t: int) -> float:
            if t not in sessions:
                sessions[t] = self._session(t)
                sessions[t].run(None, feed)          # first run allocates: not timed
            return thread_choice.stopwatch_ms(lambda: sessions[t].run(None, feed))

        choice = thread_choice.calibrate(time_once, counts)
        return sessions.pop(choice.threads), choice

    @property
    def precision(self) -> str:
        return self.manifest.precision

    def run(self, tensor: np.ndarray) -> np.ndarray:
        return self._run(tensor)[0]

    def run_with_mask(self, tensor: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
        if not self.provides_mask:
            raise ModelError("%s: this session is not the joined graph" % self.manifest.name)
        out, mask = self._run(tensor)
        return out, mask

    def _run(self, tensor: np.ndarray) -> List[np.ndarray]:
        # the joined graph always runs whole: its warm-up and thread timing are a film's real cost
        outs = self.session.run(self._outputs, {self._input: tensor})
        return [o if o.dtype == np.float32 else o.astype(np.float32) for o in outs]

    def close(self) -> None:
        self.session = None
