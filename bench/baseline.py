"""The naive baseline: the same networks run the seeds' way.

pydicom's full decode, min-max scaling, PIL resizes, PyTorch eager forward
passes of BOTH models on every image, the mask resized back with PIL. The
networks are built from models/ (models.nets, via the training config whose
FLOPs match the shipped ONNX file at its input size), so the comparison is
like for like: same architecture, same decoder widths, same input size.
Like the models' limit, the baseline gets its best over torch thread counts
(1, 2, 4 .. cores): the ratio must not come from a bad thread setting.
"""
import glob
import os
import time
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np

from bench import stats
from bench.runner import passes
from edge.inference.manifest import ModelManifest
from edge.inference.threads import candidates, usable_cores

CONFIG_GLOB = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "models", "configs", "*.yaml")
LIKE_FOR_LIKE = 0.02          # FLOPs within 2 % of the ONNX graph's


def torch_problem() -> Optional[str]:
    try:
        import torch  # noqa: F401
        import models.nets  # noqa: F401
    except ImportError as exc:
        return "the baseline needs the models extra (torch, torchvision, segmentation-models-pytorch): %s" % exc
    return None


def matching_net(manifest: ModelManifest, onnx_flops: int) -> Tuple[Any, Dict[str, Any]]:
    """The eager network whose FLOPs at the manifest's input size are nearest
    the ONNX graph's: the bundled pair's own, or a training config's of the same task."""
    from models.nets import count_flops, prepare_for_export
    from models.train import net_spec
    from models.train_config import load_config
    from models.nets import build
    shape = tuple(manifest.input.shape)
    best = None
    for net, where in _bundled_candidates(manifest.task):
        flops = count_flops(net, shape)
        gap = abs(flops - onnx_flops) / float(max(onnx_flops, 1))
        if best is None or gap < best[1]["flops_gap"]:
            best = (net, {"config": where, "spec": type(net).__name__, "torch_flops": flops,
                          "onnx_flops": onnx_flops, "flops_gap": gap})
    for path in sorted(glob.glob(CONFIG_GLOB)):
        try:
            cfg = load_config(path)
        except Exception:  # a config of another shape of project: not a candidate
            continue
        if cfg.get("task") != manifest.task:
            continue
        spec = net_spec(cfg)
        net = prepare_for_export(build(spec))
        flops = count_flops(net, shape)
        gap = abs(flops - onnx_flops) / float(max(onnx_flops, 1))
        if best is None or gap < best[1]["flops_gap"]:
            best = (net, {"config": os.path.relpath(path), "spec": repr(spec), "torch_flops": flops,
                          "onnx_flops": onnx_flops, "flops_gap": gap})
    if best is None:
        raise LookupError("no models/configs/*.yaml builds a %s network" % manifest.task)
    best[1]["like_for_like"] = best[1]["flops_gap"] <= LIKE_FOR_LIKE
    return best


def _bundled_candidates(task: str):
    """The bundled pair's own network (models/export_lite0.py: the shared-encoder
    U-Net of models/cvtrain.py's recipe), random weights: speed only."""
    from models.cvtrain import Recipe
    from models.export_lite0 import ClassifierHead, MaskOnly
    from models.nets import GATE_STAGES, LAYOUT_SIDE, build_gate_encoder, build_lite0_unet
    net = build_lite0_unet(Recipe().decoder_channels, pretrained=False).eval()
    where = "models/export_lite0.py (the bundled pair's network)"
    if task == "segmentation":
        return [(MaskOnly(net).eval(), where)]
    gate = build_gate_encoder(pretrained=False)
    # the gate's own encoder sets its feature count, not the trained one's
    dim, side = int(sum(gate.out_channels[GATE_STAGES])), LAYOUT_SIDE * LAYOUT_SIDE
    ood = {"mean": np.zeros(dim), "whitening": np.eye(dim),
           "layout_mean": np.zeros(side), "layout_whitening": np.eye(side)}
    # with and without the in-graph h-flip: the FLOPs say which one the manifest's file is
    return [(ClassifierHead(net, ood, gate, hflip=h).eval(), where + (", h-flip in the graph" if h else ""))
            for h in (True, False)]


def measure_baseline(paths: Sequence[str], manifests: Sequence[ModelManifest],
                     onnx_flops: Sequence[int]) -> Dict[str, Any]:
    why = torch_problem()
    if why:
        return {"skipped": why}
    import pydicom
    import torch
    from PIL import Image as PILImage
    nets, facts = [], []
    for manifest, flops in zip(manifests, onnx_flops):
        net, fact = matching_net(manifest, flops)
        nets.append((net, manifest))
        facts.append(dict(fact, model=manifest.name))
    by_threads = {}
    before = torch.get_num_threads()
    try:
        for t in candidates(usable_cores()):
            torch.set_num_threads(t)
            by_threads[t] = _run(paths, nets, pydicom, torch, PILImage)
    finally:
        torch.set_num_threads(before)
    best = max(by_threads, key=lambda t: by_threads[t]["throughput_ips"])
    return dict(by_threads[best], torch_threads=best, networks=facts,
                like_for_like=all(f["like_for_like"] for f in facts),
                by_threads={str(t): r["throughput_ips"] for t, r in by_threads.items()})


def _run(paths: Sequence[str], nets, pydicom, torch, PILImage) -> Dict[str, Any]:
    per_image = []   # type: List[float]
    with torch.no_grad():
        for net, m in nets:
            net(torch.zeros(tuple(m.input.shape)))        # warm-up, as for the pipeline
        start = time.perf_counter()
        for path in paths:
            t0 = time.perf_counter()
            ds = pydicom.dcmread(path)
            px = ds.pixel_array.astype(np.float64)
            px = (px - px.min()) / max(px.max() - px.min(), 1.0)
            img = PILImage.fromarray(px.astype(np.float32), mode="F")
            for net, m in nets:
                h, w = m.preprocessing.size
                x = torch.from_numpy(np.array(img.resize((w, h)), np.float32))[None, None]
                mean, std = m.preprocessing.mean[0], m.preprocessing.std[0]
                out = torch.sigmoid(net((x - mean) / std))
                if passes(m) == 2:       # the same work as the pipeline: the mirrored film too
                    mirrored = net(torch.flip((x - mean) / std, dims=(3,)))
                    if m.task == "segmentation":
                        mirrored = torch.flip(mirrored, dims=(3,))
                    out = 0.5 * (out + torch.sigmoid(mirrored))
                if m.task == "segmentation":
                    PILImage.fromarray(out[0, 0].numpy(), mode="F").resize((px.shape[1], px.shape[0]))
            per_image.append((time.perf_counter() - t0) * 1000.0)
        wall = time.perf_counter() - start
    return {"images": len(paths), "throughput_ips": stats.throughput(len(paths), wall),
            "per_image_ms": stats.summarize(per_image), "samples_ms": per_image}
