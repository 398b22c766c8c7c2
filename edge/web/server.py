"""`pneumo-edge display`: the bedside page over HTTP(S), standard library only.

Routes: / (the page), /upload (upload-and-predict page), /static/*,
/overlay/<alert_id>.jpg, /api/v1/state, /api/v1/events (Server-Sent
Events), POST /api/v1/ack, POST /api/v1/predict, /api/v1/openapi.json,
/healthz. Every asset is served from the package (the ward network has no
internet). With display.token_file set every route but /healthz needs the
token: `Authorization: Bearer <token>`, or once `?token=<token>` on the page
URL, which sets a cookie (a kiosk browser cannot send headers).
"""
import hashlib
import hmac
import ipaddress
import json
import logging
import os
import queue
import re
import socket
import ssl
import threading
from http.cookies import SimpleCookie
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Dict, Optional
from urllib.parse import parse_qs, urlsplit

from edge.capture.names import safe_label
from edge.decode.header_words import sight_of
from edge.errors import AlertError, ConfigError, DecodeError, PneumoEdgeError
from edge.settings import Settings
from edge.decode.checks import check_file_size
from edge.web.openapi import openapi
from edge.web.predict import BadUpload, Predictor, check_length, file_from_body
from edge.web.state import DisplayState

log = logging.getLogger(__name__)

STATIC_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "static")
STATIC_TYPES = {".html": "text/html; charset=utf-8", ".js": "text/javascript; charset=utf-8",
                ".css": "text/css; charset=utf-8", ".svg": "image/svg+xml"}
KEEPALIVE_S = 15.0
ALERT_ID = re.compile(r"^[0-9a-f]{32}$")
COOKIE = "pneumo_display_token"
MAX_JSON_BODY = 16 * 1024
# Seconds a connection may sit silent mid-request (a body shorter than its
# Content-Length, a client that stops): without it each one held a thread for ever.
SOCKET_TIMEOUT_S = 30.0


def read_token(path: str) -> str:
    try:
        with open(path, "r", encoding="utf-8") as fh:
            token = fh.read().strip()
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError("cannot read display.token_file %s: %s" % (path, getattr(exc, "strerror", exc)))
    if len(token) < 16:
        raise ConfigError("display.token_file %s must hold a token of at least 16 characters" % path)
    return token


def is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(socket.gethostbyname(host)).is_loopback
    except (OSError, ValueError):
        return False


class DisplayServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address, state: DisplayState, feed: Any = None,
                 predictor: Optional[Predictor] = None, settings: Optional[Settings] = None,
                 token: str = "", tls_context: Optional[ssl.SSLContext] = None):
        super().__init__(address, Handler)
        if tls_context is not None:
            self.socket = tls_context.wrap_socket(self.socket, server_side=True)
        self.state = state
        self.feed = feed
        self.predictor = predictor
        self.settings = settings or Settings()
        self.token = token
        self.scheme = "https" if tls_context is not None else "http"
        self.closing = threading.Event()

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        if host in ("0.0.0.0", "::"):
            host = socket.gethostname()          # all interfaces: name the machine, not 0.0.0.0
        return "%s://%s:%d/" % (self.scheme, host, port)

    def shutdown(self) -> None:
        self.closing.set()          # ends the SSE streams
        super().shutdown()

    def handle_error(self, request, client_address) -> None:
        """One log line, not socketserver's traceback on stderr: an exception's
        text can quote what the request carried (file values, names)."""
        import sys
        exc = sys.exc_info()[1]
        log.error("request from %s failed (%s)", client_address[0], type(exc).__name__)


