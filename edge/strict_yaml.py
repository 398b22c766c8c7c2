"""Strict YAML into typed dataclasses: the one walker behind every config file.

The dataclasses are the schema. yaml.compose keeps a line number on every
node, so each mistake is reported as "file:line [dotted.key]: what is
wrong"; an unknown key is an error (with "did you mean"), never ignored.

Each field may declare its own limits in `metadata` (see edge/field_rules.py),
checked as its value is read, so the error names the line it came from;
`keys` limits the keys of a Dict[str, X] field, `required` makes a key
mandatory, `internal` hides a field from the file. A List[X] field of a
dataclass X holds one mapping per item; an Any value may be a list.
Rules that span several keys belong to the loader that uses this module.
"""
import dataclasses
import difflib
import math
import os
import re
from typing import (Any, Dict, List, Mapping, Optional, Sequence, Tuple, Union, get_args, get_origin,
                    get_type_hints)

import yaml
from yaml.constructor import SafeConstructor

from edge.errors import ConfigError
from edge.field_rules import Formats, Where, check_rules


# -- reading YAML -------------------------------------------------------------

def compose_file(path: str, what: str = "config file") -> Optional[yaml.MappingNode]:
    """The root mapping of the YAML file at `path`, or None when it holds nothing."""
    try:
        with open(path, "r", encoding="utf-8-sig") as f:
            text = f.read()
    except FileNotFoundError:
        raise ConfigError("%s not found" % what, path) from None
    except IsADirectoryError:
        raise ConfigError("is a directory, not a %s" % what, path) from None
    except UnicodeDecodeError as exc:
        raise ConfigError("not UTF-8 text (%s)" % exc.reason, path) from None
    except OSError as exc:
        raise ConfigError("cannot read: %s" % exc.strerror, path) from None
    return compose_text(text, path)


def compose_text(text: str, where: str) -> Optional[yaml.MappingNode]:
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark is not None else None
        problem = " ".join(p for p in (exc.context, exc.problem) if p)
        raise ConfigError("not valid YAML: %s" % (problem or exc), where, line) from None
    except yaml.YAMLError as exc:
        raise ConfigError("not valid YAML: %s" % exc, where) from None
    if root is None or _is_null(root):
        return None  # an empty file (or only comments) means the defaults
    if not isinstance(root, yaml.MappingNode):
        raise ConfigError("the file must be a mapping of settings (key: value), got %s"
                          % _node_kind(root), where, line_of(root))
    return root


def line_of(node: yaml.Node) -> int:
    return node.start_mark.line + 1


def _is_null(node: yaml.Node) -> bool:
    return isinstance(node, yaml.ScalarNode) and node.tag.endswith(":null")


def _node_kind(node: yaml.Node) -> str:
    if isinstance(node, yaml.MappingNode):
        return "a mapping"
    if isinstance(node, yaml.SequenceNode):
        return "a list"
    return "a scalar"


