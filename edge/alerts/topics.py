"""MQTT topic names: everything lives under `<prefix>/<site>/<device>/`.

Site and device become topic levels, so they must not contain the MQTT
wildcards `+` `#` or the level separator `/`: a device named "cart/1" would
publish where no display listens, and "cart+" could never be subscribed to.
load_config refuses such names (with the file and line), so Topics takes
them as given.
"""
from typing import Optional

from edge.errors import AlertError

_FORBIDDEN = ("+", "#", "/")


def _check_level(what: str, value: str) -> str:
    if not value or not isinstance(value, str):
        raise AlertError("%s must be a non-empty string" % what)
    bad = [c for c in _FORBIDDEN if c in value]
    if bad or "\x00" in value:
        raise AlertError("%s %r must not contain %s (it is one MQTT topic level)"
                         % (what, value, " ".join(bad) or "NUL"))
    return value


class Topics:
    """The topics one device publishes to; prefix, site and device come from
    Settings, where load_config has checked them."""

    def __init__(self, prefix: str, site: str, device: str):
        self.prefix = (prefix or "").strip("/")
        self.site, self.device = site, device
        self.base = "%s/%s/%s" % (self.prefix, site, device)

    @property
    def alert(self) -> str:
        return self.base + "/alert"

    @property
    def status(self) -> str:
        return self.base + "/status"

    @property
    def event(self) -> str:
        return self.base + "/event"

    @property
    def ack(self) -> str:
        """Displays publish acknowledgements here; the appliance subscribes."""
        return self.base + "/ack"

    def overlay(self, alert_id: str) -> str:
        return self.base + "/overlay/" + _check_level("alert_id", alert_id)

    def __repr__(self) -> str:
        return "Topics(%r)" % self.base


def subscription(prefix: str, leaf: str, site: Optional[str] = None,
                 device: Optional[str] = None) -> str:
    """A subscription filter for displays: any site/device unless given."""
    return "%s/%s/%s/%s" % (prefix.strip("/"), site or "+", device or "+", leaf)
