"""The film's own patient identifiers, kept out of everything the decoder says.

The code-string rules in checks.py stop a value that ran on into the next
elements, but a header value can be a well-formed code string and still be
the patient's name ("SMITH JOHANNA" as BodyPartExamined or Modality, the
birth date "19480213" as Modality): modalities and hand-edited headers put
anything anywhere. The decoder reads this file's own name and birth date
(never emitting them) and masks them, as whole words, in its messages and
in the few header values an Image carries.
"""
import re
import unicodedata
from typing import Any, FrozenSet, Iterable, Optional, Set

from pydicom.multival import MultiValue

MASK = "***"
NAME_KEYWORDS = ("PatientName", "OtherPatientNames", "PatientBirthName", "PatientMotherBirthName")
DATE_KEYWORDS = ("PatientBirthDate",)
_SPLIT = re.compile(r"[\^=\s,;\\]+")
_INNER = re.compile(r"[-'.\u2019]+")      # inside a name word: Smith-Jones, O'Brien, St.John


def _values(ds: Any, keyword: str) -> Iterable[str]:
    try:
        value = ds.get(keyword)
    except Exception:  # noqa: BLE001 - a damaged element: nothing to withhold from it
        return ()
    if value is None:
        return ()
    if not isinstance(value, (list, tuple, MultiValue)):     # a PersonName iterates by character
        value = [value]
    try:
        return [str(v) for v in value]
    except Exception:  # noqa: BLE001
        return ()


def patient_words(ds: Any) -> FrozenSet[str]:
    """Upper-cased words of the patient's names and the birth date (as written,
    with separators dropped, and as a cart may spell it: _date_spellings),
    from a pydicom Dataset."""
    words = set()   # type: Set[str]
    for keyword in NAME_KEYWORDS:
        for text in _values(ds, keyword):
            for w in _SPLIT.split(text):
                words.update(_name_forms(w))
    for keyword in DATE_KEYWORDS:
        for text in _values(ds, keyword):
            text = text.strip("\0 ")
            if len(text) >= 6:
                words.add(text.upper())
                words.add(re.sub(r"[^0-9]", "", text))
    words.discard("")
    return _date_spellings(frozenset(words))


def _name_forms(word: str) -> Set[str]:
    """A name word as a file name may spell it: whole, its hyphen/apostrophe
    parts, those run together, and each without accents (SIOBHAN for
    Siobhán); upper-cased, 2 characters or more, a part 3 or more (an
    anonymised "CQ500-CT-310" must not mask the modality CT everywhere)."""
    forms = {word, _INNER.sub("", word)} | {p for p in _INNER.split(word) if len(p) >= 3}
    forms |= {plain(f) for f in forms}
    return {f.upper() for f in forms if len(f) >= 2}


# Blank letters (Hangul fillers, the braille blank) that render as nothing inside a word.
_BLANKS = frozenset("\u115f\u1160\u3164\uffa0\u2800")


def plain(text: str) -> str:
    """`text` in its compatibility form without marks, format characters or
    blank letters, and ß as ss: full-width letters as ASCII, "Siobha\u0301n"
    and "Siobh\u00e1n" both as "Siobhan", a zero-width space or joiner, a
    variation selector or a combining grapheme joiner dropped, "Weiß" as
    "Weiss". Names are matched in this form on both sides."""
    out = []
    for c in unicodedata.normalize("NFKD", text):
        if unicodedata.category(c)[0] == "M" or unicodedata.category(c) == "Cf" or c in _BLANKS:
            continue
        out.append("ss" if c == "\u00df" else "SS" if c == "\u1e9e" else c)
    return "".join(out)


def _date_spellings(words: FrozenSet[str]) -> FrozenSet[str]:
    """`words` plus the ways a cart or a hand-edited header may spell an
    8-digit birth date: 13.02.1948, 13-02-1948, 13_02_1948, 13 02 1948,
    13/02/1948, 13021948, 1948-02-13 ..., and with a 2-digit year: 13.02.48,
    130248, 48-02-13 ..."""
    more = set(words)
    for w in words:
        if len(w) == 8 and w.isdigit() and w[:2] in ("19", "20"):
            y, m, d = w[:4], w[4:6], w[6:]
            for sep in (".", "-", "_", " ", "/", ""):
                for year in (y, y[2:]):
                    more.update((sep.join((d, m, year)), sep.join((year, m, d))))
    return frozenset(more)


def _alternatives(words: Iterable[str]) -> str:
    """A regex alternation of `words`, longest first (so SMITHJONES wins over SMITH)."""
    return "|".join(re.escape(w) for w in sorted(words, key=len, reverse=True))


def _pattern(words: FrozenSet[str]) -> Any:
    return re.compile(r"(?<![0-9A-Za-z])(?:%s)(?![0-9A-Za-z])" % _alternatives(words), re.IGNORECASE)


def scrub(text: str, words: FrozenSet[str]) -> str:
    """`text` with each of `words` (whole words, any case) replaced by ***."""
    if not words or not text:
        return text
    return _pattern(words).sub(MASK, text)


# Inside a run of letters only words this long are masked: a 2-letter name
# ("LI", "NG") would mask half the words of any file name.
WITHIN_MIN = 3


def scrub_within(text: str, words: FrozenSet[str]) -> str:
    """scrub, and each word of WITHIN_MIN or more characters also inside a
    longer run (`SMITHJOHANNA.dcm`, `JohannaSmith1.dcm`): for file names,
    where a mask too many costs nothing and a name run together is common."""
    if not words or not text:
        return text
    inside = [w for w in words if len(w) >= WITHIN_MIN]
    if inside:
        text = re.compile("(?:%s)" % _alternatives(inside), re.IGNORECASE).sub(MASK, text)
    return scrub(text, words)


def withheld(value: Optional[str], words: FrozenSet[str]) -> Optional[str]:
    """`value` with the patient's words masked (None stays None)."""
    return None if value is None else scrub(value, words)
