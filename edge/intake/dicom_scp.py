"""The C-STORE receiver (a DICOM Storage SCP) in front of the capture folder.

A cart (or PACS, or a router) sends each film by C-STORE to our AE title
(another called AE title is refused). Only the configured calling AE titles
may associate (others are refused at association: "calling AE title not
recognised"); only the configured image
SOP classes and transfer syntaxes are accepted at negotiation. Each data set
is checked (received.check_dataset), written durably into incoming/
(spool.Spool) and only then answered with success. C-ECHO is answered.

pynetdicom runs one thread per association (at most max_associations);
this module is the thin adapter between it and the spool. pynetdicom keeps
a data set in memory until it is whole, so the bytes received since the
last C-STORE are counted per association: past max_dataset_mb the
association is aborted, and the next sender is served as before. The count
sees whole PDUs (pynetdicom reads each one in full, whatever its length
field says, before it reports it), so the bound holds for a sender that
keeps to our max_pdu, one PDU past the limit at most; with max_pdu 0, or a
sender that ignores it, a data set may arrive whole before it is refused.
"""
import logging
import threading
from typing import Any, Dict, Optional

from edge.capture.folders import CaptureFolders
from edge.errors import IntakeError
from edge.intake.names import SOP_CLASSES, TRANSFER_SYNTAXES, expand
from edge.intake.received import CANNOT_UNDERSTAND, OUT_OF_RESOURCES, SUCCESS, check_dataset
from edge.intake.spool import Spool
from edge.settings import DicomIntakeSettings

log = logging.getLogger(__name__)

VERIFICATION = "1.2.840.10008.1.1"


