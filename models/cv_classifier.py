"""`python -m models cv-classifier`: an image-level classifier alone (no
mask, no decoder), cross-validated on exactly the films and patient-grouped
folds of `python -m models cv`, so its out-of-fold figures sit beside the
shipped shared-encoder network's (models/classifier/classifier.json,
metrics.auc_classifier_logit).

The question it answers (the seeds' MobileNetV2 against the Lite0-pretrained
classifier): `--arch mobilenet_v2` is torchvision's MobileNetV2 from random
initialisation with a 1-channel stem and one logit (models/nets.py
build_classifier); no pretrained MobileNetV2 weights exist offline.

Same as the shipped CV: samples, duplicate merging and folds (models/cvdata.py
through models/cv.py load_or_decode), preprocessing (spec_for: 256 px,
percentile window 1/99, mean 0.5 std 0.5), labels (`label`: ChestX-Det's
verdict where it exists), the Recipe's schedule (AdamW, lr, weight decay,
warm-up + cosine, batch, epochs), augmentation and the 1:1 sampling of
positives against negatives, h-flip TTA at prediction (mean of the film's and
the mirror's logit). The loss is BCE on the logit alone.

Writes into OUT: samples.csv and planes-<size>.npz (as `cv` does; reused when
present), cls_recipe.json, fold<k>_cls.npz (index, logit, logit_flip,
minutes, epoch_seconds), cv_classifier.log. `python -m models
cv-classifier-report OUT` recomputes every figure from the npz files into
OUT/report.json.
"""
import dataclasses
import json
import math
import os
import sys
import time
from typing import Any, Callable, Dict, Optional, Sequence

import numpy as np

from . import cvdata
from .cvreport import SENSITIVITY_TARGET, auc_block, rate, threshold_for

ARCHS = ("mobilenet_v2",)


def pred_path(out: str, k: int) -> str:
    return os.path.join(out, "fold%d_cls.npz" % k)


def build_arch(arch: str):
    if arch == "mobilenet_v2":
        from .nets import build_classifier
        return build_classifier(in_channels=1)
    raise ValueError("unknown arch %r (one of %s)" % (arch, ", ".join(ARCHS)))


def train_classifier(planes: np.ndarray, labels: np.ndarray, spec, r, arch: str = "mobilenet_v2",
                     say: Callable[[str], None] = print, epoch_seconds: Optional[list] = None):
    """models/cvtrain.py train_net without the mask: the same seeds, sampling,
    augmentation, optimiser and schedule; loss BCE on the one logit."""
    import torch
    import torch.nn.functional as F
    from .augment import AugmentSpec, augment
    from .cvtrain import epoch_indices, schedule_steps, to_tensor
    torch.manual_seed(r.seed)
    rng = np.random.default_rng(r.seed)
    net = build_arch(arch)
    opt = torch.optim.AdamW(net.parameters(), lr=r.lr, weight_decay=r.weight_decay)
    aug = AugmentSpec(**r.augment)
    steps_per_epoch, total, warm = schedule_steps(labels, r)
    step, t0 = 0, time.time()
    for epoch in range(r.epochs):
        net.train()
        te = time.time()
        idx = epoch_indices(labels, r.negatives_per_positive, rng)
        losses = []
        for b in range(0, len(idx), r.batch_size):
            sel = idx[b:b + r.batch_size]
            if len(sel) < 2:          # BatchNorm cannot train on one film
                continue
            x = to_tensor([augment(planes[i], None, aug, rng)[0] for i in sel], spec)
            yl = torch.from_numpy(labels[sel].astype(np.float32))
            f = step / warm if step < warm else r.min_lr_ratio + (1 - r.min_lr_ratio) * 0.5 * (
                1 + math.cos(math.pi * (step - warm) / max(1.0, total - warm)))
            for g in opt.param_groups:
                g["lr"] = r.lr * max(f, 1e-3)
            loss = F.binary_cross_entropy_with_logits(net(x).reshape(-1), yl)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(net.parameters(), 5.0)
            opt.step()
            step += 1
            losses.append(float(loss.detach()))
        if epoch_seconds is not None:
            epoch_seconds.append(time.time() - te)
        say("epoch %d/%d loss %.4f  %.1f min" % (epoch + 1, r.epochs, float(np.mean(losses)),
                                                  (time.time() - t0) / 60.0))
    return net.eval()


def predict_logits(net, planes: np.ndarray, spec, batch: int = 16) -> Dict[str, np.ndarray]:
    """Image logit of each film and of its mirror (the h-flip TTA averages the two)."""
    import torch
    from .cvtrain import to_tensor
    out = {"logit": [], "logit_flip": []}
    net.eval()
    with torch.no_grad():
        for i in range(0, len(planes), batch):
            x = to_tensor(list(planes[i:i + batch]), spec)
            out["logit"].append(net(x).reshape(-1).numpy())
            out["logit_flip"].append(net(torch.flip(x, dims=(3,))).reshape(-1).numpy())
    return {k: np.concatenate(v).astype(np.float32) for k, v in out.items()}


