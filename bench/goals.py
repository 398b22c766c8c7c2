"""The limits and the goals, as ratios from one run; every ratio names both sides."""
from typing import Any, Dict, List, Optional

from bench import stats
from edge.inference.threads import pick


def _seg_share(result: Dict[str, Any]) -> float:
    """Share of the appliance burst's images on which the segmenter ran (1.0 = all)."""
    burst = (result.get("end_to_end") or {}).get("burst") or {}
    if burst.get("images"):
        return burst.get("segmenter_ran", burst["images"]) / float(burst["images"])
    return 1.0


def limits(result: Dict[str, Any]) -> Dict[str, Any]:
    """Per precision: the machine's best models' limit, both models on every
    image, each run as often as the pipeline runs it (twice with h-flip TTA):
    the better of one film at a time (each model at its best thread count)
    and several films side by side (result["layouts"]: each film its own
    sessions, the cores shared out); and the same for the burst's mix when
    the gate skipped the segmenter on some images."""
    out = {}
    share = _seg_share(result)
    for precision, sweep in result["thread_sweep"].items():
        cls = [m for m in sweep.values() if m["task"] == "classification"][0]
        seg = [m for m in sweep.values() if m["task"] == "segmentation"][0]
        cls_ms, seg_ms = cls["best_ms"] * cls.get("passes", 1), seg["best_ms"] * seg.get("passes", 1)
        both = cls_ms + seg_ms
        mix = cls_ms + share * seg_ms
        how = "1 film at a time, threads cls=%d seg=%d" % (cls["best_threads"], seg["best_threads"])
        candidates = [(both, mix, how)]
        for row in (result.get("layouts") or {}).get(precision, []):
            # side by side: ms per film from the p50 of each film's time (the sweep's
            # statistic too), scaled to the mix as one film at a time is
            per_film = row.get("ms_per_film_p50") or 1000.0 / row["throughput_ips"]
            candidates.append((per_film, per_film * mix / both,
                               "%d films side by side, %d thread(s) each" % (row["films"], row["threads"])))
        burst = (result.get("end_to_end") or {}).get("burst") or {}
        if precision == "fp32" and burst.get("limit_just_before_ips"):
            # The appliance's own sessions just before the burst, as the appliance runs them.
            per_film = burst.get("limit_just_before_ms_per_film_p50") or 1000.0 / burst["limit_just_before_ips"]
            candidates.append((per_film, per_film * mix / both, "the appliance's own sessions just before the burst"))
        both, mix, how = min(candidates, key=lambda c: c[0])
        out[precision] = {"best_ips": 1000.0 / both, "best_ms": both, "mix_segmenter_share": share,
                          "mix_ips": 1000.0 / mix, "best_is": how,
                          "threads": {"classifier": cls["best_threads"], "segmenter": seg["best_threads"]},
                          "passes": {"classifier": cls.get("passes", 1), "segmenter": seg.get("passes", 1)}}
    return out


def threads_check(result: Dict[str, Any]) -> Dict[str, Dict[str, Any]]:
    """Per model: the threads the appliance's start-up calibration chose
    against what the bench's own sweep says, by the same rule (the fewest
    threads within the tolerance of the fastest p50). A mismatch means the
    calibration was disturbed, and the burst ran slower than it could."""
    chosen = (result.get("end_to_end") or {}).get("inference_threads") or {}
    sweep = (result.get("thread_sweep") or {}).get("fp32") or {}
    out = {}
    for name, c in chosen.items():
        if name not in sweep or c.get("how") != "calibrated":
            continue
        by = {int(t): s["p50"] for t, s in sweep[name]["by_threads"].items()}
        want = pick(by)
        out[name] = {"appliance": c["threads"], "appliance_ms": c.get("measured_ms", {}),
                     "sweep": want, "sweep_p50_ms": {str(t): round(v, 2) for t, v in sorted(by.items())},
                     "match": c["threads"] == want}
    return out


def _goal(name: str, value: Optional[float], target: str, ok, why: str = "") -> Dict[str, Any]:
    return {"name": name, "value": value, "target": target,
            "met": None if value is None else bool(ok(value)), "why": why if value is not None or why
            else "not measured"}


