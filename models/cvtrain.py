"""Training of the shared-encoder network (mask + image-level head) on cached
planes, and out-of-fold prediction. Fixed schedule, no validation-based
selection: every fold and the final model train identically, so the
cross-validated figures describe the recipe that made the shipped model.
"""
import math
import time
from dataclasses import dataclass, field
from typing import Callable, Dict, Optional, Tuple

import numpy as np
import torch
import torch.nn.functional as F

from edge.inference.manifest import PreprocessSpec
from edge.preprocess import normalise

from .augment import AugmentSpec, augment
from .losses import SegLoss
from .nets import build_lite0_unet, pooled_features


@dataclass(frozen=True)
class Recipe:
    epochs: int = 30                  # 12 gave out-of-fold Dice 0.40 and specificity 0.83; 30 gave more on both (cards)
    batch_size: int = 8
    lr: float = 1e-3
    encoder_lr_ratio: float = 1.0     # the pretrained encoder's learning rate, as a share of lr
    weight_decay: float = 1e-4
    warmup_epochs: float = 1.0
    min_lr_ratio: float = 0.02
    negatives_per_positive: float = 1.0
    # BCE weight of pneumothorax pixels: 10 (the from-scratch recipe's) left a pretrained net at
    # p ~0.12 over the whole background and Dice 0.48 on two folds; 1 is the earlier quick test's recipe.
    pos_weight: float = 1.0
    dice: float = 1.0
    # Per-image soft Dice over the masked positives (models 0.4.0): out-of-fold Dice 0.552 -> 0.589 and
    # specificity 0.908 -> 0.945 against the batch Dice ("batch", 0.3.1) in the same CV.
    dice_mode: str = "positives"
    cls_weight: float = 0.5           # image-level head's BCE, beside the mask loss
    decoder_channels: Tuple[int, ...] = (128, 64, 32, 16, 8)
    seed: int = 17
    augment: Dict[str, float] = field(default_factory=lambda: dict(
        brightness=0.1, contrast=0.2, gamma=0.25, rotate_deg=7, scale=0.1, shift=0.05, hflip=0.5,
        clahe=0.2, noise=0.01, blur=0.2))


def to_tensor(planes, spec: PreprocessSpec) -> torch.Tensor:
    return torch.from_numpy(np.concatenate([normalise(p, spec) for p in planes], axis=0))


def epoch_indices(labels: np.ndarray, ratio: float, rng: np.random.Generator) -> np.ndarray:
    pos, neg = np.flatnonzero(labels == 1), np.flatnonzero(labels == 0)
    k = min(len(neg), int(round(ratio * max(1, len(pos)))))
    return rng.permutation(np.concatenate([pos, rng.choice(neg, k, replace=False)]))


def schedule_steps(labels: np.ndarray, r: "Recipe"):
    """(steps per epoch, total steps, warm-up steps) of the recipe's schedule on these labels."""
    per_epoch = len(epoch_indices(labels, r.negatives_per_positive, np.random.default_rng(0)))
    steps_per_epoch = int(math.ceil(per_epoch / float(r.batch_size)))
    return steps_per_epoch, steps_per_epoch * r.epochs, r.warmup_epochs * steps_per_epoch


