"""Stand-in models with the REAL architectures (random weights) for when the
trained defaults are absent, and the PyTorch modules the naive baseline runs.

Speed depends on the architecture and input size, not on the weights, so a
stand-in measures what the trained model will cost. torch, torchvision and
segmentation-models-pytorch are imported lazily: the runtime never needs them.
"""
import json
import os
from typing import Any, Dict, Tuple

from edge.hashing import sha256_file

STANDIN_SPECS = {
    # role: (name, task, architecture, input size, output shape)
    "classifier": ("standin-mobilenet_v2", "classification", "mobilenet_v2", 256, [1, 1]),
    "segmenter": ("standin-unet-efficientnet-b0", "segmentation", "unet-efficientnet-b0", 512, [1, 1, 512, 512]),
}
MEAN, STD = 0.5, 0.25
THRESHOLDS = {
    "classifier": {"positive": 0.5, "skip_segmenter_below": 0.2},
    "segmenter": {"pixel_high": 0.5, "min_area_fraction": 0.002, "pixel_low": 0.3},
}


def torch_available() -> Tuple[bool, str]:
    try:
        import torch  # noqa: F401
        import torchvision  # noqa: F401
        import segmentation_models_pytorch  # noqa: F401
    except ImportError as exc:
        return False, "torch/torchvision/segmentation-models-pytorch not installed (%s)" % exc
    return True, "torch %s" % torch.__version__


def torch_module(role: str, size: int = 0) -> Any:
    """The eager PyTorch network for a role, 1 input channel, eval mode."""
    import torch.nn as nn
    if role == "classifier":
        from torchvision.models import mobilenet_v2
        net = mobilenet_v2(weights=None, num_classes=1)
        old = net.features[0][0]
        net.features[0][0] = nn.Conv2d(1, old.out_channels, old.kernel_size, old.stride, old.padding, bias=False)
        return net.eval()
    import segmentation_models_pytorch as smp
    net = smp.Unet("efficientnet-b0", encoder_weights=None, in_channels=1, classes=1)
    encoder = getattr(net, "encoder", None)
    if encoder is not None and hasattr(encoder, "set_swish"):
        encoder.set_swish(memory_efficient=False)   # traceable swish for ONNX export
    return net.eval()


def _sha256(path: str) -> str:
    return sha256_file(path)[0]


def manifest_dict(role: str, file: str, sha: str) -> Dict[str, Any]:
    name, task, arch, size, out_shape = STANDIN_SPECS[role]
    return {
        "schema_version": 1, "name": name, "version": "0.0.0-standin", "task": task,
        "architecture": arch, "file": file, "sha256": sha,
        "input": {"name": "image", "shape": [1, 1, size, size], "dtype": "float32"},
        "output": {"name": "logits", "shape": out_shape, "dtype": "float32"},
        "output_kind": "logit",
        "preprocessing": {"size": [size, size], "channels": 1, "mean": [MEAN], "std": [STD],
                          "resize": "stretch", "interpolation": "area"},
        "thresholds": THRESHOLDS[role], "intended_use": "untrained",
        "operating_points": [], "training_data": "none: random weights (bench stand-in)",
        "metrics": {}, "notes": "bench stand-in: real architecture, random weights; speed only",
    }


def ensure_standins(cache_dir: str) -> Dict[str, str]:
    """Export (once) both stand-ins to ONNX opset 17 in `cache_dir`; return
    {role: onnx path}. Raises ImportError without torch."""
    import torch
    os.makedirs(cache_dir, exist_ok=True)
    paths = {}
    for role in ("classifier", "segmenter"):
        onnx_path = os.path.join(cache_dir, role + ".onnx")
        manifest_path = os.path.join(cache_dir, role + ".json")
        if not (os.path.exists(onnx_path) and os.path.exists(manifest_path)):
            torch.manual_seed(0)
            size = STANDIN_SPECS[role][3]
            net = torch_module(role)
            tmp = onnx_path + ".tmp"
            with torch.no_grad():
                torch.onnx.export(net, torch.zeros(1, 1, size, size), tmp, opset_version=17,
                                  input_names=["image"], output_names=["logits"], dynamo=False)
            os.replace(tmp, onnx_path)
            with open(manifest_path, "w") as fh:
                json.dump(manifest_dict(role, os.path.basename(onnx_path), _sha256(onnx_path)), fh, indent=1)
        paths[role] = onnx_path
    return paths
