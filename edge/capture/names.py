"""File names as the cart wrote them, made safe to show and to store.

A name from the file system is bytes; Python hands it over as str with
undecodable bytes as surrogates (os.fsdecode). Such a str cannot go into
SQLite or UTF-8 JSON, and a newline or backslash in it would forge a log
line or confuse a display. `display_name` is the one form used in logs,
events, alerts, the ledger and reason files; the raw name is used only to
touch the file itself. `fit_name` keeps names within the file system's
255-byte limit once a suffix (`-N`, `.reason.json`) is added.

A name may also be the patient's (`Smith^Johanna.dcm`, `smith_19480213.dcm`).
`safe_label` is what a name may be shown as once the content has been looked
at (a `Sight`): a DICOM film's own patient-name words and birth date masked
(edge.decode.withheld.scrub_within: also when run together, `SMITHJOHANNA`),
date-like digit runs masked in any name (a PNG/JPEG has no header to say
whose it is: its name is otherwise the site's responsibility), and
anything else, or a file not looked at yet, shown only as a neutral label
(the content's sha256 prefix or a claim index), never by its name.
"""
import hashlib
import os
import re
import unicodedata
from dataclasses import dataclass
from typing import FrozenSet, Optional

from edge.decode.withheld import MASK, plain, scrub_within

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
        elif _undecodable(ch):
            out.append("\\x%02x" % (code - 0xDC00))
        elif unicodedata.category(ch) in ("Cc", "Cf", "Cs", "Zl", "Zp"):
            out.append("\\x%02x" % code if code < 0x100 else "\\u%04x" % code)
        else:
            out.append(ch)
    return "".join(out)


def _undecodable(ch: str) -> bool:
    """An undecodable byte of a file name (os.fsdecode's surrogateescape)."""
    return 0xDC80 <= ord(ch) <= 0xDCFF


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


# YYYYMMDD / YYYY-MM-DD / YYYY.MM.DD / YYYY MM DD and DD.MM.YYYY / DD-MM-YYYY /
# DD_MM_YYYY / DD MM YYYY, years 1900-2099, not inside a longer digit run.
_DATE_RUN = re.compile(
    r"(?<![0-9])(?:(?:19|20)[0-9]{2}([-._ ]?)(?:0[1-9]|1[0-2])\1(?:0[1-9]|[12][0-9]|3[01])"
    r"|(?:0?[1-9]|[12][0-9]|3[01])([-._ ])(?:0?[1-9]|1[0-2])\2(?:19|20)[0-9]{2})(?![0-9])")


def mask_dates(text: str) -> str:
    """`text` with every date-like digit run replaced by ***."""
    return _DATE_RUN.sub(MASK, text)


@dataclass(frozen=True)
class Sight:
    """What a file's content says about showing its name: kind "dicom"
    (header read; `words` its patient's name words and birth date),
    "raster" (PNG/JPEG) or "opaque" (no readable header)."""
    kind: str
    words: FrozenSet[str] = frozenset()


def safe_label(name: str, sight: Optional[Sight], neutral: str) -> str:
    """The display_name of `name` as it may appear in logs and payloads
    (module docstring); `neutral` when the content gives no way to tell."""
    if sight is None or sight.kind not in ("dicom", "raster"):
        return neutral
    # Matched on plain forms too (edge.decode.withheld.plain): "Smi\u200bth", a
    # decomposed "Sio\u0301bhan", a full-width "\uff33mith", "weiß"; and a name a
    # Windows cart wrote in cp1252 ("M\xfcller", undecodable as UTF-8). The
    # first form that shows a match is what is shown; date-like runs are masked
    # in every name, a DICOM's too (its header may not carry the birth date).
    words = sight.words if sight.kind == "dicom" else frozenset()
    forms = [display_name(plain(name))]
    if any(_undecodable(ch) for ch in name):
        forms.append(display_name(plain(os.fsencode(name).decode("cp1252", "replace"))))
    for form in forms:
        masked = mask_dates(scrub_within(form, words))
        if masked != form:
            return masked
    return display_name(name)
