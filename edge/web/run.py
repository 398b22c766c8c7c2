"""Wiring for `pneumo-edge display`: state + MQTT feed + predictor + HTTP server."""
import logging
import socket
import threading
from typing import Optional

from edge.errors import ConfigError
from edge.settings import Settings
from edge.web.mqtt_feed import MqttFeed
from edge.web.predict import Predictor
from edge.web.server import DisplayServer, is_loopback, read_token, tls_context
from edge.web.state import DisplayState

log = logging.getLogger(__name__)


def display_id_for(settings: Settings) -> str:
    return settings.display.display_id or "display-%s" % socket.gethostname()


class Display:
    """Everything `pneumo-edge display` runs; start() returns once it serves."""

    def __init__(self, settings: Settings, pipeline=None):
        d = settings.display
        self.settings = settings
        self.display_id = display_id_for(settings)
        token = read_token(d.token_file) if d.token_file else ""
        ctx = tls_context(d.tls.cert_file, d.tls.key_file) if d.tls.cert_file else None
        if not token and not is_loopback(d.host):
            log.warning("display serves %s without a token: anyone on that network can acknowledge"
                        " alerts and upload files (set display.token_file)", d.host)
        self.state = DisplayState(d.history, d.stale_after_s, self.display_id)
        self.feed = MqttFeed(settings.mqtt, self.state, self.display_id, d.sites)
        self.predictor = Predictor(settings, self.display_id, pipeline) if d.predict else None
        try:
            self.server = DisplayServer((d.host, d.port), self.state, self.feed, self.predictor,
                                        settings, token, ctx)
        except OSError as exc:
            raise ConfigError("cannot serve the display on %s:%d: %s (set display.port or "
                              "--display-port)" % (d.host, d.port, exc.strerror or exc))
        self._thread = None  # type: Optional[threading.Thread]

    @property
    def url(self) -> str:
        return self.server.url

    def start(self) -> None:
        self.feed.start()
        self._thread = threading.Thread(target=self.server.serve_forever, name="display-http",
                                        daemon=True)
        self._thread.start()
        log.info("display %s serving %s (MQTT %s:%d, client id %s)", self.display_id, self.url,
                 self.settings.mqtt.host, self.settings.mqtt.port, self.feed.client_id)

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.feed.stop()
        if self.predictor is not None:
            self.predictor.close()
        if self._thread is not None:
            self._thread.join(5)


def run_display(settings: Settings, stop: threading.Event) -> int:
    display = Display(settings)
    display.start()
    print("pneumo-edge display: open %s (kiosk: chromium --kiosk %s)" % (display.url, display.url),
          flush=True)
    try:
        while not stop.wait(0.5):
            pass
    finally:
        display.stop()
    return 0
