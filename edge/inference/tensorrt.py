"""TensorRT backend: the device path (Jetson, JetPack 5.1: TensorRT 8.5, pycuda).

Thin on purpose: every decision that is not a TensorRT/pycuda call lives in
engine_sidecar.py (is this engine for this device and model?) and buffers.py
(what to allocate). Uses the name-based tensor API of TensorRT >= 8.5
(num_io_tensors, get_tensor_name, set_tensor_address, execute_async_v3),
which TensorRT 10 keeps.
"""
import logging
import os
from typing import Dict, List, Optional, Tuple

import numpy as np

from edge.errors import BackendUnavailable, ModelError
from edge.inference.backend import Backend
from edge.inference.buffers import BufferPlan, TensorDesc, check_input, plan_buffers
from edge.inference.device_profile import profile_precision
from edge.inference.engine_sidecar import (DeviceFacts, EngineSidecar, check_sidecar, find_engine,
                                           model_stem, read_l4t_release, read_sidecar, rebuild_command,
                                           sidecar_path)
from edge.inference.manifest import ROLE_OF_TASK, ModelManifest
from edge.settings import ModelSettings

log = logging.getLogger(__name__)

L4T_RELEASE_FILE = "/etc/nv_tegra_release"


def tensorrt_available() -> Tuple[bool, str]:
    """(usable, why). Never raises: `auto` backend selection and doctor call this."""
    try:
        import tensorrt as trt
    except Exception as exc:  # ImportError, or a broken CUDA install raising OSError
        return False, "tensorrt not importable: %s" % exc
    try:
        import pycuda.driver as cuda
        cuda.init()
        if cuda.Device.count() < 1:
            return False, "tensorrt %s importable but no CUDA device is visible" % trt.__version__
    except Exception as exc:
        return False, "tensorrt %s importable but pycuda/CUDA is not usable: %s" % (trt.__version__, exc)
    return True, "tensorrt %s on %s" % (trt.__version__, cuda.Device(0).name())


def l4t_version() -> Optional[str]:
    try:
        with open(L4T_RELEASE_FILE, "r", encoding="utf-8") as fh:
            return read_l4t_release(fh.read())
    except OSError:
        return None


