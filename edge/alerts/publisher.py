"""Sends outbox rows to the broker and keeps the retained status topic.

Delivery contract: a row is marked sent only when the broker acknowledged
it, never because publish() returned. Each publish is tracked by its own
paho MQTTMessageInfo handle, which knows whether *its* PUBACK came
(is_published()), so no message-id bookkeeping can pair an ack with the
wrong row after ids wrap. A row stays "in flight" (never re-sent) from its
publish until its PUBACK is recorded in SQLite, which is what keeps a
healthy connection free of duplicates. paho's in-memory queue is not
trusted: whenever the connection drops, every unacknowledged row is
forgotten as "in flight" and re-sent from SQLite after the reconnect.
Duplicates across a reconnect are possible and harmless (displays dedupe on
alert_id); losses are not.

Threads: paho's network loop (loop_start) runs the callbacks, which only
touch in-memory state under one lock; the pump thread does all SQLite work
(its own connection) and all publishing of rows. The lock is never held
while calling into paho: paho calls on_publish while holding its own mutex.
"""
import logging
import threading
import time
from typing import Any, Callable, Dict, List, Optional

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from edge.alerts.credentials import configure_client
from edge.alerts.outbox import Outbox, OutboxRow
from edge.alerts.schema import build_status, encode
from edge.alerts.topics import Topics
from edge.errors import PneumoEdgeError
from edge.settings import MqttSettings

log = logging.getLogger(__name__)

IDLE_WAIT_S = 1.0          # pump re-checks the outbox at least this often
HOLD_FAILED_S = 30.0       # a row paho refused to publish is retried after this
STATUS_INTERVAL_S = 60.0   # heartbeat: the retained status is refreshed this often
PRUNE_INTERVAL_S = 3600.0
# A publish with no PUBACK after this long on a live connection is given up
# on and re-sent (a duplicate, never a loss); a healthy broker acks in ms.
ACK_TIMEOUT_S = 120.0


