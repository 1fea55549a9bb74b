"""Personal data: payment card numbers (issuer, length and Luhn checked) and e-mail addresses."""

from __future__ import annotations

import re
from typing import Final, Literal

from launchready_sdk.redaction._markers import CARD_MARKER, splice

EmailMode = Literal["domain", "full", "off"]

CARD_MIN: Final = 10**12
_CARD_RE: Final = re.compile(r"0000(?:0{9,15}|(?P<sep>[ \-])0{4,6}(?:(?P=sep)0{1,6}){1,3})")
_CARD_SHAPE: Final = bytes.maketrans(b"0123456789", b"0000000000")
_CARD_SHAPE_STR: Final = str.maketrans("0123456789", "0000000000")
EMAIL_DOMAIN_RE: Final = re.compile(
    r"@((?:[A-Za-z0-9\-]{1,63}\.){1,8}[A-Za-z]{2,63})(?![A-Za-z0-9\-])", re.ASCII
)
EMAIL_LOCAL_RE: Final = re.compile(r"[A-Za-z0-9_.%+\-]{1,64}\Z", re.ASCII)


def luhn(digits: str) -> bool:
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = ord(ch) - 48
        if i & 1:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


def _issuer_fits(d: str) -> bool:
    """Whether the digits start like a card of their issuer and have one of its lengths."""
    n, head = len(d), int(d[:4])
    if d[0] == "4":
        return n in (13, 16, 19)
    if 5100 <= head <= 5599 or 2221 <= head <= 2720:
        return n == 16
    if d[:2] in ("34", "37"):
        return n == 15
    if 3528 <= head <= 3589 or head == 6011 or 6440 <= head <= 6499 or d[:2] in ("62", "65"):
        return 16 <= n <= 19
    if 3000 <= head <= 3059 or d[:2] in ("36", "38", "39"):
        return 14 <= n <= 19
    return False


def is_card(digits: str) -> bool:
    return 13 <= len(digits) <= 19 and _issuer_fits(digits) and luhn(digits)


def redact_cards(text: str) -> str:
    """Card numbers replaced: an issuer prefix, a valid length and a Luhn check are required."""
    raw = text.encode("utf-8", "surrogatepass")
    if len(raw) == len(text):
        shape = raw.translate(_CARD_SHAPE).decode("latin-1")
    else:
        shape = text.translate(_CARD_SHAPE_STR)
    spans: list[tuple[int, int, str]] = []
    for m in _CARD_RE.finditer(shape):
        start, end = m.span()
        if (start and text[start - 1].isdigit()) or (end < len(text) and text[end].isdigit()):
            continue
        if is_card(text[start:end].replace(" ", "").replace("-", "")):
            spans.append((start, end, CARD_MARKER))
    return splice(text, spans) if spans else text


def digit_count(text: str) -> int:
    return text.encode("utf-8", "surrogatepass").translate(_CARD_SHAPE).count(48)
