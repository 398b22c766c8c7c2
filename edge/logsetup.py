"""Logging for the runtime: one line per record, UTC time, level, logger,
message.

Secrets (the MQTT password, a key passphrase) are registered with
`register_secret` by whoever reads them; `redact_secrets`, installed on the
handler, replaces them with "***" in the message, its arguments and any
traceback before a record is formatted, whichever library logged it.

Image libraries (pydicom, openjpeg, pylibjpeg) talk about the file they are
reading: pydicom's "End of file reached before delimiter" warning, openjpeg's
"tile number 1 / 1". Their records and Python warnings are routed through
the logger, demoted to DEBUG (the rejection that follows says what is wrong,
in our words) and stripped of quoted values, which can be the patient's
name when a length is damaged.
"""
import logging
import re
import sys
import threading
import time
import warnings
from typing import Callable, Optional, TextIO, Tuple

MASK = "***"
LEVELS = ("CRITICAL", "ERROR", "WARNING", "INFO", "DEBUG")

_lock = threading.Lock()
_secrets = ()  # type: Tuple[str, ...]   longest first, so overlaps mask fully


def register_secret(value: Optional[str]) -> None:
    """Mask `value` in every log record from now on. Empty values are ignored."""
    global _secrets
    if not value:
        return
    with _lock:
        if value not in _secrets:
            _secrets = tuple(sorted(_secrets + (value,), key=len, reverse=True))


def clear_secrets() -> None:
    """Forget registered secrets (for tests and reloads)."""
    global _secrets
    with _lock:
        _secrets = ()


def redact(text: str) -> str:
    """`text` with every registered secret replaced by "***"."""
    for secret in _secrets:
        if secret in text:
            text = text.replace(secret, MASK)
    return text


def _rewrite_message(record: logging.LogRecord, rewrite: Callable[[str], str]) -> bool:
    """Render the record's message once through `rewrite` and drop its args, so no
    formatter can re-insert what was rewritten; False for a bad format string
    (logging reports it as usual)."""
    try:
        message = record.getMessage()
    except Exception:
        return False
    record.msg, record.args = rewrite(message), None
    return True


class SecretFilter(logging.Filter):
    """Renders the record's message once, masks secrets in it, and drops the
    args so no formatter can re-insert them; tracebacks are masked too."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not _secrets or not _rewrite_message(record, redact):
            return True
        _rewrite_traceback(record, redact)
        return True


def _rewrite_traceback(record: logging.LogRecord, rewrite: Callable[[str], str]) -> None:
    """The record's traceback and stack, rendered once through `rewrite`."""
    if record.exc_info and not record.exc_text:
        record.exc_text = logging.Formatter().formatException(record.exc_info)
    if record.exc_text:
        record.exc_text = rewrite(record.exc_text)
    if record.stack_info:
        record.stack_info = rewrite(record.stack_info)


redact_secrets = SecretFilter()

# Loggers (and warning sources) of libraries that read the image files.
FILE_LIBRARIES = ("pydicom", "openjpeg", "pylibjpeg", "libjpeg", "rle", "PIL")
_QUOTED = re.compile(r"b?'[^']*'" + r'|b?"[^"]*"')


def scrub_values(text: str) -> str:
    """`text` with every quoted value replaced by '...'."""
    return _QUOTED.sub("'...'", text)


def _is_file_library(name: str) -> bool:
    return any(name == lib or name.startswith(lib + ".") for lib in FILE_LIBRARIES)


class LibraryNoiseFilter(logging.Filter):
    """Demotes file libraries' records below ERROR to DEBUG (shown only when
    the root logger is at DEBUG) and scrubs quoted values from them and
    their tracebacks."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not _is_file_library(record.name):
            return True
        if not _rewrite_message(record, scrub_values):
            # A bad format string: logging would print its arguments (file values) to stderr.
            record.msg, record.args = "a log record with a bad format string (its values not shown)", None
        _rewrite_traceback(record, scrub_values)     # its exception quotes values as its message does
        if record.levelno < logging.ERROR:
            record.levelno, record.levelname = logging.DEBUG, "DEBUG"
            return logging.getLogger().getEffectiveLevel() <= logging.DEBUG
        return True


library_noise = LibraryNoiseFilter()


def _warning_to_log(message, category, filename, lineno, file=None, line=None) -> None:
    """warnings.showwarning replacement: one log record, no source line."""
    path = str(filename).replace("\\", "/")
    source = next((lib for lib in FILE_LIBRARIES if "/%s/" % lib in path), "py.warnings")
    logging.getLogger(source).warning("%s: %s", category.__name__, message)


def route_warnings() -> None:
    """Send Python warnings through logging (idempotent). The file libraries'
    warnings quote file values, so each is nearly unique: "always" keeps
    Python from remembering every one it has shown (a registry that would
    grow for ever in a long-running appliance); the filter above drops them
    below DEBUG."""
    warnings.showwarning = _warning_to_log
    for lib in FILE_LIBRARIES:
        warnings.filterwarnings("always", module=lib + r"(\.|$)")


class LineFormatter(logging.Formatter):
    """`2024-05-01T12:00:00.123Z INFO edge.capture: message`"""

    converter = time.gmtime

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def formatTime(self, record: logging.LogRecord, datefmt: Optional[str] = None) -> str:
        return _utc(record)


def _utc(record: logging.LogRecord) -> str:
    return "%s.%03dZ" % (time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)),
                         int(record.msecs))


def make_handler(stream: Optional[TextIO] = None) -> logging.Handler:
    """A stream handler with the runtime's format and the secret filter."""
    handler = logging.StreamHandler(stream if stream is not None else sys.stderr)
    handler.setFormatter(LineFormatter())
    handler.addFilter(library_noise)
    handler.addFilter(redact_secrets)
    handler._pneumo_edge = True  # type: ignore[attr-defined]  # ours, to replace on re-setup
    return handler


def setup_logging(level: str, stream: Optional[TextIO] = None) -> logging.Handler:
    """Configure the root logger (idempotent: replaces a handler it added
    before, leaves others alone). Returns the handler."""
    name = level.upper()
    if name not in LEVELS:
        raise ValueError("unknown log level %r; use one of %s" % (level, ", ".join(LEVELS)))
    root = logging.getLogger()
    for old in [h for h in root.handlers if getattr(h, "_pneumo_edge", False)]:
        root.removeHandler(old)
        old.close()
    handler = make_handler(stream)
    root.addHandler(handler)
    root.setLevel(getattr(logging, name))
    route_warnings()
    _quiet_opencv(debug=name == "DEBUG")
    return handler


def _quiet_opencv(debug: bool) -> None:
    """OpenCV prints its own "[ WARN ] ... PNG input buffer is incomplete" lines
    to stderr from C++, beyond Python logging's reach: they are about a bad
    file, so below DEBUG they are muted (the rejection says what is wrong).
    libjpeg's and libpng's own stderr lines ("Corrupt JPEG data ...") cannot
    be reached from here."""
    try:
        from cv2.utils import logging as cv_logging     # OpenCV >= 4.5 builds
    except ImportError:
        return                                           # older builds: no way to set it
    cv_logging.setLogLevel(cv_logging.LOG_LEVEL_DEBUG if debug else cv_logging.LOG_LEVEL_FATAL)
