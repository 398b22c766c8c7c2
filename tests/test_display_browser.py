"""The bedside page in a real browser (Chromium, headless) against a real
appliance (tiny ONNX models) and a real mosquitto.

Screenshots land in each test's tmp dir (screens/*.png) for a person to look at.
"""
import json
import os
import re
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from edge.app import Appliance
from edge.web.run import Display
from tests.browser import CHROMIUM_ARGS, chromium_binary, launch, skip_reason
from tests.dicom_factory import chest_phantom, write_dicom
from tests.mosquitto import Mosquitto, mosquitto_binary
from tests.test_appliance import ROOT, drop_dicom, make_settings, wait_until
from tests.tiny_models import write_tiny_models

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(skip_reason() is not None, reason=skip_reason() or ""),
              pytest.mark.skipif(mosquitto_binary() is None, reason="mosquitto is not installed")]


@pytest.fixture(scope="module")
def playwright():
    from playwright.sync_api import sync_playwright
    with sync_playwright() as p:
        yield p


@pytest.fixture(scope="module")
def browser(playwright):
    b = launch(playwright)
    yield b
    b.close()


@pytest.fixture
def broker(tmp_path):
    # persistence: the display's session (and what is queued for it) outlives a broker restart
    b = Mosquitto(str(tmp_path / "mosquitto"), persistence=True).start()
    yield b
    b.stop()


class Stack:
    """A broker, an appliance and a display, all real, on loopback."""

    def __init__(self, tmp_path, broker, browser, **alerts):
        self.tmp, self.broker = tmp_path, broker
        self.settings = make_settings(tmp_path, broker.port)
        self.settings.display.port = 0
        self.settings.display.display_id = "ward-monitor-1"
        for k, v in alerts.items():
            setattr(self.settings.alerts, k, v)
        self.app = None
        self.display = Display(self.settings)
        self.display.start()
        self.page = browser.new_page(viewport={"width": 1400, "height": 1000})
        self.errors = []
        self.page.on("pageerror", lambda e: self.errors.append(str(e)))
        os.makedirs(str(tmp_path / "screens"), exist_ok=True)

    def start_app(self):
        self.app = Appliance(self.settings)
        self.app.start()
        return self.app

    def open(self, path=""):
        self.page.goto(self.display.url + path)
        if not path:
            self.page.wait_for_selector("#conn.ok", timeout=20000)

    def shot(self, name):
        path = str(self.tmp / "screens" / (name + ".png"))
        self.page.screenshot(path=path, full_page=True)
        return path

    def close(self):
        self.page.close()
        self.display.stop()
        if self.app is not None:
            self.app.stop()
        assert not self.errors, self.errors


@pytest.fixture
def stack(tmp_path, broker, browser):
    s = Stack(tmp_path, broker, browser, escalate_after_s=1.0)
    yield s
    s.close()


def study(page, alert_id):
    return page.locator('.study[data-alert-id="%s"]' % alert_id)


def test_a_dropped_film_appears_with_its_region_and_acknowledge_survives_a_restart(stack):
    app = stack.start_app()
    stack.open()
    drop_dicom(app.folders.incoming, "bed12.dcm", seed=1, positive=True)
    outcome = app.outcomes.get(timeout=30)
    card = study(stack.page, outcome.alert_id)
    card.wait_for(timeout=20000)
    card.locator("img").wait_for(timeout=20000)        # the overlay JPEG arrived too
    assert card.locator(".decision").inner_text() == "PNEUMOTHORAX SUSPECTED"
    assert card.locator(".side").inner_text() == "right"
    assert card.locator(".size").inner_text().endswith("cm\u00b2")
    assert "NOT FOR CLINICAL USE" in card.locator(".demo").inner_text()
    assert "tiny-segmenter" in card.locator(".models").inner_text()
    assert stack.page.locator("#alarm").is_visible()
    polygons = card.locator("svg.region polygon")
    assert polygons.count() >= 1 and card.locator("svg.region").is_visible()
    # the region's box on screen sits where the block is in the film (x 40..200, y 100..260 of 500x600),
    # once the overlay has decoded and the page has laid the region over it (slow under CPU load)
    card.locator(".film img").evaluate("img => img.decode()")
    for _ in range(50):
        film = card.locator(".film img").bounding_box()
        region = polygons.first.bounding_box()
        strip = film["height"] - film["width"] * 600 / 500
        at = ((region["x"] - film["x"]) / film["width"] * 500, (region["y"] - film["y"] - strip) / film["width"] * 500)
        if abs(at[0] - 40) < 15 and abs(at[1] - 100) < 15:
            break
        stack.page.wait_for_timeout(100)
    assert abs(at[0] - 40) < 15 and abs(at[1] - 100) < 15, at
    stack.shot("1-positive")
    stack.page.uncheck("#show-region")
    assert not card.locator("svg.region").is_visible()
    stack.page.check("#show-region")

    # nobody acknowledged: the cart re-announces it, the page says so; sound only once enabled
    card.locator(".escalated").wait_for(timeout=20000)
    cart = stack.page.locator('.cart[data-cart="ward-4/cart-7"]')
    stack.page.wait_for_function("document.querySelector('.cart .unacked') !== null", timeout=20000)
    assert "1 unacknowledged" in cart.inner_text()
    assert stack.page.evaluate("window.pneumo.beeps || 0") == 0
    stack.page.click("#sound")
    stack.page.wait_for_function("window.pneumo.beeps >= 2", timeout=20000)   # enable + the alarm's repeat
    assert stack.page.evaluate("window.pneumo.state.audio.state") == "running"
    stack.shot("1b-escalated")

    stack.page.fill("#initials", "JD")
    stack.page.locator("#alarm button.ack").click()
    stack.page.wait_for_selector("#alarm", state="hidden", timeout=10000)
    assert "Acknowledged by JD" in card.locator(".ack-state").inner_text()
    wait_until(lambda: app.acks.ack_of(outcome.alert_id), 20, "the appliance to record the ack")
    stack.page.wait_for_function("document.querySelector('.cart .unacked') === null", timeout=20000)
    beeps = stack.page.evaluate("window.pneumo.beeps")
    time.sleep(6)                                       # the alarm's repeat interval is 5 s
    assert stack.page.evaluate("window.pneumo.beeps") == beeps   # silent once acknowledged
    assert card.locator(".escalated").count() == 0
    stack.shot("2-acknowledged")

    app.stop()                                          # restart the appliance: the ack is on disk
    stack.app = app = stack.start_app()
    ack = app.acks.ack_of(outcome.alert_id)
    assert ack is not None and ack["display_id"] == "ward-monitor-1" and ack["initials"] == "JD"
    assert app.acks.status()["unacknowledged"] == 0