def device_facts() -> DeviceFacts:
    """What this machine is; fields stay None where TensorRT/CUDA are absent."""
    trt_version = cuda_version = cc = name = None
    dla = 0
    try:
        import tensorrt as trt
        trt_version = trt.__version__
        builder = trt.Builder(trt.Logger(trt.Logger.ERROR))
        dla = int(builder.num_DLA_cores)
    except Exception:
        pass
    try:
        import pycuda.driver as cuda
        cuda.init()
        dev = cuda.Device(0)
        major, minor = dev.compute_capability()
        cc, name = "%d.%d" % (major, minor), dev.name()
        v = cuda.get_driver_version()
        cuda_version = "%d.%d" % (v // 1000, (v % 1000) // 10)
    except Exception:
        pass
    return DeviceFacts(trt_version, cuda_version, l4t_version(), cc, name, dla)


class TrtRunner(object):
    """A deserialised engine with its context, stream and buffers: run(tensor) -> first output."""

    def __init__(self, engine_bytes: bytes, dla_core: Optional[int] = None, label: str = "engine"):
        try:
            import tensorrt as trt
            import pycuda.driver as cuda
            cuda.init()
        except Exception as exc:
            raise BackendUnavailable("TensorRT/pycuda unavailable: %s" % exc)
        self._cuda = cuda
        # The primary context, pushed around every call: the app creates backends on
        # one thread and runs them on another, and pycuda contexts are per thread.
        self._ctx = cuda.Device(0).retain_primary_context()
        self._ctx.push()
        try:
            self._setup(trt, engine_bytes, dla_core, label)
        finally:
            self._ctx.pop()

    def _setup(self, trt, engine_bytes: bytes, dla_core: Optional[int], label: str) -> None:
        cuda = self._cuda
        self._logger = trt.Logger(trt.Logger.WARNING)
        self._runtime = trt.Runtime(self._logger)
        if dla_core is not None:
            self._runtime.DLA_core = int(dla_core)   # must precede deserialisation
        self.engine = self._runtime.deserialize_cuda_engine(engine_bytes)
        if self.engine is None:
            raise ModelError("%s: TensorRT could not deserialise the engine (see the TensorRT log)" % label)
        self.context = self.engine.create_execution_context()
        descs = []
        for i in range(self.engine.num_io_tensors):
            name = self.engine.get_tensor_name(i)
            descs.append(TensorDesc(name, self.engine.get_tensor_mode(name) == trt.TensorIOMode.INPUT,
                                    tuple(self.engine.get_tensor_shape(name)),
                                    str(self.engine.get_tensor_dtype(name))))
        first = self._allocate(plan_buffers(descs))
        self.input_names = [p.name for p in first if p.is_input]
        self.output_names = [p.name for p in first if not p.is_input]
        self.stream = cuda.Stream()

    def _allocate(self, plans: List[BufferPlan]) -> List[BufferPlan]:
        cuda = self._cuda
        self.plans = {p.name: p for p in plans}
        self.host = {}   # type: Dict[str, np.ndarray]
        self.device = {}
        for p in plans:
            self.host[p.name] = cuda.pagelocked_empty(p.shape, p.dtype)
            self.device[p.name] = cuda.mem_alloc(max(1, p.nbytes))
            self.context.set_tensor_address(p.name, int(self.device[p.name]))
            if p.is_input:
                self.context.set_input_shape(p.name, p.shape)
        return plans

    def run_all(self, inputs: Dict[str, np.ndarray]) -> Dict[str, np.ndarray]:
        self._ctx.push()
        try:
            return self._run_all(inputs)
        finally:
            self._ctx.pop()

    def _run_all(self, inputs: Dict[str, np.ndarray]) -> Dict[str, np.ndarray]:
        cuda = self._cuda
        for name in self.input_names:
            np.copyto(self.host[name], check_input(self.plans[name], inputs[name]))
            cuda.memcpy_htod_async(self.device[name], self.host[name], self.stream)
        if not self.context.execute_async_v3(self.stream.handle):
            raise ModelError("TensorRT execute_async_v3 failed (see the TensorRT log)")
        for name in self.output_names:
            cuda.memcpy_dtoh_async(self.host[name], self.device[name], self.stream)
        self.stream.synchronize()
        return {n: np.array(self.host[n], dtype=np.float32) for n in self.output_names}

    def run(self, tensor: np.ndarray) -> np.ndarray:
        return self.run_all({self.input_names[0]: tensor})[self.output_names[0]]

    def close(self) -> None:
        if getattr(self, "_ctx", None) is None:
            return
        self._ctx.push()
        try:
            for buf in getattr(self, "device", {}).values():
                buf.free()
            self.device = {}
            self.context = None
            self.engine = None
        finally:
            self._ctx.pop()
        self._ctx.detach()
        self._ctx = None


class TensorRTBackend(Backend):
    name = "tensorrt"

    def __init__(self, manifest: ModelManifest, engine_path: str, sidecar: EngineSidecar):
        super().__init__(manifest)
        self.engine_path = engine_path
        self.sidecar = sidecar
        with open(engine_path, "rb") as fh:
            blob = fh.read()
        self._runner = TrtRunner(blob, sidecar.dla_core, engine_path)
        self._output = (manifest.output.name if manifest.output.name in self._runner.output_names
                        else self._runner.output_names[0])
        if manifest.input.name not in self._runner.input_names:
            raise ModelError("%s: manifest input '%s' is not an engine input %s"
                             % (engine_path, manifest.input.name, self._runner.input_names))

    @classmethod
    def from_settings(cls, manifest: ModelManifest, settings: ModelSettings) -> "TensorRTBackend":
        ok, why = tensorrt_available()
        stem = model_stem(manifest.model_path)
        role = ROLE_OF_TASK.get(manifest.task, stem)
        wanted = profile_precision(settings.device_profile, role)
        engine, found = find_engine(settings.engine_dir, stem, settings.device_profile, wanted)
        command = rebuild_command(manifest.model_path, settings.device_profile, wanted or "fp16", settings.engine_dir)
        if not ok:
            raise BackendUnavailable("%s. TensorRT engines run only on the device (JetPack 5.1); use backend "
                                     "onnxruntime here." % why)
        if engine is None:
            raise BackendUnavailable("no %s engine for %s on %s in %s (found: %s). Build it with:\n  %s" % (
                wanted or "any", stem, settings.device_profile, settings.engine_dir,
                ", ".join(os.path.basename(f) for f in found) or "none", command))
        sidecar = read_sidecar(sidecar_path(engine))
        command = rebuild_command(manifest.model_path, settings.device_profile, sidecar.precision, settings.engine_dir)
        check_sidecar(sidecar, device_facts(), manifest.sha256, manifest.preprocessing.digest(), command, engine)
        log.info("%s: TensorRT %s engine %s (%s)", manifest.name, sidecar.precision, engine,
                 "DLA core %d" % sidecar.dla_core if sidecar.dla_core is not None else "GPU")
        return cls(manifest, engine, sidecar)

    @property
    def precision(self) -> str:
        return self.sidecar.precision

    def run(self, tensor: np.ndarray) -> np.ndarray:
        return self._runner.run_all({self.manifest.input.name: tensor})[self._output]

    def close(self) -> None:
        self._runner.close()
