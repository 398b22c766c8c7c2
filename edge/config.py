"""Load and validate the runtime's YAML configuration into `Settings`.

The dataclasses in edge/settings.py are the schema: this module walks the
YAML node tree (yaml.compose keeps a line number on every node) against
them, so every mistake is reported as "file:line [dotted.key]: what is
wrong", and an unknown key is an error, never silently ignored.

Order of precedence: dataclass defaults < config file < overrides (CLI
flags). Relative paths resolve against the directory of the file that wrote
them; overrides resolve against the working directory; defaults resolve
model paths against the project root and data paths against the working
directory. Secrets never pass through here: the settings name a password
file or environment variable, and nothing reads the secret itself.
"""
import dataclasses
import difflib
import math
import os
import re
from pathlib import Path
from typing import (Any, Dict, List, NamedTuple, Optional, Tuple, Union, get_args,
                    get_origin, get_type_hints)

import yaml
from yaml.constructor import SafeConstructor

from edge.errors import ConfigError
from edge.settings import Settings

PROJECT_ROOT = Path(__file__).resolve().parents[1]

COMMAND_LINE = "command line"

# Dotted keys holding file-system paths (resolved to absolute paths on load).
MODEL_PATH_KEYS = ("models.classifier", "models.segmenter", "models.engine_dir")
DATA_PATH_KEYS = ("capture.dir", "state_dir")
OPTIONAL_PATH_KEYS = ("mqtt.password_file", "mqtt.tls.ca_file",
                      "mqtt.tls.cert_file", "mqtt.tls.key_file")
PATH_KEYS = MODEL_PATH_KEYS + DATA_PATH_KEYS + OPTIONAL_PATH_KEYS

WATCH_MODES = ("auto", "inotify", "poll")
DECISION_RULES = ("mask", "mask_or_classifier")
ON_SUCCESS = ("move", "delete")
BACKENDS = ("onnxruntime", "tensorrt", "auto")
LOG_LEVELS = ("CRITICAL", "ERROR", "WARNING", "INFO", "DEBUG")

# Keys whose values identify a credential; masked by settings_to_dict().
REDACTED_KEYS = ("mqtt.username",)
REDACTED = "***"

_TOPIC_LEVEL_FORBIDDEN = re.compile(r"[+#/\s\x00]")
_PROFILE_NAME = re.compile(r"^[A-Za-z0-9_.-]+$")


class _Where(NamedTuple):
    file: Optional[str]
    line: Optional[int]


def load_config(path: Optional[str] = None,
                overrides: Optional[Dict[str, Any]] = None) -> Settings:
    """Settings from the defaults, then the YAML file at `path`, then
    `overrides` (flat dotted keys -> values, e.g. {"mqtt.port": 1884}).

    An override whose value is None is skipped: it stands for a CLI flag
    that was not given. Raises ConfigError naming file, line and key.
    """
    settings = Settings()
    origins = {}  # type: Dict[str, _Where]
    cwd = os.getcwd()
    for key in MODEL_PATH_KEYS:
        _set_path(settings, key, str(PROJECT_ROOT))
    for key in DATA_PATH_KEYS:
        _set_path(settings, key, cwd)

    if path is not None:
        root = _compose_file(path)
        if root is not None:
            base = os.path.dirname(os.path.abspath(path))
            _Walker(path, base, origins).mapping(settings, root, "")
        settings.source_file = os.path.abspath(path)

    for dotted, value in (overrides or {}).items():
        if value is not None:
            _apply_override(settings, dotted, value, cwd, origins)

    _Validator(settings, origins, path).run()
    return settings


# -- reading YAML -----------------------------------------------------------

