"""Export a trained run to ONNX (opset 17, the TorchScript exporter) with the
manifest the runtime reads, and check parity torch vs ONNX Runtime.

The manifest is written only after the ONNX file passes the parity bound,
and is re-read with the runtime's own `load_manifest` before export returns.
"""
import json
import os
from typing import Any, Dict, List, Optional

import numpy as np
import torch

from edge.inference.manifest import (ModelManifest, OperatingPoint, TensorSpec, file_sha256, load_manifest,
                                     verify_model_file)

from .nets import count_flops, count_parameters, prepare_for_export
from .train import load_trained, preprocess_spec

OPSET = 17
INPUT_NAME = "input"
OUTPUT_NAME = "logits"
NOT_CLINICAL = ("Demonstration model, NOT FOR CLINICAL USE: trained on a few hundred public images "
                "on a CPU; see MODEL_CARD.md for what its figures can and cannot claim.")


class ExportError(RuntimeError):
    """The exported model does not match the trained one (or cannot be built)."""


def export_onnx(net: torch.nn.Module, path: str, input_shape, dynamic_batch: bool = False) -> None:
    net = prepare_for_export(net)
    x = torch.zeros(input_shape)
    axes = {INPUT_NAME: {0: "batch"}, OUTPUT_NAME: {0: "batch"}} if dynamic_batch else None
    tmp = path + ".tmp"
    with torch.no_grad():
        torch.onnx.export(net, (x,), tmp, dynamo=False, opset_version=OPSET, input_names=[INPUT_NAME],
                          output_names=[OUTPUT_NAME], dynamic_axes=axes, do_constant_folding=True)
    import onnx
    model = onnx.load(tmp)
    onnx.checker.check_model(model)
    os.replace(tmp, path)


def parity(net: torch.nn.Module, path: str, inputs: List[np.ndarray]) -> float:
    """Max |torch - ORT| over the given (1, C, H, W) inputs."""
    import onnxruntime as ort
    sess = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    worst = 0.0
    net = prepare_for_export(net)
    with torch.no_grad():
        for x in inputs:
            ref = net(torch.from_numpy(x)).numpy()
            got = sess.run(None, {INPUT_NAME: x})[0]
            if ref.shape != got.shape:
                raise ExportError("ONNX output shape %s differs from torch %s" % (got.shape, ref.shape))
            worst = max(worst, float(np.abs(ref - got).max()))
    return worst


def _op_points(ev: Dict[str, Any]) -> List[OperatingPoint]:
    val = ev.get("val", {})
    if ev["task"] == "classification":
        out = []
        for name, key, note in (("triage", "at_positive", "highest threshold reaching sensitivity >= %.2f on "
                                 "validation" % ev.get("sensitivity_target", 0.9)),
                                ("skip_segmenter", "at_skip", "half the highest threshold that kept every "
                                 "validation positive")):
            b = val.get(key, {})
            out.append(OperatingPoint(name=name, threshold=float(b.get("threshold", ev["thresholds"]["positive"])),
                                      sensitivity=b.get("sensitivity", {}).get("value"),
                                      specificity=b.get("specificity", {}).get("value"), note=note))
        return out
    il = val.get("image_level", {})
    t = ev["thresholds"]
    return [OperatingPoint(name="siim_triplet", threshold=float(t["pixel_high"]),
                           sensitivity=il.get("sensitivity", {}).get("value"),
                           specificity=il.get("specificity", {}).get("value"),
                           note="image positive when pixels > %.2f cover >= %.4f of the image; mask drawn at > %.2f; "
                                "chosen for mean per-image Dice on validation"
                                % (t["pixel_high"], t["min_area_fraction"], t["pixel_low"]))]


def _training_data(ev: Dict[str, Any], cfg: Dict[str, Any]) -> str:
    sources = ["%s (%s %s)" % (src.get("name", src.get("kind")), src.get("kind"),
                               os.path.basename(str(src.get("path", src.get("csv", "")))))
               for src in cfg.get("data", {}).get("sources", [])]
    parts = []
    for split in ("train", "val", "test"):
        d = ev.get("data", {}).get(split)
        if d:
            srcs = ", ".join("%s %d+/%d-" % (k, v["positive"], v["negative"]) for k, v in sorted(d["by_source"].items()))
            parts.append("%s: %d images, %d patients (%s)" % (split, d["images"], d["patients"], srcs))
    return "sources: %s; split by patient; %s" % (", ".join(sources), "; ".join(parts))


