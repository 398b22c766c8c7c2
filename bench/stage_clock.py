"""bench.cpu's stage clock: which edge/ functions count as which stage, the
exclusive CPU clock that times them, and the patching that wraps each one
where the appliance looks it up (for `python -m bench.cpu`)."""
import time
from typing import Any, Callable, Dict, List, Tuple

# (stage, module, attribute): each is timed exclusive of the stages it calls. "a|b": the
# first of the modules that has it (the overlay moved out of commit.py; --against may be older).
STAGES = (
    ("claim (rename, read, hash)", "edge.capture.folders", "CaptureFolders.claim"),
    ("decode", "edge.stages.intake", "decode_bytes"),
    ("preprocess (resize, window, normalise)", "edge.pipeline", "Pipeline.prepare"),
    ("models (ONNX Runtime)", None, None),
    ("infer glue (TTA flips, sigmoid, mean)", "edge.pipeline", "Pipeline.infer"),
    ("postprocess (finding)", "edge.pipeline", "make_finding"),
    ("overlay (render + JPEG)", "edge.stages.overlay_recovery|edge.stages.commit", "render_overlay"),
    ("alert payload", "edge.stages.commit", "build_alert"),
    ("outbox + ledger SQL (+ JSON)", "edge.alerts.outbox", "Outbox.enqueue_alert"),
    ("move to done/", "edge.capture.folders", "CaptureFolders.finish"),
)
OTHER = "other (dedupe, transaction commit, logging)"
MODELS = STAGES[3][0]


class StageClock:
    """Exclusive CPU milliseconds per named stage (nesting allowed)."""

    def __init__(self, clock: Callable[[], float] = time.process_time):
        self.clock = clock
        self.ms = {}  # type: Dict[str, float]
        self._inner = []  # type: List[float]

    def wrap(self, name: str, fn: Callable) -> Callable:
        def timed(*args, **kwargs):
            t0 = self.clock()
            self._inner.append(0.0)
            try:
                return fn(*args, **kwargs)
            finally:
                spent = (self.clock() - t0) * 1000.0
                inner = self._inner.pop()
                self.ms[name] = self.ms.get(name, 0.0) + spent - inner
                if self._inner:
                    self._inner[-1] += spent
        return timed

    def take(self) -> Dict[str, float]:
        out, self.ms = self.ms, {}
        return out


def first_with(modules: str, attr: str) -> Any:
    """The first importable module of "a|b" that has `attr` (None if none)."""
    import importlib
    for name in modules.split("|"):
        try:
            module = importlib.import_module(name)
        except ImportError:
            continue
        if hasattr(module, attr):
            return module
    return None


def patch_stages(clock: StageClock, pipeline: Any, undo: List[Tuple[Any, str, Any]]) -> List[str]:
    """Wrap each stage where it is looked up (what to put back goes on
    `undo`); the names this edge/ lacks."""
    missing = []
    for name, module, attr in STAGES:
        if module is None:
            continue
        owner = first_with(module, attr.split(".")[0])
        parts = attr.split(".")
        for part in parts[:-1]:
            owner = getattr(owner, part, None)
        if owner is None or not hasattr(owner, parts[-1]):
            missing.append(name)
            continue
        undo.append((owner, parts[-1], getattr(owner, parts[-1])))
        setattr(owner, parts[-1], clock.wrap(name, getattr(owner, parts[-1])))
    for backend in (pipeline.classifier, pipeline.segmenter):
        backend.run = clock.wrap(MODELS, backend.run)
        if getattr(backend, "provides_mask", False):   # the joined graph: the call the pipeline makes
            backend.run_with_mask = clock.wrap(MODELS, backend.run_with_mask)
    return missing
