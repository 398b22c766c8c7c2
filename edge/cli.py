"""`pneumo-edge` command line: run | alerts | check-config | process | doctor."""
import argparse
import json
import logging
import os
import shlex
import sys
from typing import List, Optional, Sequence

from edge import __version__
from edge.errors import (AlertError, CaptureError, ConfigError, ModelError, PneumoEdgeError,
                         StoreError)
from edge.settings import BACKENDS, LOG_LEVELS

log = logging.getLogger("pneumo-edge")

# Exit codes, shown in every command's --help; main() maps errors onto them.
EXIT_OK, EXIT_PROBLEM, EXIT_USAGE, EXIT_REJECTED, EXIT_MODEL, EXIT_MQTT, EXIT_STATE = 0, 1, 2, 3, 4, 5, 6
EXIT_INTERRUPTED = 130
EXIT_CODES_HELP = """exit codes:
  0    done (doctor: ready)
  1    doctor found a problem; run stopped on a fault; an unexpected internal error
  2    usage or configuration error (bad flag, invalid config; alerts: the broker refused the credentials)
  3    process: a file was rejected or could not be read
  4    a model or the inference backend cannot be used
  5    MQTT settings cannot be used (password, TLS files, topics filter)
  6    the capture folder or the state store cannot be used (missing, unwritable, corrupt)
  130  interrupted (Ctrl-C)"""

# Flag -> dotted config key, for the settings an operator changes most.
OVERRIDE_FLAGS = (
    ("capture_dir", "capture.dir"), ("state_dir", "state_dir"), ("mqtt_host", "mqtt.host"),
    ("mqtt_port", "mqtt.port"), ("site", "site"), ("device", "device"), ("backend", "models.backend"),
    ("log_level", "log_level"),
)
# Which override flags a command offers: only those whose settings it uses.
FOLDERS, MQTT, IDENTITY, MODELS = "folders", "mqtt", "identity", "models"
ALL_FLAGS = (FOLDERS, MQTT, IDENTITY, MODELS)


def _add_config_flags(p: argparse.ArgumentParser, groups: Sequence[str] = ALL_FLAGS) -> None:
    p.add_argument("--config", help="YAML config (default: the embedded defaults)")
    if FOLDERS in groups:
        p.add_argument("--capture-dir", help="capture folder (holds incoming/, processing/, done/, rejected/)")
        p.add_argument("--state-dir", help="where the SQLite ledger and outbox live")
    if MQTT in groups:
        p.add_argument("--mqtt-host", help="broker host (overrides mqtt.host)")
        p.add_argument("--mqtt-port", type=int, help="broker port (overrides mqtt.port)")
    if IDENTITY in groups:
        p.add_argument("--site", help="site name, one MQTT topic level (overrides site)")
        p.add_argument("--device", help="this cart's name, one MQTT topic level (overrides device)")
    if MODELS in groups:
        p.add_argument("--backend", choices=BACKENDS,
                       help="inference backend (overrides models.backend)")
    p.add_argument("--log-level", choices=LOG_LEVELS,
                   help="log level (overrides log_level; default INFO or $PNEUMO_EDGE_LOG)")


def _settings(args):
    from edge.config import load_config
    overrides = {key: getattr(args, attr) for attr, key in OVERRIDE_FLAGS
                 if getattr(args, attr, None) is not None}
    settings = load_config(args.config, overrides)
    if getattr(args, "log_level", None) is None:
        from edge.logsetup import setup_logging
        setup_logging(settings.log_level)
    return settings


def watch_command(settings, args) -> str:
    """The `alerts` command a user can paste to watch this appliance: with the
    same config file (TLS, credentials, prefix) and the same broker flags."""
    prog = sys.argv[0] if os.path.basename(sys.argv[0]) == "pneumo-edge" else "pneumo-edge"
    if os.path.isabs(prog) and os.path.abspath(prog).startswith(os.getcwd() + os.sep):
        prog = os.path.relpath(prog)
    parts = [prog, "alerts"]
    if getattr(args, "config", None):
        parts += ["--config", os.path.abspath(args.config)]
        for flag, attr in (("--mqtt-host", "mqtt_host"), ("--mqtt-port", "mqtt_port")):
            if getattr(args, attr, None) is not None:
                parts += [flag, str(getattr(args, attr))]
    else:
        parts += ["--mqtt-host", settings.mqtt.host, "--mqtt-port", str(settings.mqtt.port)]
    return " ".join(shlex.quote(p) for p in parts)


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
    display = None
    try:
        if getattr(args, "with_display", False):
            display = _start_display(settings, args)
        app = Appliance(settings)
        incoming = app.folders.incoming
        print("pneumo-edge %s ready.\n  Drop a chest radiograph (DICOM, PNG or JPEG) into:\n    %s\n"
              "  Watch alerts in another terminal:\n    %s\n"
              "  Stop with Ctrl-C." % (__version__, os.path.abspath(incoming), watch_command(settings, args)),
              flush=True)
        return app.run_forever(stop)
    finally:
        if display is not None:
            display.stop()
        stop_broker(broker)     # after the appliance has said offline through it