class Walker:
    """Walks a YAML node tree into an instance of `root` (a dataclass).

    origins collects dotted key -> Where for every key written, so a rule
    checked later can blame the right line. Values of `path_keys` are
    resolved against `base` (the file's directory)."""

    def __init__(self, file: str, base: str, origins: Dict[str, Where], root: type,
                 path_keys: Sequence[str] = (), formats: Optional[Formats] = None):
        self.file, self.base, self.origins = file, base, origins
        self.root, self.path_keys, self.formats = root, tuple(path_keys), formats or {}
        self.constructor = SafeConstructor()

    def fail(self, message: str, node: yaml.Node, key: str) -> ConfigError:
        return ConfigError(message, self.file, line_of(node), key or None)

    def mapping(self, obj: Any, node: yaml.MappingNode, prefix: str) -> None:
        fields = _fields(type(obj))
        hints = _hints(type(obj))
        for name, key_node, value_node in self._entries(node, prefix):
            dotted = prefix + name
            if name not in hints:
                raise self.fail(unknown_key_message(type(obj), name, prefix, self.root),
                                key_node, dotted)
            self.origins[dotted] = Where(self.file, line_of(key_node))
            hint, meta = hints[name], fields[name].metadata
            if is_section(hint):
                if _is_null(value_node):
                    continue  # "mqtt:" with everything under it commented out
                self._expect_mapping(value_node, dotted)
                self.mapping(getattr(obj, name), value_node, dotted + ".")
                continue
            inner = dict_value_type(hint)
            if inner is not None:
                value = self.free_mapping(inner, value_node, dotted, meta)
            else:
                value = self.value(hint, value_node, dotted, meta)
            if dotted in self.path_keys:
                value = resolve_path(value, self.base)
            setattr(obj, name, value)
        for name, f in fields.items():
            if f.metadata.get("required") and prefix + name not in self.origins:
                raise self.fail("required key '%s' is missing" % name, node, prefix + name)

    def free_mapping(self, inner: Any, node: yaml.Node, dotted: str,
                     meta: Mapping[str, Any]) -> Dict[str, Any]:
        """A Dict[str, X] field: keys chosen by the file (limited by meta["keys"])."""
        if _is_null(node):
            return {}
        self._expect_mapping(node, dotted)
        allowed = meta.get("keys")
        out = {}  # type: Dict[str, Any]
        for name, key_node, value_node in self._entries(node, dotted + "."):
            key = dotted + "." + name
            if allowed is not None and name not in allowed:
                raise self.fail(_unknown_message(name, "section '%s'" % dotted, list(allowed)),
                                key_node, key)
            self.origins[key] = Where(self.file, line_of(key_node))
            if is_section(inner):
                if _is_null(value_node):   # "segmenter:" alone: an entry with its defaults
                    value_node = yaml.MappingNode("tag:yaml.org,2002:map", [], value_node.start_mark)
                self._expect_mapping(value_node, key)
                out[name] = inner()
                self.mapping(out[name], value_node, key + ".")
            else:
                out[name] = self.value(inner, value_node, key, {})
        return out

    def value(self, hint: Any, node: yaml.Node, dotted: str, meta: Mapping[str, Any]) -> Any:
        if isinstance(node, yaml.MappingNode):
            raise self.fail("expected %s, got a mapping" % type_name(hint), node, dotted)
        if isinstance(node, yaml.SequenceNode):
            inner = Any if hint is Any else list_item_type(hint)
            if inner is None:
                raise self.fail("expected %s, got a list" % type_name(hint), node, dotted)
            items = []
            for i, item in enumerate(node.value):
                item_key = "%s[%d]" % (dotted, i)
                if is_section(inner):
                    self._expect_mapping(item, item_key)
                    items.append(inner())
                    self.mapping(items[-1], item, item_key + ".")
                    continue
                if not isinstance(item, yaml.ScalarNode):
                    raise self.fail("expected %s, got %s" % (type_name(inner), _node_kind(item)),
                                    item, item_key)
                where = Where(self.file, line_of(item))
                value = check_type(inner, self.scalar(item, item_key), item.value, where, item_key)
                items.append(check_rules(meta, value, where, item_key, self.formats))
            return items
        where = Where(self.file, line_of(node))
        value = check_type(hint, self.scalar(node, dotted), node.value, where, dotted)
        if list_item_type(hint) is None:
            value = check_rules(meta, value, where, dotted, self.formats)
        return value

    def scalar(self, node: yaml.ScalarNode, dotted: str) -> Any:
        try:
            return self.constructor.construct_object(node, deep=True)
        except yaml.YAMLError as exc:
            raise self.fail("cannot read this value: %s" % getattr(exc, "problem", exc),
                            node, dotted) from None

    def _entries(self, node: yaml.MappingNode, prefix: str):
        """(name, key node, value node) of a mapping; refuses non-scalar and duplicate keys."""
        seen = {}  # type: Dict[str, int]
        for key_node, value_node in node.value:
            if not isinstance(key_node, yaml.ScalarNode):
                raise self.fail("keys must be plain names, got %s" % _node_kind(key_node),
                                key_node, prefix.rstrip("."))
            name = str(key_node.value)
            if name in seen:
                raise self.fail("duplicate key '%s' (first set on line %d)"
                                % (name, seen[name]), key_node, prefix + name)
            seen[name] = line_of(key_node)
            yield name, key_node, value_node

    def _expect_mapping(self, node: yaml.Node, dotted: str) -> None:
        if not isinstance(node, yaml.MappingNode):
            raise self.fail("expected a mapping (a section of settings), got %s"
                            % self._describe_node(node), node, dotted)

    def _describe_node(self, node: yaml.Node) -> str:
        if isinstance(node, yaml.ScalarNode):
            return describe_value(self.scalar(node, ""), node.value)
        return _node_kind(node)


# -- setting one dotted key (command-line overrides) -----------------------------

