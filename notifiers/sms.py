"""SMS length: GSM 03.38 (GSM-7) versus UCS-2 segment counting, and the fitting rule.

A text that uses only the GSM-7 alphabet (which has æøåÆØÅ) costs 160 characters in one
segment, 153 per segment when concatenated; extension characters (``€[]{}|^~\\``) count twice.
Anything else (Arabic, Lithuanian ė/ų, Polish ł/ś, emoji) makes the whole text UCS-2: 70 in
one segment, 67 per segment concatenated, counted in UTF-16 code units.

**Rule** (``fit_sms``): the message keeps its *tail* — the last line, which says when the
next update comes and how to confirm — whole. If the text needs more than ``max_segments``
segments, the head is cut at the last word boundary that fits and ends with ``…``.
"""

from __future__ import annotations

from dataclasses import dataclass

GSM7_BASIC = frozenset(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
GSM7_EXTENSION = frozenset("^{}\\[~]|€\f")

GSM7_SINGLE, GSM7_MULTI = 160, 153
UCS2_SINGLE, UCS2_MULTI = 70, 67
ELLIPSIS = "…"


@dataclass(frozen=True)
class SmsCount:
    encoding: str  # "gsm7" | "ucs2"
    units: int  # septets (GSM-7) or UTF-16 code units (UCS-2)
    segments: int


def is_gsm7(text: str) -> bool:
    return all(c in GSM7_BASIC or c in GSM7_EXTENSION for c in text)


def _units(text: str, gsm: bool) -> int:
    if gsm:
        return sum(2 if c in GSM7_EXTENSION else 1 for c in text)
    return len(text.encode("utf-16-le")) // 2


def count(text: str) -> SmsCount:
    gsm = is_gsm7(text)
    units = _units(text, gsm)
    single, multi = (GSM7_SINGLE, GSM7_MULTI) if gsm else (UCS2_SINGLE, UCS2_MULTI)
    segments = 1 if units <= single else -(-units // multi)
    return SmsCount("gsm7" if gsm else "ucs2", units, segments)


def _budget(gsm: bool, max_segments: int) -> int:
    if max_segments == 1:
        return GSM7_SINGLE if gsm else UCS2_SINGLE
    return (GSM7_MULTI if gsm else UCS2_MULTI) * max_segments


def fit_sms(text: str, max_segments: int = 3) -> str:
    """The text itself if it fits; else the head cut at a word boundary + ``…`` + the tail."""
    if count(text).segments <= max_segments:
        return text
    head, sep, tail = text.rpartition("\n")
    if not sep:
        head, tail = text, ""
    # The encoding of the result: GSM-7 only when the tail and the kept head both are; the
    # ellipsis itself is not GSM-7, so a cut text is UCS-2 unless we use "..." instead.
    gsm = is_gsm7(text)
    mark = "..." if gsm else ELLIPSIS
    budget = _budget(gsm, max_segments)
    room = budget - _units(tail, gsm) - (1 if tail else 0) - _units(mark, gsm)
    if room <= 0:
        # The tail alone is too long: cut it too (never happens with the shipped templates).
        return _cut(text, budget - _units(mark, gsm), gsm) + mark
    cut = _cut(head, room, gsm)
    return f"{cut}{mark}\n{tail}" if tail else f"{cut}{mark}"


def _cut(text: str, room: int, gsm: bool) -> str:
    out: list[str] = []
    used = 0
    for c in text:
        cost = _units(c, gsm)
        if used + cost > room:
            break
        out.append(c)
        used += cost
    kept = "".join(out)
    cut_inside_a_word = len(kept) < len(text) and not text[len(kept)].isspace()
    if cut_inside_a_word and " " in kept:
        kept = kept[: kept.rfind(" ")]
    return kept.rstrip(" ,.;:\n")
