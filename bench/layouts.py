"""One film in flight, two, auto with the overlays on the models' threads, and the
shipped layout (auto, overlays on the after-alert thread), in one process, round-robin:
`python -m bench.layouts [--rounds 3] [--burst 40] [--one-at-a-time 15]`.

Each round starts a real appliance (real folder, SQLite, mosquitto) per
layout with models.films_in_flight set, drops files one at a time, then a
burst at once (bench.runner.measure_appliance), and prints its figures; the
order rotates each round so a change in the machine's speed lands on every layout.
The medians at the end are what README "Runs I1 and I2" quotes.
"""
import argparse
import copy
import logging
import os
import shutil
import statistics
import tempfile
from typing import Any, Dict, List, Optional

from bench import inputs, runner
from bench.cli import without_chest_gate
from edge.config import load_config

# (name, models.films_in_flight, the after-alert thread); the last row is the shipped one
LAYOUTS = (("one film in flight", 1, True), ("two films in flight", 2, True),
           ("auto, overlays on models' threads", "auto", False), ("models.films_in_flight: auto", "auto", True))
FIGURES = (("burst films/s", lambda o: o["burst"]["throughput_ips"]),
           ("files finished/s (overlays done)", lambda o: o["burst"].get("files_finished_ips", 0.0)),
           ("limit on its sessions just before", lambda o: o["burst"]["limit_just_before_ips"]),
           ("file-to-PUBACK p95 ms", lambda o: o["one_at_a_time"]["arrival_to_puback_ms"]["p95"]),
           ("in the burst p95 ms", lambda o: (o["burst"].get("arrival_to_puback_ms") or {}).get("p95", 0.0)),
           ("single-image compute p50 ms", lambda o: o["one_at_a_time"]["single_image_compute_ms"]["p50"]))


def main(argv: Optional[List[str]] = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.layouts", description=__doc__.split("\n")[0])
    p.add_argument("--config", default="config/edge.yaml")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--burst", type=int, default=40)
    p.add_argument("--one-at-a-time", type=int, default=15)
    p.add_argument("--size", type=int, default=1024, help="side of the generated DICOM phantoms")
    args = p.parse_args(argv)
    logging.disable(logging.WARNING)
    work = tempfile.mkdtemp(prefix="bench-layouts-")
    base = load_config(args.config)
    base.models.classifier = without_chest_gate(base.models.classifier, work, [])   # phantoms are not chests
    items = inputs.generate(["dicom"], [args.size], per_combo=2)
    broker = runner.LocalBroker(os.path.join(work, "broker"))
    got = {name: {f: [] for f, _ in FIGURES} for name, _, _ in LAYOUTS}   # type: Dict[str, Dict[str, List[float]]]
    try:
        for r in range(args.rounds):
            order = LAYOUTS[r % len(LAYOUTS):] + LAYOUTS[:r % len(LAYOUTS)]    # no layout always first
            for name, films, after_thread in order:
                s = copy.deepcopy(base)
                s.models.films_in_flight = films
                v = runner.Variant("fp32", s.models.threads, s.decision.gate_segmenter,
                                   s.models.classifier, s.models.segmenter)
                out = runner.measure_appliance(s, v, items, os.path.join(work, "app"), broker.port,
                                               args.one_at_a_time, args.burst, after_thread=after_thread)
                row = {f: fn(out) for f, fn in FIGURES}   # type: Dict[str, Any]
                for f, value in row.items():
                    got[name][f].append(value)
                print("round %d  %-30s %s  (films in flight %s)" % (
                    r + 1, name, "  ".join("%s %.1f" % (f, v) for f, v in row.items()),
                    (out.get("films_in_flight") or {}).get("films")), flush=True)
    finally:
        broker.close()
        shutil.rmtree(work, ignore_errors=True)
    print("\nmedians over %d rounds (range):" % args.rounds)
    for name, _, _ in LAYOUTS:
        print("  %-30s %s" % (name, "  ".join("%s %.1f (%.1f-%.1f)" % (f, statistics.median(v), min(v), max(v))
                                              for f, v in got[name].items())))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