def set_dotted(root: Any, dotted: str, value: Any, where: Where, base: str,
               path_keys: Sequence[str] = (), formats: Optional[Formats] = None) -> None:
    """root.<dotted> = value, checked like a value read from a file."""
    obj = root
    parts = dotted.split(".")
    for i, name in enumerate(parts):
        prefix = ".".join(parts[:i]) + ("." if i else "")
        hints = _hints(type(obj))
        if name not in hints:
            raise ConfigError(unknown_key_message(type(obj), name, prefix, type(root)),
                              where.file, where.line, dotted)
        hint = hints[name]
        if i < len(parts) - 1:
            if not is_section(hint):
                raise ConfigError("'%s' is a single setting, not a section" % (prefix + name),
                                  where.file, where.line, dotted)
            obj = getattr(obj, name)
            continue
        if is_section(hint):
            raise ConfigError("'%s' is a section; set one of its keys, e.g. %s.%s"
                              % (dotted, dotted, list(_hints(hint))[0]),
                              where.file, where.line, dotted)
        meta = _fields(type(obj))[name].metadata
        inner = list_item_type(hint)
        if inner is not None and isinstance(value, (list, tuple)):
            value = [check_rules(meta, check_type(inner, v, None, where, "%s[%d]" % (dotted, j)),
                                 where, "%s[%d]" % (dotted, j), formats)
                     for j, v in enumerate(value)]
        else:
            value = check_type(hint, value, None, where, dotted)
            if inner is None:
                value = check_rules(meta, value, where, dotted, formats)
        if dotted in path_keys:
            value = resolve_path(value, base)
        setattr(obj, name, value)


def resolve_path(value: str, base: str) -> str:
    if not value:
        return value  # "" means "not set"; the loader decides if that is allowed
    return os.path.normpath(os.path.join(base, value))


# -- types ----------------------------------------------------------------------

def _fields(cls: type) -> Dict[str, dataclasses.Field]:
    return {f.name: f for f in dataclasses.fields(cls) if not f.metadata.get("internal")}


def _hints(cls: type) -> Dict[str, Any]:
    """Field name -> type for a dataclass, without internal fields."""
    hints = get_type_hints(cls)
    return {name: hints[name] for name in _fields(cls)}


def is_section(hint: Any) -> bool:
    return isinstance(hint, type) and dataclasses.is_dataclass(hint)


def _optional_inner(hint: Any) -> Tuple[bool, Any]:
    """(True, X) for Optional[X], else (False, hint)."""
    if get_origin(hint) is Union:
        args = [a for a in get_args(hint) if a is not type(None)]
        if len(args) == 1 and len(get_args(hint)) == 2:
            return True, args[0]
    return False, hint


def list_item_type(hint: Any) -> Optional[Any]:
    _, hint = _optional_inner(hint)
    if get_origin(hint) in (list, List):
        args = get_args(hint)
        return args[0] if args else Any
    return None


def dict_value_type(hint: Any) -> Optional[Any]:
    """X for a Dict[str, X] field, else None."""
    if get_origin(hint) in (dict, Dict):
        args = get_args(hint)
        return args[1] if args else Any
    return None


_TYPE_NAMES = {bool: "true or false", int: "an integer", float: "a number",
               str: "a string"}


def type_name(hint: Any) -> str:
    optional, inner = _optional_inner(hint)
    item = list_item_type(inner)
    if item is not None:
        name = "a list of " + ("mappings" if is_section(item) else {
            str: "strings", int: "integers", float: "numbers"}.get(item, str(item)))
    elif is_section(inner):
        name = "a mapping (a section of settings)"
    else:
        name = _TYPE_NAMES.get(inner, str(inner))
    return name + " or null" if optional else name


def describe_value(value: Any, raw: Optional[str]) -> str:
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


def check_type(hint: Any, value: Any, raw: Optional[str], where: Where, dotted: str) -> Any:
    """The value if it fits the type (ints widen to floats), else ConfigError."""
    optional, inner = _optional_inner(hint)
    if value is None:
        if optional:
            return None
        raise ConfigError("expected %s, got null" % type_name(hint), where.file, where.line,
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
                          % (type_name(hint), describe_value(value, raw), hint_text),
                          where.file, where.line, dotted)
    return value


# -- messages ---------------------------------------------------------------------

def unknown_key_message(cls: type, name: str, prefix: str, root: type) -> str:
    section = "section '%s'" % prefix.rstrip(".") if prefix else "the top level"
    message = _unknown_message(name, section, list(_hints(cls)))
    if "did you mean" not in message:
        elsewhere = [k for k in all_keys(root) if k.rsplit(".", 1)[-1] == name]
        if elsewhere:
            head, allowed = message.split(". Allowed keys: ", 1)
            message = "%s; it belongs at %s. Allowed keys: %s" % (
                head, " or ".join("'%s'" % k for k in elsewhere), allowed)
    return message


def _unknown_message(name: str, section: str, allowed: List[str]) -> str:
    message = "unknown key '%s' at %s" % (name, section)
    close = difflib.get_close_matches(name, allowed, n=3, cutoff=0.6)
    if close:
        message += "; did you mean %s?" % " or ".join("'%s'" % c for c in close)
    return message + ("" if message.endswith("?") else ".") + " Allowed keys: " + ", ".join(allowed)


def all_keys(cls: type, prefix: str = "") -> List[str]:
    keys = []
    for name, hint in _hints(cls).items():
        keys.append(prefix + name)
        if is_section(hint):
            keys.extend(all_keys(hint, prefix + name + "."))
    return keys