def _compose_file(path: str) -> Optional[yaml.Node]:
    try:
        with open(path, "r", encoding="utf-8-sig") as f:
            text = f.read()
    except FileNotFoundError:
        raise ConfigError("config file not found", path) from None
    except IsADirectoryError:
        raise ConfigError("is a directory, not a config file", path) from None
    except UnicodeDecodeError as exc:
        raise ConfigError("not UTF-8 text (%s)" % exc.reason, path) from None
    except OSError as exc:
        raise ConfigError("cannot read: %s" % exc.strerror, path) from None
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark is not None else None
        problem = " ".join(p for p in (exc.context, exc.problem) if p)
        raise ConfigError("not valid YAML: %s" % (problem or exc), path, line) from None
    except yaml.YAMLError as exc:
        raise ConfigError("not valid YAML: %s" % exc, path) from None
    if root is None:
        return None  # an empty file (or only comments) means the defaults
    if isinstance(root, yaml.ScalarNode) and root.tag.endswith(":null"):
        return None
    if not isinstance(root, yaml.MappingNode):
        raise ConfigError("the file must be a mapping of settings (key: value), got %s"
                          % _node_kind(root), path, _line(root))
    return root


def _line(node: yaml.Node) -> int:
    return node.start_mark.line + 1


def _node_kind(node: yaml.Node) -> str:
    if isinstance(node, yaml.MappingNode):
        return "a mapping"
    if isinstance(node, yaml.SequenceNode):
        return "a list"
    return "a scalar"


class _Walker:
    """Walks a YAML node tree against the settings dataclasses."""

    def __init__(self, file: str, base: str, origins: Dict[str, _Where]):
        self.file, self.base, self.origins = file, base, origins
        self.constructor = SafeConstructor()

    def fail(self, message: str, node: yaml.Node, key: str) -> ConfigError:
        return ConfigError(message, self.file, _line(node), key or None)

    def mapping(self, obj: Any, node: yaml.MappingNode, prefix: str) -> None:
        hints = _hints(type(obj))
        seen = {}  # type: Dict[str, int]
        for key_node, value_node in node.value:
            if not isinstance(key_node, yaml.ScalarNode):
                raise self.fail("keys must be plain names, got %s" % _node_kind(key_node),
                                key_node, prefix.rstrip("."))
            name = key_node.value
            dotted = prefix + name
            if name in seen:
                raise self.fail("duplicate key '%s' (first set on line %d)"
                                % (name, seen[name]), key_node, dotted)
            seen[name] = _line(key_node)
            if name not in hints:
                raise self.fail(_unknown_key_message(type(obj), name, prefix),
                                key_node, dotted)
            self.origins[dotted] = _Where(self.file, _line(key_node))
            hint = hints[name]
            if _is_section(hint):
                if isinstance(value_node, yaml.ScalarNode) and value_node.tag.endswith(":null"):
                    continue  # "mqtt:" with everything under it commented out
                if not isinstance(value_node, yaml.MappingNode):
                    raise self.fail("expected a mapping (a section of settings), got %s"
                                    % self._describe_node(value_node), value_node, dotted)
                self.mapping(getattr(obj, name), value_node, dotted + ".")
                continue
            value = self.value(hint, value_node, dotted)
            if dotted in PATH_KEYS:
                value = _resolve(value, self.base)
            setattr(obj, name, value)

    def value(self, hint: Any, node: yaml.Node, dotted: str) -> Any:
        where = _Where(self.file, _line(node))
        if isinstance(node, yaml.MappingNode):
            raise self.fail("expected %s, got a mapping" % _type_name(hint), node, dotted)
        if isinstance(node, yaml.SequenceNode):
            inner = _list_item_type(hint)
            if inner is None:
                raise self.fail("expected %s, got a list" % _type_name(hint), node, dotted)
            items = []
            for i, item in enumerate(node.value):
                item_key = "%s[%d]" % (dotted, i)
                if not isinstance(item, yaml.ScalarNode):
                    raise self.fail("expected %s, got %s" % (_type_name(inner), _node_kind(item)),
                                    item, item_key)
                items.append(_check(inner, self.scalar(item, item_key), item.value,
                                    _Where(self.file, _line(item)), item_key))
            return items
        return _check(hint, self.scalar(node, dotted), node.value, where, dotted)

    def scalar(self, node: yaml.ScalarNode, dotted: str) -> Any:
        try:
            return self.constructor.construct_object(node, deep=True)
        except yaml.YAMLError as exc:
            raise self.fail("cannot read this value: %s" % getattr(exc, "problem", exc),
                            node, dotted) from None

    def _describe_node(self, node: yaml.Node) -> str:
        if isinstance(node, yaml.ScalarNode):
            return _describe_value(self.scalar(node, ""), node.value)
        return _node_kind(node)