def test_an_overlay_that_arrives_after_its_alert_fills_the_card_in(stack, tmp_path):
    # The cart sends the alert before it draws the overlay. A real run's alert and
    # overlay, published by hand seconds apart: the card shows at once, then its film.
    import copy
    from tests.mosquitto import Subscriber
    settings = copy.deepcopy(stack.settings)
    settings.state_dir, settings.capture.dir = str(tmp_path / "ref-state"), str(tmp_path / "ref-capture")
    ref = Appliance(settings)                      # never started: process() only queues
    try:
        path = drop_dicom(ref.folders.incoming, "bed5.dcm", seed=5, positive=True)
        alert_id = ref.process(ref.folders.claim(path)).alert_id
        rows = dict(ref.store.connection().execute(
            "SELECT kind, payload FROM outbox WHERE alert_id = ?", (alert_id,)).fetchall())
        topics = ref.topics
    finally:
        ref.stop()
    stack.open()
    with Subscriber(stack.broker.port, ["unused/#"]) as pub:
        pub.client.publish(topics.alert, bytes(rows["alert"]), qos=1).wait_for_publish(5)
        card = study(stack.page, alert_id)
        card.wait_for(timeout=20000)
        time.sleep(1.0)
        assert card.locator("img").count() == 0
        assert card.locator(".placeholder").inner_text() == "image not received"
        assert card.locator("svg.region polygon").count() >= 1      # the region is drawn from the alert alone
        pub.client.publish(topics.overlay(alert_id), bytes(rows["overlay"]), qos=1).wait_for_publish(5)
        card.locator("img").wait_for(timeout=20000)
    stack.page.wait_for_function("document.querySelector('.study .film.loaded') !== null", timeout=20000)
    assert card.locator(".placeholder").count() == 0
    stack.shot("overlay-after-alert")


def test_broker_outage_shows_connection_lost_then_the_alert_sent_meanwhile(stack):
    app = stack.start_app()
    stack.open()
    stack.broker.stop()
    stack.page.wait_for_selector("#conn.bad", timeout=20000)
    assert "connection lost" in stack.page.locator("#conn").inner_text()
    stack.shot("3-connection-lost")
    drop_dicom(app.folders.incoming, "during-outage.dcm", seed=2, positive=False)
    outcome = app.outcomes.get(timeout=30)
    time.sleep(1.0)
    stack.broker.start()
    study(stack.page, outcome.alert_id).wait_for(timeout=30000)
    stack.page.wait_for_selector("#conn.ok", timeout=20000)
    assert study(stack.page, outcome.alert_id).locator(".decision").inner_text() == "No pneumothorax detected"
    stack.shot("4-reconnected")


