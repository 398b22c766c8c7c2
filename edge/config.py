"""Load and validate the runtime's YAML configuration into `Settings`.

The dataclasses in edge/settings.py are the schema, each field's own limits
declared on it; edge/strict_yaml.py walks the YAML against them, so every
mistake is reported as "file:line [dotted.key]: what is wrong", and an
unknown key is an error, never silently ignored. Rules spanning several
keys, and the existence of the files named, are checked here.

Order of precedence: dataclass defaults < config file < overrides (CLI
flags). Relative paths resolve against the directory of the file that wrote
them; overrides resolve against the working directory; defaults resolve
model paths against the project root and data paths against the working
directory. Secrets never pass through here: the settings name a password
file or environment variable, and nothing reads the secret itself.
"""
import dataclasses
import os
import re
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Tuple

from edge.errors import ConfigError
from edge.inference.layout import parse as parse_films
from edge.inference.threads import parse as parse_threads
from edge.settings import Settings
from edge.strict_yaml import Walker, Where, compose_file, resolve_path, set_dotted

PROJECT_ROOT = Path(__file__).resolve().parents[1]

COMMAND_LINE = "command line"

# Dotted keys holding file-system paths (resolved to absolute paths on load).
MODEL_PATH_KEYS = ("models.classifier", "models.segmenter", "models.engine_dir")
DATA_PATH_KEYS = ("capture.dir", "state_dir")
OPTIONAL_PATH_KEYS = ("mqtt.password_file", "mqtt.tls.ca_file",
                      "mqtt.tls.cert_file", "mqtt.tls.key_file",
                      "display.token_file", "display.tls.cert_file", "display.tls.key_file")
PATH_KEYS = MODEL_PATH_KEYS + DATA_PATH_KEYS + OPTIONAL_PATH_KEYS

_TOPIC_LEVEL_FORBIDDEN = re.compile(r"[+#/\s\x00]")
_PROFILE_NAME = re.compile(r"^[A-Za-z0-9_.-]+$")


def _topic_level(value: str) -> Optional[str]:
    if not value:
        return "must not be empty (it is part of every MQTT topic)"
    if _TOPIC_LEVEL_FORBIDDEN.search(value):
        return "%r may not contain '+', '#', '/' or spaces (it is one MQTT topic level)" % value
    return None


def _topic_prefix(value: str) -> Optional[str]:
    if (not value or re.search(r"[+#\s\x00]", value) or value.startswith("/")
            or value.endswith("/") or "//" in value):
        return ("%r is not a usable topic prefix (no '+', '#', spaces, or empty levels)"
                % value)
    return None


def _profile_name(value: str) -> Optional[str]:
    if not _PROFILE_NAME.match(value):
        return "%r is not a profile name (config/devices/<name>.yaml)" % value
    return None


def _parsed_by(parse: Callable[[Any], Any]) -> Callable[[Any], Optional[str]]:
    """A format check that is the parser's own ValueError message."""
    def check(value: Any) -> Optional[str]:
        try:
            parse(value)
        except ValueError as exc:
            return str(exc)
        return None
    return check


def _ae_title(value: str) -> Optional[str]:
    if not value.strip() or len(value) > 16 or "\\" in value or not value.isprintable():
        return "%r is not a DICOM AE title (1-16 printable characters, no backslash)" % value
    return None


def _max_pdu(value: int) -> Optional[str]:
    if value != 0 and value < 4096:
        return "must be 0 (unlimited) or 4096 or more, got %d" % value
    return None


# The checks a settings field names with metadata={"format": ...}.
FORMATS = {"topic_level": _topic_level, "topic_prefix": _topic_prefix,
           "ae_title": _ae_title, "max_pdu": _max_pdu,
           "profile_name": _profile_name, "threads": _parsed_by(parse_threads),
           "films_in_flight": _parsed_by(parse_films)}


def load_config(path: Optional[str] = None,
                overrides: Optional[Dict[str, Any]] = None,
                check_files: bool = True) -> Settings:
    """Settings from the defaults, then the YAML file at `path`, then
    `overrides` (flat dotted keys -> values, e.g. {"mqtt.port": 1884}).

    An override whose value is None is skipped: it stands for a CLI flag
    that was not given. Raises ConfigError naming file, line and key.
    check_files=False skips only the existence of the files in
    required_files() (a config checked before deployment, off the cart).
    """
    settings = Settings()
    origins = {}  # type: Dict[str, Where]
    cwd = os.getcwd()
    for key in MODEL_PATH_KEYS:
        _set_path(settings, key, str(PROJECT_ROOT))
    for key in DATA_PATH_KEYS:
        _set_path(settings, key, cwd)

    if path is not None:
        root = compose_file(path)
        if root is not None:
            base = os.path.dirname(os.path.abspath(path))
            Walker(path, base, origins, Settings, PATH_KEYS, FORMATS).mapping(settings, root, "")
        settings.source_file = os.path.abspath(path)

    where = Where(COMMAND_LINE, None)
    for dotted, value in (overrides or {}).items():
        if value is not None:
            set_dotted(settings, dotted, value, where, cwd, PATH_KEYS, FORMATS)
            origins[dotted] = where

    _Validator(settings, origins, path, check_files).run()
    return settings