# -- overrides ----------------------------------------------------------------

def _apply_override(settings: Settings, dotted: str, value: Any, cwd: str,
                    origins: Dict[str, _Where]) -> None:
    where = _Where(COMMAND_LINE, None)
    obj = settings  # type: Any
    parts = dotted.split(".")
    for i, name in enumerate(parts):
        prefix = ".".join(parts[:i]) + ("." if i else "")
        hints = _hints(type(obj))
        if name not in hints:
            raise ConfigError(_unknown_key_message(type(obj), name, prefix),
                              COMMAND_LINE, None, dotted)
        hint = hints[name]
        if i < len(parts) - 1:
            if not _is_section(hint):
                raise ConfigError("'%s' is a single setting, not a section" % (prefix + name),
                                  COMMAND_LINE, None, dotted)
            obj = getattr(obj, name)
            continue
        if _is_section(hint):
            raise ConfigError("'%s' is a section; set one of its keys, e.g. %s.%s"
                              % (dotted, dotted, _field_names(hint)[0]),
                              COMMAND_LINE, None, dotted)
        inner = _list_item_type(hint)
        if inner is not None and isinstance(value, (list, tuple)):
            value = [_check(inner, v, None, where, "%s[%d]" % (dotted, j))
                     for j, v in enumerate(value)]
        else:
            value = _check(hint, value, None, where, dotted)
        if dotted in PATH_KEYS:
            value = _resolve(value, cwd)
        setattr(obj, name, value)
        origins[dotted] = where


# -- types --------------------------------------------------------------------

def _hints(cls: type) -> Dict[str, Any]:
    """Field name -> type for a settings dataclass, without internal fields."""
    hints = get_type_hints(cls)
    return {f.name: hints[f.name] for f in dataclasses.fields(cls)
            if not f.metadata.get("internal")}


def _field_names(cls: type) -> List[str]:
    return list(_hints(cls))


def _is_section(hint: Any) -> bool:
    return isinstance(hint, type) and dataclasses.is_dataclass(hint)


def _optional_inner(hint: Any) -> Tuple[bool, Any]:
    """(True, X) for Optional[X], else (False, hint)."""
    if get_origin(hint) is Union:
        args = [a for a in get_args(hint) if a is not type(None)]
        if len(args) == 1 and len(get_args(hint)) == 2:
            return True, args[0]
    return False, hint


def _list_item_type(hint: Any) -> Optional[Any]:
    _, hint = _optional_inner(hint)
    if get_origin(hint) in (list, List):
        args = get_args(hint)
        return args[0] if args else Any
    return None


_TYPE_NAMES = {bool: "true or false", int: "an integer", float: "a number",
               str: "a string"}


def _type_name(hint: Any) -> str:
    optional, inner = _optional_inner(hint)
    item = _list_item_type(inner)
    if item is not None:
        name = "a list of " + {str: "strings", int: "integers", float: "numbers"}.get(
            item, str(item))
    elif _is_section(inner):
        name = "a mapping (a section of settings)"
    else:
        name = _TYPE_NAMES.get(inner, str(inner))
    return name + " or null" if optional else name


