"""The OpenAPI 3 description served at /api/v1/openapi.json."""
from typing import Any, Dict

from edge import __version__

_ERROR = {"type": "object", "properties": {
    "rejected": {"type": "string", "description": "reason code, as in the capture folder's rejected/ "
                 "reason files: not_an_image, corrupt, wrong_modality, unsupported, too_large, "
                 "missing_decoder, undecodable; bad_request for a malformed upload"},
    "reason": {"type": "string", "description": "what is wrong and, where possible, what to do"}}}


def openapi() -> Dict[str, Any]:
    json_error = {"content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}
    return {
        "openapi": "3.0.3",
        "info": {"title": "pneumo-edge display", "version": __version__,
                 "description": "Bedside display and upload-and-predict. Alert fields: docs/ALERTS.md. "
                                "Demo models are NOT FOR CLINICAL USE (see intended_use)."},
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer",
                                           "description": "when display.token_file is set"}},
            "schemas": {"Error": _ERROR},
        },
        "security": [{"bearer": []}],
        "paths": {
            "/api/v1/predict": {"post": {
                "summary": "Run the appliance's decode and models on one file",
                "requestBody": {"required": True, "content": {
                    "multipart/form-data": {"schema": {"type": "object", "properties": {
                        "file": {"type": "string", "format": "binary",
                                 "description": "DICOM, PNG or JPEG (detected from the content)"}}}},
                    "application/octet-stream": {"schema": {"type": "string", "format": "binary"}}}},
                "responses": {
                    "200": {"description": "the alert document and the overlay",
                            "content": {"application/json": {"schema": {"type": "object", "properties": {
                                "alert": {"type": "object", "description": "as on <prefix>/<site>/<device>/alert"},
                                "overlay_jpeg_base64": {"type": "string", "format": "byte"},
                                "warning": {"type": "string", "nullable": True}}}}}},
                    "400": dict(json_error, description="malformed upload"),
                    "401": dict(json_error, description="token missing or wrong"),
                    "413": dict(json_error, description="larger than decode.max_file_mb (from Content-Length)"),
                    "422": dict(json_error, description="not a usable chest radiograph"),
                    "503": dict(json_error, description="predict is off (display.predict) or the models failed to load"),
                }}},
            "/api/v1/ack": {"post": {
                "summary": "Acknowledge an alert (published on <prefix>/<site>/<device>/ack at QoS 1)",
                "requestBody": {"required": True, "content": {"application/json": {"schema": {
                    "type": "object", "required": ["alert_id"],
                    "properties": {"alert_id": {"type": "string"},
                                   "initials": {"type": "string", "maxLength": 8}}}}}},
                "responses": {"200": {"description": "{delivered: bool, ack: {...}}"},
                              "404": dict(json_error, description="alert unknown to this display"),
                              "415": dict(json_error, description="not application/json")}}},
            "/api/v1/state": {"get": {"summary": "carts, recent alerts, broker connection",
                                      "responses": {"200": {"description": "snapshot"}}}},
            "/api/v1/events": {"get": {"summary": "Server-Sent Events: snapshot, then alert, overlay, cart, "
                                                  "event, ack, escalated, connection",
                                       "responses": {"200": {"description": "text/event-stream"}}}},
            "/overlay/{alert_id}.jpg": {"get": {"summary": "the overlay JPEG of a recent alert",
                                                "responses": {"200": {"description": "image/jpeg"},
                                                              "404": {"description": "not held"}}}},
        },
    }
