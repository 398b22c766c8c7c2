"""Backend selection by config key: onnxruntime | tensorrt | auto.

No silent fallback: `tensorrt` fails loudly when TensorRT or a matching
engine is missing; `auto` picks TensorRT only when it is importable and logs
(and reports in status) what it chose and why.
"""
import logging
from typing import Optional, Tuple

from edge.errors import BackendUnavailable
from edge.inference.backend import Backend
from edge.inference.manifest import ModelManifest
from edge.settings import ModelSettings

log = logging.getLogger(__name__)


def resolve_backend_name(settings: ModelSettings) -> Tuple[str, str]:
    """(backend actually used, why); load_config has checked settings.backend against BACKENDS."""
    if settings.backend != "auto":
        return settings.backend, "configured"
    from edge.inference.tensorrt import tensorrt_available
    ok, why = tensorrt_available()
    if ok:
        return "tensorrt", "auto: %s" % why
    return "onnxruntime", "auto: TensorRT unavailable (%s)" % why


def create_backend(manifest: ModelManifest, settings: ModelSettings, name: str = None,
                   joined: Optional[bytes] = None) -> Backend:
    """joined (ONNX Runtime only): the classifier and segmenter graphs as one, loaded for this manifest."""
    name = name or resolve_backend_name(settings)[0]
    if name == "onnxruntime":
        from edge.inference.onnxruntime import OnnxRuntimeBackend
        return OnnxRuntimeBackend(manifest, threads=settings.threads, joined=joined)
    if name == "tensorrt":
        from edge.inference.tensorrt import TensorRTBackend
        return TensorRTBackend.from_settings(manifest, settings)
    raise BackendUnavailable("unknown backend %r" % name)
