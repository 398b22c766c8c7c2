"""Bench results -> a readable table, a JSON file and a PNG plot."""
import json
import os
from typing import Any, Dict, List, Optional


def _f(value: Optional[float], fmt: str = "%.1f") -> str:
    return "-" if value is None else fmt % value


def _stage_rows(stages: Dict[str, Dict[str, float]]) -> List[str]:
    rows = ["  %-16s %8s %8s %8s %6s" % ("stage", "p50 ms", "p90 ms", "p99 ms", "n")]
    for stage, s in stages.items():
        rows.append("  %-16s %8.1f %8.1f %8.1f %6d" % (stage[:-3], s["p50"], s["p90"], s["p99"], s["n"]))
    return rows


def _threads_text(chosen: Dict[str, Dict[str, Any]]) -> str:
    return ", ".join("%s %d (%s)" % (k, v["threads"], v["how"]) for k, v in chosen.items()) or "-"


def table(result: Dict[str, Any]) -> str:
    h = result["host"]
    out = ["pneumo-edge bench %s  (%s, %d usable cores, ONNX Runtime %s; load average at start %s, end %s)" % (
        result["created"], h["platform"], h["usable_cores"], h["onnxruntime"],
        _load(h.get("load_average_at_start")), _load(h.get("load_average_at_end"))),
        "config %s: models.threads=%s, gate_segmenter=%s, decode.reduced_resolution=%s" % (
            result["config"]["file"], result["config"]["threads"], result["config"]["gate_segmenter"],
            result["config"]["reduced_resolution"])]
    out += ["note: " + n for n in result.get("notes", [])]
    peak = result["peak"]
    out += ["", "machine peak: %.1f GFLOP/s (float32 %dx%d matmul, best of %d, %s; numpy %.1f, ONNX Runtime %s)" % (
        peak["gflops"], peak["n"], peak["n"], peak["runs"], peak.get("source", "numpy"),
        peak.get("numpy_gflops", peak["gflops"]),
        "%.1f" % peak["onnxruntime_gflops"] if "onnxruntime_gflops" in peak else peak.get("onnxruntime_error", "-")), "",
        "models alone, p50 ms per thread count (best marked *); achieved GFLOP/s from the best run at the best "
        "count, against the peak's best run (both best-of: contention only adds time):"]
    for precision, sweep in result["thread_sweep"].items():
        for name, m in sweep.items():
            cells = ["%s%s: %.1f" % ("*" if int(t) == m["best_threads"] else " ", t, s["p50"])
                     for t, s in m["by_threads"].items()]
            flops = sum((result["flops"].get(name) or {}).values()) if precision == "fp32" else 0
            fastest = m["by_threads"][str(m["best_threads"])]["min"]
            gf = "%.1f GFLOP/s = %.0f%% of peak (%.2f GFLOP)" % (
                flops / fastest / 1e6, 100.0 * flops / fastest / 1e6 / peak["gflops"], flops / 1e9) \
                if flops else ""
            out.append("  %-5s %-12s %s   %s" % (precision, name, "  ".join(cells), gf))
    for precision, rows in (result.get("layouts") or {}).items():
        for row in rows:
            out.append("  %-5s %d films side by side, %d thread(s) each, own sessions: %.2f images/s over the wall; "
                       "p50 of each film's time / films %.1f ms per film"
                       % (precision, row["films"], row["threads"], row["throughput_ips"],
                          row.get("ms_per_film_p50") or 1000.0 / row["throughput_ips"]))
    for precision, lim in result["limits"].items():
        out.append("  %s machine's best limit, both models every image (runs per film: classifier %d, "
                   "segmenter %d, as the pipeline; 2 = h-flip TTA): %.2f images/s (%.1f ms; %s)"
                   % (precision, lim.get("passes", {}).get("classifier", 1), lim.get("passes", {}).get("segmenter", 1),
                      lim["best_ips"], lim["best_ms"], lim.get("best_is", "1 film at a time")))
    out += ["", "%-30s %-34s %11s %11s %s" % ("variant", "threads in use", "limit ips", "pipeline", "pipeline/limit")]
    for v in result["variants"]:
        lim, pipe = v["limit"]["throughput_ips"], v["pipeline"]["throughput_ips"]
        out.append("%-30s %-34s %11.2f %11.2f %8.2f  (segmenter ran %d/%d)" % (
            v["name"], _threads_text(v["threads_chosen"]), lim, pipe, pipe / lim,
            v["pipeline"]["segmenter_ran"], v["pipeline"]["images"]))
    main = result["variants"][0]
    g = main.get("pipeline_gate_off")
    if g:
        out.append("%-30s %-34s %11s %11.2f" % ("  same, gate forced off", "", "", g["throughput_ips"]))
    b = result.get("baseline") or {}
    if "throughput_ips" in b:
        nets = "; ".join("%s from %s (FLOPs %s)" % (n["model"], n["config"], "equal" if n["flops_gap"] == 0
                                                    else "differ by %.1f%%" % (100 * n["flops_gap"]))
                         for n in b["networks"])
        threads = "torch %d threads (best of %s)" % (b["torch_threads"], "/".join(b["by_threads"]))
        out.append("%-30s %-34s %11s %11.2f   pydicom + PIL + torch eager: %s" % (
            "naive baseline", threads, "", b["throughput_ips"], nets))
    elif b:
        out.append("naive baseline: skipped (%s)" % b.get("skipped"))
    out += ["", "per stage, %s, in process:" % main["name"]] + _stage_rows(main["pipeline"]["stages"])
    out += _decode_rows(result.get("decode"))
    e2e = result.get("end_to_end") or {}
    if e2e.get("one_at_a_time"):
        one = e2e["one_at_a_time"]
        lat, comp = one["arrival_to_puback_ms"], one["single_image_compute_ms"]
        fl = e2e.get("films_in_flight") or {}
        out += ["", "appliance end to end (real folder + mosquitto), %s, threads %s; films in flight %s (%s%s):" % (
            e2e["variant"], _threads_text(e2e.get("inference_threads") or {}), fl.get("films", 1), fl.get("how", "-"),
            ", ms per film %s" % fl["measured_ms_per_film"] if fl.get("measured_ms_per_film") else "")]
        for name, c in (result.get("threads_check") or {}).items():
            out.append("  %s threads: appliance's start-up calibration %d (best ms %s), the sweep's %d (p50 ms %s)%s"
                       % (name, c["appliance"], c["appliance_ms"], c["sweep"], c["sweep_p50_ms"],
                          "" if c["match"] else "  << MISMATCH: one of the two was disturbed (the burst ran with the appliance's)"))
        out += _stage_rows(one["stages"])
        out.append("  file arrival -> PUBACK p50 %.0f  p95 %.0f  p99 %.0f ms; single-image compute p50 %.0f  p95 %.0f ms"
                   % (lat["p50"], lat["p95"], lat["p99"], comp["p50"], comp["p95"]))
        extra = one.get("arrival_to_puback_less_compute_ms")
        if extra:
            out.append("  the same, less each file's own compute (what the appliance adds): p50 %.0f  p95 %.0f ms"
                       % (extra["p50"], extra["p95"]))
        per = one.get("arrival_to_puback_over_compute")
        if per:
            out.append("  the same, over each file's own compute: p50 %.2fx  p95 %.2fx" % (per["p50"], per["p95"]))
        if e2e.get("burst"):
            bu = e2e["burst"]
            out.append("  %d files at once: %.2f images/s, arrival of the first to PUBACK of the last "
                       "(segmenter ran on %d); models' limit on the same sessions just before: %.2f images/s"
                       % (bu["images"], bu["throughput_ips"], bu["segmenter_ran"], bu["limit_just_before_ips"]))
            lat = bu.get("arrival_to_puback_ms") or {}
            if lat.get("n"):
                out.append("  each burst file's arrival to its PUBACK: p50 %.0f ms  p95 %.0f ms  max %.0f ms"
                           % (lat["p50"], lat["p95"], lat["max"]))
            if bu.get("files_finished_ips"):
                out.append("  the same files finished (overlay and PACS step done, file in done/): %.2f images/s"
                           % bu["files_finished_ips"])
            if bu.get("stages"):
                out += ["  per stage in the burst (wall ms; the stages of one film overlap other films'):"]
                out += _stage_rows(bu["stages"])
    spin = result.get("spinning")
    if spin:
        any_mode = next(iter(spin.values()))
        words = {"on": "spinning on", "run": "spinning during a run only", "off": "sleeping"}
        out.append("  ONNX Runtime idle threads, %d films at once at threads=%d: %s (the runtime's default: %s)" % (
            any_mode["images"], any_mode["threads"],
            ", ".join("%s %.2f images/s" % (words.get(k, k), v["throughput_ips"]) for k, v in spin.items()),
            words.get(result.get("config", {}).get("spinning", ""), "-")))
    gr = result.get("growth") or {}
    if gr.get("checkpoints"):
        out += ["", "memory growth (%s):" % gr["variant"]]
        for row in gr["checkpoints"]:
            out.append("  after %6d images: %6.2f images/s, peak RSS %7.1f MB, outbox pending %d"
                       % (row["images"], row["throughput_ips"], row["peak_rss_mb"], row["outbox_pending"]))
    out += ["", "goals (one run, both sides of every ratio named):"]
    for goal in result["goals"]:
        out.append("  [%s] %s = %s (target %s)%s" % (
            "met " if goal["met"] else ("n/a " if goal["met"] is None else "MISS"), goal["name"],
            _f(goal["value"], "%.2f"), goal["target"], ("\n         " + goal["why"]) if goal.get("why") else ""))
    out.append("peak RSS of the bench process: %.0f MB" % result["peak_rss_mb"])
    return "\n".join(out)