class Publisher:
    def __init__(self, settings: MqttSettings, topics: Topics, outbox: Outbox,
                 status: Callable[[], Dict[str, Any]], client_id: str,
                 keep_sent_s: float = 7 * 86400.0):
        # inflight >= 1 and 0 < reconnect_min_s <= reconnect_max_s: load_config's rules
        self.settings = settings
        self.topics = topics
        self.outbox = outbox
        self.client_id = client_id
        self._status = status
        self._keep_sent_s = keep_sent_s

        self._cond = threading.Condition()
        self._connected = False
        self._stopping = False
        self._wake = False
        self._generation = 0                          # bumped on every (dis)connect
        # row id -> paho's handle for its publish; a row leaves only once its
        # PUBACK is recorded in SQLite (or the connection it went out on drops)
        self._inflight = {}                           # type: Dict[int, mqtt.MQTTMessageInfo]
        self._sent_at = {}                            # type: Dict[int, float]  row id -> monotonic publish time
        self._held = {}                               # type: Dict[int, float]  row id -> retry time
        self._status_due = False
        self._counts = {"published": 0, "acked": 0, "connects": 0, "disconnects": 0,
                        "refused": 0}
        self._last_error = None                       # type: Optional[str]
        self._depth = None                            # type: Optional[int]
        self._pump = None                             # type: Optional[threading.Thread]
        self._started = False

        client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id,
                             clean_session=True, protocol=mqtt.MQTTv311)
        configure_client(client, settings)            # AlertError now, not at each reconnect
        client.will_set(topics.status, self._status_bytes("offline", clean=False),
                        qos=1, retain=True)
        client.reconnect_delay_set(settings.reconnect_min_s, settings.reconnect_max_s)
        client.max_inflight_messages_set(0)           # our pump bounds what is in flight
        client.on_connect = self._on_connect
        client.on_connect_fail = self._on_connect_fail
        client.on_disconnect = self._on_disconnect
        client.on_publish = self._on_publish
        client.on_message = self._on_message
        self._client = client
        self.on_ack = None   # type: Optional[Callable[[bytes], None]]  set to receive display acks

    def __repr__(self) -> str:
        return "Publisher(%s:%d, %s, user=%s)" % (self.settings.host, self.settings.port,
                                                  self.topics.base, self.settings.username or "-")

    # -- lifecycle -------------------------------------------------------
    def start(self) -> None:
        """Connect in the background and start pumping. Never blocks or fails
        because the broker is down: paho keeps retrying with backoff."""
        if self._started:
            return
        self._started = True
        self._stopping = False
        self._client.connect_async(self.settings.host, self.settings.port,
                                   keepalive=self.settings.keepalive_s)
        self._client.loop_start()
        self._pump = threading.Thread(target=self._run, name="mqtt-outbox-pump", daemon=True)
        self._pump.start()
        log.info("MQTT publisher for %s started, broker %s:%d%s", self.topics.base,
                 self.settings.host, self.settings.port,
                 " (TLS)" if self.settings.tls.enabled else "")

    def stop(self, timeout: float = 5.0) -> None:
        """Give in-flight rows up to half the timeout to be acknowledged,
        publish status "offline" (retained) and disconnect cleanly."""
        if not self._started:
            return
        deadline = time.monotonic() + max(0.0, timeout)
        with self._cond:
            while self._connected and self._awaiting() and time.monotonic() < deadline - timeout / 2:
                self._cond.wait(0.05)
            self._stopping = True
            self._cond.notify_all()
        if self._pump is not None:
            self._pump.join(max(0.1, deadline - time.monotonic()))
        if self._connected:
            info = self.publish_status("offline", clean=True)
            if info is not None:
                info.wait_for_publish(max(0.1, deadline - time.monotonic()))
                if not info.is_published():
                    log.warning("MQTT status 'offline' was not acknowledged before stop")
        self._client.disconnect()
        self._client.loop_stop()
        self._started = False
        log.info("MQTT publisher stopped; %d row(s) left in the outbox", self.outbox.depth())

    def notify(self) -> None:
        """New rows were committed: wake the pump now rather than at its next poll."""
        with self._cond:
            self._wake = True
            self._cond.notify_all()

    @property
    def connected(self) -> bool:
        return self._connected

    def stats(self) -> Dict[str, Any]:
        with self._cond:
            out = dict(self._counts)
            out.update(connected=self._connected, inflight=self._awaiting(),
                       queue_depth=self._depth, last_error=self._last_error)
        return out

    # -- status ------------------------------------------------------------
    def _status_bytes(self, state: str, clean: Optional[bool] = None,
                      depth: Optional[int] = None) -> bytes:
        body = {}   # type: Dict[str, Any]
        if state != "offline" or clean:
            try:
                body.update(self._status() or {})
            except Exception as exc:   # a status provider bug must not stop alerts
                log.warning("status provider failed: %s", exc)
        # offline: clean=False means the last-will (connection lost)
        return encode(build_status(state, site=self.topics.site, device=self.topics.device, fields=body,
                                   client_id=self.client_id, queue_depth=depth, clean=clean).to_json())

    def publish_status(self, state: Optional[str] = None,
                       clean: Optional[bool] = None) -> Optional[mqtt.MQTTMessageInfo]:
        """Publish the retained status now (state defaults to "online").
        Returns paho's handle, or None when not connected."""
        if not self._connected:
            return None
        try:
            depth = self.outbox.depth()
        except PneumoEdgeError as exc:
            log.warning("cannot read the outbox depth for the status: %s", exc)
            depth = None
        payload = self._status_bytes(state or "online", clean=clean, depth=depth)
        return self._client.publish(self.topics.status, payload, qos=1, retain=True)

    # -- paho callbacks (network thread; memory only, never SQLite) ---------
    def _awaiting(self) -> int:
        """Publishes still waiting for their PUBACK (call with the lock held)."""
        return sum(1 for info in self._inflight.values() if not info.is_published())

    def _reset_inflight(self) -> None:
        """The connection changed: rows without a PUBACK will be re-sent;
        rows whose PUBACK came stay until the pump records them."""
        self._generation += 1
        for row_id in [r for r, info in self._inflight.items() if not info.is_published()]:
            del self._inflight[row_id]

    def _expire_inflight(self, now: float) -> None:
        """Forget publishes whose PUBACK is overdue (call with the lock held)."""
        for row_id in [r for r, info in self._inflight.items() if not info.is_published()
                       and now - self._sent_at.get(r, now) > ACK_TIMEOUT_S]:
            del self._inflight[row_id]
            log.warning("outbox row %d: no PUBACK after %.0f s; it will be sent again", row_id,
                        ACK_TIMEOUT_S)

    def _on_connect(self, client, userdata, flags, reason_code, properties) -> None:
        if reason_code.is_failure:
            with self._cond:
                self._counts["refused"] += 1
                self._last_error = "connection refused: %s" % reason_code
            log.warning("MQTT broker %s:%d refused the connection: %s", self.settings.host,
                        self.settings.port, reason_code)
            return
        with self._cond:
            self._connected = True
            self._counts["connects"] += 1
            self._last_error = None
            self._reset_inflight()       # unacked rows will be re-sent from SQLite
            self._status_due = True
            self._wake = True
            self._cond.notify_all()
        log.info("MQTT connected to %s:%d as %s (%s)", self.settings.host, self.settings.port,
                 self.client_id, reason_code)
        if self.on_ack is not None:
            client.subscribe(self.topics.ack, qos=1)

    def _on_message(self, client, userdata, msg) -> None:
        if self.on_ack is not None and msg.topic == self.topics.ack:
            self.on_ack(bytes(msg.payload))   # queues only (edge.alerts.acks)

    def _on_connect_fail(self, client, userdata) -> None:
        with self._cond:
            first = self._last_error is None or not self._last_error.startswith("cannot connect")
            self._last_error = "cannot connect to %s:%d" % (self.settings.host, self.settings.port)
        (log.warning if first else log.debug)("MQTT broker %s:%d unreachable; retrying with backoff"
                                              " %.1f-%.1f s", self.settings.host, self.settings.port,
                                              self.settings.reconnect_min_s,
                                              self.settings.reconnect_max_s)

    def _on_disconnect(self, client, userdata, flags, reason_code, properties) -> None:
        with self._cond:
            was = self._connected
            self._connected = False
            self._reset_inflight()
            if was:
                self._counts["disconnects"] += 1
                if not self._stopping:
                    self._last_error = "disconnected: %s" % reason_code
            self._cond.notify_all()
        if was and not self._stopping:
            log.warning("MQTT disconnected from %s:%d (%s); %d row(s) will be re-sent after"
                        " reconnecting", self.settings.host, self.settings.port, reason_code,
                        self._depth or 0)

    def _on_publish(self, client, userdata, mid, reason_code, properties) -> None:
        # The handle returned by publish() now says is_published(); the pump
        # reads it. Only an MQTT 5 broker can refuse a message in its PUBACK.
        with self._cond:
            if reason_code is not None and reason_code.is_failure:
                self._last_error = "broker refused message %d: %s" % (mid, reason_code)
            self._wake = True
            self._cond.notify_all()

    # -- the pump (its own thread; all SQLite work happens here) ------------
    def _run(self) -> None:
        last_status = last_prune = 0.0
        try:
            while True:
                with self._cond:
                    if self._stopping:
                        break
                    acked = self._published_rows()
                    status_due, self._status_due = self._status_due, False
                self._flush(acked)
                now = time.monotonic()
                if self._connected and (status_due or now - last_status > STATUS_INTERVAL_S):
                    self.publish_status()
                    last_status = now
                if self._connected:
                    self._send_batch()
                if now - last_prune > PRUNE_INTERVAL_S:
                    self._prune()
                    last_prune = now
                with self._cond:
                    if not (self._wake or self._stopping or self._status_due):
                        self._cond.wait(IDLE_WAIT_S)
                    self._wake = False
            with self._cond:
                acked = self._published_rows()
            self._flush(acked)
        except Exception:   # never die silently: rows would pile up unseen
            log.exception("MQTT outbox pump crashed; alerts stay queued until restart")
            with self._cond:
                self._last_error = "pump crashed"
        finally:
            self.outbox.store.close()    # this thread's connection

    def _published_rows(self) -> List[int]:
        """Rows whose own PUBACK has arrived (call with the lock held)."""
        return [row_id for row_id, info in self._inflight.items() if info.is_published()]

    def _flush(self, acked: List[int]) -> None:
        if acked:
            try:
                self.outbox.mark_sent_many(acked)
            except PneumoEdgeError as exc:
                # the broker has them; they stay in flight (not re-sent) and
                # marking is retried on the next turn of the pump
                log.error("cannot mark %d acknowledged row(s) sent: %s", len(acked), exc)
            else:
                with self._cond:
                    for row_id in acked:
                        self._inflight.pop(row_id, None)
                    self._counts["acked"] += len(acked)
        try:
            depth = self.outbox.depth()
        except PneumoEdgeError:
            depth = None
        with self._cond:
            self._depth = depth

    def _prune(self) -> None:
        try:
            self.outbox.prune_sent(self._keep_sent_s)
        except PneumoEdgeError as exc:
            log.warning("cannot prune the outbox: %s", exc)

    def _candidates(self) -> List[OutboxRow]:
        with self._cond:
            now = time.monotonic()
            self._expire_inflight(now)
            for row_id in [r for r in self._sent_at if r not in self._inflight]:
                del self._sent_at[row_id]
            room = self.settings.inflight - len(self._inflight)
            busy = set(self._inflight)
            for row_id in [r for r, t in self._held.items() if t <= now]:
                del self._held[row_id]
            held = set(self._held)
        if room <= 0:
            return []
        rows = self.outbox.pending(room + len(busy) + len(held))
        return [r for r in rows if r.id not in busy and r.id not in held][:room]

    def _send_batch(self) -> None:
        attempted, failed = [], []
        for row in self._candidates():
            with self._cond:
                if not self._connected or self._stopping:
                    break
                generation = self._generation
            try:
                info = self._client.publish(row.topic, row.payload, qos=row.qos, retain=row.retain)
            except ValueError as exc:    # bad topic or oversize payload: hold, do not spin
                failed.append((row.id, "publish refused: %s" % exc))
                with self._cond:
                    self._held[row.id] = time.monotonic() + HOLD_FAILED_S
                continue
            with self._cond:
                self._counts["published"] += 1
                if info.rc not in (mqtt.MQTT_ERR_SUCCESS, mqtt.MQTT_ERR_NO_CONN):
                    self._held[row.id] = time.monotonic() + HOLD_FAILED_S
                    failed.append((row.id, "publish failed: %s" % mqtt.error_string(info.rc)))
                    continue
                attempted.append(row.id)
                if generation == self._generation:
                    self._inflight[row.id] = info
                    self._sent_at[row.id] = time.monotonic()
                    if info.is_published():      # the PUBACK beat us here
                        self._wake = True
                # else: the connection changed meanwhile; the row stays pending
        try:
            self.outbox.mark_attempts(attempted)
            for row_id, error in failed:
                log.warning("outbox row %d: %s", row_id, error)
                self.outbox.mark_attempt(row_id, error)
        except PneumoEdgeError as exc:
            log.warning("cannot record publish attempts: %s", exc)
