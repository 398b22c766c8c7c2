"""Build the DICOM objects sent back to PACS (pure: inputs -> pydicom Datasets).

Both live in the source's study (its Study Instance UID and the patient and
study attributes PACS sent are copied, nothing else about the patient is
added), each in a series of its own, and reference the source instance.
UIDs are derived from the alert id, so a rebuild after a restart or a retry
makes the very same instances and PACS files them once.

highdicom would build a richer SR, but needs Python 3.10+; the cart has 3.8,
so this is plain pydicom (2.4 and 3.x).
"""
import datetime
import uuid
from typing import Any, Dict, List, Optional, Sequence

import cv2
import numpy as np
import pydicom
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence as DicomSequence
from pydicom.uid import ExplicitVRLittleEndian

from edge import __version__
from edge.errors import PacsError

SECONDARY_CAPTURE = "1.2.840.10008.5.1.4.1.1.7"
ENHANCED_SR = "1.2.840.10008.5.1.4.1.1.88.22"

# Copied from the source as they are: what PACS needs to file our objects
# with the source's patient and study. Nothing else about the patient.
PATIENT_STUDY_KEYWORDS = (
    "SpecificCharacterSet", "PatientName", "PatientID", "IssuerOfPatientID", "PatientBirthDate",
    "PatientSex", "StudyInstanceUID", "StudyDate", "StudyTime", "ReferringPhysicianName",
    "StudyID", "AccessionNumber", "StudyDescription",
)
SOURCE_KEYWORDS = PATIENT_STUDY_KEYWORDS + ("SeriesInstanceUID", "SOPClassUID", "SOPInstanceUID")

_SCHEME = "99PNEUMOEDGE"
_UID_NAMESPACE = uuid.UUID("6f1c8f2e-5d0b-4f8e-9a53-2b1f0e6c7d41")   # pneumo-edge's, fixed for ever   # private coding scheme for what DCM/SCT have no code for


def source_header(path: str) -> Dataset:
    """The source's attributes we copy (read from the file, pixels skipped)."""
    try:
        ds = pydicom.dcmread(path, stop_before_pixels=True, specific_tags=list(SOURCE_KEYWORDS))
    except Exception as exc:   # the film decoded a moment ago; a failure here is unexpected
        raise PacsError("cannot re-read the source header of %s: %s" % (path, type(exc).__name__))
    out = Dataset()
    for kw in SOURCE_KEYWORDS:
        if kw in ds:
            setattr(out, kw, ds.data_element(kw).value)
    if not out.get("StudyInstanceUID") or not out.get("SOPInstanceUID"):
        raise PacsError("the source has no Study/SOP Instance UID; nothing to attach a result to")
    return out


def uid_for(alert_id: str, what: str) -> str:
    """A 2.25 UID from a name-based (SHA-1, version 5) UUID of alert id + what:
    the same inputs always give the same UID."""
    return "2.25.%d" % uuid.uuid5(_UID_NAMESPACE, alert_id + "/" + what).int


def overlay_sc(source: Dataset, alert: Dict[str, Any], overlay_jpeg: bytes) -> Dataset:
    """The overlay as an RGB Secondary Capture in a series of its own."""
    bgr = cv2.imdecode(np.frombuffer(overlay_jpeg, np.uint8), cv2.IMREAD_COLOR)
    if bgr is None:
        raise PacsError("the overlay JPEG of alert %s cannot be decoded" % alert["alert_id"])
    rgb = np.ascontiguousarray(bgr[:, :, ::-1])
    ds = _common(source, alert, SECONDARY_CAPTURE, "sc", modality="OT", series_number=9901,
                 description="Pneumothorax AI overlay")
    ds.ConversionType = "WSD"
    ds.ImageType = ["DERIVED", "SECONDARY"]
    ds.DerivationDescription = "pneumo-edge overlay of the finding on the source image"
    ds.BurnedInAnnotation = "YES"
    ds.LossyImageCompression = "01"                 # the overlay was a JPEG
    ds.LossyImageCompressionMethod = "ISO_10918_1"
    ds.SourceImageSequence = DicomSequence([_ref(source.SOPClassUID, source.SOPInstanceUID)])
    ds.SamplesPerPixel = 3
    ds.PhotometricInterpretation = "RGB"
    ds.PlanarConfiguration = 0
    ds.Rows, ds.Columns = int(rgb.shape[0]), int(rgb.shape[1])
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 8, 8, 7, 0
    ds.PixelData = rgb.tobytes()
    return ds


