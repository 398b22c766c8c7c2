"""The two networks, built from random initialisation (never downloaded weights).

Classifier: torchvision MobileNetV2 with a 1-channel stem and one logit.
Segmenter: segmentation-models-pytorch U-Net with an EfficientNet-B0 encoder,
1-channel input, one logit per pixel. Both output logits; the manifest says so
and the runtime applies the sigmoid.
"""
from dataclasses import dataclass
from typing import Sequence, Tuple

import torch
from torch import nn


@dataclass(frozen=True)
class NetSpec:
    task: str                     # "classification" | "segmentation"
    in_channels: int = 1
    width_mult: float = 1.0       # MobileNetV2 only
    dropout: float = 0.2          # classifier head
    decoder_channels: Tuple[int, ...] = (256, 128, 64, 32, 16)   # U-Net only


def build_classifier(in_channels: int = 1, width_mult: float = 1.0, dropout: float = 0.2) -> nn.Module:
    from torchvision.models import mobilenet_v2
    net = mobilenet_v2(weights=None, num_classes=1, width_mult=width_mult, dropout=dropout)
    if in_channels != 3:
        old = net.features[0][0]
        net.features[0][0] = nn.Conv2d(in_channels, old.out_channels, old.kernel_size, old.stride,
                                       old.padding, bias=False)
        nn.init.kaiming_normal_(net.features[0][0].weight, mode="fan_out")
    return net


def build_segmenter(in_channels: int = 1, decoder_channels: Sequence[int] = (256, 128, 64, 32, 16)) -> nn.Module:
    import segmentation_models_pytorch as smp
    return smp.Unet("efficientnet-b0", encoder_weights=None, in_channels=in_channels, classes=1,
                    decoder_channels=tuple(decoder_channels))


def build(spec: NetSpec) -> nn.Module:
    if spec.task == "classification":
        return build_classifier(spec.in_channels, spec.width_mult, spec.dropout)
    if spec.task == "segmentation":
        return build_segmenter(spec.in_channels, spec.decoder_channels)
    raise ValueError("unknown task %r" % spec.task)


def prepare_for_export(net: nn.Module) -> nn.Module:
    """Swap training-only ops for traceable ones (EfficientNet's memory-efficient swish)."""
    encoder = getattr(net, "encoder", None)
    if encoder is not None and hasattr(encoder, "set_swish"):
        encoder.set_swish(memory_efficient=False)
    return net.eval()


def count_parameters(net: nn.Module) -> int:
    return int(sum(p.numel() for p in net.parameters()))


def count_used_parameters(net: nn.Module, input_shape: Tuple[int, ...]) -> int:
    """Parameters one forward pass computes with (those a gradient reaches):
    what an exported graph holds. A module may carry more than it runs: the
    gate's depth-4 encoder keeps the unused stride-32 stage and ImageNet head,
    the segmenter's export wraps a net that has an image-level head too."""
    params = list(net.parameters())
    was = [p.requires_grad for p in params]
    try:
        for p in params:
            p.requires_grad_(True)
            p.grad = None
        with torch.enable_grad():
            net(torch.zeros(input_shape)).sum().backward()
        return int(sum(p.numel() for p in params if p.grad is not None))
    finally:
        for p, w in zip(params, was):
            p.grad = None
            p.requires_grad_(w)