def _describe_value(value: Any, raw: Optional[str]) -> str:
    if value is None:
        kind = "null"
    elif isinstance(value, bool):
        kind = "a boolean"
    elif isinstance(value, int):
        kind = "an integer"
    elif isinstance(value, float):
        kind = "a number"
    elif isinstance(value, str):
        kind = "a string"
    elif isinstance(value, (list, tuple)):
        kind = "a list"
    elif isinstance(value, dict):
        kind = "a mapping"
    else:
        kind = "a " + type(value).__name__
    if value is None or kind in ("a list", "a mapping"):
        return kind
    # Show what was written (yes, 0o17, ...) rather than what YAML made of it.
    shown = repr(value) if isinstance(value, str) or raw is None else raw
    if len(shown) > 60:
        shown = shown[:57] + "..."
    return "%s %s" % (kind, shown)


def _check(hint: Any, value: Any, raw: Optional[str], where: _Where, dotted: str) -> Any:
    """The value if it fits the type (ints widen to floats), else ConfigError."""
    optional, inner = _optional_inner(hint)
    if value is None:
        if optional:
            return None
        raise ConfigError("expected %s, got null" % _type_name(hint), where.file, where.line,
                          dotted)
    ok = False
    hint_text = ""
    if inner is bool:
        ok = isinstance(value, bool)
    elif inner is int:
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif inner is float:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        if ok:
            value = float(value)
            if not math.isfinite(value):
                raise ConfigError("expected a finite number, got %s" % (raw or value),
                                  where.file, where.line, dotted)
        elif isinstance(value, str) and re.match(r"^[-+]?\d+(\.\d*)?[eE][-+]?\d+$", value):
            hint_text = " (YAML needs a decimal point in exponent form: write 1.0e3)"
    elif inner is str:
        ok = isinstance(value, str)
        if not ok and not isinstance(value, (list, dict)):
            hint_text = " (put it in quotes to make it a string)"
    elif inner is Any:
        ok = True
    if isinstance(value, bool) and inner in (int, float):
        hint_text = " (YAML reads yes/no/on/off/true/false as booleans)"
    if not ok:
        raise ConfigError("expected %s, got %s%s"
                          % (_type_name(hint), _describe_value(value, raw), hint_text),
                          where.file, where.line, dotted)
    return value


def _unknown_key_message(cls: type, name: str, prefix: str) -> str:
    allowed = _field_names(cls)
    section = "section '%s'" % prefix.rstrip(".") if prefix else "the top level"
    message = "unknown key '%s' at %s" % (name, section)
    close = difflib.get_close_matches(name, allowed, n=3, cutoff=0.6)
    if close:
        message += "; did you mean %s?" % " or ".join("'%s'" % c for c in close)
    else:
        elsewhere = [k for k in _all_keys(Settings) if k.rsplit(".", 1)[-1] == name]
        if elsewhere:
            message += "; it belongs at %s" % " or ".join("'%s'" % k for k in elsewhere)
    return message + ("" if message.endswith("?") else ".") + " Allowed keys: " + ", ".join(allowed)


def _all_keys(cls: type, prefix: str = "") -> List[str]:
    keys = []
    for name, hint in _hints(cls).items():
        keys.append(prefix + name)
        if _is_section(hint):
            keys.extend(_all_keys(hint, prefix + name + "."))
    return keys


# -- paths --------------------------------------------------------------------

def _resolve(value: str, base: str) -> str:
    if not value:
        return value  # "" means "not set"; the validator decides if that is allowed
    return os.path.normpath(os.path.join(base, value))


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
    setattr(obj, name, _resolve(getattr(obj, name), base))


# -- value rules --------------------------------------------------------------

