"""Training from a YAML config (models/train_config.py): data sources and splits, augmentation, loss,
AdamW with warm-up + cosine decay (annealed by steps or by the wall-clock
budget, whichever runs out first), best checkpoint by validation, early
stopping, fixed seeds, resumable from `last.pt`.

A run directory holds: config.yaml (as used), splits.csv, last.pt, best.pt,
history.csv, train.log. `evaluate` and `export` read from it.
"""
import csv
import math
import os
import random
import time
from dataclasses import dataclass, replace
from typing import Any, Dict, List, Optional, Tuple

import numpy as np
import yaml

import torch

from edge.errors import ConfigError
from edge.inference.manifest import PreprocessSpec
from edge.preprocess import normalise

from . import data as D
from .augment import AugmentSpec, augment
from .losses import ClsLoss, SegLoss
from .metrics import roc_auc, seg_scores
from .nets import NetSpec, build


def preprocess_spec(cfg: Dict[str, Any]) -> PreprocessSpec:
    i = cfg["input"]
    return PreprocessSpec(size=(int(i["size"][0]), int(i["size"][1])), channels=int(i["channels"]),
                          mean=tuple(float(v) for v in i["mean"]), std=tuple(float(v) for v in i["std"]),
                          resize=str(i["resize"]), interpolation=str(i["interpolation"]))


def net_spec(cfg: Dict[str, Any]) -> NetSpec:
    n = dict(cfg["net"])
    if "decoder_channels" in n:
        n["decoder_channels"] = tuple(n["decoder_channels"])
    return NetSpec(task=cfg["task"], in_channels=int(cfg["input"]["channels"]), **n)


# ---------------------------------------------------------------- data

def read_source(src: Dict[str, Any]) -> List[D.Sample]:
    """One data source's samples; `src` is a checked config's (or an older run's) entry."""
    kind = src.get("kind")
    name = src.get("name") or kind or "data"
    if kind == "mask_folders":
        return D.read_mask_folders(src["path"], name)
    if kind == "rle_dicoms":
        return D.read_rle_dicoms(src["csv"], src["dicoms"], name)
    if kind == "labelled_folders":
        return D.read_labelled_folders(src["path"], name)
    if kind == "nih_labels":
        return D.read_nih_labels(src["path"], name)
    raise ConfigError("data source kind %r is not one of mask_folders, rle_dicoms, labelled_folders, nih_labels"
                      % kind)


def build_samples(cfg: Dict[str, Any]) -> List[D.Sample]:
    """Read every source, split each by patient (folder hints first), then
    apply per-source filters. Splitting before filtering keeps a patient's
    split identical for the classifier and the segmenter."""
    out = []  # type: List[D.Sample]
    seed = int(cfg["seed"])
    for src in cfg["data"]["sources"]:
        samples = read_source(src)
        hints = src.get("hint_splits") or {}
        fixed = [replace(s, split=hints[s.extra.get("split_hint", "")]) for s in samples
                 if s.extra.get("split_hint", "") in hints]
        rest = [s for s in samples if s.extra.get("split_hint", "") not in hints]
        fractions = src.get("split") or cfg["data"]["split"]
        if src.get("only_split"):
            rest = [replace(s, split=src["only_split"]) for s in rest]
        elif rest:
            rest = D.split_groups(rest, fractions, seed)
        samples = fixed + rest
        if src.get("only_negatives"):
            samples = [s for s in samples if s.label == 0]
        if src.get("only_positives"):
            samples = [s for s in samples if s.label != 0]
        if src.get("mask_as_label"):
            samples = [replace(s, label=1) if s.label is None else s for s in samples]
        out.extend(samples)
    if cfg["task"] == "segmentation":
        unusable = [s for s in out if not s.has_mask and s.label != 0]
        if unusable:
            raise ConfigError("%d samples have neither a mask nor a negative label (e.g. %s); "
                              "use only_negatives for image-label sources" % (len(unusable), unusable[0].image))
    elif any(s.label is None for s in out):
        raise ConfigError("classification needs a label for every sample (set mask_as_label on mask sources)")
    return sorted(out, key=lambda s: (s.split, s.source, s.key))


