"""How many ONNX Runtime intra-op threads a model gets, chosen by measurement.

A fixed setting is tuned on one machine and wrong on the next: on a 2-core
x86 box the segmenter took 77 ms with 1 thread and 41 ms with 2, while the
setting had been chosen where a second thread did not help. `threads: auto`
times the model at warm-up for a few thread counts and keeps the fastest;
the figures go into the status payload so a site can see why.
"""
import os
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Optional, Sequence, Union

AUTO = "auto"
# Within this share of the fastest, fewer threads win: the spare core decodes
# the next film, and a 2 % difference is noise on a shared machine.
TIE_TOLERANCE = 0.05
MIN_RUNS, MAX_RUNS = 3, 10
BUDGET_MS = 200.0             # per candidate: a small model gets more runs, a large one 3
WINDOWS, WINDOW_GAP_S = 2, 0.5


@dataclass(frozen=True)
class ThreadChoice:
    """What a backend runs with and why (reported in status)."""
    threads: int                         # intra-op threads in use (0 = ORT's own default: all cores)
    how: str                             # "configured" | "calibrated"
    measured_ms: Dict[int, float] = field(default_factory=dict)   # candidate -> best run (ms)

    def as_dict(self) -> Dict[str, Any]:
        out = {"threads": self.threads, "how": self.how}   # type: Dict[str, Any]
        if self.measured_ms:
            out["measured_ms"] = {str(k): round(v, 2) for k, v in sorted(self.measured_ms.items())}
        return out


def usable_cores() -> int:
    """Cores this process may run on (the affinity mask, not the machine's count)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def candidates(cores: int) -> List[int]:
    """1, 2, 4, ... up to `cores`, and `cores` itself: log-many sessions to build."""
    out, t = [], 1
    while t < cores:
        out.append(t)
        t *= 2
    out.append(cores)
    return out


def pick(measured_ms: Dict[int, float], tolerance: float = TIE_TOLERANCE) -> int:
    """The fewest threads whose time is within `tolerance` of the fastest."""
    if not measured_ms:
        raise ValueError("no thread counts were measured")
    best = min(measured_ms.values())
    return min(t for t, ms in measured_ms.items() if ms <= best * (1.0 + tolerance))


def parse(value: Union[int, str]) -> Optional[int]:
    """models.threads -> an int, or None for "auto"."""
    if isinstance(value, str):
        if value.strip().lower() == AUTO:
            return None
        raise ValueError("models.threads must be 'auto' or an integer >= 0, got %r" % value)
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError("models.threads must be 'auto' or an integer >= 0, got %r" % (value,))
    return value


def calibrate(time_once: Callable[[int], float], counts: Sequence[int], min_runs: int = MIN_RUNS,
              max_runs: int = MAX_RUNS, budget_ms: float = BUDGET_MS, windows: int = WINDOWS,
              gap_s: float = WINDOW_GAP_S, sleep: Callable[[float], Any] = time.sleep) -> ThreadChoice:
    """`time_once(t)` runs the model once with t threads and returns ms.

    The counts are timed round-robin (1, 2, 4, then 2, 4, 1, ...), not one
    block after another: a burst of load from elsewhere (a cart's other
    services, a bench's previous step) then lands on every candidate alike
    instead of spoiling one count's every run. Each count keeps its best run
    (interference only ever adds time); min_runs..max_runs rounds, more
    while the rounds so far stay under budget_ms per count. All that is done
    `windows` times, gap_s apart: load that outlasts one window (well under a
    second) must also cover the next to spoil the choice. In one bench run a
    single window chose 1 segmenter thread (best 29.8 ms) over 2 (29.5 ms,
    every run disturbed) against 17.4 ms for 2 in the quiet runs."""
    order = list(counts)
    if not order:
        raise ValueError("no thread counts to measure")
    times = {t: [] for t in order}   # type: Dict[int, List[float]]
    for window in range(max(1, windows)):
        if window:
            sleep(gap_s)
        spent, rounds = 0.0, 0
        while rounds < max(1, min_runs) or (rounds < max_runs and spent < budget_ms * len(order)):
            shift = rounds % len(order)          # no count always runs first (or right after another)
            for t in order[shift:] + order[:shift]:
                ms = time_once(t)
                times[t].append(ms)
                spent += ms
            rounds += 1
    measured = {t: min(v) for t, v in times.items()}
    return ThreadChoice(pick(measured), "calibrated", measured)


def stopwatch_ms(fn: Callable[[], Any]) -> float:
    t0 = time.perf_counter()
    fn()
    return (time.perf_counter() - t0) * 1000.0
