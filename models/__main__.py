"""python -m models train | evaluate | export | report | pipeline | runtime-eval (see models/README.md)."""
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
    p.add_argument("--pipeline", nargs="*", default=(), help="`pipeline --json` files to quote in the card")

    p = sub.add_parser("pipeline", help="the exported ONNX pair through ONNX Runtime with the runtime's rule")
    p.add_argument("classifier_json")
    p.add_argument("segmenter_json")
    p.add_argument("splits_csv", help="a run's splits.csv (image paths, labels, splits)")
    p.add_argument("--split", default="test")
    p.add_argument("--json", help="write the figures here")

    p = sub.add_parser("runtime-eval", help="the shipped models through edge.pipeline, as the appliance runs them")
    p.add_argument("splits_csv", help="a run's splits.csv (image paths, labels, splits)")
    p.add_argument("--split", default="test")
    p.add_argument("--rule", default="mask", choices=("mask", "mask_or_classifier"))
    p.add_argument("--json", help="write the figures here")

    args = ap.parse_args(argv)
    t0 = time.time()
    if args.cmd == "train":
        from .train import load_config, train
        over = {}
        if args.run_dir:
            over["run_dir"] = args.run_dir
        tr = {}
        if args.max_minutes is not None:
            tr["max_minutes"] = args.max_minutes
        if args.epochs is not None:
            tr["epochs"] = args.epochs
        if tr:
            over["train"] = tr
        cfg = load_config(args.config, over)
        train(cfg, resume=args.resume)
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
            write_model_card(args.run_dir, args.card, args.pipeline)
    elif args.cmd == "pipeline":
        import json
        from .evaluate import evaluate_exported
        res = evaluate_exported(args.classifier_json, args.segmenter_json, args.splits_csv, args.split)
        if args.json:
            with open(args.json, "w") as fh:
                json.dump(res, fh, indent=2, default=float)
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
