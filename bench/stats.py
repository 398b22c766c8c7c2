"""Pure maths for the bench: percentiles, summaries, throughput, ratios."""
import math
from typing import Dict, List, Optional, Sequence

PERCENTILES = (50, 90, 95, 99)


def percentile(values: Sequence[float], q: float) -> float:
    """Linear interpolation between closest ranks (numpy's default method)."""
    if not values:
        raise ValueError("percentile of no values")
    if not 0.0 <= q <= 100.0:
        raise ValueError("percentile must be within 0..100, got %r" % q)
    data = sorted(float(v) for v in values)
    pos = (len(data) - 1) * q / 100.0
    lo = int(math.floor(pos))
    hi = min(lo + 1, len(data) - 1)
    return data[lo] + (data[hi] - data[lo]) * (pos - lo)


def summarize(values: Sequence[float]) -> Dict[str, float]:
    """n, mean, min, max and p50/p90/p95/p99 of a list of milliseconds."""
    if not values:
        return {"n": 0}
    out = {"n": len(values), "mean": sum(values) / len(values),
           "min": float(min(values)), "max": float(max(values))}
    for q in PERCENTILES:
        out["p%d" % q] = percentile(values, q)
    return out


def throughput(count: int, seconds: float) -> float:
    """Items per second over a wall-clock span."""
    if seconds <= 0:
        raise ValueError("throughput over a non-positive time span (%r s)" % seconds)
    return count / seconds


def ratio(numerator: Optional[float], denominator: Optional[float]) -> Optional[float]:
    """numerator / denominator, or None when either is missing or the denominator is 0."""
    if numerator is None or denominator is None or denominator == 0:
        return None
    return numerator / denominator


def stage_table(samples: Sequence[Dict[str, float]], stages: Sequence[str]) -> Dict[str, Dict[str, float]]:
    """Per-stage summaries from per-image timing dicts (stages absent in a
    sample are left out of that stage's figures)."""
    table = {}
    for stage in stages:
        values = [s[stage] for s in samples if stage in s]   # type: List[float]
        if values:
            table[stage] = summarize(values)
    return table

