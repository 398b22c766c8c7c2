"""Bedside display figures: file arrival -> on-screen render, and memory after many alerts.

    python bench/display_render.py [--films 20] [--alerts 1000] [--config config/edge.yaml]

Everything real: a mosquitto on a free loopback port, the appliance (the
models in the config, ONNX Runtime), `pneumo-edge display` as its own
process, and Debian's Chromium (headless, via Playwright) showing the page.

1. Latency: each film is renamed into incoming/ one at a time (the next only
   after the previous is on screen, so no queueing); arrival = the rename,
   render = the page's own timestamp (requestAnimationFrame after the card is
   in the DOM, epoch ms). Also split at the display server's receipt of the
   alert: appliance+broker vs display+browser.
2. Memory: N synthetic alerts, each with a 60 KB overlay JPEG, published
   straight to the broker; the display process's RSS and the page's JS heap
   and DOM size before and after (both keep the last display.history alerts).
"""
import argparse
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

import cv2  # noqa: E402
import numpy as np  # noqa: E402
import paho.mqtt.client as mqtt  # noqa: E402
from paho.mqtt.enums import CallbackAPIVersion  # noqa: E402

from edge.alerts.schema import encode  # noqa: E402
from edge.app import Appliance  # noqa: E402
from edge.config import load_config  # noqa: E402
from edge.localbroker import ensure_local_broker, stop_broker  # noqa: E402

CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rss_mb(pid: int) -> float:
    with open("/proc/%d/status" % pid) as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024.0
    return float("nan")


def pct(values, q):
    values = sorted(values)
    return values[min(len(values) - 1, int(round(q * (len(values) - 1))))]


def film(seed: int, positive: bool) -> bytes:
    rng = np.random.default_rng(seed)
    px = rng.normal(70, 12, (1024, 1024)).clip(0, 255).astype(np.uint8)
    if positive:
        px[150:400, 100:330] = 250
    ok, buf = cv2.imencode(".png", px)
    return buf.tobytes()


