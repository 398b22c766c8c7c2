"""Model geometry in the ORIGINAL film's pixels when the film was decoded smaller.

A JPEG 2000 film decoded at resolution level r (edge/decode/j2k.py) arrives
as pixels of about 1/2^r of its size, covering the whole film. preprocess
plans the model input from the pixels it is given; this re-expresses that
Geometry against the original size, so postprocess reports area (px, cm²),
box and contours in original pixels with no change of its own.
"""
from dataclasses import replace
from typing import Optional, Sequence, Tuple

from edge.types import Geometry


def to_original(geo: Geometry, original_hw: Optional[Tuple[int, int]]) -> Geometry:
    """The same model input described against `original_hw` (None = unchanged).

    The decoded image spans the whole film, so one decoded pixel is
    original/decoded original pixels on each axis; letterbox padding is in
    model pixels and stays as it is."""
    if original_hw is None or tuple(original_hw) == tuple(geo.original_hw):
        return geo
    (h, w), (oh, ow) = geo.original_hw, original_hw
    return replace(geo, original_hw=(int(oh), int(ow)), scale_x=geo.scale_x * w / float(ow),
                   scale_y=geo.scale_y * h / float(oh))


def decode_side(model_input_sides: Sequence[int], overlay_side: int = 0) -> int:
    """The shorter side a reduced decode must keep: the largest model input
    (never upsample what a model reads) and the overlay's longest side."""
    return max([int(s) for s in model_input_sides] + [int(overlay_side)])
