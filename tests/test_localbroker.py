"""The loopback mosquitto that `make run` starts (`pneumo-edge run --start-broker`)."""
import json
import os
import signal
import socket
import subprocess
import sys
import time

import pytest

from edge.localbroker import ensure_local_broker, find_mosquitto, listening, stop_broker
from tests.mosquitto import Subscriber, free_port
from tests.test_appliance import wait_until
from tests.tiny_models import write_tiny_models

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
needs_mosquitto = pytest.mark.skipif(find_mosquitto() is None, reason="mosquitto is not installed")


def ipv6_loopback_port():
    """A free port on ::1, or None where this machine has no IPv6 loopback."""
    if not socket.has_ipv6:
        return None
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as s:
            s.bind(("::1", 0))
            return s.getsockname()[1]
    except OSError:
        return None


@needs_mosquitto
@pytest.mark.slow
def test_ctrl_c_on_make_run_says_offline_before_the_broker_goes(tmp_path):
    """A terminal's Ctrl-C sends SIGINT to the whole foreground process group:
    the broker the appliance started must outlive the appliance's goodbye."""
    port = free_port()
    cls, seg = write_tiny_models(str(tmp_path / "models"))
    config = tmp_path / "edge.yaml"
    config.write_text(
        "site: ward-4\ndevice: cart-9\nstate_dir: %s\ncapture:\n  dir: %s\n"
        "models:\n  classifier: %s\n  segmenter: %s\n  threads: 1\n  warmup: 1\n"
        "mqtt:\n  host: 127.0.0.1\n  port: %d\n  reconnect_min_s: 0.2\n  reconnect_max_s: 1.0\n"
        % (tmp_path / "state", tmp_path / "capture", cls, seg, port))
    log_path = tmp_path / "run.log"
    with open(str(log_path), "wb") as log:   # its own process group, like a terminal's foreground job
        proc = subprocess.Popen([sys.executable, "-m", "edge.cli", "run", "--config", str(config),
                                 "--start-broker"], cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True)
    try:
        wait_until(lambda: listening("127.0.0.1", port, 0.2) or proc.poll() is not None, 60, "the broker")
        topic = "pneumo/ward-4/cart-9/status"
        with Subscriber(port, [topic]) as sub:
            states = lambda: [json.loads(m.payload.decode()) for m in sub.on(topic)]  # noqa: E731
            wait_until(lambda: any(s["state"] == "online" for s in states()), 60, "status online")
            os.killpg(proc.pid, signal.SIGINT)
            code = proc.wait(30)
            sub.wait_for(lambda s: any(x["state"] == "offline" for x in states()), 5)
            seen = states()
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)
    output = log_path.read_text()
    offline = [s for s in seen if s["state"] == "offline"]
    assert offline, "no offline status reached the display; got %s\n%s" % (seen, output[-2000:])
    assert all(s.get("clean") is True for s in offline), "the display got the last will: %s" % offline
    assert code == 0, output[-2000:]
    assert not listening("127.0.0.1", port, 0.2), "the broker it started is still running"


@needs_mosquitto
def test_broker_for_ipv6_loopback_listens_on_ipv6_loopback(tmp_path):
    port = ipv6_loopback_port()
    if port is None:
        pytest.skip("no IPv6 loopback on this machine")
    proc = ensure_local_broker("::1", port, str(tmp_path / "broker"))
    try:
        assert proc is not None
        assert listening("::1", port, 0.5)
        with open(str(tmp_path / "broker" / "mosquitto.conf")) as fh:
            assert "listener %d ::1" % port in fh.read()
    finally:
        stop_broker(proc)
    assert proc.poll() is not None


@needs_mosquitto
def test_an_existing_broker_is_left_alone(mosquitto, tmp_path):
    assert ensure_local_broker("127.0.0.1", mosquitto.port, str(tmp_path / "broker")) is None
    assert not (tmp_path / "broker").exists()


@needs_mosquitto
def test_the_broker_does_not_outlive_a_killed_appliance(tmp_path):
    """In its own session the broker no longer gets the terminal's signals; a SIGKILLed
    appliance must not leave it behind holding the port."""
    port = free_port()
    script = ("import sys, time; from edge.localbroker import ensure_local_broker; "
              "p = ensure_local_broker('127.0.0.1', %d, sys.argv[1]); print(p.pid, flush=True); time.sleep(120)"
              % port)
    proc = subprocess.Popen([sys.executable, "-c", script, str(tmp_path / "broker")], cwd=ROOT,
                            stdout=subprocess.PIPE, universal_newlines=True)
    try:
        broker_pid = int(proc.stdout.readline())
        assert listening("127.0.0.1", port, 0.2)
        proc.kill()
        proc.wait(10)
        wait_until(lambda: not listening("127.0.0.1", port, 0.2), 10, "the orphaned broker to stop")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
        proc.stdout.close()
    with pytest.raises(OSError):     # gone, not merely closed its port
        for _ in range(50):
            os.kill(broker_pid, 0)
            time.sleep(0.1)
