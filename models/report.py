"""A report folder from an evaluated run: ROC and PR curves, a Dice
histogram and an overlay gallery (segmenter), and summary.md with the
figures and their intervals. Default folder: reports/<name>/ (git-ignored)."""
import json
import os
from typing import Any, Dict, Optional

import numpy as np

from . import metrics as M
from .train import build_samples, load_arrays, preprocess_spec


def _plt():
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def _fmt(b: Dict[str, Any]) -> str:
    v = b.get("value", float("nan"))
    if v != v:
        return "n/a (n=%d)" % b.get("n", 0)
    lo, hi = b.get("ci95", [float("nan"), float("nan")])
    extra = " (%d/%d)" % (b["k"], b["n"]) if "k" in b else (" (n=%d)" % b["n"] if "n" in b else "")
    return "%.3f [%.3f, %.3f]%s" % (v, lo, hi, extra)


def _curves(plt, preds: Dict[str, Any], score_key: str, out: str, title: str) -> None:
    fig, ax = plt.subplots(1, 2, figsize=(10, 4.5))
    for split, z in preds.items():
        y, s = z["label"], z[score_key]
        fpr, tpr, _ = M.roc_curve(y, s)
        ax[0].plot(fpr, tpr, label="%s AUC %.3f" % (split, M.roc_auc(y, s)))
        rec, prec = M.pr_curve(y, s)
        ax[1].plot(rec, prec, label="%s (prevalence %.2f)" % (split, float(np.mean(y))))
    ax[0].plot([0, 1], [0, 1], "k:", lw=0.8)
    ax[0].set(xlabel="1 - specificity", ylabel="sensitivity", title=title + " ROC")
    ax[1].set(xlabel="recall (sensitivity)", ylabel="precision (PPV)", title=title + " PR")
    for a in ax:
        a.legend(loc="lower right" if a is ax[0] else "upper right")
        a.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(out, dpi=100)
    plt.close(fig)


