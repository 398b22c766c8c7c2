"""Building the alert, event and status messages (edge.alerts.messages;
the JSON is documented in docs/ALERTS.md).

Pure functions: a Result plus the image's identity in, an Alert out. The
alert id is deterministic (image identity + the exact models that ran), so a
re-processed image or a re-sent row carries the same id and displays can
dedupe on it. Patient name and birth date are never read: Image does not
carry them, and the only optional identifier (accession number) is emitted
only when a site asks for it.
"""
import hashlib
import json
import uuid
from datetime import datetime, timezone
from typing import Any, Dict, Iterable, List, Optional, Sequence

import cv2
import numpy as np

from edge.alerts.messages import SCHEMA_VERSION, Alert, AlertImage, AlertSource, Event, Status
from edge.errors import AlertError
from edge.types import Finding, Image, ModelInfo, Result

# Least to most trustworthy; an alert is only as validated as its weakest model.
INTENDED_USE_ORDER = ("untrained", "demo", "validated")
OPTIONAL_IDENTIFIERS = ("accession_number",)
# finding.contours stays small whatever the mask looks like: a display draws it
# and every alert carries it (docs/ALERTS.md).
MAX_ALERT_POLYGONS = 8
MAX_ALERT_POINTS = 100          # per polygon


def utc_iso(moment: Optional[datetime] = None) -> str:
    """ISO-8601 in UTC with milliseconds and a Z, e.g. 2024-05-01T08:30:00.123Z.
    A naive datetime is taken to be UTC already."""
    moment = moment or datetime.now(timezone.utc)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    text = moment.astimezone(timezone.utc).isoformat(timespec="milliseconds")
    return text.replace("+00:00", "Z")


def image_identity(image: Image, file_sha256: str) -> str:
    """What makes two files "the same image": the SOP Instance UID when the
    file has one (a re-export with other bytes is still the same image),
    otherwise the file's content hash."""
    if image.sop_instance_uid:
        return "sop:" + image.sop_instance_uid
    if not file_sha256:
        raise AlertError("an image without SOP Instance UID needs its file sha256")
    return "sha256:" + file_sha256


def alert_id_for(identity: str, models: Sequence[ModelInfo]) -> str:
    """32 hex chars of sha256(identity + each model's name/version/sha256/precision).
    Models are sorted so the order they ran in does not change the id."""
    h = hashlib.sha256(identity.encode("utf-8"))
    for key in sorted((m.name, m.version, m.sha256, m.precision) for m in models):
        h.update(b"\x1e" + "\x1f".join(key).encode("utf-8"))
    return h.hexdigest()[:32]


def combined_intended_use(models: Iterable[ModelInfo]) -> str:
    """"validated" only if every model is; otherwise the least validated.
    An unknown label counts as "untrained"."""
    ranks = [INTENDED_USE_ORDER.index(m.intended_use) if m.intended_use in INTENDED_USE_ORDER
             else 0 for m in models]
    return INTENDED_USE_ORDER[min(ranks)] if ranks else INTENDED_USE_ORDER[0]


def use_warning(intended_use: str) -> str:
    """The banner text for anything not validated (empty when validated)."""
    if intended_use == "validated":
        return ""
    if intended_use == "demo":
        return "DEMO MODEL, NOT FOR CLINICAL USE"
    return "UNTRAINED MODEL, NOT FOR CLINICAL USE"


def bounded_contours(contours: Sequence[Sequence[Sequence[int]]],
                     max_polygons: int = MAX_ALERT_POLYGONS,
                     max_points: int = MAX_ALERT_POINTS) -> List[List[List[int]]]:
    """The largest `max_polygons` polygons (by area), each simplified with
    Douglas-Peucker until it has at most `max_points` points; fewer than 3
    points is not a region and is dropped. Pixel coordinates are kept."""
    polys = []
    for contour in contours:
        pts = np.asarray(contour, dtype=np.int32).reshape(-1, 1, 2)
        if len(pts) >= 3:
            polys.append(pts)
    polys.sort(key=lambda c: cv2.contourArea(c), reverse=True)
    out = []
    for pts in polys[:max_polygons]:
        eps = 1.0
        while len(pts) > max_points:
            pts = cv2.approxPolyDP(pts, eps, True)
            eps *= 1.5
        if len(pts) >= 3:
            out.append([[int(x), int(y)] for x, y in pts.reshape(-1, 2)])
    return out


def _num(value: Optional[float], digits: int) -> Optional[float]:
    return None if value is None else round(float(value), digits)