def wait(predicate, timeout, what):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.02)
    raise SystemExit("timed out after %.0f s waiting for %s" % (timeout, what))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--config", default=os.path.join(ROOT, "config", "edge.yaml"))
    ap.add_argument("--films", type=int, default=20)
    ap.add_argument("--alerts", type=int, default=1000)
    args = ap.parse_args()
    from playwright.sync_api import sync_playwright

    tmp = tempfile.mkdtemp(prefix="display-bench-")
    mqtt_port, http_port = free_port(), free_port()
    broker = ensure_local_broker("127.0.0.1", mqtt_port, os.path.join(tmp, "broker"))
    overrides = {"mqtt.port": mqtt_port, "capture.dir": os.path.join(tmp, "capture"),
                 "state_dir": os.path.join(tmp, "state"), "site": "bench", "device": "cart-1"}
    settings = load_config(args.config, overrides)
    settings.capture.settle_s = 0.05
    cfg = os.path.join(tmp, "display.yaml")
    with open(cfg, "w") as fh:
        fh.write("mqtt:\n  port: %d\ndisplay:\n  port: %d\n  display_id: bench-display\n  predict: false\n"
                 % (mqtt_port, http_port))
    display = subprocess.Popen([sys.executable, "-m", "edge.cli", "display", "--config", cfg,
                                "--log-level", "WARNING"], cwd=ROOT, env=dict(os.environ, PYTHONPATH=ROOT))
    app = Appliance(settings)
    try:
        app.start()
        url = "http://127.0.0.1:%d/" % http_port
        wait(lambda: _up(url), 30, "the display to serve")
        start_rss = rss_mb(display.pid)
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
            page = browser.new_page(viewport={"width": 1920, "height": 1080})
            page.goto(url)
            page.wait_for_selector("#conn.ok", timeout=30000)
            total, appliance_part, display_part = [], [], []
            staging = os.path.join(tmp, "staging")
            os.makedirs(staging)
            for i in range(args.films):
                name = "film%03d.png" % i
                src = os.path.join(staging, name)
                with open(src, "wb") as fh:
                    fh.write(film(i, positive=i % 2 == 0))
                arrived = time.time() * 1000.0
                os.rename(src, os.path.join(app.folders.incoming, name))
                outcome = app.outcomes.get(timeout=120)
                alert_id = outcome.alert_id
                rendered = wait(lambda: page.evaluate("window.pneumo.renders[%r]" % alert_id), 60,
                                "the render of %s" % name)
                received = page.evaluate("window.pneumo.state.alerts.get(%r).received_ms" % alert_id)
                total.append(rendered - arrived)
                appliance_part.append(received - arrived)
                display_part.append(rendered - received)
            print("films: %d (%s, backend %s)" % (args.films, os.path.relpath(args.config, ROOT),
                                                   app.pipeline.models[0].backend))
            for label, xs in (("file arrival -> on-screen render", total),
                              ("  arrival -> display server has the alert", appliance_part),
                              ("  display server -> rendered in the page", display_part)):
                print("%-44s p50 %7.1f ms   p95 %7.1f ms   max %7.1f ms"
                      % (label, statistics.median(xs), pct(xs, 0.95), max(xs)))

            before_rss = rss_mb(display.pid)
            before_js = page.evaluate("performance.memory.usedJSHeapSize") / 1048576.0
            before_dom = page.evaluate("document.getElementsByTagName('*').length")
            pub = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv311)
            pub.connect("127.0.0.1", mqtt_port)
            pub.loop_start()
            jpeg = os.urandom(60 * 1024)
            t0 = time.monotonic()
            for n in range(args.alerts):
                alert_id = "%032x" % (0xbe0000 + n)
                body = {"schema_version": 1, "alert_id": alert_id, "created_at": "2024-05-01T08:30:00.000Z",
                        "site": "bench", "device": "cart-%d" % (n % 4), "intended_use": "demo",
                        "source": {"file_name": "synthetic%04d.dcm" % n},
                        "finding": {"pneumothorax": n % 10 == 0, "probability": 0.5, "side": "right",
                                    "area_cm2": 3.0, "contours": [[[10, 10], [90, 10], [90, 90], [10, 90]]]},
                        "models": [], "image": {"width": 100, "height": 100}}
                pub.publish("pneumo/bench/cart-%d/alert" % (n % 4), encode(body), qos=1)
                info = pub.publish("pneumo/bench/cart-%d/overlay/%s" % (n % 4, alert_id), jpeg, qos=1)
                if n % 50 == 49:
                    info.wait_for_publish(30)
            last = "%032x" % (0xbe0000 + args.alerts - 1)
            wait(lambda: page.evaluate("window.pneumo.renders[%r]" % last), 300, "the last synthetic alert")
            elapsed = time.monotonic() - t0
            time.sleep(2.0)
            after_rss = rss_mb(display.pid)
            after_js = page.evaluate("performance.memory.usedJSHeapSize") / 1048576.0
            after_dom = page.evaluate("document.getElementsByTagName('*').length")
            pub.loop_stop()
            pub.disconnect()
            print("%d alerts (+60 KB overlay each) through the display in %.1f s" % (args.alerts, elapsed))
            print("display process RSS      at start %6.1f MB   before %6.1f MB   after %6.1f MB"
                  % (start_rss, before_rss, after_rss))
            print("page JS heap             before %6.1f MB   after %6.1f MB" % (before_js, after_js))
            print("page DOM elements        before %6d      after %6d" % (before_dom, after_dom))
            browser.close()
    finally:
        app.stop()
        display.send_signal(signal.SIGTERM)
        display.wait(20)
        stop_broker(broker)
    return 0


def _up(url: str) -> bool:
    import urllib.request
    try:
        with urllib.request.urlopen(url + "healthz", timeout=1) as r:
            return json.loads(r.read()).get("mqtt_connected")
    except OSError:
        return False


if __name__ == "__main__":
    sys.exit(main())
