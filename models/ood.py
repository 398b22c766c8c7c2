"""Out-of-distribution score for the not-a-chest gate: Mahalanobis distance
of pooled encoder features from the training chest films, with Ledoit-Wolf
shrinkage (320 features from ~400 films: the raw covariance is near
singular). Pure numpy. The export folds (mean, whitening) into the ONNX
graph, so the device gets the distance as a second classifier output.
"""
from typing import Tuple

import numpy as np


def ledoit_wolf(x: np.ndarray) -> Tuple[np.ndarray, float]:
    """(shrunk covariance, shrinkage) of rows x (n, p), towards a scaled identity."""
    x = np.asarray(x, np.float64)
    n, p = x.shape
    xc = x - x.mean(0)
    s = xc.T @ xc / n
    mu = np.trace(s) / p
    d2 = np.sum((s - mu * np.eye(p)) ** 2)
    b2 = (np.sum(np.sum(xc ** 2, axis=1) ** 2) / n - np.sum(s ** 2)) / n
    shrink = float(min(1.0, max(0.0, b2 / d2))) if d2 > 0 else 1.0
    return (1 - shrink) * s + shrink * mu * np.eye(p), shrink


def fit_gaussian(features: np.ndarray) -> Tuple[np.ndarray, np.ndarray, float]:
    """-> (mean (p,), whitening W (p, p), shrinkage): z = (f - mean) @ W has identity covariance."""
    cov, shrink = ledoit_wolf(features)
    vals, vecs = np.linalg.eigh(cov)
    w = vecs / np.sqrt(np.maximum(vals, 1e-12))
    return np.asarray(features, np.float64).mean(0), w, shrink


def distance(features: np.ndarray, mean: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Mean squared whitened component: about 1 for a film like the training ones."""
    z = (np.asarray(features, np.float64) - mean) @ w
    return np.mean(z ** 2, axis=1)


def held_out_distances(features: np.ndarray, fold: np.ndarray) -> np.ndarray:
    """Each film's distance under statistics fitted without its fold: what a
    new chest film scores, not one the statistics have seen."""
    out = np.zeros(len(features))
    for k in np.unique(fold):
        m, w, _ = fit_gaussian(features[fold != k])
        out[fold == k] = distance(features[fold == k], m, w)
    return out