def build_manifest(cfg: Dict[str, Any], ev: Dict[str, Any], onnx_path: str, in_shape, out_shape,
                   params: int, flops: int, parity_max_abs: float) -> ModelManifest:
    metrics = {"val": ev.get("val", {}), "test": ev.get("test", {}), "parameters": params, "flops": flops,
               "parity_max_abs_diff": parity_max_abs, "best_epoch": ev.get("best_epoch"),
               "note": "val chose the thresholds; test was never tuned on. 95% intervals: bootstrap (AUC, Dice), "
                       "Wilson (rates)."}
    arch = ("MobileNetV2 (torchvision, width %.2g), 1 logit" % cfg["net"].get("width_mult", 1.0)
            if cfg["task"] == "classification" else
            "U-Net, EfficientNet-B0 encoder (segmentation-models-pytorch), decoder %s, 1 logit/pixel"
            % list(cfg["net"].get("decoder_channels", [256, 128, 64, 32, 16])))
    return ModelManifest(
        name=cfg["name"], version=str(cfg["version"]), task=cfg["task"], architecture=arch,
        file=os.path.basename(onnx_path), sha256=file_sha256(onnx_path),
        input=TensorSpec(INPUT_NAME, tuple(in_shape)), output=TensorSpec(OUTPUT_NAME, tuple(out_shape)),
        output_kind="logit", preprocessing=preprocess_spec(cfg),
        thresholds={k: float(v) for k, v in ev["thresholds"].items()}, intended_use="demo",
        operating_points=_op_points(ev), training_data=_training_data(ev, cfg), metrics=metrics,
        notes=NOT_CLINICAL, precision="fp32")


def export_run(run_dir: str, out_dir: str, dynamic_batch: bool = False, max_abs_diff: float = 1e-3,
               eval_path: Optional[str] = None) -> ModelManifest:
    net, cfg = load_trained(run_dir)
    ev_path = eval_path or os.path.join(run_dir, "eval.json")
    if not os.path.exists(ev_path):
        raise ExportError("%s missing: run `python -m models evaluate %s` first (thresholds come from validation)"
                          % (ev_path, run_dir))
    with open(ev_path) as fh:
        ev = json.load(fh)
    spec = preprocess_spec(cfg)
    h, w = spec.size
    shape = (1, spec.channels, h, w)
    os.makedirs(out_dir, exist_ok=True)
    onnx_path = os.path.join(out_dir, cfg["name"] + ".onnx")
    export_onnx(net, onnx_path, shape, dynamic_batch)
    rng = np.random.default_rng(0)
    inputs = [np.zeros(shape, np.float32), ((rng.random(shape) - 0.5) / 0.25).astype(np.float32)]
    diff = parity(net, onnx_path, inputs)
    print("parity torch vs ONNX Runtime: max |diff| = %.3g (bound %.1g)" % (diff, max_abs_diff))
    if not diff <= max_abs_diff:
        os.remove(onnx_path)
        raise ExportError("ONNX output differs from torch by %.3g > %.3g; not writing the manifest"
                          % (diff, max_abs_diff))
    b = "batch" if dynamic_batch else 1
    in_shape = (b,) + shape[1:]
    out_shape = (b, 1) if cfg["task"] == "classification" else (b, 1, h, w)
    manifest = build_manifest(cfg, ev, onnx_path, in_shape, out_shape, count_parameters(net),
                              count_flops(net, shape), diff)
    json_path = os.path.join(out_dir, cfg["name"] + ".json")
    with open(json_path, "w") as fh:
        json.dump(manifest.to_json(), fh, indent=2, default=float)
        fh.write("\n")
    loaded = load_manifest(json_path)
    verify_model_file(loaded)
    print("wrote %s (%.1f MB) and %s" % (onnx_path, os.path.getsize(onnx_path) / 1e6, json_path))
    return loaded