def required_files(settings: Settings) -> List[Tuple[str, str]]:
    """(dotted key, path) of the secret and certificate files the runtime
    will open, as configured; existence is checked by load_config."""
    keys = ["mqtt.password_file"]
    if settings.mqtt.tls.enabled:
        keys += ["mqtt.tls.ca_file", "mqtt.tls.cert_file", "mqtt.tls.key_file"]
    return [(key, _get(settings, key)) for key in keys if _get(settings, key)]


def _get(settings: Settings, dotted: str) -> Any:
    obj = settings  # type: Any
    for name in dotted.split("."):
        obj = getattr(obj, name)
    return obj


def _set_path(settings: Settings, dotted: str, base: str) -> None:
    *parents, name = dotted.split(".")
    obj = settings  # type: Any
    for p in parents:
        obj = getattr(obj, p)
    setattr(obj, name, resolve_path(getattr(obj, name), base))


# -- rules that span keys -------------------------------------------------------

class _Validator:
    """Rules that span several keys, checked on the merged settings so each
    sees every key wherever it came from (a field's own limits are on the
    field, checked as it is read), and the existence of the files needed."""

    def __init__(self, settings: Settings, origins: Dict[str, Where],
                 path: Optional[str], check_files: bool = True):
        self.s, self.origins, self.path = settings, origins, path
        self.check_files = check_files

    def fail(self, key: str, message: str) -> ConfigError:
        where = self.origins.get(key)
        if where is None:
            return ConfigError(message + " (default value)", self.path, None, key)
        return ConfigError(message, where.file, where.line, key)

    def blame(self, *keys: str) -> str:
        """The first of `keys` actually set somewhere (else the first)."""
        for key in keys:
            if key in self.origins:
                return key
        return keys[0]

    def run(self) -> None:
        s = self.s
        if s.decode.max_side < s.decode.min_side:
            raise self.fail(self.blame("decode.max_side", "decode.min_side"),
                            "decode.max_side (%d) is smaller than decode.min_side (%d)"
                            % (s.decode.max_side, s.decode.min_side))
        self.mqtt()
        self.display()
        self.intake_dicom()
        self.pacs()
        if self.check_files:
            self.files()

    def mqtt(self) -> None:
        m = self.s.mqtt
        if m.reconnect_max_s < m.reconnect_min_s:
            raise self.fail(self.blame("mqtt.reconnect_max_s", "mqtt.reconnect_min_s"),
                            "mqtt.reconnect_max_s (%g) is smaller than mqtt.reconnect_min_s (%g)"
                            % (m.reconnect_max_s, m.reconnect_min_s))
        if m.password_file and m.password_env:
            raise self.fail(self.blame("mqtt.password_env", "mqtt.password_file"),
                            "set mqtt.password_file or mqtt.password_env, not both")
        if (m.password_file or m.password_env) and not m.username:
            raise self.fail(self.blame("mqtt.password_file", "mqtt.password_env"),
                            "a password needs mqtt.username as well")
        tls = m.tls
        if tls.enabled and not tls.ca_file:
            raise self.fail("mqtt.tls.enabled",
                            "TLS is on but mqtt.tls.ca_file is not set (the CA that "
                            "signed the broker's certificate)")
        if bool(tls.cert_file) != bool(tls.key_file):
            missing = "mqtt.tls.key_file" if tls.cert_file else "mqtt.tls.cert_file"
            raise self.fail(self.blame("mqtt.tls.cert_file", "mqtt.tls.key_file"),
                            "a client certificate needs both mqtt.tls.cert_file and "
                            "mqtt.tls.key_file; %s is not set" % missing)

    def display(self) -> None:
        d = self.s.display
        if not d.sites or any(not x or (_TOPIC_LEVEL_FORBIDDEN.search(x) and x != "+") for x in d.sites):
            raise self.fail("display.sites", "list site names or '+' (all sites), got %r" % d.sites)
        if bool(d.tls.cert_file) != bool(d.tls.key_file):
            raise self.fail(self.blame("display.tls.key_file", "display.tls.cert_file"),
                            "set both display.tls.cert_file and display.tls.key_file, or neither")

    def intake_dicom(self) -> None:
        from edge.intake.names import SOP_CLASSES, TRANSFER_SYNTAXES
        d = self.s.intake.dicom
        for i, ae in enumerate(d.allowed_calling_aes):
            problem = _ae_title(ae)
            if problem:
                raise self.fail("intake.dicom.allowed_calling_aes", "item %d: %s" % (i, problem))
        for key, table in (("sop_classes", SOP_CLASSES), ("transfer_syntaxes", TRANSFER_SYNTAXES)):
            values = getattr(d, key)
            if not values:
                raise self.fail("intake.dicom." + key, "must list at least one of: %s" % ", ".join(table))
            for value in values:
                if value not in table:
                    raise self.fail("intake.dicom." + key, "%r is not known; use any of: %s"
                                    % (value, ", ".join(table)))

    def pacs(self) -> None:
        p = self.s.pacs
        if p.retry_max_s < p.retry_min_s:
            raise self.fail(self.blame("pacs.retry_max_s", "pacs.retry_min_s"),
                            "pacs.retry_max_s (%g) is smaller than pacs.retry_min_s (%g)"
                            % (p.retry_max_s, p.retry_min_s))
        if not p.enabled:
            return
        if not p.host.strip():
            raise self.fail("pacs.host", "PACS results are on (pacs.enabled) but pacs.host is not set")
        problem = _ae_title(p.called_ae)
        if problem:
            raise self.fail("pacs.called_ae", problem)
        if not (p.send_overlay or p.send_report):
            raise self.fail(self.blame("pacs.send_overlay", "pacs.send_report"),
                            "PACS results are on but neither the overlay nor the report is sent")

    def files(self) -> None:
        """Files the runtime will need must exist now, so check-config says so.
        Only existence and readability are checked: no secret is read."""
        problems = []  # type: List[Tuple[int, str, str]]
        for key, path in required_files(self.s):
            if not os.path.exists(path):
                problem = "file %s does not exist" % path
            elif not os.path.isfile(path):
                problem = "%s is not a regular file" % path
            elif not os.access(path, os.R_OK):
                problem = "file %s is not readable by this user" % path
            else:
                continue
            where = self.origins.get(key)
            problems.append(((where.line or 0) if where else 0, key, problem))
        if problems:
            problems.sort()
            _, key, problem = problems[0]
            others = ["%s (%s)" % (k, p) for _, k, p in problems[1:]]
            if others:
                problem += "; also: " + "; ".join(others)
            raise self.fail(key, problem)


