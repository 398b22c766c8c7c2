"""Losses on logits. Segmentation: BCE + soft Dice (+ Focal), the SIIM-ACR
winners' mix; classification: class-weighted BCE + Focal for the imbalance."""
import torch
import torch.nn.functional as F


def focal_loss(logits: torch.Tensor, target: torch.Tensor, gamma: float = 2.0, alpha: float = 0.25) -> torch.Tensor:
    bce = F.binary_cross_entropy_with_logits(logits, target, reduction="none")
    p = torch.sigmoid(logits)
    pt = p * target + (1 - p) * (1 - target)
    at = alpha * target + (1 - alpha) * (1 - target)
    return (at * (1 - pt) ** gamma * bce).mean()


def soft_dice_loss(logits: torch.Tensor, target: torch.Tensor, eps: float = 1.0) -> torch.Tensor:
    """Soft Dice over the whole batch. Per-image Dice on an empty mask stays
    near 1 unless every one of ~10^5 probabilities is ~0, which drives a
    fresh net to predict nothing anywhere; BCE keeps negatives quiet."""
    p = torch.sigmoid(logits).flatten()
    t = target.flatten()
    inter = (p * t).sum()
    return 1 - (2 * inter + eps) / (p.sum() + t.sum() + eps)


def positives_dice_loss(logits: torch.Tensor, target: torch.Tensor, eps: float = 1.0) -> torch.Tensor:
    """Soft Dice per image, averaged over the images whose mask is not empty:
    each pneumothorax counts alike whatever its size, as in the per-film
    Dice the cards report (the batch Dice is ruled by the largest masks).
    Zero for a batch without one; BCE keeps negatives quiet."""
    p = torch.sigmoid(logits).flatten(1)
    t = target.flatten(1)
    has = t.sum(1) > 0
    if not bool(has.any()):
        return logits.new_zeros(())
    p, t = p[has], t[has]
    return (1 - (2 * (p * t).sum(1) + eps) / (p.sum(1) + t.sum(1) + eps)).mean()


class SegLoss(torch.nn.Module):
    """pos_weight > 1 lifts the rare pneumothorax pixels in the BCE term; from
    random initialisation a net otherwise settles on 'nothing anywhere'."""

    def __init__(self, bce: float = 1.0, dice: float = 1.0, focal: float = 0.0, pos_weight: float = 1.0,
                 dice_mode: str = "batch"):
        super().__init__()
        if dice_mode not in ("batch", "positives"):
            raise ValueError("dice_mode is 'batch' or 'positives', not %r" % (dice_mode,))
        self.w = (bce, dice, focal)
        self.dice = soft_dice_loss if dice_mode == "batch" else positives_dice_loss
        self.register_buffer("pos_weight", torch.tensor([float(pos_weight)]))

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        total = logits.new_zeros(())
        if self.w[0]:
            total = total + self.w[0] * F.binary_cross_entropy_with_logits(logits, target,
                                                                           pos_weight=self.pos_weight)
        if self.w[1]:
            total = total + self.w[1] * self.dice(logits, target)
        if self.w[2]:
            total = total + self.w[2] * focal_loss(logits, target)
        return total


class ClsLoss(torch.nn.Module):
    def __init__(self, pos_weight: float = 1.0, bce: float = 1.0, focal: float = 1.0, gamma: float = 2.0):
        super().__init__()
        self.register_buffer("pos_weight", torch.tensor([float(pos_weight)]))
        self.w = (bce, focal)
        self.gamma = gamma

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        logits, target = logits.reshape(-1), target.reshape(-1)
        total = logits.new_zeros(())
        if self.w[0]:
            total = total + self.w[0] * F.binary_cross_entropy_with_logits(logits, target, pos_weight=self.pos_weight)
        if self.w[1]:
            total = total + self.w[1] * focal_loss(logits, target, self.gamma, alpha=0.5)
        return total
