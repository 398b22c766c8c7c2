"""`python -m models cv`: patient-grouped k-fold cross-validation of the
shared-encoder network, then the final model on all the data.

Writes into OUT: samples.csv (fold per film), planes.npz (decoded once),
fold<k>_pred.npz (that fold's out-of-fold image logits, mask
probabilities, pooled features, with and without h-flip), fold<k>.pt,
final.pt (unless --no-final), cv.log. Folds can run in separate processes
(--only-folds), each on one thread, which keeps a shared CPU busy better
than one process whose threads wait on each other.
"""
import dataclasses
import json
import os
import sys
import time

import numpy as np
import torch

from edge.inference.manifest import PreprocessSpec, WindowSpec

from . import cvdata
from .cvtrain import Recipe, fit_fold, predict, train_net, window_all


def spec_for(size: int, window: bool) -> PreprocessSpec:
    return PreprocessSpec(size=(size, size), channels=1, mean=(0.5,), std=(0.5,), resize="stretch",
                          interpolation="area", window=WindowSpec("percentile", 1.0, 99.0) if window else None)


def load_or_decode(out: str, data_root: str, size: int, folds: int, say):
    table = os.path.join(out, "samples.csv")
    cache = os.path.join(out, "planes-%d.npz" % size)
    if os.path.exists(table) and os.path.exists(cache):
        samples, fold = cvdata.load_table(table)
        z = np.load(cache)
        return samples, fold, z["planes"], z["masks"], z["frac"]
    samples = cvdata.merge_duplicate_groups(cvdata.collect(data_root))
    fold = cvdata.assign_folds(samples, folds)
    planes, masks, frac = cvdata.decode_all(samples, spec_for(size, False))
    samples = [dataclasses.replace(s, small=bool(s.stratum == "masked_pos" and f < 0.01))
               for s, f in zip(samples, frac)]
    cvdata.save_table(samples, fold, table)
    np.savez(cache, planes=planes, masks=masks, frac=frac)
    say("decoded %d films; duplicates merged: %d groups for %d films"
        % (len(samples), len({s.group for s in samples}), len(samples)))
    return samples, fold, planes, masks, frac


def timestamped_log(path: str):
    """say(msg): one time-stamped line appended to `path` (flushed) and to stderr."""
    log = open(path, "a")

    def say(msg: str) -> None:
        line = "%s %s" % (time.strftime("%H:%M:%S"), msg)
        log.write(line + "\n")
        log.flush()
        print(line, file=sys.stderr, flush=True)
    return say


def start_run(out: str, data_root: str, size: int, window: bool, folds: int, threads: int, log_name: str):
    """What every cross-validation run starts with: its folder, torch's threads, its log, the films
    decoded (cached in `out`) and windowed, and their labels."""
    os.makedirs(out, exist_ok=True)
    torch.set_num_threads(threads)
    say = timestamped_log(os.path.join(out, log_name))
    spec = spec_for(size, window)
    samples, fold, raw, masks, frac = load_or_decode(out, data_root, size, folds, say)
    planes = window_all(raw, spec)
    labels = np.array([s.label for s in samples], int)
    return say, spec, samples, fold, raw, masks, frac, planes, labels


def run_cv(out: str, data_root: str, folds: int = 5, size: int = 256, window: bool = True,
           recipe: Recipe = Recipe(), final: bool = True, threads: int = 2, only_folds=None) -> None:
    say, spec, samples, fold, raw, masks, frac, planes, labels = start_run(
        out, data_root, size, window, folds, threads, "cv.log")
    has_mask = np.array([s.stratum != "nih_pos" for s in samples], bool)
    with open(os.path.join(out, "recipe.json"), "w") as fh:
        json.dump({"recipe": dataclasses.asdict(recipe), "size": size, "window": window, "folds": folds,
                   "spec": dataclasses.asdict(spec)}, fh, indent=2)
    say("recipe %s size %d window %s; %d films, %d masked pos, %d NIH pos, %d NIH neg"
        % (recipe, size, window, len(samples), sum(s.stratum == "masked_pos" for s in samples),
           sum(s.stratum == "nih_pos" for s in samples), sum(s.stratum == "nih_neg" for s in samples)))
    minutes = {}
    for k in (only_folds if only_folds is not None else range(folds)):
        pred_path = os.path.join(out, "fold%d_pred.npz" % k)
        if os.path.exists(pred_path):
            continue
        te = np.flatnonzero(fold == k)
        tr = np.flatnonzero(fold != k)
        t0 = time.time()
        say("fold %d: train %d, test %d" % (k, len(tr), len(te)))
        net, pred = fit_fold(planes, masks, labels, has_mask, tr, te, spec, recipe, say)
        torch.save(net.state_dict(), os.path.join(out, "fold%d.pt" % k))
        minutes[k] = (time.time() - t0) / 60.0
        np.savez(pred_path, index=te, minutes=minutes[k], **pred)
        say("fold %d done in %.1f min" % (k, minutes[k]))
    if final:
        t0 = time.time()
        final_pt = os.path.join(out, "final.pt")
        net = train_net(planes, masks, labels, has_mask, spec, recipe, say)
        torch.save(net.state_dict(), final_pt)
        minutes["final"] = (time.time() - t0) / 60.0
        say("final model trained in %.1f min" % minutes["final"])
        with open(os.path.join(out, "final_minutes.json"), "w") as fh:
            json.dump(minutes["final"], fh)


def gather_oof(out: str, n: int, folds: int) -> dict:
    """The folds' predictions in film order; `fold_done` marks the folds present."""
    oof = {}
    done = np.zeros(folds, bool)
    for k in range(folds):
        path = os.path.join(out, "fold%d_pred.npz" % k)
        if not os.path.exists(path):
            continue
        z = np.load(path)
        done[k] = True
        for key in ("logit", "logit_flip", "prob", "prob_flip", "feat"):
            if key not in oof:
                oof[key] = np.zeros((n,) + z[key].shape[1:], z[key].dtype)
            oof[key][z["index"]] = z[key]
        oof.setdefault("minutes", {})[k] = float(z["minutes"])
    oof["fold_done"] = done
    return oof
