"""The overlay JPEG a display shows next to the alert.

A pure function: the radiograph downsized, the finding outlined and lightly
filled (unless the display draws it itself from finding.contours), its box,
and a banner saying what was found and, for models that are not validated,
that it is not for clinical use. The banner is a strip added ABOVE the
radiograph, never painted over it: the apices are where a pneumothorax
shows first. Hershey fonts are ASCII only, hence "cm2" and "-" in the banner.
"""
from typing import List, Optional, Tuple

import cv2
import numpy as np

from edge.errors import AlertError
from edge.types import Finding, Image

FILL_BGR = (0, 0, 255)        # red: the suspected region
CONTOUR_BGR = (0, 0, 255)
BOX_BGR = (0, 255, 255)       # yellow
POSITIVE_BANNER_BGR = (0, 0, 170)
NEGATIVE_BANNER_BGR = (40, 40, 40)   # grey: a negative overlay carries no colour
FILL_ALPHA = 0.3


def banner_text(finding: Finding, label: str = "") -> str:
    """One line, e.g. "PNEUMOTHORAX suspected - right, 6.2 cm2, p=0.93 - DEMO MODEL ..."."""
    if finding.pneumothorax:
        parts = []
        if finding.side:
            parts.append(finding.side)
        if finding.area_cm2 is not None:
            parts.append("%.1f cm2" % finding.area_cm2)
        else:
            parts.append("%.1f%% of image" % (100.0 * finding.area_fraction))
        if finding.probability is not None:
            parts.append("p=%.2f" % finding.probability)
        text = "PNEUMOTHORAX suspected - " + ", ".join(parts)
    else:
        text = "No pneumothorax detected"
        if finding.probability is not None:
            text += " (p=%.2f)" % finding.probability
    return text + (" - " + label if label else "")


def _to_bgr(pixels: np.ndarray, size: Tuple[int, int], out: Optional[np.ndarray] = None) -> np.ndarray:
    """Grey pixels -> BGR canvas of `size` (w, h), written into `out` when
    given (a view of the final JPEG's rows); pixels decoded at a reduced
    resolution may be smaller than the original they stand for."""
    if pixels.ndim != 2 or pixels.size == 0:
        raise AlertError("overlay needs a 2-D image, got shape %s" % (pixels.shape,))
    # Resize first, then convert: a 2048 px film costs 1/4 of the float work
    # (measured 26 ms -> 3 ms on the critical path before the alert commits).
    if (pixels.shape[1], pixels.shape[0]) != size:
        plane = np.asarray(pixels, dtype=np.float32)
        shrink = size[0] < plane.shape[1]
        plane = cv2.resize(plane, size, interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR)
        plane *= 255.0
    else:       # one pass makes the working copy (the Image's pixels are never written)
        plane = np.multiply(pixels, np.float32(255.0), dtype=np.float32)
    plane += 0.5
    # fmax/fmin clip and send NaN to 0 in the same two passes (nan_to_num took 1.2 ms of CPU
    # per 1024 px film); +-inf end at 255 / 0 as before.
    np.fmax(plane, 0.0, out=plane)
    np.fmin(plane, 255.0, out=plane)
    bgr = cv2.cvtColor(plane.astype(np.uint8), cv2.COLOR_GRAY2BGR, dst=out)
    if out is not None and bgr is not out:     # OpenCV made its own array: fill the caller's rows
        out[...] = bgr
    return out if out is not None else bgr


def _scaled(contours: List[List[Tuple[int, int]]], scale: float) -> List[np.ndarray]:
    out = []
    for contour in contours:
        if len(contour) >= 2:
            pts = np.round(np.asarray(contour, dtype=np.float64) * scale).astype(np.int32)
            out.append(pts.reshape(-1, 1, 2))
    return out


def _wrap(text: str, max_width: int, font: int, font_scale: float, thickness: int) -> List[str]:
    lines, current = [], ""
    for word in text.split(" "):
        candidate = (current + " " + word).strip()
        if current and cv2.getTextSize(candidate, font, font_scale, thickness)[0][0] > max_width:
            lines.append(current)
            current = word
        else:
            current = candidate
    return lines + ([current] if current else [])


