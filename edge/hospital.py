"""The appliance's links to the hospital: films in by DICOM C-STORE
(edge.intake) and results out to PACS (edge.pacs).

One object with a small surface, so edge/app.py needs only a few hook
lines: start/stop, prepare + enqueue in the overlay's transaction (after the
alert's, edge.stages.overlay_recovery), status.
Results go to PACS only for DICOM sources: a PNG/JPEG film has no study
to attach them to.
"""
import logging
from typing import Any, Dict, Optional

from edge.capture.folders import CaptureFolders, Claimed
from edge.errors import PacsError
from edge.settings import Settings
from edge.store import Store
from edge.types import Image

log = logging.getLogger(__name__)


class PendingResults:
    """What one image will queue for PACS, prepared outside the transaction."""

    def __init__(self, kinds, source, alert, overlay):
        self.kinds, self.source, self.alert, self.overlay = kinds, source, alert, overlay


class HospitalLinks:
    def __init__(self, settings: Settings, store: Store, folders: CaptureFolders):
        self.settings = settings
        self.folders = folders
        self.receiver = None   # type: Any
        self.queue = None      # type: Any
        self.sender = None     # type: Any
        if settings.pacs.enabled:
            from edge.pacs.queue import PacsQueue
            from edge.pacs.sender import PacsSender
            self.queue = PacsQueue(store)
            self.sender = PacsSender(settings.pacs, self.queue)

    def start(self) -> None:
        if self.sender is not None:
            self.sender.start()
        if self.settings.intake.dicom.listen:
            from edge.intake.dicom_scp import DicomReceiver
            self.receiver = DicomReceiver(self.settings.intake.dicom, self.folders)
            self.receiver.start()

    def stop(self) -> None:
        """Stop taking films first; queued results stay on disk for the next start."""
        if self.receiver is not None:
            self.receiver.stop()
        if self.sender is not None:
            self.sender.stop()

    def prepare(self, claimed: Claimed, image: Image, alert: Dict[str, Any],
                overlay: Optional[bytes]) -> Optional[PendingResults]:
        """The results to queue for this image, or None (PACS off, or not a DICOM source)."""
        if self.queue is None or image.source_format != "dicom" or not image.study_instance_uid:
            return None
        from edge.pacs.results import kinds_for, source_header
        p = self.settings.pacs
        kinds = kinds_for(p.send_overlay, p.send_report, overlay is not None)
        if not kinds:
            return None
        try:
            source = source_header(claimed.path)
        except PacsError as exc:
            log.error("%s: no result for PACS: %s", claimed.name, exc)
            return None
        return PendingResults(kinds, source, alert, overlay)

    def enqueue(self, conn, pending: Optional[PendingResults]) -> None:
        """Inside the overlay's transaction (with the MQTT overlay, after the alert's)."""
        if pending is not None:
            self.queue.enqueue(conn, pending.kinds, pending.source, pending.alert, pending.overlay)

    def status(self) -> Dict[str, Any]:
        out = {}  # type: Dict[str, Any]
        if self.receiver is not None:
            out["dicom_intake"] = {"ae_title": self.settings.intake.dicom.ae_title,
                                   "port": self.receiver.port, **self.receiver.counts()}
        if self.queue is not None:
            out["pacs_queue_depth"] = self.queue.depth()
            out["pacs_last_error"] = self.queue.last_error()
        return out
