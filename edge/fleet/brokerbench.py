"""Alerts per second through one broker from N simulated carts, to one display.

    python -m edge.fleet.brokerbench --host 127.0.0.1 --port 1883 --carts 10 --alerts 200

Each cart is its own process (its own MQTT client, as a real cart is) that
publishes `--alerts` alert-sized payloads at QoS 1, with up to `--inflight`
unacknowledged at once (the appliance's mqtt.inflight); one display subscribes
to <prefix>/+/+/alert at QoS 1. Printed: delivered/sent (must be equal), the
aggregate rate at the display (first to last message), and the publish->
deliver latency p50/p95 (one machine's monotonic clock). On one small host the
Python clients, not the broker, are often the limit: the figures are a floor
for the broker.
"""
import argparse
import json
import multiprocessing
import os
import sys
import threading
import time
from typing import List, Optional

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from edge.bench.stats import percentile

PAD = "x" * 1500        # an alert payload is 1.5-2.5 kB of JSON


def _client(client_id: str, username: str, password: str) -> mqtt.Client:
    c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv311)
    if username:
        c.username_pw_set(username, password)
    return c


def cart(host: str, port: int, prefix: str, index: int, alerts: int, inflight: int,
         username: str, password: str, go) -> None:
    c = _client("bench-cart-%d-%d" % (index, os.getpid()), username, password)
    c.max_inflight_messages_set(inflight)
    c.connect(host, port, keepalive=30)
    c.loop_start()
    topic = "%s/bench/cart-%d/alert" % (prefix, index)
    go.wait()
    pending = []
    for n in range(alerts):
        body = json.dumps({"alert_id": "%d-%d" % (index, n), "t": time.monotonic(), "pad": PAD})
        pending.append(c.publish(topic, body, qos=1))
        if len(pending) >= inflight:
            pending.pop(0).wait_for_publish(30)
    for info in pending:
        info.wait_for_publish(30)
    c.disconnect()
    c.loop_stop()


def run(host: str, port: int, carts: int, alerts: int, inflight: int = 20, prefix: str = "pneumo",
        username: str = "", password: str = "", timeout: float = 300.0,
        cart_ports: Optional[List[int]] = None) -> dict:
    """cart_ports: each cart publishes to its own broker on `host` (e.g. bridged to
    the one at `port`, where the display is); default: all to `port`."""
    got = {}
    latencies = []  # type: List[float]
    first_last = [None, None]  # type: List[Optional[float]]
    lock = threading.Condition()
    total = carts * alerts

    def on_message(client, userdata, msg):
        now = time.monotonic()
        body = json.loads(msg.payload)
        with lock:
            if body["alert_id"] not in got:
                got[body["alert_id"]] = True
                latencies.append((now - body["t"]) * 1000.0)
                first_last[0] = first_last[0] or now
                first_last[1] = now
                lock.notify_all()

    subscribed = threading.Event()
    display = _client("bench-display-%d" % os.getpid(), username, password)
    display.on_message = on_message
    display.on_subscribe = lambda *a: subscribed.set()
    display.on_connect = lambda c, u, f, rc, p: c.subscribe("%s/bench/+/alert" % prefix, qos=1)
    display.connect(host, port, keepalive=30)
    display.loop_start()
    if not subscribed.wait(10):
        raise RuntimeError("the display could not subscribe at %s:%d" % (host, port))
    go = multiprocessing.Event()
    procs = [multiprocessing.Process(target=cart, args=(host, cart_ports[i] if cart_ports else port, prefix, i,
                                                        alerts, inflight, username, password, go))
             for i in range(carts)]
    for p in procs:
        p.start()
    time.sleep(1.0)                       # every cart connected before the clock starts
    t0 = time.monotonic()
    go.set()
    deadline, last, idle_since = t0 + timeout, -1, time.monotonic()
    while time.monotonic() < deadline:
        with lock:
            if lock.wait_for(lambda: len(got) >= total, 1.0):
                break
            count = len(got)
        if count != last:
            last, idle_since = count, time.monotonic()
        elif not any(p.is_alive() for p in procs) and time.monotonic() - idle_since > 5.0:
            break                          # every cart is done and nothing more arrives
    for p in procs:
        p.join(30)
    display.disconnect()
    display.loop_stop()
    span = (first_last[1] or t0) - t0
    return {"carts": carts, "sent": total, "delivered": len(got),
            "alerts_per_s": len(got) / span if span > 0 else 0.0,
            "p50_ms": percentile(latencies, 50) if latencies else None,
            "p95_ms": percentile(latencies, 95) if latencies else None}


def main(argv: Optional[List[str]] = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m edge.fleet.brokerbench", description=__doc__.split("\n")[0])
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=1883)
    ap.add_argument("--carts", type=int, nargs="+", default=[1, 5, 10])
    ap.add_argument("--alerts", type=int, default=200, help="per cart")
    ap.add_argument("--inflight", type=int, default=20)
    ap.add_argument("--prefix", default="pneumo")
    ap.add_argument("--username", default="")
    ap.add_argument("--password-env", default="", help="NAME of an environment variable with the password")
    args = ap.parse_args(argv)
    password = os.environ.get(args.password_env, "") if args.password_env else ""
    print("%6s %8s %10s %12s %8s %8s" % ("carts", "sent", "delivered", "alerts/s", "p50 ms", "p95 ms"))
    for n in args.carts:
        r = run(args.host, args.port, n, args.alerts, args.inflight, args.prefix, args.username, password)
        print("%6d %8d %10d %12.0f %8.1f %8.1f" % (r["carts"], r["sent"], r["delivered"], r["alerts_per_s"],
                                                 r["p50_ms"] or 0, r["p95_ms"] or 0))
        if r["delivered"] < r["sent"]:
            print("       %d alerts never reached the display: the broker dropped them for a subscriber "
                  "that fell behind (mosquitto: max_queued_messages, default 1000)" % (r["sent"] - r["delivered"]))
        sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
