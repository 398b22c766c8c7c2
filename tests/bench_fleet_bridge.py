"""Alerts/s from N carts, each through its own mosquitto bridged to one hospital
mosquitto (the topology of docs/DEVICE.md), against the same carts publishing
straight to the hospital broker. "bridged" is the generated bridge (the cart's
broker saves its queue after every change); "bridged-nosave" the same bridge
with mosquitto's default saving (at shutdown), to show what that safety costs.
A benchmark that prints figures:

    PYTHONPATH=. nice -n 10 python tests/bench_fleet_bridge.py --carts 1 5 10 --alerts 200
"""
import argparse
import os
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from edge.alerts.topics import Topics  # noqa: E402
from edge.fleet.bridge import bridge_lines, broker_lines  # noqa: E402
from edge.fleet.brokerbench import run  # noqa: E402
from tests.mosquitto import Mosquitto  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--carts", type=int, nargs="+", default=[1, 5, 10])
    ap.add_argument("--alerts", type=int, default=200)
    args = ap.parse_args()
    work = tempfile.mkdtemp(prefix="bench-fleet-")
    queue = ["max_queued_messages 100000"]
    print("%-15s %6s %10s %10s %8s %8s" % ("path", "carts", "delivered", "alerts/s", "p50 ms", "p95 ms"))
    for n in args.carts:
        hospital = Mosquitto(os.path.join(work, "hospital-%d" % n), extra=queue).start()
        brokers = {"bridged": [], "bridged-nosave": []}
        try:
            for path, options in (("bridged", broker_lines()[1:]), ("bridged-nosave", queue)):
                for i in range(n):
                    # brokerbench's cart i publishes to pneumo/bench/cart-<i>/alert
                    topics = Topics("pneumo", "bench", "cart-%d" % i)
                    lines = options + bridge_lines(topics, "127.0.0.1", hospital.port)
                    brokers[path].append(Mosquitto(os.path.join(work, "%s-%d-%d" % (path, n, i)),
                                                   persistence=True, extra=lines).start())
            for path in ("direct", "bridged", "bridged-nosave"):
                ports = [b.port for b in brokers[path]] if path in brokers else None
                r = run("127.0.0.1", hospital.port, n, args.alerts, cart_ports=ports)
                print("%-15s %6d %10s %10.0f %8.1f %8.1f" % (path, n, "%d/%d" % (r["delivered"], r["sent"]),
                                                            r["alerts_per_s"], r["p50_ms"] or 0, r["p95_ms"] or 0))
                sys.stdout.flush()
        finally:
            for b in brokers["bridged"] + brokers["bridged-nosave"]:
                b.stop()
            hospital.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
