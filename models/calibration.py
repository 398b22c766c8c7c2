"""Logistic calibration (Platt scaling, and its multi-score form) and
calibration error. Pure numpy.

`fit_logistic` fits p = sigmoid(X @ coef + intercept) by Newton's method
with a small L2 penalty on the coefficients (never on the intercept), so a
perfectly separable fold still gives finite parameters.
"""
from typing import Dict, List, Sequence, Tuple

import numpy as np


def sigmoid(z: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.clip(z, -60, 60)))


def fit_logistic(x: np.ndarray, y: Sequence[int], l2: float = 1e-2, iters: int = 100,
                 weights: np.ndarray = None) -> Tuple[np.ndarray, float]:
    """x (N, K) scores, y 0/1 -> (coef (K,), intercept)."""
    x = np.asarray(x, np.float64).reshape(len(y), -1)
    y = np.asarray(y, np.float64)
    w = np.ones(len(y)) if weights is None else np.asarray(weights, np.float64)
    a = np.hstack([x, np.ones((len(y), 1))])
    beta = np.zeros(a.shape[1])
    pen = np.full(a.shape[1], l2)
    pen[-1] = 0.0
    for _ in range(iters):
        p = sigmoid(a @ beta)
        grad = a.T @ (w * (p - y)) + pen * beta
        hess = (a * (w * p * (1 - p))[:, None]).T @ a + np.diag(pen) + 1e-9 * np.eye(len(beta))
        step = np.linalg.solve(hess, grad)
        beta -= step
        if np.max(np.abs(step)) < 1e-8:
            break
    return beta[:-1], float(beta[-1])


def apply_logistic(x: np.ndarray, coef: Sequence[float], intercept: float) -> np.ndarray:
    x = np.asarray(x, np.float64).reshape(-1, len(coef))
    return sigmoid(x @ np.asarray(coef, np.float64) + intercept)


def ece(y: Sequence[int], p: Sequence[float], bins: int = 10) -> float:
    """Expected calibration error: |observed rate - mean p| per equal-width bin, weighted by count."""
    y, p = np.asarray(y, np.float64), np.asarray(p, np.float64)
    edges = np.linspace(0, 1, bins + 1)
    idx = np.clip(np.digitize(p, edges[1:-1]), 0, bins - 1)
    total = 0.0
    for b in range(bins):
        m = idx == b
        if m.any():
            total += m.sum() * abs(y[m].mean() - p[m].mean())
    return float(total / max(1, len(y)))


def reliability(y: Sequence[int], p: Sequence[float], bins: int = 10) -> List[Dict[str, float]]:
    y, p = np.asarray(y, np.float64), np.asarray(p, np.float64)
    edges = np.linspace(0, 1, bins + 1)
    idx = np.clip(np.digitize(p, edges[1:-1]), 0, bins - 1)
    out = []
    for b in range(bins):
        m = idx == b
        if m.any():
            out.append({"lo": float(edges[b]), "hi": float(edges[b + 1]), "n": int(m.sum()),
                        "mean_p": float(p[m].mean()), "observed": float(y[m].mean())})
    return out
