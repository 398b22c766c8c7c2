"""The overlay JPEG: decodable, downsized, coloured only where a finding is."""
import cv2
import numpy as np
import pytest

from edge.alerts.overlay import banner_text, render_overlay
from edge.types import Finding, Image

H, W = 2000, 1600   # downsized by 1024/2000 = 0.512


def radiograph():
    yy, xx = np.mgrid[0:H, 0:W]
    return Image(pixels=(0.2 + 0.6 * (xx / W) * (yy / H)).astype(np.float32), source_format="png")


# a square region in original pixels, in the lower half
SQUARE = [(400, 1000), (1000, 1000), (1000, 1600), (400, 1600)]


def finding(positive):
    if not positive:
        return Finding(pneumothorax=False, probability=0.04, seg_max_probability=None,
                       area_px=0, area_fraction=0.0, area_cm2=None, side=None, bbox=None,
                       segmenter_skipped=True)
    return Finding(pneumothorax=True, probability=0.93, seg_max_probability=0.97,
                   area_px=360000, area_fraction=0.1125, area_cm2=6.2, side="right",
                   bbox=(400, 1000, 601, 601), contours=[SQUARE])


def colourfulness(bgr):
    b, g, r = (bgr[..., i].astype(np.int16) for i in range(3))
    return np.maximum(np.abs(r - g), np.maximum(np.abs(r - b), np.abs(g - b)))


def decode(jpeg, rows=1024):
    """The radiograph part (the last `rows` rows) and the banner strip above it."""
    img = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR)
    assert img is not None, "not a JPEG"
    assert img.shape[0] > rows, "no banner strip above the radiograph"
    return img[-rows:], img[:-rows]


def test_positive_overlay_draws_the_contour_in_colour():
    out, strip = decode(render_overlay(radiograph(), finding(True), "DEMO MODEL, NOT FOR CLINICAL USE"))
    assert out.shape == (1024, 819, 3) and strip.shape[1] == 819
    s = 1024 / H
    chroma = colourfulness(out)
    edge = [chroma[int(round(y * s)), int(round(x * s))]
            for y, x in [(1000, 700), (1300, 400), (1600, 700), (1300, 1000)]]
    assert min(edge) > 60, edge                      # the outline is red
    inside = chroma[int(1300 * s), int(700 * s)]
    assert 20 < inside < min(edge)                   # translucent fill: tinted, not opaque
    far = chroma[int(400 * s):int(800 * s), int(1200 * s):int(1500 * s)]
    assert far.max() < 30                            # elsewhere the radiograph stays grey


def test_negative_overlay_has_no_colour_anywhere():
    jpeg = render_overlay(radiograph(), finding(False), "")
    out, strip = decode(jpeg)
    assert out.shape == (1024, 819, 3)
    assert colourfulness(out).max() < 30 and colourfulness(strip).max() < 30


def test_the_banner_is_a_strip_above_the_radiograph_not_painted_over_it():
    img = radiograph()
    expected = cv2.resize(np.round(img.pixels * 255).astype(np.uint8), (819, 1024),
                          interpolation=cv2.INTER_AREA).astype(np.int16)
    for positive in (True, False):
        out, strip = decode(render_overlay(img, finding(positive), "DEMO MODEL, NOT FOR CLINICAL USE",
                                           draw_region=False))
        grey = cv2.cvtColor(out, cv2.COLOR_BGR2GRAY).astype(np.int16)
        diff = np.abs(grey - expected)[:200]                  # the apices are untouched
        assert diff.mean() < 1.5 and np.percentile(diff, 99.9) < 8
        assert colourfulness(out[16:]).max() < 30             # draw_region=False: no region painted (JPEG chroma bleeds a few rows)
        assert 20 <= strip.shape[0] <= 200
        red = colourfulness(strip).mean() > 30
        assert red == positive                                # red banner only for a positive


def test_small_images_are_not_upscaled_and_quality_is_applied():
    small = Image(pixels=np.full((300, 200), 0.5, np.float32), source_format="png")
    f = finding(False)
    assert decode(render_overlay(small, f), rows=300)[0].shape == (300, 200, 3)
    assert len(render_overlay(radiograph(), f, quality=30)) < len(render_overlay(radiograph(), f, quality=95))


def test_banner_text():
    assert banner_text(finding(True), "DEMO MODEL, NOT FOR CLINICAL USE") == \
        "PNEUMOTHORAX suspected - right, 6.2 cm2, p=0.93 - DEMO MODEL, NOT FOR CLINICAL USE"
    assert banner_text(finding(False)) == "No pneumothorax detected (p=0.04)"
