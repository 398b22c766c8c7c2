"""What the bedside page shows, in memory: carts, the last N alerts, acks, the broker link.

Fed by edge.web.mqtt_feed (paho's thread) and read by the HTTP handlers
(one thread per request); every change is also pushed as an event to each
open Server-Sent-Events stream. Alerts are deduplicated on alert_id (the
appliance delivers at least once). Bounded: `history` alerts and their
overlays, so memory stays flat however long the display runs.
"""
import queue
import threading
import time
from collections import OrderedDict
from datetime import datetime
from typing import Any, Dict, List, Optional, Set

LISTENER_QUEUE = 1000        # events buffered per page; a page that falls behind is resynced


def _now_ms() -> int:
    return int(time.time() * 1000)


def _parse_ms(stamp: Any) -> Optional[int]:
    """Epoch ms of an ISO-8601 UTC stamp as the appliance writes them, else None."""
    if not isinstance(stamp, str):
        return None
    try:
        moment = datetime.strptime(stamp.replace("Z", "+0000"), "%Y-%m-%dT%H:%M:%S.%f%z")
    except ValueError:
        return None
    return int(moment.timestamp() * 1000)


class DisplayState:
    def __init__(self, history: int = 50, stale_after_s: float = 150.0, display_id: str = "display"):
        self.history = max(1, int(history))
        self.stale_after_s = float(stale_after_s)
        self.display_id = display_id
        self._lock = threading.Lock()
        self._carts = OrderedDict()      # type: OrderedDict  "site/device" -> cart dict
        self._alerts = OrderedDict()     # type: OrderedDict  alert_id -> view dict, oldest first
        self._overlays = OrderedDict()   # type: OrderedDict  alert_id -> JPEG bytes
        self._acks = OrderedDict()       # type: OrderedDict  alert_id -> ack payload (any display's)
        self._mine = OrderedDict()       # type: OrderedDict  alert_id -> ack payload this display sent
        self._connection = {"connected": False, "since_ms": _now_ms(), "detail": "connecting"}
        self._listeners = set()          # type: Set[queue.Queue]
        self.counts = {"alerts": 0, "duplicates": 0, "events": 0, "statuses": 0}

    # -- listeners (SSE streams) -----------------------------------------------
    def listen(self) -> "queue.Queue":
        q = queue.Queue(maxsize=LISTENER_QUEUE)   # type: queue.Queue
        with self._lock:
            self._listeners.add(q)
        return q

    def unlisten(self, q: "queue.Queue") -> None:
        with self._lock:
            self._listeners.discard(q)

    def _emit(self, event: Dict[str, Any]) -> None:
        """Caller holds the lock."""
        for q in list(self._listeners):
            try:
                q.put_nowait(event)
            except queue.Full:         # the page is not reading: tell it to reload the snapshot
                while True:
                    try:
                        q.get_nowait()
                    except queue.Empty:
                        break
                q.put_nowait({"type": "resync"})

    # -- inputs (the MQTT feed) ------------------------------------------------
    def set_connection(self, connected: bool, detail: str) -> None:
        with self._lock:
            if connected != self._connection["connected"] or detail != self._connection["detail"]:
                self._connection = {"connected": connected, "since_ms": _now_ms(), "detail": detail}
                self._emit(dict(self._connection, type="connection"))

    def on_alert(self, alert: Dict[str, Any]) -> bool:
        """True for a new alert_id; a repeat is counted and dropped."""
        alert_id = str(alert.get("alert_id"))
        with self._lock:
            if alert_id in self._alerts:
                self.counts["duplicates"] += 1
                return False
            self.counts["alerts"] += 1
            view = {"alert": alert, "received_ms": _now_ms(), "ack": self._acks.get(alert_id),
                    "overlay": alert_id in self._overlays, "escalations": 0}
            self._alerts[alert_id] = view
            while len(self._alerts) > self.history:
                old, _ = self._alerts.popitem(last=False)
                self._overlays.pop(old, None)
            self._emit({"type": "alert", "view": view})
            return True

    def on_overlay(self, alert_id: str, jpeg: bytes) -> None:
        with self._lock:
            if alert_id in self._overlays:
                return
            self._overlays[alert_id] = bytes(jpeg)
            while len(self._overlays) > self.history:
                self._overlays.popitem(last=False)
            view = self._alerts.get(alert_id)
            if view is not None:
                view["overlay"] = True
            self._emit({"type": "overlay", "alert_id": alert_id})

    def on_status(self, site: str, device: str, status: Dict[str, Any],
                  retained: bool = False) -> List[str]:
        """Record a cart's retained status / heartbeat / last-will. Returns the
        alert ids this display acknowledged that the cart still lists as
        unacknowledged (the ack was lost: the feed sends it again).

        retained: the broker's stored copy, handed over on subscribing; it may
        be old, so its heartbeat time is the cart's own `at` (never later
        than now), not the moment it reached us."""
        key = "%s/%s" % (site, device)
        heard = _now_ms()
        if retained:
            heard = min(heard, _parse_ms(status.get("at")) or heard)
        acks = status.get("acks") if isinstance(status.get("acks"), dict) else {}
        cart = {"key": key, "site": site, "device": device, "state": status.get("state"),
                "clean": status.get("clean"), "queue_depth": status.get("queue_depth"),
                "at": status.get("at"), "heard_ms": heard, "backend": status.get("backend"),
                "intended_use": status.get("intended_use"), "version": status.get("version"),
                "models": status.get("models"), "unacknowledged": acks.get("unacknowledged"),
                "capture_mode": status.get("capture_mode")}
        with self._lock:
            self.counts["statuses"] += 1
            previous = self._carts.get(key) or {}
            cart["last_event"] = previous.get("last_event")
            cart["heartbeat_ms"] = cart["heard_ms"] if cart["state"] == "online" else previous.get("heartbeat_ms")
            self._carts[key] = cart
            self._emit({"type": "cart", "cart": cart})
            return [a for a in acks.get("unacknowledged_ids") or [] if a in self._mine]

    def on_event(self, site: str, device: str, event: Dict[str, Any]) -> None:
        key = "%s/%s" % (site, device)
        with self._lock:
            self.counts["events"] += 1
            fields = event.get("fields") or {}
            summary = {"kind": event.get("kind"), "message": event.get("message"),
                       "created_at": event.get("created_at"), "file_name": fields.get("file_name"),
                       "code": fields.get("code")}
            cart = self._carts.get(key)
            if cart is not None:
                cart["last_event"] = summary
            if event.get("kind") == "escalated":
                view = self._alerts.get(str(fields.get("alert_id")))
                if view is not None and view.get("ack") is None:
                    # announcement 2 is the first re-announcement
                    n = int(fields.get("announcement") or 0)
                    view["escalations"] = n - 1 if n >= 2 else view["escalations"] + 1
                    self._emit({"type": "escalated", "alert_id": fields.get("alert_id"),
                                "escalations": view["escalations"]})
            self._emit({"type": "event", "cart": key, "event": summary})

    def on_ack(self, ack: Dict[str, Any], mine: bool = False) -> None:
        alert_id = str(ack.get("alert_id"))
        with self._lock:
            if mine:
                self._mine[alert_id] = ack
                while len(self._mine) > 10 * self.history:
                    self._mine.popitem(last=False)
            if alert_id in self._acks:
                return
            self._acks[alert_id] = ack
            while len(self._acks) > 10 * self.history:
                self._acks.popitem(last=False)
            view = self._alerts.get(alert_id)
            if view is not None:
                view["ack"] = ack
            self._emit({"type": "ack", "alert_id": alert_id, "ack": ack})

    # -- reads (HTTP handlers) -------------------------------------------------
    def alert(self, alert_id: str) -> Optional[Dict[str, Any]]:
        with self._lock:
            view = self._alerts.get(alert_id)
            return None if view is None else view["alert"]

    def my_ack(self, alert_id: str) -> Optional[Dict[str, Any]]:
        with self._lock:
            return self._mine.get(alert_id)

    def overlay(self, alert_id: str) -> Optional[bytes]:
        with self._lock:
            return self._overlays.get(alert_id)

    def snapshot(self) -> Dict[str, Any]:
        with self._lock:
            return {"type": "snapshot", "server_ms": _now_ms(), "display_id": self.display_id,
                    "stale_after_s": self.stale_after_s, "history": self.history,
                    "connection": dict(self._connection),
                    "carts": [dict(c) for c in self._carts.values()],
                    "alerts": [dict(v) for v in reversed(self._alerts.values())],
                    "counts": dict(self.counts)}
