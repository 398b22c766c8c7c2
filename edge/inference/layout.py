"""How many films run the models at once, and with how many threads each.

On the CPU the same cores can serve one film at a time with every core's
thread, or several films at once with fewer threads each. ONNX Runtime's
threads wait for each other at every parallel section: on a 2-core x86 VM
the segmenter ran only 1.3-1.6x faster at 2 threads than at 1, and a 40-film
burst through the appliance ran at 13.6 films/s two at a time (1 thread
each) against 11.3 one at a time (2 threads; medians of 3 rounds of
`python -m bench.layouts`, README "Runs I1 and I2"). Which layout wins depends on the
machine, so `models.films_in_flight: auto` times them at start-up, each
candidate running its films side by side on zeros, and keeps the fewest
films within the tolerance of the fastest (one film at a time has the
shortest latency). TensorRT runs one film at a time: one engine context per
model, and the GPU already runs each film's layers in parallel.
"""
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple, Union

from edge.inference import threads as thread_choice

AUTO = thread_choice.AUTO
MAX_FILMS = 4     # more films in flight means more decoded films in memory, not more cores


@dataclass(frozen=True)
class Layout:
    """Films the appliance runs through the models at once, each with its own
    sessions of `threads` intra-op threads (0: the backend's own choice)."""
    films: int
    threads: Union[int, str]
    how: str                                   # configured | calibrated | one engine (TensorRT)
    measured_ms: Dict[int, float] = field(default_factory=dict)   # films -> ms per film

    def as_dict(self) -> Dict[str, Any]:
        out = {"films": self.films, "threads_per_film": self.threads, "how": self.how}   # type: Dict[str, Any]
        if self.measured_ms:
            out["measured_ms_per_film"] = {str(k): round(v, 2) for k, v in sorted(self.measured_ms.items())}
        return out


def parse(value: Union[int, str]) -> Optional[int]:
    """models.films_in_flight -> an int, or None for "auto"."""
    if isinstance(value, str):
        if value.strip().lower() == AUTO:
            return None
        raise ValueError("models.films_in_flight must be 'auto' or an integer 1..%d, got %r" % (MAX_FILMS, value))
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_FILMS:
        raise ValueError("models.films_in_flight must be 'auto' or an integer 1..%d, got %r" % (MAX_FILMS, value))
    return value


def candidates(cores: int) -> List[int]:
    """1, 2, 4 films up to the cores (and MAX_FILMS): each keeps at least one core."""
    return [n for n in thread_choice.candidates(cores) if n <= MAX_FILMS]


def threads_for(films: int, cores: int) -> int:
    """The cores shared out between the films in flight."""
    return max(1, cores // max(1, films))


def side_by_side(runners: Sequence[Callable[[], Any]]) -> Tuple[List[Any], float]:
    """Each runner on its own thread, started together: (their results in
    order, wall seconds of the whole). The first error is raised here."""
    results = [None] * len(runners)  # type: List[Any]
    errors = []  # type: List[BaseException]

    def one(i: int) -> None:
        try:
            results[i] = runners[i]()
        except BaseException as exc:  # noqa: BLE001 - re-raised on the caller's thread
            errors.append(exc)

    t0 = time.perf_counter()
    if len(runners) == 1:
        one(0)
    else:
        workers = [threading.Thread(target=one, args=(i,), name="layout-%d" % i) for i in range(len(runners))]
        for w in workers:
            w.start()
        for w in workers:
            w.join()
    wall = time.perf_counter() - t0
    if errors:
        raise errors[0]
    return results, wall


def side_by_side_ms(runners: Sequence[Callable[[], Any]]) -> float:
    """Each runner (one film through the models) on its own thread, started
    together: wall ms per film."""
    return side_by_side(runners)[1] * 1000.0 / len(runners)


def calibrate(time_films: Callable[[int], float], counts: Sequence[int], **kwargs: Any) -> Layout:
    """`time_films(n)` runs n films side by side and returns ms per film; the
    same round-robin, best-run, two-window timing as the thread counts
    (edge.inference.threads.calibrate) and the same rule: the fewest films
    within the tolerance of the fastest."""
    choice = thread_choice.calibrate(time_films, counts, **kwargs)
    return Layout(choice.threads, 0, "calibrated", choice.measured_ms)