def cmd_alerts(args) -> int:
    from edge.alerts.display import run_display
    settings = _settings(args)
    return run_display(settings.mqtt, args.filter or "+/+", count=args.count, timeout=args.timeout)


# -- the bedside web display (edge/web) -----------------------------------------
def _apply_display_flags(settings, args):
    for attr, key in (("display_host", "host"), ("display_port", "port"), ("display_id", "display_id")):
        if getattr(args, attr, None) is not None:
            setattr(settings.display, key, getattr(args, attr))
    if getattr(args, "no_predict", False):
        settings.display.predict = False
    return settings


def _start_display(settings, args):
    from edge.web.run import Display
    display = Display(_apply_display_flags(settings, args))
    display.start()
    print("pneumo-edge display: open %s" % display.url, flush=True)
    return display


def cmd_display(args) -> int:
    from edge.signals import stop_on_signals
    stop, _restore = stop_on_signals()
    from edge.web.run import run_display
    return run_display(_apply_display_flags(_settings(args), args), stop)


def _add_display_parser(sub) -> None:
    p = _command(sub, "display", "the bedside web page: live alerts, acknowledge, upload-and-predict",
                 cmd_display, (MQTT, MODELS))
    p.add_argument("--display-host", help="address to serve on (display.host; default 127.0.0.1)")
    p.add_argument("--display-port", type=int, help="port to serve on (display.port; default 8080)")
    p.add_argument("--display-id", help="this display's name in acknowledgements (display.display_id)")
    p.add_argument("--no-predict", action="store_true", help="do not serve upload-and-predict (no models loaded)")


def cmd_check_config(args) -> int:
    from edge.config import describe, load_config, required_files
    settings = load_config(args.file, check_files=not args.offline)
    skipped = required_files(settings) if args.offline else []
    print("%s: OK%s" % (args.file, " (offline: %d file(s) not checked)" % len(skipped) if args.offline else ""))
    print(describe(settings))
    if skipped:
        print("not checked (offline; on the cart, run check-config without --offline):")
        for key, path in skipped:
            print("  %-18s %s" % (key, path))
    return EXIT_OK


def cmd_process(args) -> int:
    """Run the pipeline on files and print the alert JSON: no folders, no MQTT."""
    from edge.alerts.schema import build_alert
    from edge.app import build_pipeline
    from edge.capture.names import safe_label
    from edge.hashing import sha256_file
    from edge.decode.header_words import HEAD_BYTES, sight_of
    from edge.decode import decode_file
    from edge.errors import DecodeError
    settings = _settings(args)
    unreadable = [(path, _unreadable(path)) for path in args.files]
    for path, why in unreadable:
        if why:
            print("pneumo-edge: error: %s: %s" % (path, why), file=sys.stderr)
    rc = EXIT_REJECTED if any(why for _, why in unreadable) else EXIT_OK
    todo = [path for path, why in unreadable if not why]
    if not todo:
        return rc
    pipeline = build_pipeline(settings)
    try:
        for path in todo:
            # As the appliance labels a file (names.safe_label): the film's own
            # patient name and birth date masked in its path, as given.
            label = path
            try:
                sha, _ = sha256_file(path)
                with open(path, "rb") as fh:
                    sight = sight_of(fh.read(HEAD_BYTES), int(settings.decode.max_file_mb * 1048576))
                label = safe_label(path, sight, "file-" + sha[:12])
                image = decode_file(path, settings.decode)
                result = pipeline.run(image)    # the not-a-chest gate refuses here, as a DecodeError
            except DecodeError as exc:
                print(json.dumps({"file": label, "rejected": getattr(exc, "code", "error"), "reason": str(exc)}))
                rc = EXIT_REJECTED
                continue
            except OSError as exc:         # vanished or changed since the check above
                print("pneumo-edge: error: %s: %s" % (label, exc.strerror or exc), file=sys.stderr)
                rc = EXIT_REJECTED
                continue
            alert = build_alert(result, image, file_name=label, file_sha256=sha,   # its last part
                                site=settings.site, device=settings.device,
                                identify_by=settings.alerts.identify_by)
            print(json.dumps(alert.to_json(), indent=None if args.compact else 1))
    finally:
        pipeline.close()
    return rc