def report_sr(source: Dataset, alert: Dict[str, Any], overlay_uid: Optional[str] = None) -> Dataset:
    """The finding as an Enhanced SR document referencing the source image
    (and the overlay SC, when one is sent)."""
    ds = _common(source, alert, ENHANCED_SR, "sr", modality="SR", series_number=9902,
                 description="Pneumothorax AI result")
    f = alert["finding"]
    ds.CompletionFlag = "COMPLETE"
    ds.VerificationFlag = "UNVERIFIED"          # a machine result, not a signed report
    ds.ValueType = "CONTAINER"
    ds.ContinuityOfContent = "SEPARATE"
    ds.ConceptNameCodeSequence = _code("18748-4", "LN", "Diagnostic imaging report")
    evidence = Dataset()
    evidence.StudyInstanceUID = source.StudyInstanceUID
    series = Dataset()
    series.SeriesInstanceUID = source.get("SeriesInstanceUID") or uid_for(alert["alert_id"], "unknown-series")
    series.ReferencedSOPSequence = DicomSequence([_ref(source.SOPClassUID, source.SOPInstanceUID)])
    evidence.ReferencedSeriesSequence = DicomSequence([series])
    ds.CurrentRequestedProcedureEvidenceSequence = DicomSequence([evidence])
    ds.ReferencedPerformedProcedureStepSequence = DicomSequence([])   # type 2: present, empty
    ds.PerformedProcedureCodeSequence = DicomSequence([])

    if f["pneumothorax"]:
        text = "Pneumothorax suspected" + (" (%s)" % f["side"] if f.get("side") else "")
    else:
        text = "No pneumothorax detected"
    items = [_text("121071", "DCM", "Finding", text)]
    if f["pneumothorax"]:
        items.append(_code_item("121071", "DCM", "Finding", "36118008", "SCT", "Pneumothorax"))
    if f.get("probability") is not None:
        items.append(_num("PROB", _SCHEME, "Probability of pneumothorax", f["probability"],
                          "1", "UCUM", "no units"))
    if f.get("area_cm2") is not None:
        items.append(_num("AREA", _SCHEME, "Segmented area", f["area_cm2"],
                          "cm2", "UCUM", "square centimeter"))
    if f.get("side"):
        items.append(_text("SIDE", _SCHEME, "Side", f["side"]))
    models = ", ".join("%s %s (%s)" % (m["name"], m["version"], m["precision"]) for m in alert["models"])
    note = "Automated result by pneumo-edge %s; models: %s; intended use: %s; alert %s." % (
        __version__, models, alert["intended_use"], alert["alert_id"])
    items.append(_text("121106", "DCM", "Comment", note[:1024]))
    items.append(_image("121112", "DCM", "Source of Measurement", source.SOPClassUID, source.SOPInstanceUID))
    if overlay_uid:
        items.append(_image("121200", "DCM", "Illustration of ROI", SECONDARY_CAPTURE, overlay_uid))
    ds.ContentSequence = DicomSequence(items)
    return ds