def run_cv_classifier(out: str, data_root: str, arch: str = "mobilenet_v2", folds: int = 5, size: int = 256,
                      recipe=None, threads: int = 1, only_folds: Optional[Sequence[int]] = None) -> None:
    import torch
    from .cv import start_run
    from .cvtrain import Recipe
    recipe = recipe or Recipe()
    build_arch(arch)                      # fail before decoding on a wrong name
    say, spec, samples, fold, _, _, _, planes, labels = start_run(
        out, data_root, size, True, folds, threads, "cv_classifier.log")
    with open(os.path.join(out, "cls_recipe.json"), "w") as fh:
        json.dump({"arch": arch, "pretrained": False, "recipe": dataclasses.asdict(recipe), "size": size,
                   "window": True, "folds": folds, "threads": threads, "spec": dataclasses.asdict(spec),
                   "loss": "BCE on the image logit", "tta": "hflip (mean logit of film and mirror)"}, fh, indent=2)
    say("%s (random init) epochs %d size %d threads %d; %d films, %d positives (label), folds %s"
        % (arch, recipe.epochs, size, threads, len(samples), int(labels.sum()), np.bincount(fold).tolist()))
    for k in (only_folds if only_folds is not None else range(folds)):
        path = pred_path(out, k)
        if os.path.exists(path):
            say("fold %d: %s exists, skipped" % (k, path))
            continue
        te, tr = np.flatnonzero(fold == k), np.flatnonzero(fold != k)
        say("fold %d: train %d (%d pos), test %d" % (k, len(tr), int(labels[tr].sum()), len(te)))
        t0 = time.time()
        secs = []  # type: list
        net = train_classifier(planes[tr], labels[tr], spec, recipe, arch, say, secs)
        minutes = (time.time() - t0) / 60.0
        t1 = time.time()
        pred = predict_logits(net, planes[te], spec)
        torch.save(net.state_dict(), os.path.join(out, "fold%d_cls.pt" % k))
        np.savez(path, index=te, minutes=minutes, predict_seconds=time.time() - t1, epochs=recipe.epochs,
                 epoch_seconds=np.array(secs), arch=arch, **pred)
        say("fold %d done: trained in %.1f min, predicted in %.1f s" % (k, minutes, time.time() - t1))


# ---------------------------------------------------------------- the report

def evaluate_logits(logit: np.ndarray, y: np.ndarray, nih_y: np.ndarray, stratum: np.ndarray, source: np.ndarray,
                    fold: np.ndarray, keep: Optional[np.ndarray] = None, n_boot: int = 1000,
                    target: float = SENSITIVITY_TARGET) -> Dict[str, Any]:
    """The shipped CV's classifier figures (models/cvreport.py evaluate,
    auc_classifier_logit) and an operating point for one score per film.

    The threshold is threshold_for's (highest with sensitivity >= target on
    masked positives): `other_folds` picks each fold's threshold on the other
    folds' out-of-fold scores (as cvreport's figures do), `pooled` on all of
    them (the shipped threshold's way; optimistic as a figure)."""
    logit = np.asarray(logit, np.float64)
    keep = np.ones(len(logit), bool) if keep is None else np.asarray(keep, bool)
    mp, nneg = keep & (stratum == "masked_pos"), keep & (stratum == "nih_neg")
    nih = keep & (source == "nih")
    r = {"films": int(keep.sum())}
    r["auc"] = {
        "within_nih_nih_labels": auc_block(nih_y[nih], logit[nih], n_boot),
        "within_nih_verdicts": auc_block(y[nih], logit[nih], n_boot),
        "source_probe_siim_pos_vs_nih_neg": auc_block(mp[mp | nneg].astype(int), logit[mp | nneg], n_boot),
    }
    r["source_probe_gap"] = r["auc"]["source_probe_siim_pos_vs_nih_neg"]["value"] - \
        r["auc"]["within_nih_verdicts"]["value"]
    dec_other = np.zeros(len(logit), bool)
    decided = np.zeros(len(logit), bool)     # films whose fold got a threshold (other folds done)
    thresholds = {}
    for k in np.unique(fold[keep]):
        other = keep & (fold != k)
        if not (other & mp).any():
            continue
        t = threshold_for(logit, other & mp, other & ~mp, target)
        thresholds[int(k)] = t
        decided |= keep & (fold == k)
        dec_other[keep & (fold == k)] = logit[keep & (fold == k)] >= t
    t_pool = threshold_for(logit, mp, keep & ~mp, target)
    for name, dec, on, extra in (("other_folds", dec_other, decided, {"thresholds": thresholds}),
                                 ("pooled", keep & (logit >= t_pool), keep, {"threshold": t_pool})):
        mpo, nno = on & (stratum == "masked_pos"), on & (stratum == "nih_neg")
        op = dict(extra, target_sensitivity=target)
        op["sensitivity_masked"] = rate(int(dec[mpo].sum()), int(mpo.sum()))
        for src in ("siim_png", "siim_dicom"):
            sel = mpo & (source == src)
            op["sensitivity_" + src] = rate(int(dec[sel].sum()), int(sel.sum()))
        op["specificity_nih_neg"] = rate(int((~dec[nno]).sum()), int(nno.sum()))
        npos = on & (stratum == "nih_pos")
        op["sensitivity_nih_pos_verdict"] = rate(int(dec[npos].sum()), int(npos.sum()))
        r["operating_point_" + name] = op
    return r


