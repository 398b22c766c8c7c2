"""The cv-report figures as the table the cards and the README quote."""
from typing import Any, Dict


def _r(b: Dict[str, Any]) -> str:
    return "%.3f [%.2f, %.2f] (%d/%d)" % (b["value"], b["ci95"][0], b["ci95"][1], b["k"], b["n"])


def _m(b: Dict[str, Any]) -> str:
    return "%.3f [%.2f, %.2f] (n=%d)" % (b["value"], b["ci95"][0], b["ci95"][1], b["n"])


def _a(b: Dict[str, Any]) -> str:
    return "%.3f [%.2f, %.2f] (%d+/%d-)" % (b["value"], b["ci95"][0], b["ci95"][1], b["n_pos"], b["n_neg"])


def table(ev: Dict[str, Any]) -> str:
    r = ev["rule"]
    rows = [
        ("rule", "p = sigmoid(%s . [%s] + %.3f) >= %.3f; area = pixels > %.2f (counted from %.4f); outline > %.2f"
         % ([round(c, 3) for c in r["coef"]], ", ".join(r["inputs"]), r["intercept"], r["threshold"],
            r["pixel_high"], r["min_area_fraction"], r["pixel_low"])),
        ("Dice, masked positives (decision applied, full resolution)", _m(ev["dice_masked_decided"])),
        ("  siim-ptx-png / siim-ptx-dicom", "%s / %s" % (_m(ev["dice_decided_siim_png"]),
                                                         _m(ev["dice_decided_siim_dicom"]))),
        ("Dice of the outline alone (every masked positive)", _m(ev["dice_masked_outline"])),
        ("sensitivity, masked positives", _r(ev["sensitivity_masked"])),
        ("  siim-ptx-png / siim-ptx-dicom", "%s / %s" % (_r(ev["sensitivity_siim_png"]),
                                                         _r(ev["sensitivity_siim_dicom"]))),
        ("specificity, NIH negatives", _r(ev["specificity_nih_neg"])),
        ("sensitivity, NIH positives (ChestX-Det verdicts / NIH labels)",
         "%s / %s" % (_r(ev["sensitivity_nih_pos_verdict"]), _r(ev["sensitivity_nih_pos_nih_label"]))),
    ]
    for name in ("p", "classifier_logit", "log_area"):
        b = ev["auc_" + name]
        rows.append(("AUC of %s: within NIH (NIH labels) | within NIH (verdicts) | source probe" % name,
                     "%s | %s | %s" % (_a(b["within_nih_nih_labels"]), _a(b["within_nih_verdicts"]),
                                       _a(b["source_probe_siim_pos_vs_nih_neg"]))))
    rows.append(("ECE (10 bins, cross-fitted p)", "%.3f [%.3f, %.3f]" % (ev["ece"], ev["ece_ci95"][0],
                                                                       ev["ece_ci95"][1])))
    rows.append(("small pneumothoraces", "; ".join("%s p=%.2f %s Dice %.2f" % (s["image"][-22:], s["p"],
                 "detected" if s["detected"] else "missed", s["dice_outline"]) for s in ev["small"])))
    return "\n".join("| %s | %s |" % row for row in rows)


def print_summary(rep: Dict[str, Any]) -> None:
    print("folds done: %d, films %d" % (rep["folds_done"], rep["films"]))
    for key in ("no_tta", "tta"):
        print("\n## %s\n| figure | value |\n|---|---|" % key)
        print(table(rep[key]))