def _gallery(plt, run_dir: str, cfg: Dict[str, Any], z, thresholds: Dict[str, float], out: str) -> None:
    import cv2
    samples = build_samples(cfg)
    arrays = load_arrays(samples, preprocess_spec(cfg), cfg["data"].get("cache_dir"), progress=False).subset("test")
    keys = list(z["key"])
    order = [i for i in range(len(keys)) if z["label"][i]]
    neg = [i for i in range(len(keys)) if not z["label"][i]]
    prob = z["prob"].astype(np.float32)
    neg.sort(key=lambda i: -float((prob[i] > thresholds["pixel_high"]).mean()))
    order = (order + neg[:4])[:12]
    cols = 4
    rows = int(np.ceil(len(order) / float(cols)))
    fig, axes = plt.subplots(rows, cols, figsize=(3 * cols, 3 * rows))
    for ax in np.atleast_1d(axes).ravel():
        ax.axis("off")
    for ax, i in zip(np.atleast_1d(axes).ravel(), order):
        j = [s.key for s in arrays.samples].index(keys[i])
        rgb = np.repeat(arrays.planes[j][..., None], 3, axis=2)
        rgb = (np.clip(rgb, 0, 1) * 255).astype(np.uint8).copy()
        truth = arrays.masks[j].astype(np.uint8)
        pred = ((prob[i] > thresholds["pixel_low"]) & bool(z["positive"][i])).astype(np.uint8)
        for m, colour in ((truth, (0, 255, 0)), (pred, (255, 0, 0))):
            cs, _ = cv2.findContours(m, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
            cv2.drawContours(rgb, cs, -1, colour, 2)
        ax.imshow(rgb)
        ax.set_title("%s dice %.2f" % (str(keys[i])[-18:], float(z["dice"][i])), fontsize=8)
    fig.suptitle("test split: truth green, prediction red (runtime thresholds)")
    fig.tight_layout()
    fig.savefig(out, dpi=90)
    plt.close(fig)


def write_report(run_dir: str, out_dir: Optional[str] = None) -> str:
    import yaml
    plt = _plt()
    with open(os.path.join(run_dir, "eval.json")) as fh:
        ev = json.load(fh)
    with open(os.path.join(run_dir, "config.yaml")) as fh:
        cfg = yaml.safe_load(fh)
    out_dir = out_dir or os.path.join("reports", cfg["name"])
    os.makedirs(out_dir, exist_ok=True)
    preds = {}
    for split in ("val", "test"):
        p = os.path.join(run_dir, "preds-%s.npz" % split)
        if os.path.exists(p):
            preds[split] = dict(np.load(p))
    lines = ["# %s — evaluation report" % cfg["name"], "",
             "Run: `%s`, best epoch %s of %s, %.1f min of training." % (
                 run_dir, ev.get("best_epoch"), ev.get("epochs_run"), ev.get("train_minutes", 0.0)), "",
             "Thresholds (chosen on val): `%s`" % json.dumps(ev["thresholds"]), "",
             "| split | images | positives | patients |", "|---|---|---|---|"]
    for split, d in ev.get("data", {}).items():
        lines.append("| %s | %d | %d | %d |" % (split, d["images"], d["positive"], d["patients"]))
    lines.append("")
    if ev["task"] == "classification":
        for z in preds.values():
            z["score"] = z["prob"]
        _curves(plt, preds, "score", os.path.join(out_dir, "roc_pr.png"), cfg["name"])
        lines += ["| split | AUC [95% CI] | sensitivity | specificity | PPV | NPV |", "|---|---|---|---|---|---|"]
        for split in ("val", "test"):
            if split not in ev:
                continue
            b = ev[split]
            for key, label in (("at_positive", "triage"), ("at_skip", "skip-segmenter")):
                r = b[key]
                lines.append("| %s @ %s %.3f | %s | %s | %s | %s | %s |" % (
                    split, label, r["threshold"], _fmt(b["auc"]), _fmt(r["sensitivity"]), _fmt(r["specificity"]),
                    _fmt(r["ppv"]), _fmt(r["npv"])))
            lines.append("")
        for split in ("val", "test"):
            if split in ev:
                c = ev[split]["at_positive"]["confusion"]
                lines.append("Confusion (%s, triage): TP %d, FP %d, TN %d, FN %d  " % (split, c["tp"], c["fp"], c["tn"],
                                                                                     c["fn"]))
                if "auc_nih_positives_only" in ev[split]:
                    lines.append("AUC with NIH positives only (%s): %s  " % (split, _fmt(ev[split]["auc_nih_positives_only"])))
        lines += ["", "![ROC and PR](roc_pr.png)"]
    else:
        hi = ev["thresholds"]["pixel_high"]
        for z in preds.values():
            z["score"] = (z["prob"].astype(np.float32) > hi).mean(axis=(1, 2))
        _curves(plt, preds, "score", os.path.join(out_dir, "roc_pr.png"), cfg["name"] + " image-level")
        fig, ax = plt.subplots(figsize=(6, 4))
        for split, z in preds.items():
            pos = z["label"] == 1
            ax.hist(z["dice"][pos], bins=np.linspace(0, 1, 21), alpha=0.6, label="%s positives" % split)
        ax.set(xlabel="per-image Dice (original size)", ylabel="images", title="Dice on positive images")
        ax.legend()
        fig.tight_layout()
        fig.savefig(os.path.join(out_dir, "dice_hist.png"), dpi=100)
        plt.close(fig)
        if "test" in preds:
            _gallery(plt, run_dir, cfg, preds["test"], ev["thresholds"], os.path.join(out_dir, "gallery.png"))
        lines += ["| split | Dice all | Dice positives | Dice negatives | IoU all | image sens | image spec | "
                  "image AUC (area > pixel_high) |", "|---|---|---|---|---|---|---|---|"]
        for split in ("val", "test"):
            if split in ev:
                b = ev[split]
                lines.append("| %s | %s | %s | %s | %s | %s | %s | %s |" % (
                    split, _fmt(b["dice"]), _fmt(b["dice_positive"]), _fmt(b["dice_negative"]), _fmt(b["iou"]),
                    _fmt(b["image_level"]["sensitivity"]), _fmt(b["image_level"]["specificity"]),
                    _fmt(b["image_auc_area_above_high"])))
        lines += ["", "Dice on positives by size (mask fraction: small < 1 %, medium 1-5 %, large >= 5 %):", ""]
        for split in ("val", "test"):
            if split in ev:
                lines.append("- %s: " % split + ", ".join("%s %s" % (k, _fmt(ev[split]["dice_" + k]))
                                                        for k in ("small", "medium", "large")))
        lines += ["", "![ROC and PR](roc_pr.png) ![Dice](dice_hist.png)", "", "![gallery](gallery.png)"]
    path = os.path.join(out_dir, "summary.md")
    with open(path, "w") as fh:
        fh.write("\n".join(lines) + "\n")
    print("wrote %s" % path)
    return path


# ---------------------------------------------------------------- model card

RETRAIN = """## Retraining (SIIM-ACR or a hospital's own data)

Everything is driven by a YAML config (see `models/configs/`); paths in a config
are relative to the config file. Needs the `models` extra
(`pip install -e .[models]`); a GPU is used when present.

```sh
# 1. the committed default, on ../shared/data
python -m models train    models/configs/{name}.yaml          # -> runs/{name}/ (resumable: --resume)
python -m models evaluate runs/{name}                          # operating points on val, figures on val + test
python -m models report   runs/{name} --card models/{name}     # reports/{name}/ + this card
python -m models export   runs/{name} --out models/{name}      # ONNX opset 17 + manifest, parity-checked

# 2. SIIM-ACR full set: DICOMs + train-rle.csv / stage_2_train.csv
#    (edit the paths in the example config, raise the input to 512 and the time budget)
python -m models train models/configs/siim_{name}.yaml

# 3. a hospital's own data: pneumothorax/ and normal/ folders (classifier),
#    images/ + masks/ folders (segmenter), or DICOM + RLE CSV; see models/README.md
python -m models train models/configs/hospital_{name}.yaml
```

Keep the split by patient (the readers group by patient/study where the IDs exist),
keep the test split out of every choice, and re-check the operating points on the
site's own validation data before any use beyond a demonstration."""


def write_model_card(run_dir: str, model_dir: str) -> str:
    """MODEL_CARD.md beside the exported model, with figures from eval.json and the manifest."""
    import yaml
    from edge.inference.manifest import load_manifest
    with open(os.path.join(run_dir, "eval.json")) as fh:
        ev = json.load(fh)
    with open(os.path.join(run_dir, "config.yaml")) as fh:
        cfg = yaml.safe_load(fh)
    name = cfg["name"]
    man = load_manifest(os.path.join(model_dir, name + ".json"))
    onnx_mb = os.path.getsize(man.model_path) / 1e6
    pp = man.preprocessing
    t = cfg["train"]
    L = ["# Model card: %s %s (%s)" % (name, man.version, "DEMO — NOT FOR CLINICAL USE"), "",
         "> Intended use: **demo**. Trained in minutes on a CPU from a few hundred public images. "
         "It shows the appliance working end to end; it is not a medical device and its output "
         "must not inform care.", "",
         "## Model", "",
         "- Architecture: %s, random initialisation (no pretrained weights were downloaded or used)." % man.architecture,
         "- Parameters: %s; FLOPs per image: %.2f G (2 x multiply-accumulates of conv/linear layers)." % (
             "{:,}".format(man.metrics["parameters"]), man.metrics["flops"] / 1e9),
         "- File: `%s`, ONNX opset 17, FP32, %.1f MB, sha256 `%s...`; torch vs ONNX Runtime max |diff| %.2g "
         "at export." % (man.file, onnx_mb, man.sha256[:16], man.metrics["parity_max_abs_diff"]),
         "- Input `%s` %s float32: the decoded MONOCHROME2 image in [0, 1], resized (%s, %s) to %dx%d, "
         "%d channel%s, (x - %s) / %s. The runtime reads all of this from `%s.json`." % (
             man.input.name, list(man.input.shape), pp.resize, pp.interpolation, pp.size[0], pp.size[1],
             pp.channels, "" if pp.channels == 1 else "s (grey replicated)", list(pp.mean), list(pp.std), name),
         "- Output `%s` %s: **logits** (the runtime applies the sigmoid)." % (man.output.name, list(man.output.shape)),
         ""]
    if cfg["task"] == "segmentation" and pp.size[0] < 512:
        L += ["- Input size: %d px, below the design's 512 px, and a slimmer decoder than smp's default: "
              "chosen to fit the shared 2-core CPU training budget. Small pneumothoraces (a few mm wide) "
              "are at the edge of what this resolution can show." % pp.size[0], ""]
    L += ["## Training data and its limits", "", man.training_data, "",
          "| split | images | positives | patients |", "|---|---|---|---|"]
    for split, d in ev.get("data", {}).items():
        L.append("| %s | %d | %d | %d |" % (split, d["images"], d["positive"], d["patients"]))
    L += ["",
          "- Splits are by patient (NIH: one image per patient). The 6 SIIM images in SIIM's own `val/` "
          "folder are the test positives with masks; SIIM `train/` is split 80/20 into train/val. "
          "SIIM PNGs carry no NIH ids; a 32x32 thumbnail-correlation check found no SIIM image duplicated "
          "in the NIH subset (highest SIIM-NIH correlation 0.91, below the 0.95 seen between two different "
          "NIH patients; `models.data.find_duplicates`).",
          "- NIH labels were text-mined from reports (label noise; one positive is disputed by the Google "
          "2019 adjudication). Many NIH positives show chest drains: a model can learn the drain, not "
          "the pneumothorax.",
          "- All 36 masked SIIM positives are moderate to large (1.4-14 % of the image): **no small "
          "pneumothorax was seen in training or measured in testing.**",
          "- Public images only, 1024 px PNG re-encodings of NIH studies; no DICOM from a cart, no "
          "paediatric images, no lateral views.", "",
          "## Training recipe", "",
          "- Config: `models/configs/%s.yaml`; seed %s; AdamW lr %s, weight decay %s, warm-up then cosine "
          "decay ending %s; batch %s; %s negatives per positive drawn afresh each epoch."
          % (name, cfg["seed"], t["lr"], t["weight_decay"],
             "at the %s-minute budget or after %s epochs" % (t["max_minutes"], t["epochs"]) if t["max_minutes"]
             else "after %s epochs" % t["epochs"], t["batch_size"], t["negatives_per_positive"]),
          "- Loss: %s. Augmentation: %s." % (
              "weighted BCE + focal" if cfg["task"] == "classification" else
              "BCE (pos_weight %s) x %s + soft Dice over the batch x %s + focal x %s" % (
                  cfg["loss"].get("pos_weight", 1.0), cfg["loss"].get("bce", 1.0), cfg["loss"].get("dice", 1.0),
                  cfg["loss"].get("focal", 0.0)),
              ", ".join("%s %s" % kv for kv in sorted(cfg["augment"].items()))),
          "- Ran %s epochs in %.1f min on %s CPU thread(s) of a machine shared with other jobs; best epoch %s by "
          "validation %s (kept as the checkpoint; early stopping patience %s)." % (
              ev.get("epochs_run"), ev.get("train_minutes", 0.0), cfg.get("threads"), ev.get("best_epoch"),
              t["select"], t["patience"])]
    if cfg.get("notes"):
        L.append("- Run notes: %s" % cfg["notes"])
    L.append("")
    L += ["## Operating points (chosen on validation)", "", "`thresholds`: `%s`" % json.dumps(man.thresholds), ""]
    for op in man.operating_points:
        L.append("- **%s** at %.4f: validation sensitivity %s, specificity %s. %s" % (
            op.name, op.threshold, "n/a" if op.sensitivity is None else "%.3f" % op.sensitivity,
            "n/a" if op.specificity is None else "%.3f" % op.specificity, op.note))
    if cfg["task"] == "segmentation":
        L += ["", "- With min_area_fraction %.4f the segmenter arm cannot fire on a pneumothorax smaller than "
              "%.1f %% of the image; only the classifier arm can catch those." % (
                  man.thresholds["min_area_fraction"], 100 * man.thresholds["min_area_fraction"])]
    L += ["", "## Metrics (95 % intervals; test was never used to choose anything)", ""]
    if cfg["task"] == "classification":
        L += ["| split | ROC-AUC | sensitivity | specificity | PPV | NPV | TP/FP/TN/FN |", "|---|---|---|---|---|---|---|"]
        for split in ("val", "test"):
            if split in ev:
                b, r = ev[split], ev[split]["at_positive"]
                c = r["confusion"]
                L.append("| %s | %s | %s | %s | %s | %s | %d/%d/%d/%d |" % (
                    split, _fmt(b["auc"]), _fmt(r["sensitivity"]), _fmt(r["specificity"]), _fmt(r["ppv"]),
                    _fmt(r["npv"]), c["tp"], c["fp"], c["tn"], c["fn"]))
        L.append("")
        for split in ("val", "test"):
            if split in ev:
                r = ev[split]["at_skip"]
                L.append("- %s at skip_segmenter_below %.4f: sensitivity %s, specificity %s (the share of "
                         "negatives whose segmenter run would be skipped)." % (
                             split, r["threshold"], _fmt(r["sensitivity"]), _fmt(r["specificity"])))
                if "auc_nih_positives_only" in ev[split]:
                    L.append("- %s ROC-AUC with NIH positives only (SIIM positives removed): %s." % (
                        split, _fmt(ev[split]["auc_nih_positives_only"])))
    else:
        L += ["Dice/IoU per image at the original image size (the mask mapped back as the runtime does), SIIM-style: "
              "an empty prediction on an empty mask scores 1, so the mean over all images rewards staying quiet "
              "on negatives; Dice on positives is the figure for outlining.", "",
              "| split | Dice all | Dice positives | Dice negatives | IoU all | image sensitivity | image specificity "
              "| image ROC-AUC |", "|---|---|---|---|---|---|---|---|"]
        for split in ("val", "test"):
            if split in ev:
                b = ev[split]
                L.append("| %s | %s | %s | %s | %s | %s | %s | %s |" % (
                    split, _fmt(b["dice"]), _fmt(b["dice_positive"]), _fmt(b["dice_negative"]), _fmt(b["iou"]),
                    _fmt(b["image_level"]["sensitivity"]), _fmt(b["image_level"]["specificity"]),
                    _fmt(b["image_auc_area_above_high"])))
        L += ["", "By size on positives (mask fraction: small < 1 %, medium 1-5 %, large >= 5 %):", ""]
        for split in ("val", "test"):
            if split in ev:
                L.append("- %s: " % split + "; ".join("%s %s" % (k, _fmt(ev[split]["dice_" + k]))
                                                     for k in ("small", "medium", "large")))
    L += ["", "## What these numbers can and cannot claim", "",
          "- They can show the recipe and the runtime work end to end, and roughly how well a network trained "
          "from scratch on ~%d training images separates pneumothorax here." % ev["data"]["train"]["images"],
          "- They cannot claim clinical performance: the test split has only %d positives, so every interval "
          "is wide; the masked (SIIM) positives are moderate-to-large; the images come from the same public source as "
          "training; and the anchors (SIIM-ACR winner Dice 0.868, GE's AUC 0.96 / sensitivity 84 %% / "
          "specificity 93 %%) were reached with tens of thousands of images and pretrained encoders."
          % ev["data"]["test"]["positive"],
          "- Expect lower figures on other sites' radiographs (different carts, exposure, processing) and on "
          "small pneumothoraces; re-validate before relying on any threshold.", "",
          "## Intended use", "",
          "Demonstration and integration testing of the pneumo-edge appliance only (`intended_use: demo`). "
          "Not for diagnosis, triage or any clinical decision.", "",
          RETRAIN.format(name=name), ""]
    path = os.path.join(model_dir, "MODEL_CARD.md")
    with open(path, "w") as fh:
        fh.write("\n".join(L))
    print("wrote %s" % path)
    return path