def write_splits(samples: List[D.Sample], path: str) -> None:
    with open(path, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["split", "source", "group", "key", "label", "image", "has_mask"])
        for s in samples:
            w.writerow([s.split, s.source, s.group, s.key, s.label, s.image, int(s.has_mask)])


@dataclass
class Arrays:
    planes: np.ndarray      # (N, H, W) float32 [0, 1], the runtime's resized plane
    masks: np.ndarray       # (N, H, W) uint8
    labels: np.ndarray      # (N,) int
    samples: List[D.Sample]

    def subset(self, split: str) -> "Arrays":
        idx = [i for i, s in enumerate(self.samples) if s.split == split]
        return Arrays(self.planes[idx], self.masks[idx], self.labels[idx], [self.samples[i] for i in idx])


def load_arrays(samples: List[D.Sample], spec: PreprocessSpec, cache_dir: Optional[str], progress: bool = True) -> Arrays:
    planes, masks, has = D.load_planes(samples, spec, cache_dir, progress)
    labels = np.array([s.label if s.label is not None else int(masks[i].any()) for i, s in enumerate(samples)], int)
    return Arrays(planes, masks, labels, list(samples))


def to_tensor(planes: List[np.ndarray], spec: PreprocessSpec) -> torch.Tensor:
    """Stack planes through the runtime's `normalise` (mean/std/channels)."""
    return torch.from_numpy(np.concatenate([normalise(p, spec) for p in planes], axis=0))


# ---------------------------------------------------------------- loop

def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def pick_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def lr_factor(step: int, total_steps: int, elapsed: float, budget_s: float, warmup: float, floor: float) -> float:
    """Linear warm-up, then cosine to `floor`; progress is the larger of the
    step fraction and the wall-clock fraction, so a time-boxed run still
    ends at a low learning rate."""
    p_step = step / float(max(1, total_steps))
    if p_step < warmup:
        return max(floor, p_step / warmup)
    p = max(p_step, elapsed / budget_s if budget_s > 0 else 0.0)
    p = min(1.0, (p - warmup) / max(1e-9, 1 - warmup)) if p_step >= warmup else 0.0
    return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * p))


def epoch_indices(labels: np.ndarray, neg_per_pos: float, rng: np.random.Generator) -> np.ndarray:
    """All positives plus a fresh random draw of negatives each epoch."""
    pos = np.flatnonzero(labels == 1)
    neg = np.flatnonzero(labels == 0)
    k = len(neg) if neg_per_pos <= 0 else min(len(neg), int(round(neg_per_pos * max(1, len(pos)))))
    idx = np.concatenate([pos, rng.choice(neg, k, replace=False)]) if k else pos
    return rng.permutation(idx)


def predict(net: torch.nn.Module, planes: np.ndarray, spec: PreprocessSpec, device: torch.device,
            batch: int = 8) -> np.ndarray:
    """Logits for planes: (N,) for a classifier, (N, H, W) for a segmenter."""
    net.eval()
    outs = []
    with torch.no_grad():
        for i in range(0, len(planes), batch):
            x = to_tensor(list(planes[i:i + batch]), spec).to(device)
            y = net(x).float().cpu().numpy()
            outs.append(y.reshape(len(x), -1)[:, 0] if y.ndim == 2 else y[:, 0])
    return np.concatenate(outs) if outs else np.zeros((0,))


def sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.clip(x, -60, 60)))