def count_flops(net: nn.Module, input_shape: Tuple[int, ...]) -> int:
    """Multiply-accumulates x2 of convolutions and linear layers for one forward pass."""
    total = [0]

    def conv_hook(mod, inp, out):
        k = mod.kernel_size[0] * mod.kernel_size[1] * (mod.in_channels // mod.groups)
        total[0] += 2 * k * out.numel()

    def linear_hook(mod, inp, out):
        total[0] += 2 * mod.in_features * out.numel()

    hooks = []
    for m in net.modules():
        if isinstance(m, nn.Conv2d):
            hooks.append(m.register_forward_hook(conv_hook))
        elif isinstance(m, nn.Linear):
            hooks.append(m.register_forward_hook(linear_hook))
    was_training = net.training
    net.eval()
    with torch.no_grad():
        net(torch.zeros(input_shape))
    net.train(was_training)
    for h in hooks:
        h.remove()
    return int(total[0])


def build_lite0_unet(decoder_channels: Sequence[int] = (128, 64, 32, 16, 8), pretrained: bool = True,
                     dropout: float = 0.2) -> nn.Module:
    """U-Net on smp's `timm-tf_efficientnet_lite0` encoder with an image-level
    head on the deepest features (smp `aux_params`): one encoder pass gives the
    mask logits and one pneumothorax logit. 1-channel input; the ImageNet stem
    is summed over colour (`models.pretrained.grey_stem`)."""
    import segmentation_models_pytorch as smp
    net = smp.Unet("timm-tf_efficientnet_lite0", encoder_weights=None, in_channels=1, classes=1,
                   decoder_channels=tuple(decoder_channels),
                   aux_params={"classes": 1, "dropout": dropout, "pooling": "avg"})
    if pretrained:
        from .pretrained import load_lite0_encoder
        load_lite0_encoder(net.encoder, in_channels=1)
    return net


def pooled_features(net: nn.Module, x: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(mask logits, image logit, the trained encoder's pooled features) in
    one encoder pass. The features (every stage from stride 4 to 32,
    24 + 40 + 112 + 320 = 496) are the cross-validation's record of what the
    trained encoder sees; the gate no longer uses them (`gate_features`)."""
    feats = net.encoder(x)
    mask = net.segmentation_head(net.decoder(feats))
    pooled = torch.cat([f.mean(dim=(2, 3)) for f in feats[2:]], dim=1)
    return mask, net.classification_head(feats[-1]), pooled


# The gate's encoder outputs: strides 4, 8 and 16 (24 + 40 + 112 = 176 features).
GATE_STAGES = slice(2, 5)


def build_gate_encoder(pretrained: bool = True) -> nn.Module:
    """The not-a-chest gate's own encoder: ImageNet Lite0 exactly as the
    package ships it, frozen. Fine-tuning moves a trained encoder's features
    towards what separates pneumothorax, and away from what separates a chest
    film from a cat: with the layout view beside them, the per-image-Dice network's own
    features let 10 of 35 non-chest pictures through (cat, coffee, retina, MR
    frames); ImageNet's let none through, nor any of 27 pictures not used to
    design the gate (models/gate_eval.py). `pretrained=False` (random
    weights) is for timing only (bench/baseline.py)."""
    import segmentation_models_pytorch as smp
    from .pretrained import load_lite0_encoder
    enc = smp.encoders.get_encoder("timm-tf_efficientnet_lite0", in_channels=1, depth=4, weights=None)
    if pretrained:
        load_lite0_encoder(enc, in_channels=1)
    for p in enc.parameters():
        p.requires_grad_(False)
    return enc.eval()


def gate_features(gate_encoder: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The gate's features: the frozen encoder's outputs at strides 4, 8 and
    16, average-pooled and concatenated. The stride-32 stage is left out (the
    encoder is built to depth 4, so it is never computed): it costs over a
    quarter of the pass and,
    measured on the 35 design pictures, the nearest came 1.25x past the
    threshold without it against 1.18x with it."""
    return torch.cat([f.mean(dim=(2, 3)) for f in gate_encoder(x)[GATE_STAGES]], dim=1)


LAYOUT_SIDE = 16


def layout_features(x: torch.Tensor) -> torch.Tensor:
    """The gate's second view: the network's input itself, block-averaged to a
    16 x 16 thumbnail (256 values). Encoder features miss a photograph laid
    out like a chest film: skimage's astronaut (a bright figure centred on a
    dark ground) sat at 9.19 against a held-out child's film at 9.15. The
    thumbnail's distance puts it at 11.1 against 6.7 for the farthest
    held-out chest film; on altered chest films (h-flip, 10 deg rotation,
    zoom in, inverted grey) it refused none, on a zoom-out to 80 % inside a
    black frame 3 of 415 (16 px; 32 px refused 14)."""
    h, w = int(x.shape[-2]), int(x.shape[-1])
    pooled = torch.nn.functional.avg_pool2d(x, kernel_size=(h // LAYOUT_SIDE, w // LAYOUT_SIDE))
    return pooled.flatten(1)
