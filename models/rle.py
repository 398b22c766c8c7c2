"""SIIM-ACR run-length encoding of pneumothorax masks.

Format (train-rle.csv / stage_2_train.csv): pixels numbered column-major
(down the first column, then the next); pairs "start length" where each
start is relative to the end of the previous run; "-1" means no
pneumothorax. An image with several regions has several rows, one per
region. The header's first cell may carry a UTF-8 byte-order mark, the
column names differ between releases ("ImageId, EncodedPixels" or
"fname,mask") and values may carry a leading space.
"""
import csv
from collections import OrderedDict
from typing import Dict, List

import numpy as np

EMPTY = "-1"


class RleError(ValueError):
    """An RLE string or CSV that cannot be read as SIIM masks."""


def decode(rle: str, height: int = 1024, width: int = 1024) -> np.ndarray:
    """One RLE string -> uint8 mask (height, width) of 0/1."""
    flat = np.zeros(height * width, np.uint8)
    text = rle.strip()
    if text in ("", EMPTY):
        return flat.reshape(height, width)
    try:
        nums = [int(v) for v in text.split()]
    except ValueError:
        raise RleError("RLE has a non-integer value: %r..." % text[:40])
    if len(nums) % 2:
        raise RleError("RLE has an odd number of values (%d)" % len(nums))
    pos = 0
    for start, length in zip(nums[0::2], nums[1::2]):
        pos += start
        if start < 0 or length < 0 or pos + length > flat.size:
            raise RleError("RLE run at %d+%d falls outside a %dx%d mask" % (pos, length, height, width))
        flat[pos:pos + length] = 1
        pos += length
    return flat.reshape(width, height).T.copy()


def encode(mask: np.ndarray) -> str:
    """A 2-D mask (non-zero = region) -> SIIM RLE string ("-1" when empty)."""
    flat = (np.asarray(mask).T.reshape(-1) > 0).astype(np.int8)
    if not flat.any():
        return EMPTY
    padded = np.concatenate([[0], flat, [0]])
    edges = np.flatnonzero(np.diff(padded))
    starts, ends = edges[0::2], edges[1::2]
    out = []
    prev_end = 0
    for s, e in zip(starts, ends):
        out.append("%d %d" % (s - prev_end, e - s))
        prev_end = e
    return " ".join(out)


def read_rle_csv(path: str) -> "OrderedDict[str, List[str]]":
    """CSV -> {image id: [rle, ...]} keeping file order; an image listed only
    with "-1" maps to an empty list."""
    out = OrderedDict()  # type: OrderedDict[str, List[str]]
    with open(path, "r", encoding="utf-8-sig", newline="") as fh:
        rows = csv.reader(fh)
        header = next(rows, None)
        if header is None or len(header) < 2:
            raise RleError("%s: expected a header with an image id and an RLE column" % path)
        for n, row in enumerate(rows, start=2):
            if not row or not row[0].strip():
                continue
            if len(row) < 2:
                raise RleError("%s:%d: row has no RLE column" % (path, n))
            image_id, rle = row[0].strip(), row[1].strip()
            runs = out.setdefault(image_id, [])
            if rle != EMPTY and rle:
                runs.append(rle)
    return out


def mask_from_rles(rles: List[str], height: int = 1024, width: int = 1024) -> np.ndarray:
    """Union of an image's regions."""
    mask = np.zeros((height, width), np.uint8)
    for rle in rles:
        mask |= decode(rle, height, width)
    return mask


def summarise(table: Dict[str, List[str]]) -> Dict[str, int]:
    pos = sum(1 for v in table.values() if v)
    return {"images": len(table), "positive": pos, "negative": len(table) - pos,
            "regions": sum(len(v) for v in table.values())}
