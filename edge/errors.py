"""Every error the runtime raises on purpose derives from PneumoEdgeError.

Narrow classes let callers decide what to do: a DecodeError quarantines one
file and the runtime carries on; a ConfigError or ModelError stops start-up
with a message an operator can act on.
"""
from typing import Optional


class PneumoEdgeError(Exception):
    """Base of all deliberate pneumo-edge errors."""


class ConfigError(PneumoEdgeError):
    """A configuration file or flag is invalid. Names file, line and key."""

    def __init__(self, message: str, file: Optional[str] = None,
                 line: Optional[int] = None, key: Optional[str] = None):
        self.file, self.line, self.key = file, line, key
        where = ""
        if file:
            where = file + (":%d" % line if line else "")
        if key:
            where = (where + " " if where else "") + "[%s]" % key
        super().__init__((where + ": " if where else "") + message)


class DecodeError(PneumoEdgeError):
    """A file cannot be used as a chest radiograph. `code` is a stable slug
    for reason files and events; the message says what is wrong and, where
    possible, how to fix it."""

    code = "undecodable"

    def __init__(self, message: str):
        super().__init__(message)
        self.reason = message


class NotAnImage(DecodeError):
    code = "not_an_image"


class CorruptImage(DecodeError):
    code = "corrupt"


class Truncated(CorruptImage):
    """Damage a file cut off mid-write shows too (it ends early, a chunk or
    the pixel data runs past its end): the intake gives its writer
    capture.write_grace_s before rejecting it. Reason code `corrupt`."""


class UnsupportedModality(DecodeError):
    code = "wrong_modality"


class UnsupportedImage(DecodeError):
    """Readable but not something the models may see: multi-frame, colour
    DICOM, lateral view, odd photometric interpretation."""
    code = "unsupported"


class NotAChestRadiograph(DecodeError):
    """Decodable, but not a chest radiograph: a DICOM whose BodyPartExamined
    names another body part, or an image the classifier's out-of-distribution
    score places far from every chest film it was trained on."""
    code = "not_a_chest_radiograph"


class InvertedGreyscale(UnsupportedImage):
    """A chest film whose grey scale is the wrong way round (lungs bright,
    spine dark): mislabelled MONOCHROME1/2, a negative slope, an inverted
    export. The models would read it as another film (edge/polarity.py)."""
    code = "inverted_greyscale"


class ImageTooLarge(DecodeError):
    code = "too_large"


class MissingDecoder(DecodeError):
    """The transfer syntax needs a plugin that is not installed."""
    code = "missing_decoder"


class ModelError(PneumoEdgeError):
    """A model, its manifest or its backend cannot be used."""


class ManifestError(ModelError):
    pass


class BackendUnavailable(ModelError):
    """The requested inference backend cannot run on this machine."""


class EngineMismatch(ModelError):
    """A TensorRT engine was built for another device, TensorRT or model."""


class CaptureError(PneumoEdgeError):
    pass


class StoreError(PneumoEdgeError):
    """The SQLite state (ledger, outbox) cannot be opened or written."""


class AlertError(PneumoEdgeError):
    pass


class IntakeError(PneumoEdgeError):
    """The DICOM receiver cannot start or cannot store a received instance."""


class PacsError(PneumoEdgeError):
    """A result cannot be built or sent to PACS."""
