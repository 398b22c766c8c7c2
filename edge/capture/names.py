"""File names as the cart wrote them, made safe to show and to store.

A name from the file system is bytes; Python hands it over as str with
undecodable bytes as surrogates (os.fsdecode). Such a str cannot go into
SQLite or UTF-8 JSON, and a newline or backslash in it would forge a log
line or confuse a display. `display_name` is the one form used in logs,
events, alerts, the ledger and reason files; the raw name is used only to
touch the file itself. `fit_name` keeps names within the file system's
255-byte limit once a suffix (`-N`, `.reason.json`) is added.
"""
import hashlib
import os
import unicodedata

NAME_MAX = 255   # bytes, ext4/xfs/btrfs and most others


def display_name(name: str) -> str:
    """Printable, one line, reversible enough to find the file: backslash
    doubled, undecodable bytes as \\xNN, control/format characters
    (newline, RTL override ...) as \\xNN or \\uNNNN."""
    out = []
    for ch in name:
        code = ord(ch)
        if ch == "\\":
            out.append("\\\\")
        elif 0xDC80 <= code <= 0xDCFF:            # an undecodable byte (surrogateescape)
            out.append("\\x%02x" % (code - 0xDC00))
        elif unicodedata.category(ch) in ("Cc", "Cf", "Cs", "Zl", "Zp"):
            out.append("\\x%02x" % code if code < 0x100 else "\\u%04x" % code)
        else:
            out.append(ch)
    return "".join(out)


def name_bytes(name: str) -> int:
    return len(os.fsencode(name))


def fit_name(name: str, reserve: int = 0, limit: int = NAME_MAX) -> str:
    """`name`, or a shortened `stem~hash8.ext` whose encoded length plus
    `reserve` bytes fits in `limit`. The hash keeps two long names that
    share a prefix apart; the original name goes in the reason file."""
    raw = os.fsencode(name)
    room = limit - reserve
    if len(raw) <= room:
        return name
    stem, ext = os.path.splitext(raw)
    if len(ext) > 16:
        stem, ext = raw, b""
    tag = b"~" + hashlib.sha256(raw).hexdigest()[:8].encode("ascii")
    keep = max(1, room - len(tag) - len(ext))
    return os.fsdecode(stem[:keep] + tag + ext)