def _load(value) -> str:
    return "-" if not value else "%.1f" % value[0]


def _decode_rows(dec: Optional[Dict[str, Any]]) -> List[str]:
    if not dec:
        return []
    sides = dec["sides"]
    out = ["", "decode, stored pixels only, p50 ms (reduced: %s; floors models %d px, models+overlay %d px):" % (
        dec["reduced_decoder"], sides["models"], sides["models+overlay"]),
        "  %-32s %-42s %10s %9s %22s %22s" % ("file", "transfer syntax", "size", "full", "reduced (models)",
                                               "reduced (+overlay)")]
    for row in dec["files"]:
        if row.get("skipped"):
            continue
        cells = []
        for key in ("models", "models+overlay"):
            r = row.get(key)
            cells.append("%6.1f %5.1fx %s" % (r["ms"]["p50"], r["speedup_p50"], "x".join(map(str, r["decoded"])))
                         if r else "-")
        out.append("  %-32s %-42s %10s %9.1f %22s %22s" % (
            row["file"][:32], row["transfer_syntax"][:42], "x".join(map(str, row["size"])),
            row["full_ms"]["p50"], cells[0], cells[1]))
    return out


def write_json(result: Dict[str, Any], path: str) -> str:
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "w") as fh:
        json.dump(result, fh, indent=1, sort_keys=False)
    return path


