"""Augmentation of model-input planes ([0, 1] grey, already resized by the
runtime's `resize_to_input`), with the mask following every geometric step.

Intensity changes mimic what differs between carts, detectors and sites
(brightness, contrast, gamma, local contrast by CLAHE, noise, blur); the
small affine mimics patient positioning. Pure numpy/cv2, seeded by the caller.
"""
from dataclasses import dataclass
from typing import Optional, Tuple

import cv2
import numpy as np


@dataclass(frozen=True)
class AugmentSpec:
    brightness: float = 0.1        # +- added to [0, 1] pixels
    contrast: float = 0.2          # x (1 +- c) about the mean
    gamma: float = 0.25            # gamma in [1 - g, 1 + g]
    rotate_deg: float = 7.0
    scale: float = 0.1             # zoom in [1 - s, 1 + s]
    shift: float = 0.05            # fraction of the side
    hflip: float = 0.5             # probability
    clahe: float = 0.0             # probability of CLAHE (optional, off by default)
    noise: float = 0.01            # sigma of Gaussian noise
    blur: float = 0.2              # probability of a light blur
    p_affine: float = 0.8


def augment(plane: np.ndarray, mask: Optional[np.ndarray], spec: AugmentSpec,
            rng: np.random.Generator) -> Tuple[np.ndarray, Optional[np.ndarray]]:
    h, w = plane.shape
    img = plane.astype(np.float32, copy=True)
    if rng.random() < spec.hflip:
        img = img[:, ::-1]
        mask = None if mask is None else mask[:, ::-1]
    if rng.random() < spec.p_affine:
        angle = rng.uniform(-spec.rotate_deg, spec.rotate_deg)
        zoom = rng.uniform(1 - spec.scale, 1 + spec.scale)
        m = cv2.getRotationMatrix2D((w / 2.0, h / 2.0), angle, zoom)
        m[0, 2] += rng.uniform(-spec.shift, spec.shift) * w
        m[1, 2] += rng.uniform(-spec.shift, spec.shift) * h
        img = cv2.warpAffine(np.ascontiguousarray(img), m, (w, h), flags=cv2.INTER_LINEAR,
                             borderMode=cv2.BORDER_CONSTANT, borderValue=0.0)
        if mask is not None:
            mask = cv2.warpAffine(np.ascontiguousarray(mask, dtype=np.float32), m, (w, h),
                                  flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=0.0)
            mask = (mask >= 0.5).astype(np.float32)
    if spec.clahe > 0 and rng.random() < spec.clahe:
        u8 = np.clip(img * 255.0 + 0.5, 0, 255).astype(np.uint8)
        clip = float(rng.uniform(1.0, 3.0))
        img = cv2.createCLAHE(clipLimit=clip, tileGridSize=(8, 8)).apply(u8).astype(np.float32) / 255.0
    if spec.gamma > 0:
        img = np.clip(img, 0.0, 1.0) ** rng.uniform(1 - spec.gamma, 1 + spec.gamma)
    if spec.contrast > 0:
        mean = float(img.mean())
        img = (img - mean) * rng.uniform(1 - spec.contrast, 1 + spec.contrast) + mean
    if spec.brightness > 0:
        img = img + rng.uniform(-spec.brightness, spec.brightness)
    if spec.blur > 0 and rng.random() < spec.blur:
        img = cv2.GaussianBlur(np.ascontiguousarray(img, dtype=np.float32), (3, 3), 0)
    if spec.noise > 0:
        img = img + rng.normal(0.0, spec.noise, img.shape).astype(np.float32)
    img = np.clip(img, 0.0, 1.0).astype(np.float32)
    if mask is not None:
        mask = np.ascontiguousarray(mask, dtype=np.float32)
    return np.ascontiguousarray(img), mask
