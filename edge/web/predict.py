"""Upload and predict: one uploaded file -> the same alert document the appliance sends.

The same edge.decode and edge.pipeline as the appliance, so a film gives the
same alert (contours included) here as from the capture folder; refusals
carry the same reason codes as the capture folder's rejected/ reason files.
Nothing is stored: the file lives in memory for the request only.
"""
import base64
import email.parser
import email.policy
import hashlib
import logging
import threading
import time
from dataclasses import replace
from typing import Any, Dict, Optional, Tuple

from edge.alerts.overlay import render_overlay
from edge.alerts.schema import build_alert, combined_intended_use, use_warning
from edge.decode import decode_bytes
from edge.decode.checks import check_file_size
from edge.errors import DecodeError, PneumoEdgeError
from edge.settings import Settings

log = logging.getLogger(__name__)

MULTIPART_SLACK = 64 * 1024     # headers and boundaries around the file in a form upload


class BadUpload(PneumoEdgeError):
    """The request is not a usable upload (HTTP 400); `code` as in reason files."""
    code = "bad_request"


def upload_limit(settings: Settings) -> int:
    """Largest request body accepted, in bytes (decode.max_file_mb plus form overhead)."""
    return int(settings.decode.max_file_mb * 1024 * 1024) + MULTIPART_SLACK


def check_length(content_length: Optional[str], settings: Settings) -> int:
    """From the Content-Length header, before any of the body is read."""
    if content_length is None:
        raise BadUpload("Content-Length is required (chunked uploads are not accepted)")
    try:
        n = int(content_length)
    except ValueError:
        raise BadUpload("Content-Length %r is not a number" % content_length)
    if n <= 0:
        raise BadUpload("the upload is empty")
    if n > upload_limit(settings):
        check_file_size(n, settings.decode)          # raises ImageTooLarge (code too_large)
    return n


def file_from_body(content_type: str, body: bytes) -> Tuple[str, bytes]:
    """(file name, bytes) from a multipart/form-data body (the part named
    "file", else the first part with a filename) or a raw body."""
    if not content_type.lower().startswith("multipart/"):
        return "upload", body
    head = ("Content-Type: %s\r\nMIME-Version: 1.0\r\n\r\n" % content_type).encode("latin-1")
    msg = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(head + body)
    if not msg.is_multipart():
        raise BadUpload("multipart body without parts (boundary missing or wrong)")
    chosen = None
    for part in msg.iter_parts():
        name = part.get_param("name", header="content-disposition")
        if name == "file" or (chosen is None and part.get_filename()):
            chosen = part
            if name == "file":
                break
    if chosen is None:
        raise BadUpload("no file in the form (send it as the field \"file\")")
    data = chosen.get_payload(decode=True) or b""
    if not data:
        raise BadUpload("the uploaded file is empty")
    return (chosen.get_filename() or "upload").replace("\\", "/").rsplit("/", 1)[-1], data


class Predictor:
    """Loads the models on first use and runs one image at a time."""

    def __init__(self, settings: Settings, device: str, pipeline: Any = None):
        self.settings = settings
        self.device = device
        self._pipeline = pipeline
        self._lock = threading.Lock()

    def _get_pipeline(self):
        if self._pipeline is None:
            from edge.app import build_pipeline     # models load only if someone uploads
            self._pipeline = build_pipeline(self.settings)
        return self._pipeline

    def predict(self, name: str, data: bytes) -> Tuple[int, Dict[str, Any]]:
        """(HTTP status, JSON body)."""
        sha = hashlib.sha256(data).hexdigest()
        t0 = time.perf_counter()
        try:
            image = decode_bytes(data, self.settings.decode, name=name)
        except DecodeError as exc:
            return 422, {"rejected": exc.code, "reason": str(exc), "file_name": name}
        decode_ms = (time.perf_counter() - t0) * 1000.0
        with self._lock:
            pipeline = self._get_pipeline()
            try:
                result = pipeline.run(image)
            except DecodeError as exc:      # the not-a-chest gate: a refusal of the file, as above
                return 422, {"rejected": exc.code, "reason": str(exc), "file_name": name}
        timings = dict(result.timings_ms, decode_ms=decode_ms)
        result = replace(result, timings_ms=timings)
        label = use_warning(combined_intended_use(result.models))
        overlay = render_overlay(image, result.finding, label, self.settings.alerts.overlay_max_side,
                                 self.settings.alerts.overlay_quality, draw_region=False)
        alert = build_alert(result, image, file_name=name, file_sha256=sha, site=self.settings.site,
                            device=self.device, identify_by=self.settings.alerts.identify_by)
        log.info("upload %s -> %s p=%s", name, "POSITIVE" if alert.finding.pneumothorax
                 else "negative", alert.finding.probability)
        return 200, {"alert": alert.to_json(), "overlay_jpeg_base64": base64.b64encode(overlay).decode("ascii"),
                     "warning": label or None}

    def close(self) -> None:
        if self._pipeline is not None:
            self._pipeline.close()