class _Validator:
    """Rules the types cannot express, checked on the merged settings so a
    rule spanning two keys sees both, wherever each came from."""

    def __init__(self, settings: Settings, origins: Dict[str, _Where],
                 path: Optional[str]):
        self.s, self.origins, self.path = settings, origins, path

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

    def one_of(self, key: str, allowed: Tuple[str, ...]) -> None:
        value = _get(self.s, key)
        if value not in allowed:
            raise self.fail(key, "%r is not allowed; use one of: %s"
                            % (value, ", ".join(allowed)))

    def positive(self, *keys: str) -> None:
        for key in keys:
            if not _get(self.s, key) > 0:
                raise self.fail(key, "must be greater than 0, got %r" % _get(self.s, key))

    def at_least(self, key: str, low: int) -> None:
        if not _get(self.s, key) >= low:
            raise self.fail(key, "must be %d or more, got %r" % (low, _get(self.s, key)))

    def non_empty(self, *keys: str) -> None:
        for key in keys:
            if not _get(self.s, key).strip():
                raise self.fail(key, "must not be empty")

    def run(self) -> None:
        s = self.s
        for key in ("site", "device"):
            value = _get(s, key)
            if not value:
                raise self.fail(key, "must not be empty (it is part of every MQTT topic)")
            if _TOPIC_LEVEL_FORBIDDEN.search(value):
                raise self.fail(key, "%r may not contain '+', '#', '/' or spaces "
                                "(it is one MQTT topic level)" % value)
        level = s.log_level.upper()
        if level not in LOG_LEVELS:
            raise self.fail("log_level", "%r is not a logging level; use one of: %s"
                            % (s.log_level, ", ".join(LOG_LEVELS)))
        s.log_level = level
        self.non_empty("state_dir", "capture.dir", *MODEL_PATH_KEYS)

        self.one_of("capture.watch", WATCH_MODES)
        self.one_of("capture.on_success", ON_SUCCESS)
        self.positive("capture.poll_interval_s", "capture.settle_s")

        self.positive("decode.min_side", "decode.max_side", "decode.max_pixels",
                      "decode.max_file_mb")
        if s.decode.max_side < s.decode.min_side:
            raise self.fail(self.blame("decode.max_side", "decode.min_side"),
                            "decode.max_side (%d) is smaller than decode.min_side (%d)"
                            % (s.decode.max_side, s.decode.min_side))

        self.one_of("models.backend", BACKENDS)
        self.one_of("decision.rule", DECISION_RULES)
        self.at_least("models.threads", 0)
        self.at_least("models.warmup", 0)
        if not _PROFILE_NAME.match(s.models.device_profile):
            raise self.fail("models.device_profile",
                            "%r is not a profile name (config/devices/<name>.yaml)"
                            % s.models.device_profile)

        for f in dataclasses.fields(s.decision):
            value = getattr(s.decision, f.name)
            if isinstance(value, float) and not 0.0 <= value <= 1.0:
                raise self.fail("decision." + f.name,
                                "must be between 0 and 1 (or null for the manifest's value),"
                                " got %r" % value)

        self.mqtt()
        self.positive("alerts.overlay_max_side")
        if not 1 <= s.alerts.overlay_quality <= 100:
            raise self.fail("alerts.overlay_quality",
                            "JPEG quality must be 1..100, got %d" % s.alerts.overlay_quality)
        self.intake_dicom()
        self.pacs()
        self.files()

    def mqtt(self) -> None:
        m = self.s.mqtt
        self.non_empty("mqtt.host")
        if not 1 <= m.port <= 65535:
            raise self.fail("mqtt.port", "must be 1..65535, got %d" % m.port)
        prefix = m.topic_prefix
        if (not prefix or re.search(r"[+#\s\x00]", prefix) or prefix.startswith("/")
                or prefix.endswith("/") or "//" in prefix):
            raise self.fail("mqtt.topic_prefix",
                            "%r is not a usable topic prefix (no '+', '#', spaces, or "
                            "empty levels)" % prefix)
        self.positive("mqtt.keepalive_s", "mqtt.reconnect_min_s", "mqtt.reconnect_max_s")
        if m.reconnect_max_s < m.reconnect_min_s:
            raise self.fail(self.blame("mqtt.reconnect_max_s", "mqtt.reconnect_min_s"),
                            "mqtt.reconnect_max_s (%g) is smaller than mqtt.reconnect_min_s (%g)"
                            % (m.reconnect_max_s, m.reconnect_min_s))
        self.at_least("mqtt.inflight", 1)
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

    def ae_title(self, key: str, value: str) -> None:
        if not value.strip() or len(value) > 16 or "\\" in value or not value.isprintable():
            raise self.fail(key, "%r is not a DICOM AE title (1-16 printable characters, "
                            "no backslash)" % value)

    def names(self, key: str, table: Dict[str, Any]) -> None:
        values = _get(self.s, key)
        if not values:
            raise self.fail(key, "must list at least one of: %s" % ", ".join(table))
        for value in values:
            if value not in table:
                raise self.fail(key, "%r is not known; use any of: %s" % (value, ", ".join(table)))

    def intake_dicom(self) -> None:
        from edge.intake.names import SOP_CLASSES, TRANSFER_SYNTAXES
        d = self.s.intake.dicom
        self.ae_title("intake.dicom.ae_title", d.ae_title)
        for i, ae in enumerate(d.allowed_calling_aes):
            self.ae_title("intake.dicom.allowed_calling_aes[%d]" % i, ae)
        if not 1 <= d.port <= 65535:
            raise self.fail("intake.dicom.port", "must be 1..65535, got %d" % d.port)
        self.non_empty("intake.dicom.bind_address")
        self.names("intake.dicom.sop_classes", SOP_CLASSES)
        self.names("intake.dicom.transfer_syntaxes", TRANSFER_SYNTAXES)
        self.at_least("intake.dicom.max_associations", 1)
        if d.max_pdu != 0 and d.max_pdu < 4096:
            raise self.fail("intake.dicom.max_pdu", "must be 0 (unlimited) or 4096 or more, got %d"
                            % d.max_pdu)
        self.positive("intake.dicom.acse_timeout_s", "intake.dicom.dimse_timeout_s",
                      "intake.dicom.network_timeout_s")

    def pacs(self) -> None:
        p = self.s.pacs
        self.ae_title("pacs.calling_ae", p.calling_ae)
        self.positive("pacs.retry_min_s", "pacs.retry_max_s", "pacs.timeout_s")
        if p.retry_max_s < p.retry_min_s:
            raise self.fail(self.blame("pacs.retry_max_s", "pacs.retry_min_s"),
                            "pacs.retry_max_s (%g) is smaller than pacs.retry_min_s (%g)"
                            % (p.retry_max_s, p.retry_min_s))
        if not p.enabled:
            return
        self.non_empty("pacs.host")
        self.ae_title("pacs.called_ae", p.called_ae)
        if not 1 <= p.port <= 65535:
            raise self.fail("pacs.port", "must be 1..65535, got %d" % p.port)
        if not (p.send_overlay or p.send_report):
            raise self.fail(self.blame("pacs.send_overlay", "pacs.send_report"),
                            "PACS results are on but neither the overlay nor the report is sent")

    def files(self) -> None:
        """Files the runtime will need must exist now, so check-config says so.
        Only existence and readability are checked: no secret is read."""
        m = self.s.mqtt
        keys = ["mqtt.password_file"]
        if m.tls.enabled:
            keys += ["mqtt.tls.ca_file", "mqtt.tls.cert_file", "mqtt.tls.key_file"]
        problems = []  # type: List[Tuple[int, str, str]]
        for key in keys:
            path = _get(self.s, key)
            if not path:
                continue
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

def settings_to_dict(settings: Settings, redact: bool = True) -> Dict[str, Any]:
    """Plain nested dict of the settings for logs and the status topic.
    Settings never hold secret values; with `redact` the credential's
    identity (username) is masked too."""
    data = dataclasses.asdict(settings)
    if redact:
        for dotted in REDACTED_KEYS:
            *parents, name = dotted.split(".")
            node = data
            for p in parents:
                node = node[p]
            if node.get(name):
                node[name] = REDACTED
    return data


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
        "models:      backend %s, threads %s, warm-up %d"
        % (s.models.backend, s.models.threads or "all cores", s.models.warmup),
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