def _common(source: Dataset, alert: Dict[str, Any], sop_class: str, what: str, *, modality: str,
            series_number: int, description: str) -> Dataset:
    ds = Dataset()
    for kw in PATIENT_STUDY_KEYWORDS:
        if kw in source:
            setattr(ds, kw, source.data_element(kw).value)
    for kw in ("PatientName", "PatientID", "PatientBirthDate", "PatientSex", "StudyDate",
               "StudyTime", "ReferringPhysicianName", "StudyID", "AccessionNumber"):
        if kw not in ds:
            setattr(ds, kw, "")                    # type 2: present, empty when PACS sent none
    ds.SOPClassUID = sop_class
    ds.SOPInstanceUID = uid_for(alert["alert_id"], what)
    ds.SeriesInstanceUID = uid_for(alert["alert_id"], what + "-series")
    ds.Modality = modality
    ds.SeriesNumber = series_number
    ds.InstanceNumber = 1
    ds.SeriesDescription = description
    ds.Manufacturer = "pneumo-edge"
    ds.ManufacturerModelName = "pneumo-edge"
    ds.SoftwareVersions = __version__
    when = _moment(alert.get("created_at"))
    ds.ContentDate = ds.SeriesDate = ds.InstanceCreationDate = when.strftime("%Y%m%d")
    ds.ContentTime = ds.SeriesTime = ds.InstanceCreationTime = when.strftime("%H%M%S")
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = sop_class
    meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta = meta
    return ds


def _moment(text: Optional[str]) -> datetime.datetime:
    try:
        return datetime.datetime.strptime((text or "")[:19], "%Y-%m-%dT%H:%M:%S")
    except ValueError:
        return datetime.datetime.utcnow()


def _ref(sop_class: str, sop_instance: str) -> Dataset:
    ref = Dataset()
    ref.ReferencedSOPClassUID = sop_class
    ref.ReferencedSOPInstanceUID = sop_instance
    return ref


def _code(value: str, scheme: str, meaning: str) -> DicomSequence:
    c = Dataset()
    c.CodeValue, c.CodingSchemeDesignator, c.CodeMeaning = value, scheme, meaning
    return DicomSequence([c])


def _item(value_type: str, concept: Sequence[str]) -> Dataset:
    item = Dataset()
    item.RelationshipType = "CONTAINS"
    item.ValueType = value_type
    item.ConceptNameCodeSequence = _code(*concept)
    return item


def _text(value: str, scheme: str, meaning: str, text: str) -> Dataset:
    item = _item("TEXT", (value, scheme, meaning))
    item.TextValue = text
    return item


def _code_item(value: str, scheme: str, meaning: str, c_value: str, c_scheme: str,
               c_meaning: str) -> Dataset:
    item = _item("CODE", (value, scheme, meaning))
    item.ConceptCodeSequence = _code(c_value, c_scheme, c_meaning)
    return item


def _num(value: str, scheme: str, meaning: str, number: float, unit: str, unit_scheme: str,
         unit_meaning: str) -> Dataset:
    item = _item("NUM", (value, scheme, meaning))
    measured = Dataset()
    measured.NumericValue = ("%.4f" % float(number)).rstrip("0").rstrip(".")[:16]
    measured.MeasurementUnitsCodeSequence = _code(unit, unit_scheme, unit_meaning)
    item.MeasuredValueSequence = DicomSequence([measured])
    return item


def _image(value: str, scheme: str, meaning: str, sop_class: str, sop_instance: str) -> Dataset:
    item = _item("IMAGE", (value, scheme, meaning))
    item.ReferencedSOPSequence = DicomSequence([_ref(sop_class, sop_instance)])
    return item


def build(kind: str, source: Dataset, alert: Dict[str, Any], overlay_jpeg: Optional[bytes],
          with_overlay: bool) -> Dataset:
    """One queued object: kind 'overlay_sc' or 'report_sr'."""
    if kind == "overlay_sc":
        if overlay_jpeg is None:
            raise PacsError("no overlay for alert %s" % alert["alert_id"])
        return overlay_sc(source, alert, overlay_jpeg)
    if kind == "report_sr":
        return report_sr(source, alert, uid_for(alert["alert_id"], "sc") if with_overlay else None)
    raise PacsError("unknown PACS object kind %r" % kind)


def kinds_for(send_overlay: bool, send_report: bool, have_overlay: bool) -> List[str]:
    out = []
    if send_overlay and have_overlay:
        out.append("overlay_sc")
    if send_report:
        out.append("report_sr")
    return out
