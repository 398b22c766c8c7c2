"""Pure maths for comparing a variant (INT8 ONNX, TensorRT engine) against the FP32 reference.

Shared by build_engine (at build time) and `pneumo-edge doctor` (on the cart)."""
from dataclasses import asdict, dataclass
from typing import Any, Dict, List, Optional, Sequence

import numpy as np

from edge.postprocess import sigmoid


@dataclass(frozen=True)
class ParityResult:
    n: int
    max_abs_diff: float            # raw outputs (logits or probabilities)
    max_prob_diff: float           # after the manifest's output_kind is applied
    mean_prob_diff: float
    min_dice: Optional[float]      # segmentation only: masks at 0.5
    mean_dice: Optional[float]

    def to_json(self) -> Dict[str, Any]:
        return asdict(self)


def to_probability(x: np.ndarray, output_kind: str) -> np.ndarray:
    """Probabilities as float64, so differences between two outputs lose nothing more."""
    if output_kind == "logit":
        return sigmoid(x).astype(np.float64)
    return x.astype(np.float64)


def dice(a: np.ndarray, b: np.ndarray) -> float:
    """Dice of two boolean masks; two empty masks agree perfectly."""
    a, b = a.astype(bool), b.astype(bool)
    total = int(a.sum()) + int(b.sum())
    if total == 0:
        return 1.0
    return 2.0 * int(np.logical_and(a, b).sum()) / total


def probability_part(x: np.ndarray, columns: Sequence[str] = ()) -> np.ndarray:
    """The part of an output that is a score: with named output_columns only the
    "pneumothorax" column (the others are not-a-chest distances, which no
    sigmoid turns into a probability; their raw differences still count)."""
    if columns and "pneumothorax" in columns:
        return np.asarray(x).reshape(-1, len(columns))[:, list(columns).index("pneumothorax")]
    return x


def compare(reference: Sequence[np.ndarray], candidate: Sequence[np.ndarray], output_kind: str,
            task: str, threshold: float = 0.5, columns: Sequence[str] = ()) -> ParityResult:
    if len(reference) != len(candidate) or not reference:
        raise ValueError("need the same non-zero number of reference and candidate outputs")
    abs_d, prob_d, dices = [], [], []  # type: List[float], List[np.ndarray], List[float]
    for ref, got in zip(reference, candidate):
        if ref.shape != got.shape:
            raise ValueError("output shape %s differs from the reference %s" % (got.shape, ref.shape))
        abs_d.append(float(np.max(np.abs(ref.astype(np.float64) - got.astype(np.float64)))))
        pr = to_probability(probability_part(ref, columns), output_kind)
        pg = to_probability(probability_part(got, columns), output_kind)
        prob_d.append(np.abs(pr - pg).ravel())
        if task == "segmentation":
            dices.append(dice(pr >= threshold, pg >= threshold))
    probs = np.concatenate(prob_d)
    return ParityResult(
        n=len(reference), max_abs_diff=max(abs_d), max_prob_diff=float(probs.max()),
        mean_prob_diff=float(probs.mean()),
        min_dice=min(dices) if dices else None, mean_dice=float(np.mean(dices)) if dices else None)


def breaches(result: ParityResult, max_abs_diff: Optional[float], max_prob_diff: float,
             min_dice: float) -> List[str]:
    """Each way the result is past the tolerance; empty = within it."""
    out = []
    if max_abs_diff is not None and result.max_abs_diff > max_abs_diff:
        out.append("max abs diff %.4g > %.4g" % (result.max_abs_diff, max_abs_diff))
    if result.max_prob_diff > max_prob_diff:
        out.append("max probability diff %.4g > %.4g" % (result.max_prob_diff, max_prob_diff))
    if result.min_dice is not None and result.min_dice < min_dice:
        out.append("min mask Dice %.4f < %.4f" % (result.min_dice, min_dice))
    return out
