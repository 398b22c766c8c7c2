"""A settings field's own limits, declared on it with `field(metadata={...})`.

  choices     allowed values (for a list: allowed items)
  upper       compare upper-cased, and store upper-cased
  what        the noun of a choices error: "'LOUD' is not a logging level"
  gt, ge, le  numeric bounds
  nonempty    a string that is not blank
  format      the name of a check in the loader's `formats` (value -> problem or None)
  hint        appended to the error, in parentheses
The walker in edge/strict_yaml.py checks them as each value is read, so the
error names the file and line that value came from. Pure functions.
"""
from typing import Any, Callable, Mapping, NamedTuple, Optional, Tuple

from edge.errors import ConfigError

# Every metadata key a field may carry (the walker's own: keys, required, internal).
RULE_KEYS = frozenset(("choices", "upper", "what", "gt", "ge", "le", "nonempty", "format", "hint",
                       "keys", "required", "internal"))

Formats = Mapping[str, Callable[[Any], Optional[str]]]


class Where(NamedTuple):
    file: Optional[str]
    line: Optional[int]


def rule_problem(meta: Mapping[str, Any], value: Any,
                 formats: Optional[Formats] = None) -> Tuple[Any, Optional[str]]:
    """(value, what is wrong or None) under the field's metadata rules; None passes."""
    if value is None or not meta:
        return value, None
    problem = None
    if meta.get("upper") and isinstance(value, str):
        shown, value = value, value.upper()
    else:
        shown = value
    choices = meta.get("choices")
    if choices is not None and value not in choices:
        problem = "%r is not %s; use one of: %s" % (shown, meta.get("what", "allowed"),
                                                    ", ".join(str(c) for c in choices))
    elif meta.get("nonempty") and isinstance(value, str) and not value.strip():
        problem = "must not be empty"
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        problem = _bounds_problem(meta, value)
    if problem is None and "format" in meta:
        problem = (formats or {})[meta["format"]](value)
    if problem is not None and meta.get("hint"):
        problem += " (%s)" % meta["hint"]
    return value, problem


def _bounds_problem(meta: Mapping[str, Any], value: Any) -> Optional[str]:
    gt, ge, le = meta.get("gt"), meta.get("ge"), meta.get("le")
    if ge is not None and le is not None and not ge <= value <= le:
        if isinstance(ge, int) and isinstance(le, int):
            return "must be %d..%d, got %r" % (ge, le, value)
        return "must be between %g and %g, got %r" % (ge, le, value)
    if gt is not None and not value > gt:
        return "must be greater than %g, got %r" % (gt, value)
    if ge is not None and le is None and not value >= ge:
        return "must be %g or more, got %r" % (ge, value)
    if le is not None and ge is None and not value <= le:
        return "must be %g or less, got %r" % (le, value)
    return None


def check_rules(meta: Mapping[str, Any], value: Any, where: Where, dotted: str,
                formats: Optional[Formats] = None) -> Any:
    value, problem = rule_problem(meta, value, formats)
    if problem is not None:
        raise ConfigError(problem, where.file, where.line, dotted)
    return value