class DicomReceiver:
    def __init__(self, settings: DicomIntakeSettings, folders: CaptureFolders):
        self.settings = settings
        self.spool = Spool(folders)
        self._server = None  # type: Any
        self._lock = threading.Lock()
        self._counts = {"stored": 0, "refused": 0}
        self._pending = {}  # type: Dict[int, int]   # id(association) -> bytes since its last C-STORE
        self._limit = int(settings.max_dataset_mb) << 20

    @property
    def port(self) -> int:
        """The port listened on (the configured one, or the one picked for port 0)."""
        if self._server is None:
            return self.settings.port
        return int(self._server.server_address[1])

    def counts(self) -> Dict[str, int]:
        with self._lock:
            return dict(self._counts)

    def start(self) -> None:
        from pynetdicom import AE, evt   # imported only when the receiver is on
        s = self.settings
        # pynetdicom logs every association at INFO; ours says what matters.
        logging.getLogger("pynetdicom").setLevel(logging.WARNING)
        ae = AE(ae_title=s.ae_title)
        syntaxes = expand(s.transfer_syntaxes, TRANSFER_SYNTAXES)
        for uid in expand(s.sop_classes, SOP_CLASSES):
            ae.add_supported_context(uid, syntaxes)
        ae.add_supported_context(VERIFICATION, expand(["explicit_le", "implicit_le"], TRANSFER_SYNTAXES))
        ae.require_calling_aet = list(s.allowed_calling_aes)
        ae.require_called_aet = True     # a sender configured for another AE is told so, not served
        ae.maximum_associations = s.max_associations
        ae.maximum_pdu_size = s.max_pdu
        ae.acse_timeout = s.acse_timeout_s
        ae.dimse_timeout = s.dimse_timeout_s
        ae.network_timeout = s.network_timeout_s
        handlers = [(evt.EVT_C_STORE, self._on_store), (evt.EVT_REJECTED, self._on_rejected),
                    # forgotten at close, not at abort: data already in flight still arrives
                    (evt.EVT_DATA_RECV, self._on_data), (evt.EVT_CONN_CLOSE, self._forget)]
        try:
            self._server = ae.start_server((s.bind_address, s.port), block=False, evt_handlers=handlers)
        except OSError as exc:
            raise IntakeError("cannot listen for DICOM on %s:%d: %s" % (s.bind_address, s.port, exc))
        if not s.max_pdu:
            log.warning("DICOM receiver has no PDU size limit (intake.dicom.max_pdu 0): a data set past "
                        "intake.dicom.max_dataset_mb is refused only once it has arrived whole")
        if not s.allowed_calling_aes:
            log.warning("DICOM receiver accepts any calling AE title (intake.dicom.allowed_calling_aes "
                        "is empty)")
        log.info("DICOM receiver %s listening on %s:%d (calling AEs: %s)", s.ae_title, s.bind_address,
                 self.port, ", ".join(s.allowed_calling_aes) or "any")

    def stop(self) -> None:
        """Stop accepting; associations in progress are closed."""
        server, self._server = self._server, None
        if server is not None:
            server.shutdown()

    # -- pynetdicom event handlers (one thread per association) ---------------
    def _on_data(self, event) -> None:
        """Bytes off the socket (the DUL thread, one whole PDU at a time): abort
        an association whose next data set has grown past the limit."""
        key = id(event.assoc)
        with self._lock:
            seen = self._pending.get(key, 0)
            if seen < 0:                     # already aborting
                return
            seen += len(event.data)
            self._pending[key] = seen if seen <= self._limit else -1
        if seen > self._limit:
            self._count("refused")
            log.warning("C-STORE from %s aborted: more than %d MB received for one data set "
                        "(intake.dicom.max_dataset_mb)", _calling_ae(event), self._limit >> 20)
            # abort() waits on the DUL thread this handler runs in: from a thread of its own.
            threading.Thread(target=event.assoc.abort, name="dicom-abort", daemon=True).start()

    def _forget(self, event) -> None:
        with self._lock:
            self._pending.pop(id(event.assoc), None)

    def _on_store(self, event) -> int:
        key = id(event.assoc)
        with self._lock:
            seen = self._pending.get(key)
            if seen is not None and seen > 0:
                self._pending[key] = 0          # this data set is whole: count the next one
        calling = _calling_ae(event)
        if seen is not None and seen < 0:
            # Its last PDU crossed the limit and the abort is on its way: the sender will get
            # no status and may send again, so this copy must not be stored.
            return OUT_OF_RESOURCES
        req = event.request
        sop_class = str(req.AffectedSOPClassUID)
        sop_instance = str(req.AffectedSOPInstanceUID)
        ts = str(event.context.transfer_syntax)
        dataset = req.DataSet.getvalue()
        if len(dataset) > self._limit:
            self._count("refused")
            log.warning("C-STORE from %s refused (0x%04X): %d bytes, over intake.dicom.max_dataset_mb",
                        calling, OUT_OF_RESOURCES, len(dataset))
            return OUT_OF_RESOURCES
        verdict = check_dataset(dataset, ts, sop_class, sop_instance)
        if not verdict.ok:
            self._count("refused")
            log.warning("C-STORE from %s refused (0x%04X): %s", calling, verdict.status, verdict.reason)
            return verdict.status
        try:
            path = self.spool.store(sop_instance, _file_chunks(event.file_meta, dataset))
        except IntakeError as exc:
            self._count("refused")
            log.error("C-STORE from %s not stored (0x%04X): %s", calling, OUT_OF_RESOURCES, exc)
            return OUT_OF_RESOURCES
        except Exception as exc:  # noqa: BLE001 - never let pynetdicom log it: its traceback quotes values
            self._count("refused")
            log.error("C-STORE from %s not stored (0x%04X): its file meta cannot be written (%s)",
                      calling, CANNOT_UNDERSTAND, type(exc).__name__)
            return CANNOT_UNDERSTAND
        self._count("stored")
        log.info("C-STORE from %s: %d bytes -> %s", calling, len(dataset), path)
        return SUCCESS

    def _on_rejected(self, event) -> None:
        self._count("refused")
        log.warning("DICOM association from %s refused (calling AE not allowed or called AE wrong)",
                    _calling_ae(event))

    def _count(self, key: str) -> None:
        with self._lock:
            self._counts[key] += 1


def _file_chunks(file_meta, dataset: bytes):
    """The DICOM file: preamble, 'DICM', file meta, then the data set as received."""
    import io
    from pydicom.filewriter import write_file_meta_info
    head = io.BytesIO()
    head.write(b"\x00" * 128 + b"DICM")
    write_file_meta_info(head, file_meta, enforce_standard=True)
    return (head.getvalue(), dataset)


def _calling_ae(event) -> str:
    try:
        return str(event.assoc.requestor.ae_title).strip() or "?"
    except Exception:   # the peer's details are for logs only
        return "?"


def start_receiver(settings: DicomIntakeSettings, folders: CaptureFolders) -> Optional[DicomReceiver]:
    """The started receiver when intake.dicom.listen is on, else None."""
    if not settings.listen:
        return None
    receiver = DicomReceiver(settings, folders)
    receiver.start()
    return receiver
