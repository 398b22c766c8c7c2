"""How long from "the cart hands a film over" to "its alert is on the broker",
by C-STORE versus by the capture folder. A benchmark that prints figures,
not a test:

    PYTHONPATH=. nice -n 10 python tests/bench_intake_latency.py --films 20 --side 2000

One appliance (tiny ONNX models by default, so the intake path dominates;
--bundled for the real models), a real mosquitto, a subscriber. The two ways
alternate film by film, each film sent alone (the appliance idle in between):
- folder: write the file beside incoming/, rename it in (what a careful cart does);
- c-store: one pynetdicom association per film (what a cart does), C-STORE,
  the receiver checks the data set and writes it durably (fsync) before answering.
The "cart" is a separate process (as it is a separate machine), so its DICOM
stack does not share the appliance's interpreter. The clock (CLOCK_MONOTONIC,
shared by the processes) starts before the cart touches the film and stops
when the subscriber has the alert.
"""
import argparse
import os
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from edge.alerts.schema import decode as decode_payload  # noqa: E402
from edge.app import Appliance  # noqa: E402
from edge.bench.stats import ratio, summarize  # noqa: E402
from edge.settings import DicomIntakeSettings, ModelSettings  # noqa: E402
from tests.dicom_net import associate, make_film  # noqa: E402
from tests.mosquitto import Mosquitto, Subscriber  # noqa: E402
from tests.test_appliance import make_settings  # noqa: E402


