"""A real RabbitMQ (with its MQTT plugin) on free loopback ports, its own
node name, config, data and Erlang port mapper, started by the tests.
About 15 s to start on a busy 2-core host, so its tests are marked `rabbitmq`
and run on request (pytest -m rabbitmq); they skip where it is not installed."""
import os
import signal
import socket
import subprocess
import time
from typing import Optional

from tests.mosquitto import free_port

SERVER = "/usr/lib/rabbitmq/bin/rabbitmq-server"   # not the wrapper, which switches to user rabbitmq
SKIP_REASON = "RabbitMQ is not installed (apt-get install rabbitmq-server)"


def rabbitmq_available() -> bool:
    return os.access(SERVER, os.X_OK)


def _epmd() -> Optional[str]:
    import glob
    found = sorted(glob.glob("/usr/lib/erlang/erts-*/bin/epmd"))
    return found[-1] if found else None


class RabbitMQ:
    def __init__(self, workdir: str):
        self.workdir = workdir
        os.makedirs(workdir, exist_ok=True)
        self.port, amqp, self.dist_port, self.epmd_port = free_port(), free_port(), free_port(), free_port()
        with open(os.path.join(workdir, "rabbitmq.conf"), "w") as fh:
            fh.write("listeners.tcp.default = 127.0.0.1:%d\nmqtt.listeners.tcp.default = 127.0.0.1:%d\n"
                     "mqtt.allow_anonymous = true\nloopback_users = none\n" % (amqp, self.port))
        with open(os.path.join(workdir, "enabled_plugins"), "w") as fh:
            fh.write("[rabbitmq_mqtt].\n")
        self.env = dict(os.environ, HOME=workdir, RABBITMQ_NODENAME="pneumotest%d@localhost" % self.port,
                        RABBITMQ_CONFIG_FILE=os.path.join(workdir, "rabbitmq"),
                        RABBITMQ_ENABLED_PLUGINS_FILE=os.path.join(workdir, "enabled_plugins"),
                        RABBITMQ_MNESIA_BASE=os.path.join(workdir, "mnesia"),
                        RABBITMQ_LOG_BASE=os.path.join(workdir, "log"),
                        RABBITMQ_DIST_PORT=str(self.dist_port), ERL_EPMD_PORT=str(self.epmd_port),
                        ERL_EPMD_ADDRESS="127.0.0.1")
        self.proc = None  # type: Optional[subprocess.Popen]

    def start(self, timeout: float = 120.0) -> "RabbitMQ":
        self.proc = subprocess.Popen([SERVER], env=self.env, start_new_session=True,
                                     stdout=open(os.path.join(self.workdir, "out.log"), "ab"),
                                     stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError("RabbitMQ exited with %s" % self.proc.returncode)
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    return self
            except OSError:
                time.sleep(0.5)
        self.stop()
        raise RuntimeError("RabbitMQ's MQTT listener did not come up within %.0f s" % timeout)

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is not None and proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(10)
        epmd = _epmd()
        if epmd:   # the port mapper this node started on its own port
            subprocess.run([epmd, "-port", str(self.epmd_port), "-kill"], env=self.env,
                           capture_output=True, timeout=10)
