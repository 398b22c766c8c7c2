"""models/cv_classifier.py: the classifier-only CV uses cvdata's films and
folds, saves out-of-fold logits per fold, and its report gives the shipped
CV's classifier figures (AUCs with intervals, an operating point)."""
import json
import os

import numpy as np
import pytest

pytest.importorskip("torch")

from models import cv_classifier as C  # noqa: E402
from models import cvdata  # noqa: E402
from models.cvdata import CvSample, assign_folds  # noqa: E402
from models.cvtrain import Recipe  # noqa: E402

DATA = os.path.join(os.path.dirname(__file__), "..", "..", "shared", "data")


def _samples(n_mp=10, n_pos=5, n_neg=40):
    out = []
    for i in range(n_mp):
        out.append(CvSample("mp%d.png" % i, "mp%d_mask.png" % i, 1, 1, "siim_png" if i % 3 else "siim_dicom",
                            "siim:%d" % i, "masked_pos"))
    for i in range(n_pos):      # one NIH positive ChestX-Det calls negative: label 0, nih_label 1
        out.append(CvSample("p%d.png" % i, None, 1, 1, "nih", "nih:p%d" % i, "nih_pos"))
    for i in range(n_neg):
        out.append(CvSample("n%d.png" % i, None, 0, int(i == 0), "nih", "nih:n%d" % (i // 2), "nih_neg"))
    return out


def _cols(samples):
    return {k: np.array([getattr(s, k) for s in samples]) for k in ("label", "nih_label", "stratum", "source")}


def test_a_perfect_separator_gives_auc_one_and_full_sensitivity_and_specificity():
    samples = _samples()
    c = _cols(samples)
    fold = assign_folds(samples, 5)
    logit = np.where(c["label"] == 1, 3.0, -3.0) + np.linspace(0, 0.1, len(samples))
    r = C.evaluate_logits(logit, c["label"], c["label"], c["stratum"], c["source"], fold, n_boot=50)
    for name in ("within_nih_nih_labels", "within_nih_verdicts", "source_probe_siim_pos_vs_nih_neg"):
        assert r["auc"][name]["value"] == 1.0
        assert r["auc"][name]["ci95"] == [1.0, 1.0]
    assert r["auc"]["source_probe_siim_pos_vs_nih_neg"]["n_pos"] == 10
    assert r["auc"]["source_probe_siim_pos_vs_nih_neg"]["n_neg"] == 40
    for op in ("operating_point_other_folds", "operating_point_pooled"):
        assert r[op]["sensitivity_masked"]["value"] >= 0.9
        assert r[op]["specificity_nih_neg"]["value"] == 1.0
        assert r[op]["sensitivity_siim_png"]["n"] + r[op]["sensitivity_siim_dicom"]["n"] == 10
    inverted = C.evaluate_logits(-logit, c["label"], c["label"], c["stratum"], c["source"], fold, n_boot=50)
    assert inverted["auc"]["within_nih_verdicts"]["value"] == 0.0


def test_nih_labels_and_verdicts_are_scored_separately_and_the_gap_is_probe_minus_verdicts():
    samples = _samples()
    c = _cols(samples)
    logit = np.where(c["label"] == 1, 1.0, 0.0)
    r = C.evaluate_logits(logit, c["label"], c["nih_label"], c["stratum"], c["source"], assign_folds(samples, 5),
                          n_boot=20)
    nih_labels, verdicts = r["auc"]["within_nih_nih_labels"], r["auc"]["within_nih_verdicts"]
    assert (verdicts["n_pos"], verdicts["n_neg"]) == (5, 40)
    assert (nih_labels["n_pos"], nih_labels["n_neg"]) == (6, 39)
    assert verdicts["value"] == 1.0 and nih_labels["value"] < 1.0
    assert r["source_probe_gap"] == pytest.approx(r["auc"]["source_probe_siim_pos_vs_nih_neg"]["value"] - 1.0)


def test_each_folds_threshold_comes_from_the_other_folds():
    samples = _samples()
    c = _cols(samples)
    fold = assign_folds(samples, 5)
    rng = np.random.default_rng(0)
    logit = rng.normal(size=len(samples)) + 2 * c["label"]
    r = C.evaluate_logits(logit, c["label"], c["label"], c["stratum"], c["source"], fold, n_boot=10)
    mp = c["stratum"] == "masked_pos"
    for k, t in r["operating_point_other_folds"]["thresholds"].items():
        other = fold != k
        assert t == pytest.approx(C.threshold_for(logit, other & mp, other & ~mp, 0.9))


def _fake_data(monkeypatch, samples, size):
    rng = np.random.default_rng(1)

    def decode_all(s, spec):
        n = len(s)
        return (rng.random((n, size, size)).astype(np.float32), np.zeros((n, size, size), np.uint8),
                np.full(n, 0.05, np.float32))
    monkeypatch.setattr(cvdata, "collect", lambda root: list(samples))
    monkeypatch.setattr(cvdata, "merge_duplicate_groups", lambda s: list(s))
    monkeypatch.setattr(cvdata, "decode_all", decode_all)


def test_the_run_uses_cvdatas_folds_and_saves_out_of_fold_logits_a_report_reads(tmp_path, monkeypatch):
    samples = _samples(n_mp=5, n_pos=5, n_neg=20)
    _fake_data(monkeypatch, samples, 32)
    out = str(tmp_path / "run")
    C.run_cv_classifier(out, "unused", size=32, recipe=Recipe(epochs=1, batch_size=4), threads=1, only_folds=[0])
    got, fold = cvdata.load_table(os.path.join(out, "samples.csv"))
    assert np.array_equal(fold, assign_folds(samples, 5))
    assert [s.image for s in got] == [s.image for s in samples]
    z = np.load(C.pred_path(out, 0))
    assert np.array_equal(z["index"], np.flatnonzero(fold == 0))
    assert z["logit"].shape == z["logit_flip"].shape == (int((fold == 0).sum()),)
    assert np.all(np.isfinite(z["logit"])) and int(z["epochs"]) == 1 and float(z["minutes"]) > 0
    assert not os.path.exists(C.pred_path(out, 1))
    rep = C.report(out, n_boot=10)
    assert rep["folds_done"] == [0] and rep["tta"]["films"] == int((fold == 0).sum())
    assert json.load(open(os.path.join(out, "report.json")))["arch"] == "mobilenet_v2"
    assert json.load(open(os.path.join(out, "cls_recipe.json")))["pretrained"] is False


def test_report_from_saved_logits_recomputes_tta_and_training_minutes(tmp_path):
    samples = _samples()
    fold = assign_folds(samples, 5)
    cvdata.save_table(samples, fold, str(tmp_path / "samples.csv"))
    y = np.array([s.label for s in samples], float)
    for k in range(5):
        idx = np.flatnonzero(fold == k)
        # the film alone is useless, its mirror perfect: the TTA mean separates, the plain logit does not
        np.savez(C.pred_path(str(tmp_path), k), index=idx, logit=np.zeros(len(idx), np.float32),
                 logit_flip=(4 * y[idx] - 2).astype(np.float32), minutes=1.5 + k, predict_seconds=2.0, epochs=30,
                 epoch_seconds=np.array([10.0, 12.0]), arch="mobilenet_v2")
    rep = C.report(str(tmp_path), n_boot=10)
    assert rep["tta"]["auc"]["within_nih_verdicts"]["value"] == 1.0
    assert rep["no_tta"]["auc"]["within_nih_verdicts"]["value"] == 0.5
    assert rep["train_minutes_per_fold"] == {str(k): 1.5 + k for k in range(5)}
    assert rep["seconds_per_epoch_per_fold"]["0"] == 11.0 and rep["epochs_per_fold"]["4"] == 30
    C.print_report(rep, file=open(os.devnull, "w"))


@pytest.mark.skipif(not os.path.isdir(DATA), reason="../shared/data is absent")
def test_on_the_shared_data_the_films_and_counts_are_the_shipped_cvs():
    samples = cvdata.collect(DATA)
    nih = [s for s in samples if s.source == "nih"]
    assert (sum(s.nih_label for s in nih), sum(1 - s.nih_label for s in nih)) == (26, 343)
    assert (sum(s.label for s in nih), sum(1 - s.label for s in nih)) == (23, 346)
    assert sum(s.stratum == "masked_pos" for s in samples) == 46
    fold = assign_folds(samples, 5)
    assert np.bincount(fold).tolist() == [83] * 5
