"""Calibration and golden inputs: images -> edge.preprocess tensors, batches, keyed caches.

Calibration must see exactly the numbers the runtime feeds the model, so
every tensor goes through `edge.decode` + `edge.preprocess`. A cache (the
preprocessed batches, or TensorRT's calibration table) is keyed by the ONNX
sha256, the preprocessing digest and the calibration-set hash; a cache with
another key is never reused: the build says so and calibrates again.
"""
import hashlib
import json
import os
from dataclasses import dataclass, field
from typing import Callable, Iterable, Iterator, List, Optional, Sequence, Tuple

import cv2
import numpy as np

from edge.errors import DecodeError, ModelError
from edge.inference.manifest import PreprocessSpec, file_sha256
from edge.phantom import chest_phantom
from edge.preprocess import preprocess

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".dcm", ".dicom", "")
PHANTOM_VERSION = "phantom-v2"   # edge.phantom.chest_phantom; a new picture is a new set

_HERE = os.path.dirname(os.path.abspath(__file__))
SHARED_DATA = os.path.normpath(os.path.join(_HERE, "..", "..", "shared", "data"))
DEFAULT_CALIB_DIR = os.path.join(SHARED_DATA, "nih-cxr14-subset", "images")
DEFAULT_SEG_GOLDEN_DIR = os.path.join(SHARED_DATA, "siim-ptx-png", "val", "images")


class StaleCalibrationCache(ModelError):
    """A calibration cache made for another model, preprocessing or image set."""


@dataclass
class ImageSet:
    """Where calibration or golden images come from, and a hash of exactly which."""
    source: str                       # "images" | "phantoms"
    paths: List[str] = field(default_factory=list)
    count: int = 0
    seed: int = 0
    set_hash: str = ""
    note: str = ""

    def describe(self) -> str:
        if self.source == "phantoms":
            return "%d GENERATED PHANTOMS (seed %d): %s" % (self.count, self.seed, self.note)
        return "%d real images from %s" % (self.count, os.path.dirname(self.paths[0]) if self.paths else "?")


def list_images(folder: str) -> List[str]:
    names = []
    for name in sorted(os.listdir(folder)):
        path = os.path.join(folder, name)
        if name.startswith(".") or not os.path.isfile(path):
            continue
        if os.path.splitext(name)[1].lower() in IMAGE_SUFFIXES:
            names.append(path)
    return names


def spread(items: Sequence[str], n: int, offset: int = 0) -> List[str]:
    """n items evenly spread over a sorted list (deterministic, covers the whole set)."""
    if n <= 0 or not items:
        return []
    if n >= len(items):
        return list(items)
    step = len(items) / float(n)
    return [items[(int(i * step) + offset) % len(items)] for i in range(n)]


def hash_files(paths: Sequence[str]) -> str:
    h = hashlib.sha256()
    for p in paths:
        h.update(os.path.basename(p).encode())
        h.update(file_sha256(p).encode())
    return h.hexdigest()


def phantom_set(count: int, seed: int, why: str) -> ImageSet:
    blob = json.dumps([PHANTOM_VERSION, count, seed]).encode()
    return ImageSet("phantoms", [], count, seed, hashlib.sha256(blob).hexdigest(), why)


def choose_images(folder: Optional[str], count: int, seed: int = 0, offset: int = 0,
                  default: str = DEFAULT_CALIB_DIR) -> ImageSet:
    """Real images from `folder` (or the default shared set); phantoms when there are none."""
    folder = folder or (default if os.path.isdir(default) else None)
    if folder is None:
        return phantom_set(count, seed, "no calibration folder given and %s does not exist" % default)
    if not os.path.isdir(folder):
        raise ModelError("calibration folder %s does not exist" % folder)
    paths = spread(list_images(folder), count, offset)
    if not paths:
        return phantom_set(count, seed, "%s holds no images" % folder)
    return ImageSet("images", paths, len(paths), seed, hash_files(paths))


def load_pixels(path: str) -> Tuple[np.ndarray, str]:
    """(2-D float32 [0, 1] pixels, how they were decoded) through the runtime's decoder."""
    try:
        from edge.decode import decode_file  # the runtime's decoder: same windowing as the bedside
    except ImportError:
        decode_file = None
    if decode_file is not None:
        return decode_file(path).pixels, "edge.decode"
    # edge.decode not available in this checkout yet: 8-bit PNG/JPEG only, said in the report.
    img = cv2.imread(path, cv2.IMREAD_GRAYSCALE | cv2.IMREAD_ANYDEPTH)
    if img is None:
        raise ModelError("cannot read %s (edge.decode unavailable; cv2 fallback reads PNG/JPEG only)" % path)
    scale = 65535.0 if img.dtype == np.uint16 else 255.0
    return img.astype(np.float32) / scale, "cv2-fallback"