def _series(result: Dict[str, Any]) -> Dict[str, List[float]]:
    series = {}
    for v in result["variants"]:
        series["models' limit " + v["name"]] = v["limit"]["samples_ms"]
        series["pipeline " + v["name"]] = v["pipeline"]["samples_ms"]
    one = (result.get("end_to_end") or {}).get("one_at_a_time")
    if one:
        series["file -> PUBACK (appliance)"] = one["samples_ms"]
    if "samples_ms" in (result.get("baseline") or {}):
        series["naive baseline"] = result["baseline"]["samples_ms"]
    return series


def write_plot(result: Dict[str, Any], path: str) -> Optional[str]:
    """Latency distributions on a log axis (the baseline would flatten the
    rest on a linear one) and throughput bars; None without matplotlib."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    latencies = {k: v for k, v in _series(result).items() if v}
    bars = [("best limit (%s)" % p, lim["best_ips"]) for p, lim in result["limits"].items()]
    for v in result["variants"]:
        bars.append(("pipeline " + v["name"], v["pipeline"]["throughput_ips"]))
    burst = (result.get("end_to_end") or {}).get("burst")
    if burst:
        bars.append(("appliance, %d dropped" % burst["images"], burst["throughput_ips"]))
    if "throughput_ips" in (result.get("baseline") or {}):
        bars.append(("naive baseline", result["baseline"]["throughput_ips"]))
    fig, (ax1, ax2) = plt.subplots(2, 1, figsize=(11, 4 + 0.35 * (len(latencies) + len(bars))))
    names = list(latencies)
    try:
        ax1.boxplot([latencies[n] for n in names], orientation="horizontal", whis=(1, 99))   # matplotlib >= 3.10
    except TypeError:
        ax1.boxplot([latencies[n] for n in names], vert=False, whis=(1, 99))
    ax1.set_xscale("log")
    ax1.set_yticks(range(1, len(names) + 1))
    ax1.set_yticklabels(names, fontsize=8)
    ax1.set_xlabel("ms per image, log scale (whiskers p1-p99)")
    ax1.set_title("latency")
    ax2.barh(range(len(bars)), [b[1] for b in bars], color="tab:blue")
    for i, (_, value) in enumerate(bars):
        ax2.text(value, i, " %.1f" % value, va="center", fontsize=8)
    ax2.set_yticks(range(len(bars)))
    ax2.set_yticklabels([b[0] for b in bars], fontsize=8)
    ax2.set_xlabel("images/s")
    ax2.set_xlim(0, max(b[1] for b in bars) * 1.15)
    ax2.set_title("throughput")
    fig.suptitle("pneumo-edge bench %s, %d cores" % (result["created"], result["host"]["usable_cores"]))
    fig.tight_layout()
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    fig.savefig(path, dpi=90, bbox_inches="tight")
    plt.close(fig)
    return path
