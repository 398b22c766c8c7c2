"""Latency of several runners measured in one interleaved loop (same load, same thermal state)."""
import time
from typing import Callable, Dict, List

import numpy as np


def summarise(times_ms: List[float]) -> Dict[str, float]:
    a = np.asarray(times_ms, np.float64)
    return {"runs": int(a.size), "median_ms": float(np.median(a)), "p95_ms": float(np.percentile(a, 95)),
            "min_ms": float(a.min()), "mean_ms": float(a.mean())}


def interleaved(runners: Dict[str, Callable[[], object]], runs: int, warmup: int) -> Dict[str, Dict[str, float]]:
    """Round-robin the runners `runs` times each so drift on a shared machine hits all equally."""
    for _ in range(max(0, warmup)):
        for fn in runners.values():
            fn()
    times = {name: [] for name in runners}  # type: Dict[str, List[float]]
    for _ in range(max(1, runs)):
        for name, fn in runners.items():
            t0 = time.perf_counter()
            fn()
            times[name].append((time.perf_counter() - t0) * 1000.0)
    return {name: summarise(t) for name, t in times.items()}


def speedup(base: Dict[str, float], other: Dict[str, float]) -> Dict[str, float]:
    return {"median": base["median_ms"] / other["median_ms"], "p95": base["p95_ms"] / other["p95_ms"]}
