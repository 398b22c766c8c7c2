"""A real mosquitto broker on a free loopback port, and a subscriber helper.

Shared by every integration test that needs MQTT: `Mosquitto` writes its own
config into a temporary directory, `Subscriber` collects messages per topic.
Tests skip (not fail) where mosquitto is not installed.
"""
import getpass
import os
import shutil
import socket
import subprocess
import threading
import time
from typing import Callable, Dict, List, Optional, Sequence

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion


def mosquitto_binary() -> Optional[str]:
    if os.access("/usr/sbin/mosquitto", os.X_OK):
        return "/usr/sbin/mosquitto"
    return shutil.which("mosquitto")


SKIP_REASON = ("mosquitto is not installed (apt-get install mosquitto); "
               "MQTT integration tests need a real broker")


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def stop_process(proc: Optional[subprocess.Popen], grace_s: float) -> None:
    """SIGTERM a test server, SIGKILL it if it is still there after `grace_s`."""
    if proc is None or proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(grace_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(5)


class Mosquitto:
    """One broker process. `restart()` keeps the port, so clients reconnect.

    password_file: a mosquitto_passwd file (anonymous access is then refused).
    tls: dict(cafile=, certfile=, keyfile=) for a TLS listener.
    persistence: keep sessions and queued QoS 1 messages across restart(),
    so a persistent Subscriber misses nothing sent while it was cut off.
    """

    def __init__(self, workdir: str, password_file: Optional[str] = None,
                 tls: Optional[Dict[str, str]] = None, persistence: bool = False,
                 extra: Sequence[str] = ()):
        binary = mosquitto_binary()
        if binary is None:
            raise RuntimeError(SKIP_REASON)
        self.binary = binary
        self.workdir = workdir
        os.makedirs(workdir, exist_ok=True)
        self.port = free_port()
        self.log_path = os.path.join(workdir, "mosquitto.log")
        self.conf_path = os.path.join(workdir, "mosquitto.conf")
        lines = [
            "listener %d 127.0.0.1" % self.port,
            "persistence %s" % ("true" if persistence else "false"),
            "persistence_location %s/" % workdir,
            "log_dest file %s" % self.log_path,
            "log_type all",
            "user %s" % getpass.getuser(),   # as root, do not drop to user "mosquitto"
        ]
        if password_file:
            lines += ["allow_anonymous false", "password_file %s" % password_file]
        else:
            lines += ["allow_anonymous true"]
        if tls:
            lines += ["cafile %s" % tls["cafile"], "certfile %s" % tls["certfile"],
                      "keyfile %s" % tls["keyfile"]]
        lines += list(extra)
        with open(self.conf_path, "w") as fh:
            fh.write("\n".join(lines) + "\n")
        self.proc = None  # type: Optional[subprocess.Popen]

    def start(self, timeout: float = 10.0) -> "Mosquitto":
        self.proc = subprocess.Popen([self.binary, "-c", self.conf_path],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                err = self.proc.stderr.read().decode(errors="replace") if self.proc.stderr else ""
                raise RuntimeError("mosquitto exited with %s: %s\n%s"
                                   % (self.proc.returncode, err, self.log_tail()))
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    return self
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise RuntimeError("mosquitto did not listen on port %d within %.0f s\n%s"
                           % (self.port, timeout, self.log_tail()))

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        stop_process(proc, grace_s=5)
        if proc is not None and proc.stderr:
            proc.stderr.close()

    def restart(self) -> "Mosquitto":
        self.stop()
        return self.start()

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def log_tail(self, lines: int = 30) -> str:
        try:
            with open(self.log_path, errors="replace") as fh:
                return "".join(fh.readlines()[-lines:])
        except OSError:
            return "(no mosquitto log)"


class Message:
    def __init__(self, topic: str, payload: bytes, retain: bool, qos: int):
        self.topic, self.payload, self.retain, self.qos = topic, payload, retain, qos

    def __repr__(self) -> str:
        return "Message(%s, %d bytes, retain=%s)" % (self.topic, len(self.payload), self.retain)


class Subscriber:
    """A paho (VERSION2) client that records every message, per topic.
    With a client_id and clean_session=False (and a broker with persistence)
    it also gets what was published while it was disconnected.

        with Subscriber(port, ["pneumo/#"]) as sub:
            sub.wait_for(lambda s: len(s.on("pneumo/a/b/alert")) >= 3, timeout=20)
    """

    def __init__(self, port: int, filters: Sequence[str], host: str = "127.0.0.1",
                 username: Optional[str] = None, password: Optional[str] = None,
                 client_id: str = "", clean_session: bool = True):
        self.messages = []   # type: List[Message]
        self._cond = threading.Condition()
        self._subscribed = threading.Event()
        self._filters = list(filters)
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id,
                                  clean_session=clean_session, protocol=mqtt.MQTTv311)
        if username:
            self.client.username_pw_set(username, password)
        self.client.on_connect = self._on_connect
        self.client.on_subscribe = lambda *a: self._subscribed.set()
        self.client.on_message = self._on_message
        self.client.reconnect_delay_set(0.2, 1.0)
        self.client.connect_async(host, port, keepalive=10)
        self.client.loop_start()
        if not self._subscribed.wait(10):
            self.close()
            raise RuntimeError("subscriber could not subscribe on port %d" % port)

    def _on_connect(self, client, userdata, flags, reason_code, properties):
        if not reason_code.is_failure:
            client.subscribe([(f, 1) for f in self._filters])

    def _on_message(self, client, userdata, msg):
        with self._cond:
            self.messages.append(Message(msg.topic, bytes(msg.payload), bool(msg.retain), msg.qos))
            self._cond.notify_all()

    def on(self, topic: str) -> List[Message]:
        with self._cond:
            return [m for m in self.messages if m.topic == topic]

    def wait_for(self, predicate: Callable[["Subscriber"], bool], timeout: float = 20.0) -> bool:
        """True as soon as predicate(self) holds; False after timeout."""
        deadline = time.monotonic() + timeout
        while not predicate(self):
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            with self._cond:
                self._cond.wait(min(left, 0.2))   # short: a message may land between checks
        return True

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()

    def __enter__(self) -> "Subscriber":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
