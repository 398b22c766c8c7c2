"""Narrow errors of the build tool (all ModelError: a model cannot be built/used as asked)."""
from typing import List

from edge.errors import ModelError


class ParityFailure(ModelError):
    """The built variant drifts from the FP32 reference past the profile's tolerance."""


class PrecisionUnsupported(ModelError):
    """The platform lacks the precision asked for; never a silent FP32 build."""


class OnnxParseError(ModelError):
    """TensorRT's ONNX parser refused the model; every parser error is in the message."""


class NeedsDevice(ModelError):
    """TensorRT is not here: what could be produced was, the rest must run on the device."""

    def __init__(self, message: str, produced: List[str], command: str):
        super().__init__(message)
        self.produced = produced
        self.command = command