def _banner_strip(width: int, text: str, positive: bool) -> np.ndarray:
    """A BGR strip `width` wide holding the wrapped banner text."""
    font = cv2.FONT_HERSHEY_SIMPLEX
    font_scale = max(0.4, width / 1200.0)
    thickness = max(1, int(round(font_scale * 2)))
    margin = max(4, int(8 * font_scale))
    lines = _wrap(text, width - 2 * margin, font, font_scale, thickness)
    line_h = cv2.getTextSize("Ag", font, font_scale, thickness)[0][1] + margin
    colour = POSITIVE_BANNER_BGR if positive else NEGATIVE_BANNER_BGR
    strip = np.empty((line_h * len(lines) + margin, width, 3), np.uint8)
    strip[:] = colour
    for i, line in enumerate(lines):
        cv2.putText(strip, line, (margin, (i + 1) * line_h), font, font_scale, (255, 255, 255),
                    thickness, cv2.LINE_AA)
    return strip


def _blend_fill(canvas: np.ndarray, contours: List[np.ndarray]) -> None:
    """The regions filled at FILL_ALPHA, blended only inside their bounding
    rectangle: the rest of the film is left as it is, not blended with itself."""
    x, y, w, h = cv2.boundingRect(np.concatenate(contours))
    x0, y0 = max(x, 0), max(y, 0)
    x1, y1 = min(x + w, canvas.shape[1]), min(y + h, canvas.shape[0])
    if x1 <= x0 or y1 <= y0:
        return
    roi = canvas[y0:y1, x0:x1]
    fill = roi.copy()
    cv2.drawContours(fill, contours, -1, FILL_BGR, thickness=-1, offset=(-x0, -y0))
    roi[...] = cv2.addWeighted(fill, FILL_ALPHA, roi, 1.0 - FILL_ALPHA, 0.0)


def render_overlay(image: Image, finding: Finding, label: str = "",
                   max_side: int = 1024, quality: int = 85, draw_region: bool = True) -> bytes:
    """JPEG bytes: the banner strip, then the radiograph (longest side <= max_side).

    label: appended to the banner (e.g. schema.use_warning(intended_use)).
    draw_region: paint the finding's contours, fill and box into the pixels;
    False leaves the radiograph clean for a display that draws the region
    itself (and can hide it). Contours and bbox are in original-image pixels.
    max_side (16 or more) and quality (1..100) are limited by the alerts.overlay_* fields.
    """
    scale = min(1.0, float(max_side) / max(image.height, image.width))   # original pixels
    width, height = max(1, int(round(image.width * scale))), max(1, int(round(image.height * scale)))
    strip = _banner_strip(width, banner_text(finding, label), finding.pneumothorax)
    # One buffer for the JPEG: the strip on top, the radiograph converted straight into the rows below.
    sheet = np.empty((strip.shape[0] + height, width, 3), np.uint8)
    sheet[:strip.shape[0]] = strip
    canvas = sheet[strip.shape[0]:]
    _to_bgr(image.pixels, (width, height), out=canvas)
    if finding.pneumothorax and draw_region:
        contours = _scaled(finding.contours, scale)
        if contours:
            _blend_fill(canvas, contours)
            line = max(2, int(round(max(canvas.shape[:2]) / 400.0)))
            cv2.drawContours(canvas, contours, -1, CONTOUR_BGR, thickness=line, lineType=cv2.LINE_AA)
        if finding.bbox is not None:
            x, y, bw, bh = (int(round(v * scale)) for v in finding.bbox)
            cv2.rectangle(canvas, (x, y), (x + max(bw - 1, 0), y + max(bh - 1, 0)), BOX_BGR,
                          thickness=max(1, int(round(max(canvas.shape[:2]) / 600.0))))
    canvas = sheet
    ok, buf = cv2.imencode(".jpg", canvas, [int(cv2.IMWRITE_JPEG_QUALITY), int(quality)])
    if not ok:
        raise AlertError("JPEG encoding of the overlay failed")
    return buf.tobytes()