def gather(out: str, n: int, folds: int) -> Dict[str, Any]:
    z = {"logit": np.full(n, np.nan), "logit_flip": np.full(n, np.nan), "fold_done": np.zeros(folds, bool),
         "minutes": {}, "epochs": {}, "epoch_seconds": {}, "predict_seconds": {}, "arch": None}
    for k in range(folds):
        path = pred_path(out, k)
        if not os.path.exists(path):
            continue
        f = np.load(path)
        z["fold_done"][k] = True
        for key in ("logit", "logit_flip"):
            z[key][f["index"]] = f[key]
        z["minutes"][k] = float(f["minutes"])
        z["epochs"][k] = int(f["epochs"])
        z["epoch_seconds"][k] = float(np.mean(f["epoch_seconds"])) if f["epoch_seconds"].size else float("nan")
        z["predict_seconds"][k] = float(f["predict_seconds"])
        z["arch"] = str(f["arch"])
    return z


def report(out: str, n_boot: int = 1000) -> Dict[str, Any]:
    samples, fold = cvdata.load_table(os.path.join(out, "samples.csv"))
    folds = int(fold.max()) + 1
    z = gather(out, len(samples), folds)
    keep = z["fold_done"][fold]
    cols = {k: np.array([getattr(s, k) for s in samples]) for k in ("label", "nih_label", "stratum", "source")}
    rep = {"run": os.path.abspath(out), "arch": z["arch"], "pretrained": False,
           "folds_done": [int(k) for k in np.flatnonzero(z["fold_done"])], "folds": folds,
           "epochs_per_fold": {str(k): v for k, v in z["epochs"].items()},
           "train_minutes_per_fold": {str(k): v for k, v in z["minutes"].items()},
           "seconds_per_epoch_per_fold": {str(k): v for k, v in z["epoch_seconds"].items()},
           "predict_seconds_per_fold": {str(k): v for k, v in z["predict_seconds"].items()}}
    if keep.any():
        for name, score in (("tta", (z["logit"] + z["logit_flip"]) / 2), ("no_tta", z["logit"])):
            rep[name] = evaluate_logits(score, cols["label"], cols["nih_label"], cols["stratum"], cols["source"],
                                        fold, keep, n_boot)
    with open(os.path.join(out, "report.json"), "w") as fh:
        json.dump(rep, fh, indent=2, default=float)
    return rep


def _ci(b: Dict[str, Any]) -> str:
    return "%.3f [%.2f, %.2f]" % (b["value"], b["ci95"][0], b["ci95"][1])


def print_report(rep: Dict[str, Any], file=None) -> None:
    file = file or sys.stdout
    print("%s (random init), folds done %s, epochs %s" % (rep["arch"], rep["folds_done"],
                                                         sorted(set(rep["epochs_per_fold"].values()))), file=file)
    print("train minutes per fold: %s" % ", ".join("%s: %.1f" % kv for kv in rep["train_minutes_per_fold"].items()),
          file=file)
    for name in ("tta", "no_tta"):
        if name not in rep:
            continue
        r = rep[name]
        print("[%s] %d films" % (name, r["films"]), file=file)
        for k, b in r["auc"].items():
            print("  AUC %-34s %s  (%d pos / %d neg)" % (k, _ci(b), b["n_pos"], b["n_neg"]), file=file)
        print("  source-probe gap (probe - within-NIH verdicts) %+.3f" % r["source_probe_gap"], file=file)
        for op in ("other_folds", "pooled"):
            o = r["operating_point_" + op]
            print("  threshold %-11s sens masked %s (%d/%d), siim_png %d/%d, siim_dicom %d/%d; spec NIH neg %s "
                  "(%d/%d)" % (op, _ci(o["sensitivity_masked"]), o["sensitivity_masked"]["k"],
                               o["sensitivity_masked"]["n"], o["sensitivity_siim_png"]["k"],
                               o["sensitivity_siim_png"]["n"], o["sensitivity_siim_dicom"]["k"],
                               o["sensitivity_siim_dicom"]["n"], _ci(o["specificity_nih_neg"]),
                               o["specificity_nih_neg"]["k"], o["specificity_nih_neg"]["n"]), file=file)