def _unreadable(path: str) -> str:
    """Why `process` cannot read this path ('' when it can)."""
    if not os.path.exists(path):
        return "no such file"
    if os.path.isdir(path):
        return "is a directory (give the files in it, e.g. %s/*)" % path.rstrip("/")
    if not os.path.isfile(path):
        return "not a regular file"
    if not os.access(path, os.R_OK):
        return "not readable by this user"
    return ""


def cmd_doctor(args) -> int:
    from edge.doctor import run_doctor
    return run_doctor(_settings(args), sys.stdout)


def _command(sub, name: str, help: str, func, flags: Optional[Sequence[str]] = ALL_FLAGS
             ) -> argparse.ArgumentParser:
    """One subcommand: its help, the exit codes, and the override flags it uses (None: no config flags)."""
    p = sub.add_parser(name, help=help, description=help, epilog=EXIT_CODES_HELP,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    if flags is not None:
        _add_config_flags(p, flags)
    p.set_defaults(func=func)
    return p


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="pneumo-edge", description=__doc__, epilog=EXIT_CODES_HELP,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version="pneumo-edge " + __version__)
    sub = parser.add_subparsers(dest="command")
    sub.required = True

    p = _command(sub, "run", "run the appliance: watch the capture folder, alert over MQTT", cmd_run)
    p.add_argument("--start-broker", action="store_true",
                   help="start a mosquitto on loopback if none is listening (demo/make run)")
    p.add_argument("--with-display", action="store_true",
                   help="also serve the bedside web page (see `display`) in this process")
    p.add_argument("--display-port", type=int, help="with --with-display: its port (display.port)")

    p = _command(sub, "alerts", "subscribe and print alerts as they come (the simplest bedside display)",
                 cmd_alerts, (MQTT,))
    p.add_argument("--filter", default=None, help="site/device filter, e.g. ward-4/+ (default: all)")
    p.add_argument("--count", type=int, help="exit after this many alerts")
    p.add_argument("--timeout", type=float, help="exit after this many seconds")

    p = _command(sub, "check-config", "validate a YAML config and summarise it", cmd_check_config, None)
    p.add_argument("file", help="the YAML config to check (e.g. config/production.yaml)")
    p.add_argument("--offline", action="store_true",
                   help="check everything but the existence of the password and TLS files (before "
                        "deployment, off the cart); lists the files it did not check")

    p = _command(sub, "process", "run the models on files and print alert JSON (no folders, no MQTT)",
                 cmd_process, (IDENTITY, MODELS))
    p.add_argument("files", nargs="+", help="DICOM, PNG or JPEG files")
    p.add_argument("--compact", action="store_true", help="one line of JSON per file (default: indented)")

    _command(sub, "doctor", "check GPU, TensorRT, engines, broker, folders, disk and parity", cmd_doctor)
    _add_display_parser(sub)

    return parser


def main(argv: Optional[List[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    from edge.logsetup import setup_logging
    setup_logging(getattr(args, "log_level", None) or os.environ.get("PNEUMO_EDGE_LOG", "INFO"))
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    except PneumoEdgeError as exc:
        print("pneumo-edge: error: %s" % exc, file=sys.stderr)
        return exit_code(exc)
    except OSError as exc:
        log.debug("%s failed", args.command, exc_info=True)
        print("pneumo-edge: error: %s" % _os_error(exc), file=sys.stderr)
        return EXIT_STATE
    except Exception as exc:  # one line for the user; the traceback with --log-level DEBUG
        log.debug("%s failed", args.command, exc_info=True)
        print("pneumo-edge: internal error: %s: %s (run with --log-level DEBUG for the traceback)"
              % (type(exc).__name__, exc), file=sys.stderr)
        return EXIT_PROBLEM


def exit_code(exc: PneumoEdgeError) -> int:
    for cls, code in ((ConfigError, EXIT_USAGE), (ModelError, EXIT_MODEL), (AlertError, EXIT_MQTT),
                      (StoreError, EXIT_STATE), (CaptureError, EXIT_STATE)):
        if isinstance(exc, cls):
            return code
    return EXIT_PROBLEM


def _os_error(exc: OSError) -> str:
    what = exc.strerror or str(exc)
    return "%s: %s" % (exc.filename, what) if exc.filename else what


if __name__ == "__main__":
    sys.exit(main())
