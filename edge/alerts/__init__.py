"""Alerts: the payload schema, the overlay JPEG, the SQLite outbox, the MQTT
publisher (with retained status and last-will) and a minimal display.

Flow: build_alert -> Outbox.enqueue_alert inside the same
store.transaction() that marks the image done -> Publisher.notify() ->
the pump sends at QoS 1 and marks rows sent on PUBACK; meanwhile
render_overlay -> Outbox.enqueue_overlay in a second transaction
(edge.stages.overlay_recovery).
"""
from edge.alerts.messages import Alert, Event, Status
from edge.alerts.outbox import Outbox, OutboxRow
from edge.alerts.schema import (SCHEMA_VERSION, alert_id_for, build_alert, build_event,
                                encode, image_identity)
from edge.alerts.topics import Topics

__all__ = ["Alert", "Event", "Outbox", "OutboxRow", "Status", "SCHEMA_VERSION", "Topics", "alert_id_for", "build_alert",
           "build_event", "encode", "image_identity"]
