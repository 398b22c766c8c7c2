"""python -m models train | evaluate | export | report | runtime-eval | cv | cv-classifier ... (see models/README.md)."""
import argparse
import sys
import time
from typing import List, Optional


def main(argv: Optional[List[str]] = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m models", description=__doc__)
    sub = ap.add_subparsers(dest="cmd", required=True)

    p = sub.add_parser("train", help="train from a YAML config into its run_dir")
    p.add_argument("config")
    p.add_argument("--run-dir", help="override run_dir")
    p.add_argument("--resume", action="store_true", help="continue from run_dir/last.pt")
    p.add_argument("--max-minutes", type=float, help="override train.max_minutes")
    p.add_argument("--epochs", type=int, help="override train.epochs")

    p = sub.add_parser("evaluate", help="operating points on val, metrics on val and test")
    p.add_argument("run_dir")
    p.add_argument("--sensitivity", type=float, default=0.9, help="classifier triage target on val")
    p.add_argument("--bootstrap", type=int, default=1000)

    p = sub.add_parser("export", help="ONNX (opset 17) + manifest from a run's best checkpoint")
    p.add_argument("run_dir")
    p.add_argument("--out", required=True, help="folder for <name>.onnx and <name>.json")
    p.add_argument("--dynamic-batch", action="store_true")
    p.add_argument("--max-abs-diff", type=float, default=1e-3, help="parity bound torch vs ONNX Runtime")

    p = sub.add_parser("report", help="plots + markdown summary from a run's evaluation")
    p.add_argument("run_dir")
    p.add_argument("--out", default=None, help="default reports/<name>")
    p.add_argument("--card", default=None, help="also write MODEL_CARD.md into this exported model folder")

    p = sub.add_parser("runtime-eval", help="the shipped models through edge.pipeline, as the appliance runs them")
    p.add_argument("splits_csv", help="a run's splits.csv (image paths, labels, splits)")
    p.add_argument("--split", default="test")
    p.add_argument("--rule", default="mask", choices=("mask", "mask_or_classifier"))
    p.add_argument("--json", help="write the figures here")

    p = sub.add_parser("cv", help="patient-grouped k-fold CV of the shared-encoder network, then the final model")
    p.add_argument("--out", default="runs/cv")
    p.add_argument("--data", default="../shared/data", help="the shared data folder")
    p.add_argument("--folds", type=int, default=5)
    p.add_argument("--size", type=int, default=256)
    p.add_argument("--epochs", type=int, help="default: the shipped recipe's (models/cvtrain.py Recipe.epochs)")
    p.add_argument("--pos-weight", type=float, default=1.0, help="BCE weight of pneumothorax pixels")
    p.add_argument("--no-window", action="store_true", help="pixels as decoded (no percentile window)")
    p.add_argument("--dice-mode", choices=("batch", "positives"), default="positives",
                   help="soft Dice per image over the masked positives (the shipped recipe), or over the batch")
    p.add_argument("--encoder-lr-ratio", type=float, default=1.0,
                   help="the pretrained encoder's learning rate as a share of the decoder's")
    p.add_argument("--decoder", type=int, nargs=5, metavar="C",
                   help="U-Net decoder widths, default the shipped recipe's (models/cvtrain.py)")
    p.add_argument("--no-final", action="store_true", help="skip the final model on all data")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--only-folds", type=int, nargs="*", help="train just these folds (run several processes)")

    p = sub.add_parser("cv-report", help="decision rule, calibration and figures from a cv run's out-of-fold predictions")
    p.add_argument("run", nargs="?", default="runs/cv")
    p.add_argument("--model", default="final.pt", help="the network to ship (final.pt, or foldK.pt)")
    p.add_argument("--plots", default="models/segmenter", help="folder for reliability.png / reliability-tta.png")
    p.add_argument("--tta", action="store_true", help="ship the h-flip TTA rule (the segmenter then runs twice; the classifier "
                   "averages film and mirror inside its graph, one call)")
    p.add_argument("--bootstrap", type=int, default=1000)
    p.add_argument("--specificity-floor", type=float, default=None,
                   help="below 1: lower the threshold further while specificity on NIH negatives stays >= this, "
                        "once sensitivity >= 0.90 on masked positives holds (default 1: the shipped rule)")

    p = sub.add_parser("cv-classifier", help="an image-level classifier alone (e.g. MobileNetV2, random init) "
                       "cross-validated on the cv run's films and folds (models/cv_classifier.py)")
    p.add_argument("--out", required=True)
    p.add_argument("--data", default="../shared/data", help="the shared data folder")
    p.add_argument("--arch", default="mobilenet_v2", choices=("mobilenet_v2",))
    p.add_argument("--folds", type=int, default=5)
    p.add_argument("--size", type=int, default=256)
    p.add_argument("--epochs", type=int, help="default: the shipped recipe's (models/cvtrain.py Recipe.epochs)")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--only-folds", type=int, nargs="*", help="train just these folds")

    p = sub.add_parser("cv-classifier-report", help="figures from a cv-classifier run's out-of-fold logits")
    p.add_argument("run")
    p.add_argument("--bootstrap", type=int, default=1000)

    p = sub.add_parser("export-cv", help="the cv run's network as classifier.onnx + segmenter.onnx with manifests")
    p.add_argument("run", nargs="?", default="runs/cv")
    p.add_argument("--model", default="final.pt")
    p.add_argument("--out", default="models")
    p.add_argument("--version", default=None, help="the manifests' version (default: the bundled models')")

    p = sub.add_parser("one-graph", help="classifier + segmenter as one ONNX graph, the shared encoder run once")
    p.add_argument("--classifier", default="models/classifier/classifier.onnx")
    p.add_argument("--segmenter", default="models/segmenter/segmenter.onnx")
    p.add_argument("--out", required=True, help="the joined graph's .onnx")

    p = sub.add_parser("polarity", help="the mean chest layout the grey-scale polarity check uses, "
                                         "with its cross-source check")
    p.add_argument("--classifier", default="models/classifier/classifier.json")
    p.add_argument("--data", default="../shared/data")
    p.add_argument("--write", action="store_true", help="write edge/polarity_template.py")

    p = sub.add_parser("gate-eval", help="the not-a-chest gate on non-chest images and on every chest film here")
    p.add_argument("--classifier", default="models/classifier/classifier.json")
    p.add_argument("--segmenter", default="models/segmenter/segmenter.json")
    p.add_argument("--data", default="../shared/data")
    p.add_argument("--run", default="runs/cv", help="the cv run whose samples.csv lists the chest films")
    p.add_argument("--json", help="write every outcome here")
    p.add_argument("--degraded", action="store_true",
                   help="also every 4th chest film JPEG-compressed, noised and resampled (a few minutes)")

    args = ap.parse_args(argv)
    t0 = time.time()
    if args.cmd == "train":
        from .train import train
        from .train_config import load_config
        over = {key: value for key, value in (("run_dir", args.run_dir), ("train.max_minutes", args.max_minutes),
                                              ("train.epochs", args.epochs)) if value is not None}
        cfg = load_config(args.config, over)
        train(cfg, resume=args.resume)
    elif args.cmd == "cv":
        from .cv import run_cv
        from .cvtrain import Recipe
        recipe = Recipe(epochs=args.epochs or Recipe.epochs, pos_weight=args.pos_weight,
                        encoder_lr_ratio=args.encoder_lr_ratio, dice_mode=args.dice_mode,
                        decoder_channels=tuple(args.decoder) if args.decoder else Recipe.decoder_channels)
        run_cv(args.out, args.data, folds=args.folds, size=args.size, window=not args.no_window,
               recipe=recipe, final=not args.no_final, threads=args.threads, only_folds=args.only_folds)
    elif args.cmd == "cv-report":
        import json
        import os
        from .cvreport import analyse, fit_ood, write_decision
        print(json.dumps(fit_ood(args.run, args.model), indent=1))
        from .cvreport import SPECIFICITY_FLOOR
        rep = analyse(args.run, n_boot=args.bootstrap, plot_dir=args.plots,
                      specificity_floor=SPECIFICITY_FLOOR if args.specificity_floor is None else args.specificity_floor)
        with open(os.path.join(args.run, "cv_report.json"), "w") as fh:
            json.dump(rep, fh, indent=1, default=float)
        write_decision(args.run, rep, tta=args.tta)
        from .cvsummary import print_summary
        print_summary(rep)
    elif args.cmd == "cv-classifier":
        from .cv_classifier import run_cv_classifier
        from .cvtrain import Recipe
        run_cv_classifier(args.out, args.data, arch=args.arch, folds=args.folds, size=args.size,
                          recipe=Recipe(epochs=args.epochs or Recipe.epochs), threads=args.threads,
                          only_folds=args.only_folds)
    elif args.cmd == "cv-classifier-report":
        from .cv_classifier import print_report, report
        print_report(report(args.run, n_boot=args.bootstrap))
    elif args.cmd == "export-cv":
        from .export_lite0 import export_cv
        export_cv(args.run, args.out, model_file=args.model,
                  **({"version": args.version} if args.version else {}))
    elif args.cmd == "one-graph":
        from .one_graph import write
        made = write(args.classifier, args.segmenter, args.out)
        print("%s: %d nodes, the encoder's %d once" % (args.out, made["nodes"], made["encoder_nodes"]))
    elif args.cmd == "polarity":
        from .polarity import run
        run(args.data, args.classifier, args.write)
    elif args.cmd == "gate-eval":
        import json
        from .gate_eval import degraded_chest, gate_eval
        res = gate_eval(args.classifier, args.segmenter, args.data, args.run)
        if args.degraded:
            res["degraded_chest"] = degraded_chest(args.classifier, args.segmenter, args.run)
            d = res["degraded_chest"]
            print("degraded chest films refused (of %d): %s" % (d["films"], ", ".join(
                "%s %d" % kv for kv in d["refused"].items())))
        for k, v in res["counts"].items():
            print("%-40s %d" % (k, v))
        for k, v in res["refusal_codes"].items():
            print("refused %-40s %d" % (k, v))
        for r in res["rows"]:
            if (r["set"] == "non_chest") != r["outcome"].startswith("refused"):
                print("WRONG:", r["set"], r["kind"], r["file"], r["outcome"], r.get("p"))
        if args.json:
            with open(args.json, "w") as fh:
                json.dump(res, fh, indent=1, default=float)
    elif args.cmd == "evaluate":
        from .evaluate import evaluate_run
        evaluate_run(args.run_dir, sensitivity_target=args.sensitivity, n_boot=args.bootstrap)
    elif args.cmd == "export":
        from .export import export_run
        export_run(args.run_dir, args.out, dynamic_batch=args.dynamic_batch, max_abs_diff=args.max_abs_diff)
    elif args.cmd == "report":
        from .report import write_model_card, write_report
        write_report(args.run_dir, args.out)
        if args.card:
            write_model_card(args.run_dir, args.card)
    elif args.cmd == "runtime-eval":
        import json
        from edge.settings import DecisionSettings
        from .runtime_eval import print_summary, runtime_eval
        res = runtime_eval(args.splits_csv, args.split, decision=DecisionSettings(rule=args.rule))
        print_summary(res)
        if args.json:
            with open(args.json, "w") as fh:
                json.dump(res, fh, indent=2, default=float)
    print("%s done in %.1f s" % (args.cmd, time.time() - t0), file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
