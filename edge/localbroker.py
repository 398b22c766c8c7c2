"""A mosquitto on loopback for `make run` and demos, started only when no
broker is listening. Production carts point at the ward's broker instead."""
import logging
import os
import shutil
import socket
import subprocess
import time
from typing import Optional

from edge.errors import AlertError

log = logging.getLogger(__name__)


def listening(host: str, port: int, timeout: float = 0.5) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def find_mosquitto() -> Optional[str]:
    return shutil.which("mosquitto") or next(
        (p for p in ("/usr/sbin/mosquitto", "/usr/local/sbin/mosquitto") if os.path.exists(p)), None)


def ensure_local_broker(host: str, port: int, workdir: str) -> Optional[subprocess.Popen]:
    """Return None if a broker already answers on host:port, else start one."""
    if listening(host, port):
        log.info("broker already listening on %s:%d", host, port)
        return None
    if host not in ("127.0.0.1", "localhost", "::1"):
        raise AlertError("no broker answers on %s:%d and a local one can only be started on loopback" % (host, port))
    exe = find_mosquitto()
    if exe is None:
        raise AlertError("no broker on %s:%d and mosquitto is not installed: apt-get install mosquitto" % (host, port))
    os.makedirs(workdir, exist_ok=True)
    conf = os.path.join(workdir, "mosquitto.conf")
    with open(conf, "w") as fh:
        fh.write("listener %d 127.0.0.1\nallow_anonymous true\npersistence false\n"
                 "log_dest file %s\n" % (port, os.path.join(workdir, "mosquitto.log")))
    proc = subprocess.Popen([exe, "-c", conf], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if listening(host, port, 0.2):
            log.info("started mosquitto on %s:%d (pid %d, log in %s)", host, port, proc.pid, workdir)
            return proc
        if proc.poll() is not None:
            break
        time.sleep(0.1)
    proc.kill()
    raise AlertError("mosquitto did not start on %s:%d; see %s" % (host, port, os.path.join(workdir, "mosquitto.log")))


def stop_broker(proc: Optional[subprocess.Popen]) -> None:
    if proc is not None and proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