def train_net(planes: np.ndarray, masks: np.ndarray, labels: np.ndarray, has_mask: np.ndarray,
              spec: PreprocessSpec, r: Recipe, say: Callable[[str], None] = print) -> torch.nn.Module:
    """planes are windowed [0, 1] model planes; has_mask marks samples whose
    mask is known (masked positives and negatives' empty masks)."""
    torch.manual_seed(r.seed)
    rng = np.random.default_rng(r.seed)
    net = build_lite0_unet(r.decoder_channels, pretrained=True)
    seg_loss = SegLoss(bce=1.0, dice=r.dice, pos_weight=r.pos_weight, dice_mode=r.dice_mode)
    encoder = [p for n, p in net.named_parameters() if n.startswith("encoder.")]
    rest = [p for n, p in net.named_parameters() if not n.startswith("encoder.")]
    opt = torch.optim.AdamW([{"params": encoder, "scale": r.encoder_lr_ratio}, {"params": rest, "scale": 1.0}],
                            lr=r.lr, weight_decay=r.weight_decay)
    aug = AugmentSpec(**r.augment)
    steps_per_epoch, total, warm = schedule_steps(labels, r)
    step, t0 = 0, time.time()
    for epoch in range(r.epochs):
        net.train()
        idx = epoch_indices(labels, r.negatives_per_positive, rng)
        losses = []
        for b in range(0, len(idx), r.batch_size):
            sel = idx[b:b + r.batch_size]
            xs, ms = [], []
            for i in sel:
                p, m = augment(planes[i], masks[i].astype(np.float32), aug, rng)
                xs.append(p)
                ms.append(m)
            x = to_tensor(xs, spec)
            y = torch.from_numpy(np.stack(ms)[:, None])
            yl = torch.from_numpy(labels[sel].astype(np.float32))
            known = torch.from_numpy(has_mask[sel])
            f = step / warm if step < warm else r.min_lr_ratio + (1 - r.min_lr_ratio) * 0.5 * (
                1 + math.cos(math.pi * (step - warm) / max(1.0, total - warm)))
            for g in opt.param_groups:
                g["lr"] = r.lr * g["scale"] * max(f, 1e-3)
            mask_logits, img_logit = net(x)
            loss = r.cls_weight * F.binary_cross_entropy_with_logits(img_logit.reshape(-1), yl)
            if bool(known.any()):
                loss = loss + seg_loss(mask_logits[known], y[known])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(net.parameters(), 5.0)
            opt.step()
            step += 1
            losses.append(float(loss))
        say("epoch %d/%d loss %.4f  %.1f min" % (epoch + 1, r.epochs, float(np.mean(losses)),
                                                  (time.time() - t0) / 60.0))
    return net.eval()


def predict(net: torch.nn.Module, planes: np.ndarray, spec: PreprocessSpec, tta: bool = True,
            batch: int = 8) -> Dict[str, np.ndarray]:
    """Per image: image logit, mask probabilities (float16), pooled features;
    with `tta` the same three from the h-flipped plane too (mask flipped back)."""
    out = {"logit": [], "prob": [], "feat": [], "logit_flip": [], "prob_flip": []}
    net.eval()
    with torch.no_grad():
        for i in range(0, len(planes), batch):
            x = to_tensor(list(planes[i:i + batch]), spec)
            m, l, f = pooled_features(net, x)
            out["logit"].append(l.reshape(-1).numpy())
            out["prob"].append(torch.sigmoid(m[:, 0]).numpy().astype(np.float16))
            out["feat"].append(f.numpy())
            if tta:
                m2, l2, _ = pooled_features(net, torch.flip(x, dims=(3,)))
                out["logit_flip"].append(l2.reshape(-1).numpy())
                out["prob_flip"].append(torch.sigmoid(torch.flip(m2, dims=(3,))[:, 0]).numpy().astype(np.float16))
    return {k: np.concatenate(v) for k, v in out.items() if v}


def window_all(planes: np.ndarray, spec: PreprocessSpec) -> np.ndarray:
    from edge.preprocess import window_plane
    return np.stack([window_plane(p, spec) for p in planes]).astype(np.float32)


def fit_fold(planes, masks, labels, has_mask, train_idx, test_idx, spec, r: Recipe,
             say: Callable[[str], None] = print, tta: bool = True) -> Tuple[torch.nn.Module, Dict[str, np.ndarray]]:
    net = train_net(planes[train_idx], masks[train_idx], labels[train_idx], has_mask[train_idx], spec, r, say)
    return net, predict(net, planes[test_idx], spec, tta) if len(test_idx) else {}
