"""A mosquitto on loopback for `make run` and demos, started only when no
broker is listening. Production carts point at the ward's broker instead.

The broker runs in its own session: a terminal's Ctrl-C signals the whole
foreground process group, and a broker that died with it would take the
appliance's clean `offline` with it (displays would see the last will).
The appliance stops first, then stop_broker() ends the broker; on Linux
the kernel also ends it if the appliance itself is killed.
"""
import ctypes
import logging
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import time
from typing import Callable, Optional

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


def listen_address(host: str) -> str:
    """The address mosquitto binds for a loopback host name: ::1 stays IPv6."""
    return "::1" if host == "::1" else "127.0.0.1"


def _die_with_parent() -> Optional[Callable[[], None]]:
    """Linux: SIGTERM the broker when the appliance dies (its own session
    no longer shares the terminal's signals, so a SIGKILL would orphan it).
    The kernel watches the starting *thread*: start the broker from one that
    lives as long as the broker should (the main thread does)."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None

    def set_death_signal() -> None:
        prctl(1, int(signal.SIGTERM), 0, 0, 0)    # PR_SET_PDEATHSIG
    return set_death_signal


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
        # "user": as root, mosquitto would switch to user mosquitto, which could not write this log
        # and would clear the death signal below (the kernel drops it on a change of credentials)
        fh.write("listener %d %s\nallow_anonymous true\npersistence false\nuser %s\n"
                 "log_dest file %s\n" % (port, listen_address(host), pwd.getpwuid(os.getuid()).pw_name,
                                         os.path.join(workdir, "mosquitto.log")))
    proc = subprocess.Popen([exe, "-c", conf], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True, preexec_fn=_die_with_parent())
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