def _j2k_row(result: Dict[str, Any], side: int) -> Optional[Dict[str, Any]]:
    for row in (result.get("decode") or {}).get("files", []):
        if row["file"].startswith("j2k-%d-" % side) and "models" in row:
            return row
    return None


def goals(result: Dict[str, Any]) -> List[Dict[str, Any]]:
    lim = result["limits"]["fp32"]
    e2e = result.get("end_to_end") or {}
    burst = e2e.get("burst") or {}
    out = []
    app_ips = burst.get("throughput_ips")
    out.append(_goal("appliance, %s films dropped at once (%s/s) / machine's best models' limit for that mix "
                     "(%.1f/s, %s)" % (burst.get("images", "-"), "%.1f" % app_ips if app_ips else "-",
                                       lim["mix_ips"], lim["best_is"]),
                     stats.ratio(app_ips, lim["mix_ips"]), ">= 0.90", lambda v: v >= 0.90))
    row = _j2k_row(result, 2048)
    if row:
        full, red = row["full_ms"]["p50"], row["models"]["ms"]["p50"]
        out.append(_goal("JPEG 2000 2048 px decode: full (pydicom, %.0f ms) / reduced to the models' %d px "
                         "(%.0f ms, decoded %s)" % (full, row["models"]["min_side"], red,
                                                    "x".join(str(v) for v in row["models"]["decoded"])),
                         stats.ratio(full, red), ">= 8", lambda v: v >= 8.0))
        ov = row["models+overlay"]
        out.append(_goal("same, floor incl. the %d px overlay (shipped config: %.0f ms, decoded %s)"
                         % (ov["min_side"], ov["ms"]["p50"], "x".join(str(v) for v in ov["decoded"])),
                         stats.ratio(full, ov["ms"]["p50"]), ">= 8", lambda v: v >= 8.0))
    else:
        out.append(_goal("JPEG 2000 2048 px decode full / reduced", None, ">= 8", None,
                         "not measured (no JPEG 2000 encoder, or --sizes without 2048)"))
    one = e2e.get("one_at_a_time")
    if one:
        p95, comp = one["arrival_to_puback_ms"]["p95"], one["single_image_compute_ms"]["p50"]
        comp95 = one["single_image_compute_ms"]["p95"]
        out.append(_goal("file-to-PUBACK p95 (%.0f ms) / single-image compute p50 (%.0f ms)" % (p95, comp),
                         stats.ratio(p95, comp), "<= 1.5", lambda v: v <= 1.5,
                         "the same files' compute alone: p95 %.0f ms = %.2fx its p50 (the spread a busy "
                         "machine adds before any overhead); each file's latency over its own compute: p95 %.2fx"
                         % (comp95, stats.ratio(comp95, comp) or 0.0,
                            (one.get("arrival_to_puback_over_compute") or {}).get("p95", 0.0))))
    else:
        out.append(_goal("file-to-PUBACK p95 / single-image compute", None, "<= 1.5", None))
    base = result.get("baseline") or {}
    gate_off = result["variants"][0].get("pipeline_gate_off") or {}
    b_ips = base.get("throughput_ips")
    p_ips = gate_off.get("throughput_ips")
    out.append(_goal("pipeline in process, both models every image (%s/s) / naive baseline, same networks%s (%s/s)"
                     % ("%.1f" % p_ips if p_ips else "-", "" if base.get("like_for_like", True) else
                        " [FLOPs DIFFER]", "%.1f" % b_ips if b_ips else "-"),
                     stats.ratio(p_ips, b_ips), ">= 3", lambda v: v >= 3.0,
                     "" if b_ips else "not measured: %s" % base.get("skipped", "")))
    rows = (result.get("growth") or {}).get("checkpoints") or []
    if len(rows) >= 2:
        a, b = rows[-2], rows[-1]
        out.append(_goal("peak RSS after %d images (%.0f MB) / after %d (%.0f MB)"
                         % (b["images"], b["peak_rss_mb"], a["images"], a["peak_rss_mb"]),
                         stats.ratio(b["peak_rss_mb"], a["peak_rss_mb"]), "<= 1.10", lambda v: v <= 1.10,
                         "" if b["images"] >= 10000 else "goal as stated needs --growth 100,1000,10000"))
    else:
        out.append(_goal("memory growth", None, "<= 1.10", None))
    return out
