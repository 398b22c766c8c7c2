"""Both heads in one graph against the two shipped graphs, in one run:
`python -m bench.one_graph [--films 20] [--rounds 3] [--threads 1,2]`.

For each film, interleaved: classifier.onnx once (its TTA is inside) and
segmenter.onnx twice (film, mirror; sigmoid and mean as edge.pipeline does),
against the joined graph of edge.inference.one_graph once, all three as
the appliance's OnnxRuntimeBackend sessions. Inputs are real films
through edge.decode + edge.preprocess when ../shared/data is there, else
phantoms (said). Prints medians, p95 and the ratio, and the largest output
difference (the two ways must agree).
"""
import argparse
import os
import time
from typing import Callable, List, Optional, Tuple

import numpy as np

from bench import stats
from bench.cpu import DATA, default_films

ROOT = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "models")


def _inputs(count: int, spec) -> Tuple[List[np.ndarray], str]:
    from edge.decode import decode_file
    from edge.phantom import chest_phantom
    from edge.preprocess import preprocess
    films = default_films(DATA, count) if os.path.isdir(DATA) else []
    if films:
        return [preprocess(decode_file(f).pixels, spec)[0] for f in films], "%d real films" % len(films)
    return ([preprocess(chest_phantom(512, 480, seed=i), spec)[0] for i in range(count)],
            "%d GENERATED PHANTOMS (no shared data)" % count)


def _timed(fn: Callable[[], object]) -> float:
    t0 = time.perf_counter()
    fn()
    return (time.perf_counter() - t0) * 1000.0


def main(argv: Optional[List[str]] = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.one_graph", description=__doc__.split("\n")[0])
    p.add_argument("--films", type=int, default=20)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--threads", default="1,2", help="ONNX Runtime intra-op threads, comma-separated")
    args = p.parse_args(argv)
    from edge.inference.manifest import load_manifest
    from edge.inference.one_graph import joined_bytes
    from edge.inference.onnxruntime import OnnxRuntimeBackend
    from edge.postprocess import sigmoid
    cls_m = load_manifest(os.path.join(ROOT, "classifier", "classifier.json"))
    seg_m = load_manifest(os.path.join(ROOT, "segmenter", "segmenter.json"))
    joined, why = joined_bytes(cls_m, seg_m)
    if joined is None:
        print("the bundled models do not join (%s): nothing to compare" % why)
        return 1
    tensors, what = _inputs(args.films, cls_m.preprocessing)
    print("inputs: %s; %d rounds, interleaved" % (what, args.rounds))
    print("%-8s %-34s %8s %8s   %s" % ("threads", "", "p50 ms", "p95 ms", ""))
    for threads in [int(t) for t in args.threads.split(",")]:
        # the appliance's own sessions (same options), the pipeline's two-graph glue below
        cls, seg = OnnxRuntimeBackend(cls_m, threads=threads), OnnxRuntimeBackend(seg_m, threads=threads)
        one = OnnxRuntimeBackend(cls_m, threads=threads, joined=joined)

        def two_graphs(x):
            logits = cls.run(x)
            film = sigmoid(seg.run(x))
            mirror = sigmoid(seg.run(np.ascontiguousarray(x[..., ::-1])))
            return logits, 0.5 * (film + mirror[..., ::-1])

        worst = [0.0, 0.0]
        for x in tensors:
            a, b = two_graphs(x), one.run_with_mask(x)
            worst = [max(worst[0], float(np.abs(a[0] - b[0]).max())),
                     max(worst[1], float(np.abs(a[1] - b[1]).max()))]
        times = {"two": [], "one": []}  # type: dict
        for _ in range(args.rounds):
            for x in tensors:
                times["two"].append(_timed(lambda: two_graphs(x)))
                times["one"].append(_timed(lambda: one.run_with_mask(x)))
        two, joined_ms = stats.summarize(times["two"]), stats.summarize(times["one"])
        print("%-8d %-34s %8.1f %8.1f" % (threads, "classifier + segmenter x 2", two["p50"], two["p95"]))
        print("%-8s %-34s %8.1f %8.1f   one / two = %.2f (p50); max |diff| logits %.1e, mask %.1e"
              % ("", "one graph", joined_ms["p50"], joined_ms["p95"], joined_ms["p50"] / two["p50"],
                 worst[0], worst[1]))
        for backend in (cls, seg, one):
            backend.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