class Handler(BaseHTTPRequestHandler):
    server_version = "pneumo-edge-display"
    server = None   # type: DisplayServer
    timeout = SOCKET_TIMEOUT_S

    def log_message(self, fmt: str, *args: Any) -> None:
        log.debug("%s %s", self.address_string(), fmt % args)

    # -- replies ---------------------------------------------------------------
    def _send(self, status: int, body: bytes, content_type: str, extra: Optional[Dict[str, str]] = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        extra = dict(extra or {})
        self.send_header("Cache-Control", extra.pop("Cache-Control", "no-store"))
        self.send_header("X-Content-Type-Options", "nosniff")
        for k, v in extra.items():
            self.send_header(k, v)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _json(self, status: int, payload: Dict[str, Any]) -> None:
        self._send(status, json.dumps(payload, allow_nan=False).encode("utf-8"), "application/json")

    def _error(self, status: int, code: str, reason: str) -> None:
        self._json(status, {"rejected": code, "reason": reason})

    # -- auth --------------------------------------------------------------------
    def _authorised(self, query: Dict[str, Any]) -> Optional[str]:
        """None when allowed; else "" (refuse) or a token to set as a cookie."""
        token = self.server.token
        if not token:
            return None
        given = ""
        auth = self.headers.get("Authorization", "")
        if auth.startswith("Bearer "):
            given = auth[7:].strip()
        if not given and self.headers.get("Cookie"):
            morsel = SimpleCookie(self.headers.get("Cookie")).get(COOKIE)
            given = morsel.value if morsel is not None else ""
        from_query = (query.get("token") or [""])[0]
        if hmac.compare_digest(given.encode(), token.encode()):
            return None
        if from_query and hmac.compare_digest(from_query.encode(), token.encode()):
            return from_query
        return ""

    # -- routing -------------------------------------------------------------------
    def do_HEAD(self) -> None:
        self.do_GET()

    def do_GET(self) -> None:
        url = urlsplit(self.path)
        path, query = url.path, parse_qs(url.query)
        if path == "/healthz":
            return self._json(200, {"ok": True, "mqtt_connected": bool(self.server.feed and
                                                                        self.server.feed.connected)})
        auth = self._authorised(query)
        if auth == "":
            return self._error(401, "unauthorised", "a valid token is needed (Authorization: Bearer, "
                               "or open the page once as /?token=...)")
        if auth:      # token in the URL: keep it in a cookie and drop it from the address bar
            cookie = "%s=%s; Path=/; HttpOnly; SameSite=Strict%s" % (
                COOKIE, auth, "; Secure" if self.server.scheme == "https" else "")
            return self._send(303, b"", "text/plain", {"Location": path, "Set-Cookie": cookie})
        if path in ("/", "/index.html"):
            return self._static("index.html")
        if path == "/upload":
            return self._static("upload.html")
        if path.startswith("/static/"):
            return self._static(path[len("/static/"):])
        if path.startswith("/overlay/") and path.endswith(".jpg"):
            alert_id = path[len("/overlay/"):-4]
            jpeg = self.server.state.overlay(alert_id) if ALERT_ID.match(alert_id) else None
            if jpeg is None:
                return self._error(404, "not_found", "no overlay held for this alert")
            return self._send(200, jpeg, "image/jpeg",           # one alert_id, one image: cacheable
                              {"Cache-Control": "private, max-age=86400, immutable"})
        if path == "/api/v1/state":
            return self._json(200, self.server.state.snapshot())
        if path == "/api/v1/events":
            return self._events()
        if path == "/api/v1/openapi.json":
            return self._json(200, openapi())
        return self._error(404, "not_found", "no such page: %s" % path)

    def do_POST(self) -> None:
        url = urlsplit(self.path)
        if self._authorised(parse_qs(url.query)) is not None:
            return self._error(401, "unauthorised", "a valid token is needed (Authorization: Bearer)")
        if url.path == "/api/v1/predict":
            return self._predict()
        if url.path == "/api/v1/ack":
            return self._ack()
        return self._error(404, "not_found", "no such endpoint: %s" % url.path)

    # -- handlers ---------------------------------------------------------------------
    def _static(self, name: str) -> None:
        full = os.path.realpath(os.path.join(STATIC_DIR, name))
        ext = os.path.splitext(full)[1]
        if not full.startswith(STATIC_DIR + os.sep) or ext not in STATIC_TYPES or not os.path.isfile(full):
            return self._error(404, "not_found", "no such file")
        with open(full, "rb") as fh:
            self._send(200, fh.read(), STATIC_TYPES[ext])

    def _events(self) -> None:
        state = self.server.state
        q = state.listen()
        try:
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.send_header("Cache-Control", "no-store")
            self.end_headers()
            self._sse({"type": "hello"}, retry=1000)
            self._sse(state.snapshot())
            while not self.server.closing.is_set():
                try:
                    event = q.get(timeout=KEEPALIVE_S)
                except queue.Empty:
                    self.wfile.write(b": keepalive\n\n")
                    self.wfile.flush()
                    continue
                if event.get("type") == "resync":
                    event = state.snapshot()
                self._sse(event)
        except (BrokenPipeError, ConnectionResetError, ssl.SSLError, OSError):
            pass                           # the page went away
        finally:
            state.unlisten(q)
            self.close_connection = True

    def _sse(self, event: Dict[str, Any], retry: Optional[int] = None) -> None:
        data = json.dumps(event, allow_nan=False, separators=(",", ":"))
        head = "retry: %d\n" % retry if retry else ""
        self.wfile.write(("%sdata: %s\n\n" % (head, data)).encode("utf-8"))
        self.wfile.flush()

    def _body(self, limit: int) -> bytes:
        n = int(self.headers.get("Content-Length") or 0)
        if n > limit:
            raise BadUpload("request body too large")
        if n < 0:          # rfile.read(-1) would wait for the client to close
            raise BadUpload("Content-Length is negative")
        return self.rfile.read(n)

    def _ack(self) -> None:
        feed = self.server.feed
        if not self.headers.get("Content-Type", "").startswith("application/json"):
            # JSON only: a cross-site form cannot send it without a CORS preflight, which fails here
            return self._error(415, "bad_request", "send the ack as application/json")
        try:
            body = json.loads(self._body(MAX_JSON_BODY).decode("utf-8") or "{}")
            alert_id = str(body.get("alert_id") or "")
            initials = body.get("initials") or ""
            if not ALERT_ID.match(alert_id) or not isinstance(initials, str):
                raise BadUpload("send {\"alert_id\": <32 hex>, \"initials\": <optional text>}")
        except (ValueError, BadUpload, AttributeError, RecursionError) as exc:   # deep nesting: RecursionError
            self.close_connection = True
            return self._error(400, "bad_request", "not an ack request (%s)" % type(exc).__name__)
        if feed is None:
            return self._error(503, "no_broker", "this display has no MQTT connection")
        try:
            delivered, ack = feed.acknowledge(alert_id, initials[:8])
        except AlertError as exc:
            return self._error(404, "unknown_alert", str(exc))
        self._json(200, {"delivered": delivered, "ack": ack})

    def _predict(self) -> None:
        predictor, settings = self.server.predictor, self.server.settings
        if predictor is None:
            return self._error(503, "predict_off", "upload-and-predict is off on this display (display.predict)")
        try:
            n = check_length(self.headers.get("Content-Length"), settings)
        except DecodeError as exc:          # too_large: refused before reading the body
            self.close_connection = True
            return self._error(413, exc.code, str(exc))
        except BadUpload as exc:
            self.close_connection = True
            return self._error(411 if "required" in str(exc) else 400, exc.code, str(exc))
        try:
            body = self.rfile.read(n)
        except OSError:         # the client went silent (timeout) or away mid-body
            self.close_connection = True
            return
        if len(body) < n:
            self.close_connection = True
            return self._error(400, "bad_request", "the body ended before its Content-Length")
        try:
            name, data = file_from_body(self.headers.get("Content-Type", ""), body)
            del body
            check_file_size(len(data), settings.decode)     # the file itself, without the form around it
            if name == "upload":
                name = (parse_qs(urlsplit(self.path).query).get("name") or ["upload"])[0]
            # As for the capture folder (names.safe_label): escaped, and the film's own
            # patient name and birth date masked, or a neutral label for unrecognised content.
            name = safe_label(name, sight_of(data, int(settings.decode.max_file_mb * 1048576)),
                              "upload-" + hashlib.sha256(data).hexdigest()[:12])
            status, payload = predictor.predict(name, data)
            reply = json.dumps(payload, allow_nan=False).encode("utf-8")     # a NaN is a fault, not a reply
        except BadUpload as exc:
            return self._error(400, exc.code, str(exc))
        except DecodeError as exc:
            return self._error(413, exc.code, str(exc))
        except PneumoEdgeError as exc:      # models missing, backend unavailable ...
            log.error("predict failed: %s", exc)
            return self._error(503, "models_unavailable", str(exc))
        except Exception as exc:  # noqa: BLE001 - one upload must not drop the connection unanswered
            log.error("predict failed: internal error (%s)", type(exc).__name__)
            return self._error(500, "fault", "internal error while processing the upload (%s)"
                               % type(exc).__name__)
        self._send(status, reply, "application/json")


def tls_context(cert_file: str, key_file: str) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        ctx.load_cert_chain(cert_file, key_file)
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError("cannot load display.tls.cert_file/key_file (%s, %s): %s"
                          % (cert_file, key_file, exc))
    return ctx