class Arrivals:
    def __init__(self, sub: Subscriber, topic: str):
        self.sub, self.topic, self.seen = sub, topic, {}
        self._cond = threading.Condition()
        sub.client.on_message = self._on_message

    def _on_message(self, client, userdata, msg):
        if msg.topic == self.topic:
            uid = decode_payload(bytes(msg.payload))["source"]["sop_instance_uid"]
            with self._cond:
                self.seen.setdefault(uid, time.monotonic())
                self._cond.notify_all()

    def wait(self, uid: str, timeout: float = 60.0) -> float:
        with self._cond:
            if not self._cond.wait_for(lambda: uid in self.seen, timeout):
                raise RuntimeError("no alert for %s within %.0f s" % (uid, timeout))
            return self.seen[uid]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--films", type=int, default=20, help="films per way (default 20)")
    ap.add_argument("--side", type=int, default=2000, help="film side in pixels (12-bit, default 2000)")
    ap.add_argument("--bundled", action="store_true", help="the bundled models instead of tiny ones")
    ap.add_argument("--scu", choices=("pynetdicom", "dcmtk"), default="pynetdicom",
                    help="the cart's DICOM stack: pynetdicom in a long-lived process (default), or "
                         "DCMTK's storescu, one process per film (its start-up is counted)")
    ap.add_argument("--cart", type=int, metavar="PORT", help=argparse.SUPPRESS)   # the cart process
    args = ap.parse_args()
    if args.cart:
        return cart_process(args.cart, args.scu)
    work = tempfile.mkdtemp(prefix="bench-intake-")
    broker = Mosquitto(os.path.join(work, "mosquitto")).start()
    settings = make_settings(_Path(work), broker.port)
    if args.bundled:
        settings.models = ModelSettings(threads=1, warmup=2)
    settings.intake.dicom = DicomIntakeSettings(listen=True, port=0, bind_address="127.0.0.1")
    app = Appliance(settings)
    staged = os.path.join(work, "staged")
    os.makedirs(staged)
    times = {"folder": [], "c-store": []}
    handover = {"folder": [], "c-store": []}     # first byte -> renamed in / success status
    after = {"folder": [], "c-store": []}        # that moment -> alert at the display
    try:
        with Subscriber(broker.port, [app.topics.alert]) as sub:
            arrivals = Arrivals(sub, app.topics.alert)
            app.start()
            port = app.hospital.receiver.port
            cart = subprocess.Popen([sys.executable, os.path.abspath(__file__), "--cart", str(port),
                                     "--scu", args.scu],
                                    stdin=subprocess.PIPE, stdout=subprocess.PIPE, universal_newlines=True)
            for i in range(2 * args.films + 2):          # the first two (one per way) are warm-up
                way = "folder" if i % 2 == 0 else "c-store"
                seed = 1000 + i
                path = make_film(os.path.join(staged, "f%d.dcm" % i), seed=seed, positive=bool(i % 3 == 0),
                                 size=(args.side, args.side))
                uid = "1.2.826.0.1.3680043.8.498.%d" % (seed + 1)
                cart.stdin.write("%s %s %s\n" % (way, path, os.path.join(app.folders.incoming, "f%d.dcm" % i)))
                cart.stdin.flush()
                reply = cart.stdout.readline().split()
                if not reply or reply[0] != "ok":
                    raise RuntimeError("the cart failed: %s" % reply)
                t0, handed = float(reply[1]), float(reply[2])
                t1 = arrivals.wait(uid)
                if i >= 2:
                    times[way].append((t1 - t0) * 1000.0)
                    handover[way].append((handed - t0) * 1000.0)
                    after[way].append((t1 - handed) * 1000.0)
                time.sleep(0.2)                              # idle in between: one film at a time
            cart.stdin.close()
            cart.wait(30)
            mode = app.watcher.mode
    finally:
        app.stop()
        broker.stop()
    print("film %dx%d 12-bit (%.1f MB), %s models, %d films per way, watcher %s, cart SCU %s" % (
        args.side, args.side, args.side * args.side * 2 / 1e6, "bundled" if args.bundled else "tiny",
        args.films, mode, args.scu))
    print("%-8s %8s %8s %8s %8s  %14s %14s" % ("way", "p50 ms", "p95 ms", "min ms", "max ms",
                                            "handover p50", "then->alert p50"))
    rows = {}
    for way in ("folder", "c-store"):
        s = summarize(times[way])
        rows[way] = s
        print("%-8s %8.1f %8.1f %8.1f %8.1f  %14.1f %14.1f" % (way, s["p50"], s["p95"], s["min"], s["max"],
                                                            summarize(handover[way])["p50"],
                                                            summarize(after[way])["p50"]))
    print("c-store / folder p50 ratio: %.2f (goal <= 1.20)" % ratio(rows["c-store"]["p50"], rows["folder"]["p50"]))
    return 0


def cart_process(port: int, scu: str) -> int:
    """Reads "<way> <film> <incoming path>" lines; hands each film over; prints
    "ok <t0> <t1>": before the first byte, and once handed over (renamed in / success status)."""
    for line in sys.stdin:
        way, film, dest = line.split()
        data = open(film, "rb").read()         # the cart has the film in hand before the clock starts
        t0 = time.monotonic()
        if way == "folder":
            part = os.path.join(os.path.dirname(os.path.dirname(dest)), os.path.basename(dest) + ".part")
            with open(part, "wb") as fh:
                fh.write(data)
            os.rename(part, dest)
        elif scu == "dcmtk":
            done = subprocess.run(["/usr/bin/storescu", "-aet", "CART1", "-aec", "PNEUMO_EDGE", "127.0.0.1",
                                   str(port), film], capture_output=True)
            if done.returncode != 0:
                print("failed storescu", flush=True)
                continue
        else:
            assoc = associate(port)
            status = assoc.send_c_store(film).Status
            assoc.release()
            if status != 0:
                print("failed 0x%04X" % status, flush=True)
                continue
        print("ok %.6f %.6f" % (t0, time.monotonic()), flush=True)
    return 0


class _Path(str):
    """make_settings() wants a pathlib-like tmp_path (supports '/')."""
    def __truediv__(self, other):
        return _Path(os.path.join(self, other))


if __name__ == "__main__":
    sys.exit(main())
