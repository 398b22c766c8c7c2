"""The messages the appliance publishes, as typed records (docs/ALERTS.md).

Each is built in one place (edge.alerts.schema: build_alert, build_event,
build_status) and turned into the JSON object the wire carries by
to_json(). The outbox, MQTT and PACS only ever see that JSON
(schema.encode), never these objects, so a consumer elsewhere reads plain
JSON and this module decides its shape alone.
"""
from dataclasses import dataclass, field
from typing import Any, Dict, Mapping, Optional, Tuple, Union

from edge.types import Finding, ModelInfo

SCHEMA_VERSION = 1


@dataclass(frozen=True)
class AlertSource:
    """Which file the alert is about. `identifiers` holds the optional study
    identifiers a site enabled (alerts.identify_by), each present in the JSON
    (null when the file lacks it) only when enabled."""
    file_name: str
    sha256: str
    sop_instance_uid: Optional[str]
    study_instance_uid: Optional[str]
    identifiers: Mapping[str, Optional[str]] = field(default_factory=dict)

    def to_json(self) -> Dict[str, Any]:
        out = {"file_name": self.file_name, "sha256": self.sha256,
               "sop_instance_uid": self.sop_instance_uid,
               "study_instance_uid": self.study_instance_uid}  # type: Dict[str, Any]
        out.update(self.identifiers)
        return out


@dataclass(frozen=True)
class AlertImage:
    """The original film's size and tags."""
    width: int
    height: int
    pixel_spacing_mm: Optional[Tuple[float, float]]
    view_position: Optional[str]
    modality: Optional[str]

    def to_json(self) -> Dict[str, Any]:
        spacing = self.pixel_spacing_mm
        return {"width": self.width, "height": self.height,
                "pixel_spacing_mm": [spacing[0], spacing[1]] if spacing else None,
                "view_position": self.view_position, "modality": self.modality}


def finding_json(f: Finding) -> Dict[str, Any]:
    """An alert's finding (already rounded and bounded by build_alert)."""
    return {
        "pneumothorax": f.pneumothorax,
        "probability": f.probability,
        "seg_max_probability": f.seg_max_probability,
        "classifier_probability": f.classifier_probability,
        "area_px": f.area_px,
        "area_fraction": f.area_fraction,
        "area_cm2": f.area_cm2,
        "side": f.side,
        "bbox": list(f.bbox) if f.bbox is not None else None,
        "contours": [[[x, y] for x, y in polygon] for polygon in f.contours],
        "segmenter_skipped": f.segmenter_skipped,
        "reasons": list(f.reasons),
    }


def model_json(m: ModelInfo) -> Dict[str, Any]:
    # intended_use is reported once for all models (Alert.intended_use)
    return {"name": m.name, "version": m.version, "sha256": m.sha256, "precision": m.precision,
            "backend": m.backend, "task": m.task}


@dataclass(frozen=True)
class Alert:
    """One processed image's verdict. `finding` is the pipeline's Finding as
    the wire carries it: numbers rounded, contours bounded, native types."""
    alert_id: str
    created_at: str
    site: str
    device: str
    source: AlertSource
    finding: Finding
    thresholds: Mapping[str, Union[float, bool]]
    models: Tuple[ModelInfo, ...]
    timings_ms: Mapping[str, float]
    intended_use: str
    overlay_topic: Optional[str]
    image: AlertImage
    schema_version: int = SCHEMA_VERSION

    def to_json(self) -> Dict[str, Any]:
        return {
            "schema_version": self.schema_version,
            "alert_id": self.alert_id,
            "created_at": self.created_at,
            "site": self.site,
            "device": self.device,
            "source": self.source.to_json(),
            "finding": finding_json(self.finding),
            "thresholds": dict(sorted(self.thresholds.items())),
            "models": [model_json(m) for m in self.models],
            "timings_ms": dict(self.timings_ms),
            "intended_use": self.intended_use,
            "overlay_topic": self.overlay_topic,
            "image": self.image.to_json(),
        }


@dataclass(frozen=True)
class Event:
    """Something that happened besides an alert: a rejected or duplicate
    file, a fault, an escalation, an appliance event. `fields` are
    kind-specific, JSON values only, never patient data."""
    event_id: str
    created_at: str
    site: str
    device: str
    kind: str
    message: str
    fields: Mapping[str, Any] = field(default_factory=dict)
    schema_version: int = SCHEMA_VERSION

    def to_json(self) -> Dict[str, Any]:
        return {"schema_version": self.schema_version, "event_id": self.event_id,
                "created_at": self.created_at, "site": self.site, "device": self.device,
                "kind": self.kind, "message": self.message, "fields": dict(self.fields)}


@dataclass(frozen=True)
class Status:
    """The retained status, whoever publishes it. `details` are what the
    runtime's status provider reports (backend, models, counts ...); they sit
    beside the envelope in the JSON and never override it. client_id,
    queue_depth and clean are left out of the JSON when None (the last-will
    has no queue depth; only an offline status says whether it was clean)."""
    state: str
    site: str
    device: str
    at: str
    client_id: Optional[str] = None
    queue_depth: Optional[int] = None
    clean: Optional[bool] = None
    details: Mapping[str, Any] = field(default_factory=dict)
    schema_version: int = SCHEMA_VERSION

    def to_json(self) -> Dict[str, Any]:
        body = dict(self.details)
        for key in ("client_id", "queue_depth", "clean"):
            value = getattr(self, key)
            if value is not None:
                body[key] = value
        body.update(schema_version=self.schema_version, state=self.state, site=self.site,
                    device=self.device, at=self.at)
        return body


__all__ = ["Alert", "AlertImage", "AlertSource", "Event", "SCHEMA_VERSION", "Status",
           "finding_json", "model_json"]
