"""The per-film path run once at start-up on a synthetic film, on the
intake and the models' threads themselves, after the models' own warm-up,
so the first real film is not the slow one (Appliance.start waits for it).

The first film after start-up paid for everything done once per process:
pydicom's pixel handlers, OpenCV's resize and JPEG encoder, the overlay's
fonts. Measured on this 2-core machine (2048 px uncompressed DICOM): decode
12.5 ms first / 4-7 after, prepare 9.5 / 1.3, overlay 25 / 3.8; in the
bench's one-at-a-time runs the first of 15 files took 89, 131 and 106 ms
against medians of 69, 106 and 65. The synthetic film goes through
decode (an uncompressed DICOM twice the decode floor, so the reduced path
runs), the models' inputs, the models with their postprocess, and the
overlay; nothing touches the folders, the store or MQTT.
"""
import logging
import time
from typing import Dict, Sequence

import cv2
import numpy as np

from edge.decode import decode_bytes
from edge.alerts.overlay import render_overlay
from edge.errors import DecodeError
from edge.phantom import chest_phantom, dataset_bytes, phantom_dataset
from edge.pipeline import Pipeline
from edge.settings import Settings
from edge.types import Finding

log = logging.getLogger(__name__)

_BITS = 12
# A drawn region, so the overlay's fill, outline and box code runs too.
_REGION = Finding(pneumothorax=True, probability=0.9, seg_max_probability=0.9, area_px=2500,
                  area_fraction=0.01, area_cm2=1.0, side="right", bbox=(100, 100, 50, 50),
                  contours=[[(100, 100), (150, 100), (150, 150), (100, 150)]])


def synthetic_dicom(side: int, modality: str = "DX") -> bytes:
    """An uncompressed 12-bit film of side x side px (the chest phantom)."""
    small = chest_phantom(256, 256, bits=_BITS).astype(np.uint16)        # the phantom at 2048 px: 0.5 s
    pixels = cv2.resize(small, (int(side), int(side)), interpolation=cv2.INTER_NEAREST)
    return dataset_bytes(phantom_dataset(pixels, _BITS, modality=modality))


STEPS = ("decode", "prepare", "infer", "overlay")


def warm_film_path(pipeline: Pipeline, settings: Settings, decode_side: int,
                   steps: Sequence[str] = STEPS) -> Dict[str, float]:
    """ms per step for the synthetic film, run on the calling thread: much
    of what is done once is done once per thread (OpenCV's JPEG encoder and
    resize, ONNX Runtime's caller state, malloc's arena): rendered first on
    the main thread, a new thread's first overlay still took 24-26 ms against
    5-7. `steps` are that thread's own work (intake: decode, prepare; the
    models' threads: decode, prepare, infer; the after-alert thread: decode,
    overlay); infer needs prepare. Never raises: a failure here costs the
    first real film some milliseconds, not the start-up."""
    timings = {}   # type: Dict[str, float]
    clock = time.perf_counter
    try:
        d = settings.decode
        # Twice the floor, so the reduced decode runs, within what this site's decode accepts.
        side = min(max(512, 2 * int(decode_side)), d.max_side, int(d.max_pixels ** 0.5))
        modality = d.allowed_modalities[0] if d.allowed_modalities else "DX"
        t0 = clock()
        image = decode_bytes(synthetic_dicom(max(side, d.min_side), modality), d,
                             name="warm-up film", min_side=decode_side)
        t1 = clock()
        timings["decode_ms"] = (t1 - t0) * 1000.0
        if "prepare" in steps:
            prepared = pipeline.prepare(image)
            t2 = clock()
            timings["prepare_ms"] = (t2 - t1) * 1000.0
            t1 = t2
            if "infer" in steps:
                try:
                    pipeline.infer(prepared)
                except DecodeError:
                    pass            # the learned not-a-chest gate may refuse a phantom: its path ran
                t2 = clock()
                timings["infer_ms"] = (t2 - t1) * 1000.0
                t1 = t2
        if settings.mqtt.publish_overlay and "overlay" in steps:
            a = settings.alerts
            render_overlay(image, _REGION, "warm-up", a.overlay_max_side, a.overlay_quality,
                           draw_region=a.overlay_region)
            timings["overlay_ms"] = (clock() - t1) * 1000.0
    except Exception as exc:  # noqa: BLE001 - see the docstring
        log.warning("warm-up film could not go through the per-film path (%s: %s); "
                    "the first real film will be slower", type(exc).__name__, exc)
    return timings