# -- presenting -----------------------------------------------------------------

def describe(settings: Settings) -> str:
    """Human summary for `pneumo-edge check-config`; never shows a secret."""
    s, m = settings, settings.mqtt
    c = s.capture
    lines = [
        "config file: %s" % (s.source_file or "(none: built-in defaults)"),
        "site/device: %s / %s" % (s.site, s.device),
        "capture:     %s (watch: %s, poll every %gs, settle %gs, on success: %s)"
        % (c.dir, c.watch, c.poll_interval_s, c.settle_s, c.on_success),
        "state:       %s" % s.state_dir,
        "models:      backend %s, threads %s, films in flight %s, warm-up %d"
        % (s.models.backend, "all cores" if s.models.threads == 0 else s.models.threads,
           s.models.films_in_flight, s.models.warmup),
        "  classifier: %s" % s.models.classifier,
        "  segmenter:  %s" % s.models.segmenter,
    ]
    if s.models.backend != "onnxruntime":
        lines.append("  engines:    %s (device profile %s)"
                     % (s.models.engine_dir, s.models.device_profile))
    overrides = ["%s=%g" % (f.name, getattr(s.decision, f.name))
                 for f in dataclasses.fields(s.decision)
                 if isinstance(getattr(s.decision, f.name), float)]
    lines.append("decision:    thresholds %s, segmenter gated: %s"
                 % ("overridden: " + ", ".join(overrides) if overrides else "from the manifests",
                    "yes" if s.decision.gate_segmenter else "no"))
    lines.append("broker:      %s:%d, topics %s/%s/%s/..." % (m.host, m.port, m.topic_prefix,
                                                            s.site, s.device))
    if m.tls.enabled:
        tls = "on (CA %s" % m.tls.ca_file
        if m.tls.cert_file:
            tls += ", client certificate %s" % m.tls.cert_file
        if m.tls.insecure:
            tls += ", HOSTNAME NOT CHECKED"
        lines.append("TLS:         " + tls + ")")
    else:
        lines.append("TLS:         off")
    if m.username:
        if m.password_file:
            password = "from file %s" % m.password_file
        elif m.password_env:
            password = "from env %s (%s here)" % (
                m.password_env, "set" if m.password_env in os.environ else "not set")
        else:
            password = "none"
        lines.append("auth:        on (user %s, password: %s)" % (m.username, password))
    else:
        lines.append("auth:        off")
    lines.append("identify by: %s" % (", ".join(s.alerts.identify_by) or "nothing (default)"))
    d = s.intake.dicom
    lines.append("DICOM in:    %s" % ("AE %s on %s:%d, calling AEs: %s" % (
        d.ae_title, d.bind_address, d.port, ", ".join(d.allowed_calling_aes) or "ANY")
        if d.listen else "off"))
    p = s.pacs
    lines.append("to PACS:     %s" % ("%s@%s:%d (%s)" % (p.called_ae, p.host, p.port, ", ".join(
        w for w, on in (("overlay SC", p.send_overlay), ("SR report", p.send_report)) if on))
        if p.enabled else "off"))
    lines.append("log level:   %s" % s.log_level)
    return "\n".join(lines)

