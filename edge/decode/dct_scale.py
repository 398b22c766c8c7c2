"""JPEG decoded at 1/2, 1/4 or 1/8 inside the inverse DCT (libjpeg's scaled
output, OpenCV's IMREAD_REDUCED_*): the image comes out ceil(h/n) x ceil(w/n)
without the full-size one ever being made."""
from typing import Tuple

import cv2

# EXIF orientation is ignored, as pydicom's plugins and IMREAD_UNCHANGED ignore it.
_GREY = {1: cv2.IMREAD_GRAYSCALE, 2: cv2.IMREAD_REDUCED_GRAYSCALE_2,
         4: cv2.IMREAD_REDUCED_GRAYSCALE_4, 8: cv2.IMREAD_REDUCED_GRAYSCALE_8}
_COLOUR = {1: cv2.IMREAD_COLOR, 2: cv2.IMREAD_REDUCED_COLOR_2,
           4: cv2.IMREAD_REDUCED_COLOR_4, 8: cv2.IMREAD_REDUCED_COLOR_8}


def reduced_scale(hw: Tuple[int, int], min_side: int) -> int:
    """The largest of 1, 2, 4, 8 whose ceil(h/n) x ceil(w/n) keeps the shorter side >= min_side."""
    h, w = hw
    best = 1
    for n in (2, 4, 8):
        if min_side > 0 and min(-(-h // n), -(-w // n)) >= min_side:
            best = n
    return best


def reduced_flag(n: int, components: int) -> int:
    """The imdecode flag for a 1/n decode of a 1-component (grey) or 3-component JPEG."""
    return (_GREY if components == 1 else _COLOUR)[n] | cv2.IMREAD_IGNORE_ORIENTATION
