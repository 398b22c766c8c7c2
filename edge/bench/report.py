"""Bench results -> a readable table, a JSON file and a PNG latency plot."""
import json
import os
from typing import Any, Dict, List, Optional

JSON_KEYS = ("schema", "created", "host", "models", "options", "notes", "limit", "variants",
             "baseline", "end_to_end", "growth", "sizes", "goals", "peak_rss_mb")


def _f(value: Optional[float], fmt: str = "%.1f") -> str:
    return "-" if value is None else fmt % value


def _stage_rows(stages: Dict[str, Dict[str, float]]) -> List[str]:
    rows = ["  %-16s %8s %8s %8s %8s" % ("stage", "p50 ms", "p90 ms", "p99 ms", "n")]
    for stage, s in stages.items():
        rows.append("  %-16s %8.1f %8.1f %8.1f %8d" % (stage[:-3], s["p50"], s["p90"], s["p99"], s["n"]))
    return rows


def table(result: Dict[str, Any]) -> str:
    out = []
    m = result["models"]
    out.append("pneumo-edge bench  %s  (%s, %d cores, backend %s)" % (
        result["created"], result["host"]["platform"], result["host"]["cpu_count"], m["backend"]))
    out.append("models: %s  [%s]" % (", ".join("%s (%s, %s)" % (v["name"], v["architecture"], v["input"])
                                               for v in m["files"]), m["source"]))
    for note in result.get("notes", []):
        out.append("note: " + note)
    out.append("")
    out.append("%-34s %10s %10s %10s %10s" % ("throughput (images/s)", "limit", "sequential", "overlapped", "% of limit"))
    for v in result["variants"]:
        lim = v["limit"]["throughput_ips"]
        seq = v["pipeline"]["sequential"]["throughput_ips"]
        ovl = v["pipeline"]["overlapped"]["throughput_ips"]
        out.append("%-34s %10.2f %10.2f %10.2f %9.0f%%" % (v["name"], lim, seq, ovl, 100.0 * max(seq, ovl) / lim))
    b = result.get("baseline") or {}
    if "throughput_ips" in b:
        out.append("%-34s %10s %10.2f   (pydicom + PIL + torch eager, %d threads)"
                   % ("naive baseline", "", b["throughput_ips"], b["torch_threads"]))
    elif b:
        out.append("naive baseline: skipped (%s)" % b.get("skipped"))
    main = result["variants"][0]
    out.append("")
    out.append("per stage, %s, in process (sequential):" % main["name"])
    out.extend(_stage_rows(main["pipeline"]["sequential"]["stages"]))
    e2e = result.get("end_to_end") or {}
    if e2e.get("one_at_a_time"):
        one = e2e["one_at_a_time"]
        out.append("")
        out.append("appliance end to end (real folder + mosquitto), files one at a time, %s:" % e2e["variant"])
        out.extend(_stage_rows(one["stages"]))
        lat, aft = one["arrival_to_puback_ms"], one["after_settle_to_puback_ms"]
        out.append("  file arrival -> PUBACK   p50 %.0f  p95 %.0f  p99 %.0f ms (settle wait applied: %.2f s)"
                   % (lat["p50"], lat["p95"], lat["p99"], e2e["settle_s"]))
        out.append("  settled -> PUBACK        p50 %.0f  p95 %.0f  p99 %.0f ms"
                   % (aft["p50"], aft["p95"], aft["p99"]))
        if e2e.get("burst"):
            out.append("  burst of %d: %.2f images/s arrival to last PUBACK (%.2f after the settle wait)"
                       % (e2e["burst"]["images"], e2e["burst"]["throughput_ips"],
                          e2e["burst"]["throughput_after_settle_ips"]))
    g = result.get("growth") or {}
    if g.get("checkpoints"):
        out.append("")
        out.append("cost growth (%s):" % g["variant"])
        for row in g["checkpoints"]:
            out.append("  after %6d images: %6.2f images/s, peak RSS %7.1f MB, outbox pending %d"
                       % (row["images"], row["throughput_ips"], row["peak_rss_mb"], row["outbox_pending"]))
    if result.get("sizes"):
        out.append("")
        out.append("latency vs image size (read+decode+pipeline, sequential):")
        out.append("  %-6s %6s %8s %10s %10s %10s" % ("kind", "size", "file MB", "p50 ms", "decode p50", "prep p50"))
        for row in result["sizes"]:
            out.append("  %-6s %6d %8.1f %10.1f %10.1f %10.1f" % (
                row["kind"], row["size"], row["file_mb"], row["per_image_ms"]["p50"],
                row["decode_ms"].get("p50", 0.0), row["preprocess_ms"].get("p50", 0.0)))
    out.append("")
    out.append("goals:")
    for goal in result["goals"]:
        out.append("  [%s] %-46s %s (target %s)%s" % (
            "met " if goal["met"] else ("n/a " if goal["met"] is None else "MISS"), goal["name"],
            _f(goal["value"], "%.2f"), goal["target"], ("  - " + goal["why"]) if goal.get("why") else ""))
    out.append("peak RSS of the bench process: %.0f MB" % result["peak_rss_mb"])
    return "\n".join(out)


def write_json(result: Dict[str, Any], path: str) -> str:
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "w") as fh:
        json.dump(result, fh, indent=1, sort_keys=False)
    return path


def write_plot(result: Dict[str, Any], latencies: Dict[str, List[float]], path: str) -> Optional[str]:
    """Latency distributions (one box per series) + throughput bars; None
    with the reason printed by the caller when matplotlib is missing."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(13, 5), gridspec_kw={"width_ratios": [3, 2]})
    names = [n for n, v in latencies.items() if v]
    data = [latencies[n] for n in names]
    try:
        ax1.boxplot(data, orientation="horizontal", whis=(1, 99))   # matplotlib >= 3.10
    except TypeError:
        ax1.boxplot(data, vert=False, whis=(1, 99))
    ax1.set_yticks(range(1, len(names) + 1))
    ax1.set_yticklabels(names, fontsize=8)
    ax1.set_xlabel("ms per image (whiskers p1-p99)")
    ax1.set_title("latency distribution")
    bars = []
    for v in result["variants"]:
        bars.append(("limit " + v["name"], v["limit"]["throughput_ips"]))
        bars.append(("pipeline " + v["name"], max(v["pipeline"]["sequential"]["throughput_ips"],
                                                  v["pipeline"]["overlapped"]["throughput_ips"])))
    b = result.get("baseline") or {}
    if "throughput_ips" in b:
        bars.append(("naive baseline", b["throughput_ips"]))
    ax2.barh(range(len(bars)), [x[1] for x in bars])
    ax2.set_yticks(range(len(bars)))
    ax2.set_yticklabels([x[0] for x in bars], fontsize=7)
    ax2.set_xlabel("images/s")
    ax2.set_title("throughput")
    fig.suptitle("pneumo-edge bench %s (%s models)" % (result["created"], result["models"]["source"]))
    fig.tight_layout()
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path
