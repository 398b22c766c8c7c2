"""Training on generated data: the losses fall, and a whole run (train,
resume, evaluate, export, report) works end to end on a generated folder."""
import json
import os
import socket

import cv2
import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("segmentation_models_pytorch")

from models.losses import ClsLoss, SegLoss  # noqa: E402
from models.nets import build_classifier, build_segmenter  # noqa: E402

pytestmark = pytest.mark.models
torch.set_num_threads(1)   # two shared cores: oversubscribed threads make this file 10x slower


def _blobs(n, size, seed):
    """Bright discs on half the images; masks mark the discs."""
    rng = np.random.default_rng(seed)
    x = rng.normal(0.4, 0.05, (n, 1, size, size)).astype(np.float32)
    m = np.zeros((n, 1, size, size), np.float32)
    for i in range(0, n, 2):
        c = rng.integers(size // 4, 3 * size // 4, 2)
        cv2.circle(m[i, 0], (int(c[0]), int(c[1])), size // 6, 1.0, -1)
    return torch.from_numpy(x + 0.5 * m), torch.from_numpy(m)


def _steps(net, loss_fn, x, y, n=8):
    torch.manual_seed(0)
    torch.set_num_threads(1)
    opt = torch.optim.AdamW(net.parameters(), lr=3e-3)
    net.train()
    losses = []
    for _ in range(n):
        loss = loss_fn(net(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return losses


def test_classifier_steps_lower_the_loss():
    torch.manual_seed(0)
    x, m = _blobs(4, 32, 0)
    y = (m.flatten(1).max(1).values > 0).float()
    losses = _steps(build_classifier(1, width_mult=0.35), ClsLoss(pos_weight=1.0), x, y, n=5)
    assert losses[-1] < losses[0]


def test_segmenter_steps_lower_the_loss():
    torch.manual_seed(0)
    x, m = _blobs(2, 64, 1)
    losses = _steps(build_segmenter(1, (16, 16, 8, 8, 8)), SegLoss(1.0, 1.0, 1.0), x, m, n=5)
    assert losses[-1] < losses[0]


def test_building_the_nets_opens_no_network_connection(monkeypatch):
    """weights=None / encoder_weights=None: nothing may be fetched."""
    def refuse(*args, **kwargs):
        raise AssertionError("network access attempted: %r" % (args,))
    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    build_classifier(1)
    build_segmenter(1)


def _write_mask_folders(root, size=96):
    """train/val/test folders of images/ + masks/; half the images have a blob."""
    rng = np.random.default_rng(5)
    for split, n in (("train", 8), ("val", 4), ("test", 4)):
        os.makedirs(os.path.join(root, split, "images"))
        os.makedirs(os.path.join(root, split, "masks"))
        for i in range(n):
            img = rng.normal(100, 10, (size, size))
            mask = np.zeros((size, size), np.uint8)
            if i % 2 == 0:
                cv2.ellipse(mask, (int(rng.integers(30, 66)), 40), (18, 28), 0, 0, 360, 255, -1)
            img = np.clip(img + (mask > 0) * 90, 0, 255).astype(np.uint8)
            cv2.imwrite(os.path.join(root, split, "images", "%s%d.png" % (split, i)), img)
            cv2.imwrite(os.path.join(root, split, "masks", "%s%d.png" % (split, i)), mask)


def test_segmenter_run_end_to_end(tmp_path):
    from edge.inference.manifest import load_manifest, verify_model_file
    from models.__main__ import main

    data = str(tmp_path / "data")
    _write_mask_folders(data)
    run = str(tmp_path / "run")
    cfg = tmp_path / "seg.yaml"
    cfg.write_text("""
task: segmentation
name: segmenter
run_dir: %s
threads: 1
input: {size: [64, 64], channels: 1, mean: [0.5], std: [0.25]}
net: {decoder_channels: [32, 16, 16, 8, 8]}
data:
  cache_dir: %s
  sources:
    - {kind: mask_folders, name: toy, path: %s, hint_splits: {train: train, val: val, test: test}}
train: {epochs: 2, batch_size: 4, lr: 0.003, negatives_per_positive: 1.0, select: loss}
loss: {bce: 1.0, dice: 1.0}
augment: {clahe: 0.5}
""" % (run, tmp_path / "cache", data))
    assert main(["train", str(cfg)]) == 0
    assert main(["train", str(cfg), "--resume", "--epochs", "3"]) == 0
    with open(os.path.join(run, "history.csv")) as fh:
        assert len(fh.read().strip().splitlines()) == 1 + 3       # resumed, not restarted
    assert main(["evaluate", run, "--bootstrap", "50"]) == 0
    with open(os.path.join(run, "eval.json")) as fh:
        ev = json.load(fh)
    assert set(ev["thresholds"]) == {"pixel_high", "min_area_fraction", "pixel_low"}
    assert ev["data"]["test"]["images"] == 4
    out = str(tmp_path / "models" / "segmenter")
    assert main(["export", run, "--out", out, "--dynamic-batch"]) == 0
    manifest = load_manifest(os.path.join(out, "segmenter.json"))
    verify_model_file(manifest)
    assert manifest.task == "segmentation" and manifest.intended_use == "demo"
    assert manifest.output_kind == "logit" and manifest.input.shape == ("batch", 1, 64, 64)
    assert manifest.thresholds == {k: float(v) for k, v in ev["thresholds"].items()}
    assert main(["report", run, "--out", str(tmp_path / "report"), "--card", out]) == 0
    for name in ("summary.md", "roc_pr.png", "dice_hist.png", "gallery.png"):
        assert os.path.getsize(str(tmp_path / "report" / name)) > 0
    with open(os.path.join(out, "MODEL_CARD.md")) as fh:
        card = fh.read()
    assert "NOT FOR CLINICAL USE" in card and "python -m models train" in card


def test_schedule_warms_up_then_anneals_by_steps_or_by_the_clock():
    from models.train import lr_factor
    assert lr_factor(0, 100, 0.0, 0.0, warmup=0.1, floor=0.02) == 0.02
    assert lr_factor(5, 100, 0.0, 0.0, 0.1, 0.02) == pytest.approx(0.5)
    assert lr_factor(10, 100, 0.0, 0.0, 0.1, 0.02) == pytest.approx(1.0)
    assert lr_factor(100, 100, 0.0, 0.0, 0.1, 0.02) == pytest.approx(0.02)
    # a third of the steps but the whole time budget: already at the floor
    assert lr_factor(33, 100, 600.0, 600.0, 0.1, 0.02) == pytest.approx(0.02)


def test_config_rejects_unknown_keys(tmp_path):
    from edge.errors import ConfigError
    from models.train_config import load_config
    p = tmp_path / "c.yaml"
    p.write_text("task: classification\ntrain: {epochz: 3}\n")
    with pytest.raises(ConfigError, match=r"c.yaml:2 \[train.epochz\]: unknown key 'epochz'.*did you mean 'epochs'"):
        load_config(str(p))


@pytest.mark.parametrize("text, expected", [
    ("task: detection\n", r":1 \[task\]: 'detection' is not allowed; use one of: classification, segmentation"),
    ("train:\n  batch_size: 0\n", r":2 \[train.batch_size\]: must be 1 or more, got 0"),
    ("train:\n  lr: fast\n", r":2 \[train.lr\]: expected a number, got a string 'fast'"),
    ("input: {size: [256, 0]}\n", r":1 \[input.size\[1\]\]: must be greater than 0"),
    ("net: {encoder: resnet}\n", r":1 \[net.encoder\]: unknown key 'encoder'.*width_mult, dropout, decoder_channels"),
    ("augment: {hflp: 0.5}\n", r"\[augment.hflp\].*did you mean 'hflip'"),
    ("data:\n  sources:\n    - {name: x, path: p}\n", r":3 \[data.sources\[0\].kind\]: required key 'kind' is missing"),
    ("data:\n  sources:\n    - {kind: folders, path: p}\n", r"'folders' is not a data source kind; use one of: mask_folders"),
    ("data:\n  sources:\n    - {kind: rle_dicoms, csv: r.csv}\n",
     r":3 \[data.sources\[0\].dicoms\]: a rle_dicoms source needs dicoms"),
    ("data:\n  sources:\n    - kind: mask_folders\n      path: p\n      only_split: holdout\n",
     r":5 \[data.sources\[0\].only_split\]: 'holdout' is not allowed; use one of: train, val, test"),
    ("data:\n  sources: [p.csv]\n", r":2 \[data.sources\[0\]\]: expected a mapping"),
])
def test_config_mistakes_name_the_line_and_the_key(tmp_path, text, expected):
    from edge.errors import ConfigError
    from models.train_config import load_config
    p = tmp_path / "c.yaml"
    p.write_text(text)
    with pytest.raises(ConfigError, match=expected):
        load_config(str(p))


def test_config_keeps_defaults_resolves_source_paths_and_takes_overrides(tmp_path):
    from edge.errors import ConfigError
    from models.train_config import load_config
    p = tmp_path / "c.yaml"
    p.write_text("task: segmentation\ninput: {size: [64, 64]}\ndata:\n  split: {train: 0.8}\n  sources:\n"
                 "    - {kind: mask_folders, path: data/x}\n    - {kind: nih_labels, path: /abs/labels.csv}\n")
    cfg = load_config(str(p), {"train.epochs": 3, "run_dir": "runs/y"})
    assert cfg["input"] == {"size": [64, 64], "channels": 1, "mean": [0.5], "std": [0.25],
                            "resize": "stretch", "interpolation": "area"}
    assert cfg["data"]["split"] == {"train": 0.8, "val": 0.2, "test": 0.2}
    assert [s["path"] for s in cfg["data"]["sources"]] == [str(tmp_path / "data" / "x"), "/abs/labels.csv"]
    assert cfg["train"]["epochs"] == 3 and cfg["train"]["batch_size"] == 8 and cfg["run_dir"] == "runs/y"
    with pytest.raises(ConfigError, match=r"command line \[train.epochs\]: expected an integer"):
        load_config(str(p), {"train.epochs": "many"})


@pytest.mark.parametrize("name", sorted(os.listdir(os.path.join(os.path.dirname(__file__), "..", "models", "configs"))))
def test_every_shipped_training_config_loads(name):
    from models.train import net_spec, preprocess_spec
    from models.train_config import load_config
    cfg = load_config(os.path.join(os.path.dirname(__file__), "..", "models", "configs", name))
    assert cfg["data"]["sources"] and preprocess_spec(cfg).size == tuple(cfg["input"]["size"])
    assert net_spec(cfg).task == cfg["task"]


def test_positives_dice_counts_each_masked_film_alike_and_ignores_empty_masks():
    target = torch.zeros(3, 1, 32, 32)
    target[0, 0, :16, :16] = 1          # a large pneumothorax, found
    target[1, 0, 24:, 24:] = 1          # a smaller one, missed
    logits = torch.full_like(target, -20.0)
    logits[0, 0, :16, :16] = 20.0
    logits[2] = 20.0                    # a negative lit up everywhere: BCE's business, not Dice's
    dice = SegLoss(bce=0.0, dice=1.0, dice_mode="positives")
    # per film: 0 for the found one, ~1 for the missed one -> ~0.5, whatever their sizes
    assert abs(float(dice(logits, target)) - 0.5) < 0.05
    assert float(SegLoss(bce=0.0, dice=1.0)(logits, target)) > 0.6      # the batch Dice counts the negative
    assert float(dice(logits, torch.zeros_like(target))) == 0.0
    with pytest.raises(ValueError):
        SegLoss(dice_mode="per-pixel")
