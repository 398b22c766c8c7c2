"""`pneumo-edge` command line: run | alerts | check-config | process | doctor."""
import argparse
import json
import logging
import os
import sys
from typing import List, Optional

from edge import __version__
from edge.errors import PneumoEdgeError

log = logging.getLogger("pneumo-edge")

# Flag -> dotted config key, for the settings an operator changes most.
OVERRIDE_FLAGS = (
    ("capture_dir", "capture.dir"), ("state_dir", "state_dir"), ("mqtt_host", "mqtt.host"),
    ("mqtt_port", "mqtt.port"), ("site", "site"), ("device", "device"), ("backend", "models.backend"),
    ("log_level", "log_level"),
)


def _add_config_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", help="YAML config (default: the embedded defaults)")
    p.add_argument("--capture-dir", help="capture folder (holds incoming/, processing/, done/, rejected/)")
    p.add_argument("--state-dir", help="where the SQLite ledger and outbox live")
    p.add_argument("--mqtt-host")
    p.add_argument("--mqtt-port", type=int)
    p.add_argument("--site")
    p.add_argument("--device")
    p.add_argument("--backend", choices=("onnxruntime", "tensorrt", "auto"))
    p.add_argument("--log-level", choices=("DEBUG", "INFO", "WARNING", "ERROR"))


def _settings(args):
    from edge.config import load_config
    overrides = {key: getattr(args, attr) for attr, key in OVERRIDE_FLAGS
                 if getattr(args, attr, None) is not None}
    settings = load_config(args.config, overrides)
    if getattr(args, "log_level", None) is None:
        from edge.logsetup import setup_logging
        setup_logging(settings.log_level)
    return settings


def cmd_run(args) -> int:
    from edge.signals import stop_on_signals
    stop, _restore = stop_on_signals()      # caught from here on, even while models load
    from edge.app import Appliance
    from edge.localbroker import ensure_local_broker, stop_broker
    settings = _settings(args)
    broker = None
    if args.start_broker:
        broker = ensure_local_broker(settings.mqtt.host, settings.mqtt.port,
                                     os.path.join(settings.state_dir, "broker"))
    try:
        app = Appliance(settings)
        incoming = app.folders.incoming
        print("pneumo-edge %s ready.\n  Drop a chest radiograph (DICOM, PNG or JPEG) into:\n    %s\n"
              "  Watch alerts in another terminal:\n    .venv/bin/pneumo-edge alerts --mqtt-host %s --mqtt-port %d\n"
              "  Stop with Ctrl-C." % (__version__, os.path.abspath(incoming), settings.mqtt.host, settings.mqtt.port),
              flush=True)
        return app.run_forever(stop)
    finally:
        stop_broker(broker)


def cmd_alerts(args) -> int:
    from edge.alerts.display import run_display
    settings = _settings(args)
    return run_display(settings.mqtt, args.filter or "+/+", count=args.count, timeout=args.timeout)


def cmd_check_config(args) -> int:
    from edge.config import describe, load_config
    settings = load_config(args.file)
    print("%s: OK" % args.file)
    print(describe(settings))
    return 0


def cmd_process(args) -> int:
    """Run the pipeline on files and print the alert JSON: no folders, no MQTT."""
    from edge.alerts.schema import build_alert
    from edge.app import build_pipeline
    from edge.hashing import sha256_file
    from edge.decode import decode_file
    settings = _settings(args)
    pipeline = build_pipeline(settings)
    rc = 0
    for path in args.files:
        try:
            image = decode_file(path, settings.decode)
        except PneumoEdgeError as exc:
            print(json.dumps({"file": path, "rejected": getattr(exc, "code", "error"), "reason": str(exc)}))
            rc = 3
            continue
        result = pipeline.run(image)
        sha, _ = sha256_file(path)
        alert = build_alert(result, image, file_name=os.path.basename(path), file_sha256=sha,
                            site=settings.site, device=settings.device,
                            identify_by=settings.alerts.identify_by)
        print(json.dumps(alert, indent=None if args.compact else 1))
    pipeline.close()
    return rc


def cmd_doctor(args) -> int:
    from edge.doctor import run_doctor
    return run_doctor(_settings(args), sys.stdout)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="pneumo-edge", description=__doc__)
    parser.add_argument("--version", action="version", version="pneumo-edge " + __version__)
    sub = parser.add_subparsers(dest="command")
    sub.required = True

    p = sub.add_parser("run", help="run the appliance: watch the capture folder, alert over MQTT")
    _add_config_flags(p)
    p.add_argument("--start-broker", action="store_true",
                   help="start a mosquitto on loopback if none is listening (demo/make run)")
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("alerts", help="subscribe and print alerts as they come (the simplest bedside display)")
    _add_config_flags(p)
    p.add_argument("--filter", default=None, help="site/device filter, e.g. ward-4/+ (default: all)")
    p.add_argument("--count", type=int, help="exit after this many alerts")
    p.add_argument("--timeout", type=float, help="exit after this many seconds")
    p.set_defaults(func=cmd_alerts)

    p = sub.add_parser("check-config", help="validate a YAML config and summarise it")
    p.add_argument("file")
    p.set_defaults(func=cmd_check_config)

    p = sub.add_parser("process", help="run the models on files and print alert JSON (no folders, no MQTT)")
    _add_config_flags(p)
    p.add_argument("files", nargs="+")
    p.add_argument("--compact", action="store_true")
    p.set_defaults(func=cmd_process)

    p = sub.add_parser("doctor", help="check GPU, TensorRT, engines, broker, folders, disk and parity")
    _add_config_flags(p)
    p.set_defaults(func=cmd_doctor)

    return parser


def main(argv: Optional[List[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    from edge.logsetup import setup_logging
    setup_logging(getattr(args, "log_level", None) or os.environ.get("PNEUMO_EDGE_LOG", "INFO"))
    try:
        return int(args.func(args) or 0)
    except PneumoEdgeError as exc:
        print("pneumo-edge: error: %s" % exc, file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
