"""The contract every inference backend keeps.

One module per runtime (onnxruntime.py, tensorrt.py), chosen by name in
config through registry.py. A backend owns one model: it takes the
preprocessed (1, C, H, W) float32 tensor and returns the model's first
output as float32, untouched (logits stay logits; postprocess applies the
manifest's output_kind).
"""
import abc
import time
from typing import Dict, Optional, Tuple

import numpy as np

from edge.errors import ModelError
from edge.inference.manifest import ModelManifest, verify_model_file
from edge.inference.threads import ThreadChoice
from edge.types import ModelInfo


class Backend(abc.ABC):
    name = "base"
    threads = None  # type: Optional[ThreadChoice]   # CPU backends: intra-op threads and why
    provides_mask = False       # the classifier's session is the joined graph (edge.inference.one_graph)

    def __init__(self, manifest: ModelManifest):
        self.manifest = manifest

    @property
    @abc.abstractmethod
    def precision(self) -> str:
        """"fp32", "fp16", "int8", ... as actually run."""

    @property
    def model_sha256(self) -> str:
        """Hash of the file actually loaded (may be an INT8 variant)."""
        return self.manifest.sha256

    @abc.abstractmethod
    def run(self, tensor: np.ndarray) -> np.ndarray:
        """One forward pass; returns the first output as float32."""

    def run_with_mask(self, tensor: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
        """(first output, h-flip-averaged mask probability): the joined graph only."""
        raise NotImplementedError("%s runs one model per session" % self.name)

    def warmup(self, iterations: int = 2) -> Dict[str, float]:
        """Run zeros through the model so the first real image is not slow."""
        shape = [1, self.manifest.preprocessing.channels] + list(self.manifest.preprocessing.size)
        dummy = np.zeros(shape, np.float32)
        times = []
        for _ in range(max(1, iterations)):
            t0 = time.perf_counter()
            self.run(dummy)
            times.append((time.perf_counter() - t0) * 1000.0)
        return {"first_ms": times[0], "last_ms": times[-1]}

    def info(self) -> ModelInfo:
        m = self.manifest
        return ModelInfo(name=m.name, version=m.version, sha256=self.model_sha256, task=m.task,
                         precision=self.precision, backend=self.name, intended_use=m.intended_use)

    def close(self) -> None:
        """Release sessions, buffers, contexts."""


class JoinedHead(Backend):
    """A model whose outputs another session's joined graph computes (the
    segmenter under edge.inference.one_graph): its manifest, file check and
    identity, but no session of its own: it is never run, so no memory and
    no thread calibration go to it."""

    def __init__(self, manifest: ModelManifest, host: Backend):
        super().__init__(manifest)
        verify_model_file(manifest)         # its graph is inside the host's: the same check as loading it
        self.name, self.threads = host.name, host.threads

    @property
    def precision(self) -> str:
        return self.manifest.precision

    def run(self, tensor: np.ndarray) -> np.ndarray:
        raise ModelError("%s runs inside the joined graph; it has no session of its own" % self.manifest.name)

    def warmup(self, iterations: int = 2) -> Dict[str, float]:
        return {"first_ms": 0.0, "last_ms": 0.0}       # warmed by its host's runs