def _cart_config(tmp_path, port):
    cls, seg = write_tiny_models(str(tmp_path / "models"))
    path = tmp_path / "cart.yaml"
    path.write_text("site: ward-4\ndevice: cart-9\nstate_dir: %s\ncapture:\n  dir: %s\n"
                    "models:\n  classifier: %s\n  segmenter: %s\n  threads: 1\n  warmup: 1\n"
                    "mqtt:\n  host: 127.0.0.1\n  port: %d\n  reconnect_min_s: 0.2\n  reconnect_max_s: 1.0\n"
                    % (tmp_path / "cart-state", tmp_path / "cart-capture", cls, seg, port))
    return str(path)


def test_a_killed_cart_shows_offline(stack, tmp_path):
    stack.open()
    log = open(str(tmp_path / "cart.log"), "ab")
    proc = subprocess.Popen([sys.executable, "-m", "edge.cli", "run", "--config",
                             _cart_config(tmp_path, stack.broker.port)], cwd=ROOT, stdout=log,
                            stderr=subprocess.STDOUT)
    try:
        cart = stack.page.locator('.cart[data-cart="ward-4/cart-9"]')
        stack.page.wait_for_selector('.cart.online[data-cart="ward-4/cart-9"]', timeout=60000)
        assert "ONLINE" in cart.inner_text()
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
        stack.page.wait_for_selector('.cart.offline[data-cart="ward-4/cart-9"]', timeout=30000)
        assert "OFFLINE (connection lost)" in cart.inner_text()
        stack.shot("5-cart-offline")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
        log.close()


def test_upload_returns_the_overlay_for_a_chest_film_and_a_clear_error_for_an_mr(stack, tmp_path):
    px = chest_phantom(600, 500, seed=3).astype(np.int64)
    px[100:260, 40:200] = 4095                         # the tiny models call this positive, right
    chest = write_dicom(str(tmp_path / "chest.dcm"), px, window=(2048, 4096))
    mr = write_dicom(str(tmp_path / "head.dcm"), chest_phantom(300, 300, seed=4), modality="MR")
    stack.open("upload")
    stack.page.set_input_files("#file", chest)
    stack.page.click("#send")
    stack.page.wait_for_selector("#result:not([hidden])", timeout=60000)
    assert "PNEUMOTHORAX SUSPECTED" in stack.page.locator("#summary").inner_text()
    img = stack.page.locator("#film img")
    img.wait_for()
    assert stack.page.evaluate("document.querySelector('#film img').naturalWidth") == 500
    assert stack.page.locator("#film svg.region polygon").count() >= 1
    alert = json.loads(stack.page.locator("#json").text_content())
    assert alert["source"]["file_name"] == "chest.dcm" and alert["finding"]["contours"]
    # The factory's patient name and birth date never show; the overlay's base64 bytes are left out
    # because a random image can spell "Doe" (CI run of stop 22).
    page = re.sub(r"data:image/[a-z]+;base64,[A-Za-z0-9+/=]+", "data:", stack.page.content())
    assert "Doe" not in page and "Jane" not in page and "19700101" not in page
    stack.shot("6-upload-chest")

    stack.page.set_input_files("#file", mr)
    stack.page.click("#send")
    stack.page.wait_for_selector("#error:not([hidden])", timeout=30000)
    text = stack.page.locator("#error").inner_text()
    assert "wrong_modality" in text and "MR" in text
    assert stack.page.locator("#result").is_hidden()
    stack.shot("7-upload-mr")


def test_a_cart_without_heartbeat_turns_stale(tmp_path, broker, browser):
    from tests.mosquitto import Subscriber
    s = Stack(tmp_path, broker, browser)
    s.settings.display.stale_after_s = 2.0
    s.display.stop()
    s.display = Display(s.settings)
    s.display.start()
    try:
        s.open()
        with Subscriber(broker.port, ["unused/#"]) as pub:
            pub.client.publish("pneumo/ward-4/cart-5/status", json.dumps(
                {"schema_version": 1, "state": "online", "site": "ward-4", "device": "cart-5",
                 "queue_depth": 0}), qos=1).wait_for_publish(5)
        s.page.wait_for_selector('.cart.online[data-cart="ward-4/cart-5"]', timeout=10000)
        s.page.wait_for_selector('.cart.stale[data-cart="ward-4/cart-5"]', timeout=10000)
        assert "STALE: no heartbeat for" in s.page.locator('.cart[data-cart="ward-4/cart-5"]').inner_text()
        s.shot("8-stale")
    finally:
        s.close()


def test_a_kiosk_allowed_to_autoplay_has_sound_on_without_a_click(tmp_path, broker, playwright):
    kiosk = playwright.chromium.launch(executable_path=chromium_binary(), headless=True,
                                       args=CHROMIUM_ARGS + ["--autoplay-policy=no-user-gesture-required"])
    try:
        s = Stack(tmp_path, broker, kiosk)
        try:
            s.open()
            assert s.page.locator("#sound").inner_text() == "Sound on"
            assert s.page.evaluate("window.pneumo.state.sound") is True
        finally:
            s.close()
    finally:
        kiosk.close()
