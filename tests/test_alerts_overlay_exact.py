"""render_overlay after its CPU cuts (one buffer, no nan_to_num, no vstack,
the fill blended only where the regions are)
gives the same JPEG bytes as the straightforward version it replaced,
kept here as the reference: real films and generated ones, NaN and inf,
region drawn or not, full-size and reduced-resolution pixels."""
import dataclasses
import os
from pathlib import Path

import cv2
import numpy as np
import pytest

from edge.alerts import overlay
from edge.alerts.overlay import render_overlay
from edge.decode import decode_file
from edge.types import Finding, Image

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("PNEUMO_SHARED_DATA") or ROOT.parent / "shared" / "data")
FILMS = sorted((SHARED / "siim-ptx-png" / "val" / "images").glob("*.png"))[:3]


def _reference(image: Image, finding: Finding, label: str = "", max_side: int = 1024, quality: int = 85,
               draw_region: bool = True) -> bytes:
    """The overlay as rendered before the CPU work (commit 9f5a8bc)."""
    scale = min(1.0, float(max_side) / max(image.height, image.width))
    size = (max(1, int(round(image.width * scale))), max(1, int(round(image.height * scale))))
    plane = np.asarray(image.pixels, dtype=np.float32)
    if (plane.shape[1], plane.shape[0]) != size:
        shrink = size[0] < plane.shape[1]
        plane = cv2.resize(plane, size, interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR)
    else:
        plane = plane.copy()
    np.nan_to_num(plane, copy=False, nan=0.0)
    plane *= 255.0
    plane += 0.5
    np.clip(plane, 0, 255, out=plane)
    canvas = cv2.cvtColor(plane.astype(np.uint8), cv2.COLOR_GRAY2BGR)
    if finding.pneumothorax and draw_region:
        contours = overlay._scaled(finding.contours, scale)
        if contours:
            fill = canvas.copy()
            cv2.drawContours(fill, contours, -1, overlay.FILL_BGR, thickness=-1)
            canvas = cv2.addWeighted(fill, overlay.FILL_ALPHA, canvas, 1.0 - overlay.FILL_ALPHA, 0.0)
            line = max(2, int(round(max(canvas.shape[:2]) / 400.0)))
            cv2.drawContours(canvas, contours, -1, overlay.CONTOUR_BGR, thickness=line, lineType=cv2.LINE_AA)
        if finding.bbox is not None:
            x, y, bw, bh = (int(round(v * scale)) for v in finding.bbox)
            cv2.rectangle(canvas, (x, y), (x + max(bw - 1, 0), y + max(bh - 1, 0)), overlay.BOX_BGR,
                          thickness=max(1, int(round(max(canvas.shape[:2]) / 600.0))))
    strip = overlay._banner_strip(canvas.shape[1], overlay.banner_text(finding, label), finding.pneumothorax)
    canvas = np.vstack([strip, canvas])
    ok, buf = cv2.imencode(".jpg", canvas, [int(cv2.IMWRITE_JPEG_QUALITY), int(quality)])
    assert ok
    return buf.tobytes()


def _finding(h: int, w: int, positive: bool = True) -> Finding:
    contour = [(w // 5, h // 5), (w // 2, h // 6), (w // 2, h // 2), (w // 4, h // 2)]
    return Finding(pneumothorax=positive, probability=0.91 if positive else 0.04, seg_max_probability=0.97,
                   area_px=(w // 4) * (h // 3), area_fraction=0.08, area_cm2=31.5, side="right",
                   bbox=(w // 5, h // 6, w // 2 - w // 5, h // 2 - h // 6), contours=[contour] if positive else [])


def _generated(h: int, w: int, original=None) -> Image:
    yy, xx = np.mgrid[0:h, 0:w]
    px = ((np.sin(xx / 37.0) * np.cos(yy / 23.0) + 1) / 2).astype(np.float32)
    return Image(pixels=px, source_format="dicom", original_hw=original)


CASES = [("plain", lambda: _generated(700, 600)),
         ("larger than max_side", lambda: _generated(1500, 1300)),
         ("reduced decode, upscaled", lambda: _generated(400, 350, original=(1600, 1400))),
         ("tiny", lambda: _generated(40, 30))]


@pytest.mark.parametrize("name, make", CASES, ids=[c[0] for c in CASES])
@pytest.mark.parametrize("draw_region", [True, False])
@pytest.mark.parametrize("positive", [True, False])
def test_same_jpeg_bytes_as_before(name, make, draw_region, positive):
    image = make()
    finding = _finding(image.height, image.width, positive)
    args = (image, finding, "DEMO MODEL, NOT FOR CLINICAL USE", 1024, 85, draw_region)
    assert render_overlay(*args) == _reference(*args)


def test_regions_past_the_edge_and_several_regions_fill_as_before():
    """The fill is blended only inside the regions' bounding rectangle now."""
    image = _generated(700, 600)
    finding = dataclasses.replace(_finding(700, 600), contours=[
        [(-40, 650), (90, 600), (120, 760), (10, 720)],            # runs off the bottom-left corner
        [(400, 20), (590, 40), (610, 300), (450, 280)],            # and off the right edge
        [(300, 300), (305, 300), (305, 305)]])                     # a sliver
    for draw_region in (True, False):
        args = (image, finding, "", 1024, 85, draw_region)
        assert render_overlay(*args) == _reference(*args)


def test_nan_and_inf_pixels_render_as_before():
    image = _generated(300, 260)
    px = image.pixels.copy()
    px[10:20, 10:20] = np.nan
    px[30:40, 30:40] = np.inf
    px[50:60, 50:60] = -np.inf
    px[70:80, 70:80] = 3.0
    px[90:100, 90:100] = -2.0
    odd = Image(pixels=px, source_format="png")
    finding = _finding(300, 260)
    assert render_overlay(odd, finding, max_side=300) == _reference(odd, finding, max_side=300)
    assert np.isnan(odd.pixels[15, 15])          # the Image's pixels are left as they were


@pytest.mark.shared_data
@pytest.mark.skipif(not FILMS, reason="../shared/data is absent")
@pytest.mark.parametrize("path", FILMS or [None], ids=lambda p: p.name if p else "absent")
def test_real_films_same_jpeg_bytes_as_before(path):
    image = decode_file(str(path))
    finding = _finding(image.height, image.width)
    for max_side, draw in ((1024, False), (1024, True), (512, True)):
        args = (image, finding, "DEMO MODEL", max_side, 85, draw)
        assert render_overlay(*args) == _reference(*args)