def build_alert(result: Result, image: Image, *, file_name: str, file_sha256: str,
                site: str, device: str, identify_by: Sequence[str] = (),
                created_at: Optional[datetime] = None,
                topics: Any = None) -> Alert:
    """The alert for one processed image (the only place an Alert is made).

    identify_by: optional identifiers a site enabled (only "accession_number").
    topics: an edge.alerts.topics.Topics; when given, overlay_topic names where
    the overlay JPEG is published (pass None when overlays are off).
    """
    unknown = [k for k in identify_by if k not in OPTIONAL_IDENTIFIERS]
    if unknown:
        raise AlertError("unknown identify_by entries %s (allowed: %s)"
                         % (unknown, ", ".join(OPTIONAL_IDENTIFIERS)))
    if not result.models:
        raise AlertError("an alert needs at least one model identity")
    f = result.finding
    alert_id = alert_id_for(image_identity(image, file_sha256), result.models)
    identifiers = {}  # type: Dict[str, Optional[str]]
    if "accession_number" in identify_by:
        identifiers["accession_number"] = image.accession_number or None
    spacing = image.pixel_spacing_mm
    return Alert(
        alert_id=alert_id,
        created_at=utc_iso(created_at),
        site=site,
        device=device,
        # a POSIX name may hold a backslash: only "/" separates folders
        source=AlertSource(file_name=file_name.rsplit("/", 1)[-1], sha256=file_sha256,
                           sop_instance_uid=image.sop_instance_uid or None,
                           study_instance_uid=image.study_instance_uid or None,
                           identifiers=identifiers),
        finding=Finding(
            pneumothorax=bool(f.pneumothorax),
            probability=_num(f.probability, 4),
            seg_max_probability=_num(f.seg_max_probability, 4),
            classifier_probability=_num(f.classifier_probability, 4),
            area_px=int(f.area_px),
            area_fraction=float(round(float(f.area_fraction), 6)),
            area_cm2=_num(f.area_cm2, 2),
            side=f.side,
            bbox=tuple(int(v) for v in f.bbox) if f.bbox is not None else None,  # type: ignore
            contours=bounded_contours(f.contours) if f.pneumothorax else [],  # type: ignore
            segmenter_skipped=bool(f.segmenter_skipped),
            reasons=list(f.reasons)),
        # switches (gate_segmenter, classifier_alerts) stay booleans, limits are numbers
        thresholds={k: v if isinstance(v, bool) else float(v) for k, v in result.thresholds.items()},
        models=tuple(result.models),
        timings_ms={k: round(float(v), 2) for k, v in result.timings_ms.items()},
        intended_use=combined_intended_use(result.models),
        overlay_topic=topics.overlay(alert_id) if topics is not None else None,
        image=AlertImage(width=image.width, height=image.height,
                         pixel_spacing_mm=(float(spacing[0]), float(spacing[1])) if spacing else None,
                         view_position=image.view_position or None,
                         modality=image.modality or None),
    )


def build_event(kind: str, message: str, *, site: str, device: str,
                created_at: Optional[datetime] = None, **fields: Any) -> Event:
    """An event (rejected file, duplicate, fault, escalation, appliance event);
    the only place an Event is made. `fields` must be JSON-serialisable and
    must never hold patient data."""
    if not kind or not kind.replace("_", "").isalnum() or kind != kind.lower():
        raise AlertError("event kind %r must be a lower-case word" % kind)
    return Event(event_id=uuid.uuid4().hex, created_at=utc_iso(created_at), site=site,
                 device=device, kind=kind, message=message, fields=dict(fields))


def build_status(state: str, *, site: str, device: str,
                 fields: Optional[Dict[str, Any]] = None, client_id: Optional[str] = None,
                 queue_depth: Optional[int] = None, clean: Optional[bool] = None) -> Status:
    """The retained status, whoever publishes it (the running appliance, its
    last-will, a one-shot announcement before it runs); the only place a
    Status is made. `fields` (the status provider's report) sit under the
    envelope, which they cannot override (a provider's own "state" gives
    way to the state being published)."""
    return Status(state=state, site=site, device=device, at=utc_iso(), client_id=client_id,
                  queue_depth=queue_depth, clean=clean, details=dict(fields or {}))


MAX_INITIALS = 8


def build_ack(alert_id: str, display_id: str, initials: str = "",
              acked_at: Optional[datetime] = None) -> Dict[str, Any]:
    """What a display publishes on <prefix>/<site>/<device>/ack when a nurse
    acknowledges an alert. Initials are optional, short and free text; they
    are the nurse's, never the patient's."""
    return check_ack({"schema_version": SCHEMA_VERSION, "alert_id": alert_id,
                      "display_id": display_id, "acked_at": utc_iso(acked_at),
                      "initials": (initials or "").strip() or None})


def check_ack(payload: Dict[str, Any]) -> Dict[str, Any]:
    """An ack payload as received, validated (AlertError says what is wrong)."""
    alert_id = payload.get("alert_id")
    if not isinstance(alert_id, str) or len(alert_id) != 32 or not all(
            c in "0123456789abcdef" for c in alert_id):
        raise AlertError("ack alert_id must be 32 lower-case hex digits, got %r" % (alert_id,))
    display_id = payload.get("display_id")
    if not isinstance(display_id, str) or not display_id or len(display_id) > 128:
        raise AlertError("ack display_id must be a non-empty string of at most 128 characters")
    initials = payload.get("initials")
    if initials is not None and (not isinstance(initials, str) or len(initials) > MAX_INITIALS):
        raise AlertError("ack initials must be at most %d characters" % MAX_INITIALS)
    if not isinstance(payload.get("acked_at"), str):
        raise AlertError("ack acked_at must be an ISO-8601 time")
    return payload


def encode(payload: Dict[str, Any]) -> bytes:
    """Compact UTF-8 JSON; NaN/Infinity are refused (not valid JSON)."""
    try:
        return json.dumps(payload, sort_keys=True, separators=(",", ":"),
                          ensure_ascii=False, allow_nan=False).encode("utf-8")
    except (TypeError, ValueError) as exc:
        raise AlertError("payload is not valid JSON: %s" % exc)


def _no_constant(word: str) -> None:
    raise ValueError("%s is not JSON" % word)


def decode(data: bytes) -> Dict[str, Any]:
    """A received payload as a dict. NaN/Infinity are refused, as encode refuses
    them: Python's json reads them, and one held by a display made its state
    and event stream fail to serialise for every page. Deep nesting is refused too."""
    try:
        payload = json.loads(data.decode("utf-8"), parse_constant=_no_constant)
    except (UnicodeDecodeError, ValueError) as exc:
        raise AlertError("payload is not JSON: %s" % exc)
    except RecursionError:
        raise AlertError("payload is not JSON: nested too deep")
    if not isinstance(payload, dict):
        raise AlertError("payload is not a JSON object")
    return payload