def iter_tensors(images: ImageSet, spec: PreprocessSpec,
                 decoders: Optional[List[str]] = None) -> Iterator[np.ndarray]:
    """(1, C, H, W) float32 tensors, exactly as the runtime makes them."""
    if images.source == "phantoms":
        for i in range(images.count):
            yield preprocess(chest_phantom(512, 512, seed=images.seed + i), spec)[0]
        return
    for path in images.paths:
        try:
            pixels, how = load_pixels(path)
        except DecodeError as exc:   # the runtime would reject it too: leave it out, say so
            if decoders is not None:
                decoders.append("skipped %s (%s)" % (os.path.basename(path), exc.code))
            continue
        if decoders is not None:
            decoders.append(how)
        yield preprocess(pixels, spec)[0]


def batches(tensors: Iterable[np.ndarray], batch_size: int) -> Iterator[np.ndarray]:
    """Stack (1, C, H, W) tensors into (B, C, H, W); an incomplete last batch is dropped
    (a static engine takes exactly B), so ask for a multiple of B images."""
    if batch_size < 1:
        raise ValueError("batch_size must be >= 1")
    pending = []
    for t in tensors:
        pending.append(t[0] if t.ndim == 4 else t)
        if len(pending) == batch_size:
            yield np.stack(pending).astype(np.float32)
            pending = []


def cache_key(onnx_sha256: str, preprocess_digest: str, set_hash: str) -> str:
    return hashlib.sha256(("%s|%s|%s" % (onnx_sha256, preprocess_digest, set_hash)).encode()).hexdigest()


def save_batches(path: str, data: np.ndarray, key: str, describe: str) -> None:
    """Preprocessed calibration tensors (N, C, H, W) with their key, for the device or a re-run."""
    tmp = path + ".tmp.npz"
    np.savez_compressed(tmp, tensors=data.astype(np.float32), key=np.array(key), describe=np.array(describe))
    os.replace(tmp, path)


def load_batches(path: str, key: str, on_stale: Optional[Callable[[str], None]] = None) -> Optional[np.ndarray]:
    """The cached tensors, None when absent. A cache with another key is never reused: with
    on_stale it is reported (on_stale(why)) and None returned, so the caller calibrates again
    and overwrites it; without, StaleCalibrationCache."""
    if not os.path.exists(path):
        return None
    with np.load(path, allow_pickle=False) as z:
        have = str(z["key"])
        if have != key:
            made_for = str(z["describe"]) if "describe" in z.files else "an unrecorded set"
            why = ("%s was made for another calibration set, model or preprocessing (%s; key %s..., this build "
                   "needs %s...)" % (path, made_for, have[:12], key[:12]))
            if on_stale is None:
                raise StaleCalibrationCache(why + "; refusing to reuse it.")
            on_stale(why)
            return None
        return np.array(z["tensors"])


def write_keyed_cache(path: str, payload: bytes, key: str) -> None:
    """TensorRT's calibration table, with a JSON key file beside it."""
    with open(path, "wb") as fh:
        fh.write(payload)
    with open(path + ".key.json", "w", encoding="utf-8") as fh:
        json.dump({"key": key}, fh)


def read_keyed_cache(path: str, key: str) -> Optional[bytes]:
    if not os.path.exists(path):
        return None
    have = _recorded_key(path)
    if have != key:
        raise StaleCalibrationCache(
            "%s: calibration table was made for key %s, this build needs %s...; refusing to reuse it." % (
                path, (have[:12] + "...") if have else "(none recorded)", key[:12]))
    with open(path, "rb") as fh:
        return fh.read()


def drop_stale_table(path: str, key: str) -> Optional[str]:
    """Remove a TensorRT calibration table made for another key (and its key file), so
    TensorRT calibrates again; returns why, or None when the table is current or absent."""
    if not os.path.exists(path):
        return None
    have = _recorded_key(path)
    if have == key:
        return None
    for p in (path, path + ".key.json"):
        if os.path.exists(p):
            os.remove(p)
    return "%s was made for key %s, this build needs %s..." % (
        path, (have[:12] + "...") if have else "(none recorded)", key[:12])


def _recorded_key(path: str) -> str:
    try:
        with open(path + ".key.json", "r", encoding="utf-8") as fh:
            return str(json.load(fh).get("key", ""))
    except (OSError, ValueError, AttributeError):
        return ""


def collect(images: ImageSet, spec: PreprocessSpec, progress: Optional[Callable[[int, int], None]] = None
            ) -> Tuple[np.ndarray, List[str]]:
    """All tensors of a set as one (N, C, H, W) array, and the decoders used."""
    out, how = [], []  # type: List[np.ndarray], List[str]
    for i, t in enumerate(iter_tensors(images, spec, how)):
        out.append(t[0])
        if progress:
            progress(i + 1, images.count)
    if not out:
        raise ModelError("no usable image in the set (%s)" % "; ".join(how))
    return np.stack(out).astype(np.float32), sorted(set(how))