def validate(net, val: Arrays, spec, device, loss_fn, cfg) -> Dict[str, float]:
    logits = predict(net, val.planes, spec, device, int(cfg["train"]["eval_batch"]))
    lt = torch.from_numpy(logits)
    if cfg["task"] == "classification":
        loss = float(loss_fn(lt, torch.from_numpy(val.labels.astype(np.float32))))
        return {"val_loss": loss, "val_auc": roc_auc(val.labels, logits)}
    loss = float(loss_fn(lt[:, None], torch.from_numpy(val.masks[:, None].astype(np.float32))))
    probs = sigmoid(logits)
    dice, _, positive = seg_scores(probs, val.masks, 0.5, 0.001, 0.5)
    img_score = probs.reshape(len(probs), -1).max(1)
    return {"val_loss": loss, "val_dice": float(dice.mean()), "val_auc": roc_auc(val.labels, img_score)}


def _select_value(metrics: Dict[str, float], select: str) -> float:
    v = metrics["val_" + select]
    if v != v:  # NaN
        return -float("inf")
    return -v if select == "loss" else v


def train(cfg: Dict[str, Any], resume: bool = False, progress: bool = True) -> Dict[str, Any]:
    from tqdm import tqdm

    run = cfg["run_dir"]
    os.makedirs(run, exist_ok=True)
    with open(os.path.join(run, "config.yaml"), "w") as fh:
        yaml.safe_dump(cfg, fh, sort_keys=False)
    torch.set_num_threads(int(cfg["threads"]))
    seed_everything(int(cfg["seed"]))
    device = pick_device()
    spec = preprocess_spec(cfg)
    samples = build_samples(cfg)
    write_splits(samples, os.path.join(run, "splits.csv"))
    arrays = load_arrays(samples, spec, cfg["data"].get("cache_dir"), progress)
    tr, va = arrays.subset("train"), arrays.subset("val")
    log = open(os.path.join(run, "train.log"), "a")

    def say(msg: str) -> None:
        log.write(msg + "\n")
        log.flush()
        if progress:
            tqdm.write(msg)

    say("task=%s train=%d (%d pos) val=%d (%d pos) input=%s device=%s" % (
        cfg["task"], len(tr.labels), int(tr.labels.sum()), len(va.labels), int(va.labels.sum()),
        spec.size, device))
    if len(tr.labels) == 0 or len(va.labels) == 0:
        raise ConfigError("empty train or val split; check the data sources and split fractions")

    t = cfg["train"]
    net = build(net_spec(cfg)).to(device)
    if cfg["task"] == "classification":
        n_pos = max(1, int(tr.labels.sum()))
        ratio = float(t["negatives_per_positive"]) if t["negatives_per_positive"] > 0 else \
            (len(tr.labels) - n_pos) / float(n_pos)
        loss_cfg = dict({"pos_weight": max(1.0, ratio)}, **cfg["loss"])
        loss_fn = ClsLoss(**loss_cfg)
    else:
        loss_fn = SegLoss(**cfg["loss"])
    opt = torch.optim.AdamW(net.parameters(), lr=float(t["lr"]), weight_decay=float(t["weight_decay"]))
    aug = AugmentSpec(**cfg["augment"])
    bs = int(t["batch_size"])
    n_per_epoch = len(epoch_indices(tr.labels, float(t["negatives_per_positive"]), np.random.default_rng(0)))
    steps_per_epoch = max(1, int(math.ceil(n_per_epoch / float(bs))))
    total_steps = steps_per_epoch * int(t["epochs"])
    budget = float(t["max_minutes"]) * 60.0

    state = {"epoch": 0, "step": 0, "elapsed": 0.0, "best": -float("inf"), "best_epoch": -1, "stale": 0,
             "history": []}
    last_path, best_path = os.path.join(run, "last.pt"), os.path.join(run, "best.pt")
    if resume and os.path.exists(last_path):
        ck = torch.load(last_path, map_location=device, weights_only=False)
        net.load_state_dict(ck["model"])
        opt.load_state_dict(ck["optimizer"])
        state = ck["state"]
        np_state, torch_state = ck["rng"]
        say("resumed from %s at epoch %d" % (last_path, state["epoch"]))
    else:
        np_state, torch_state = None, None
    rng = np.random.default_rng(int(cfg["seed"]))
    if np_state is not None:
        rng.bit_generator.state = np_state
        torch.set_rng_state(torch_state)

    t0 = time.time() - state["elapsed"]
    while state["epoch"] < int(t["epochs"]):
        if budget and time.time() - t0 >= budget:
            say("time budget of %.1f min reached" % float(t["max_minutes"]))
            break
        net.train()
        idx = epoch_indices(tr.labels, float(t["negatives_per_positive"]), rng)
        bar = tqdm(range(0, len(idx), bs), desc="epoch %d" % (state["epoch"] + 1), disable=not progress,
                   leave=False)
        running = []
        for b in bar:
            sel = idx[b:b + bs]
            planes, masks = [], []
            for i in sel:
                p, m = augment(tr.planes[i], tr.masks[i].astype(np.float32) if cfg["task"] == "segmentation"
                               else None, aug, rng)
                planes.append(p)
                masks.append(m)
            x = to_tensor(planes, spec).to(device)
            f = lr_factor(state["step"], total_steps, time.time() - t0, budget, float(t["warmup"]),
                          float(t["min_lr_ratio"]))
            for g in opt.param_groups:
                g["lr"] = float(t["lr"]) * f
            out = net(x)
            if cfg["task"] == "classification":
                y = torch.from_numpy(tr.labels[sel].astype(np.float32)).to(device)
                loss = loss_fn(out.reshape(-1), y)
            else:
                y = torch.from_numpy(np.stack(masks)[:, None]).to(device)
                loss = loss_fn(out, y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(net.parameters(), 5.0)
            opt.step()
            state["step"] += 1
            running.append(float(loss))
            bar.set_postfix(loss="%.4f" % np.mean(running[-20:]), lr="%.2e" % opt.param_groups[0]["lr"])
        state["epoch"] += 1
        val = validate(net, va, spec, device, loss_fn, cfg)
        state["elapsed"] = time.time() - t0
        row = dict(epoch=state["epoch"], train_loss=float(np.mean(running)) if running else float("nan"),
                   lr=opt.param_groups[0]["lr"], minutes=state["elapsed"] / 60.0, **val)
        state["history"].append(row)
        value = _select_value(val, t["select"])
        improved = value > state["best"]
        if improved:
            state["best"], state["best_epoch"], state["stale"] = value, state["epoch"], 0
            torch.save({"model": net.state_dict(), "config": cfg, "epoch": state["epoch"], "val": val}, best_path)
        else:
            state["stale"] += 1
        say("epoch %d  " % state["epoch"] + "  ".join("%s=%.4f" % (k, v) for k, v in row.items()
                                                      if k != "epoch") + ("  *best*" if improved else ""))
        torch.save({"model": net.state_dict(), "optimizer": opt.state_dict(), "state": state, "config": cfg,
                    "rng": (rng.bit_generator.state, torch.get_rng_state())}, last_path)
        _write_history(state["history"], os.path.join(run, "history.csv"))
        if int(t["patience"]) and state["stale"] >= int(t["patience"]):
            say("early stop: no improvement in %d epochs" % state["stale"])
            break
    say("best epoch %d (%s=%.4f), %.1f min" % (state["best_epoch"], t["select"], abs(state["best"]),
                                               state["elapsed"] / 60.0))
    log.close()
    return state


def _write_history(rows: List[Dict[str, float]], path: str) -> None:
    if not rows:
        return
    with open(path, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)


def load_trained(run_dir: str, which: str = "best.pt") -> Tuple[torch.nn.Module, Dict[str, Any]]:
    ck = torch.load(os.path.join(run_dir, which), map_location="cpu", weights_only=False)
    cfg = ck["config"]
    net = build(net_spec(cfg))
    net.load_state_dict(ck["model"])
    return net.eval(), cfg
