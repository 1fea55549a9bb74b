"""Personal data: payment card numbers (issuer, length and Luhn checked) and e-mail addresses."""

from __future__ import annotations

import re
from typing import Final, Literal

from launchready_sdk.redaction._markers import CARD_MARKER, splice

EmailMode = Literal["domain", "full", "off"]

CARD_MIN: Final = 10**12
# On the text with every digit turned into `0`: a run of at least 13 digits, in any grouping
# (groups joined by up to two spaces or dashes, mixed or not: `4111-1111 11111111`).
_CARD_RUN_RE: Final = re.compile(r"0(?:[ \-]{0,2}0){12,}")
_GROUP_RE: Final = re.compile(r"[0-9]+")
_THIRTEEN_DIGITS: Final = b"0" * 13
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
    """Card numbers replaced: an issuer prefix, a valid length and a Luhn check are required.

    A run of digit groups (separated by up to two spaces or dashes, in any grouping) is a card
    when its digits, 13 to 19 of them, are one.
    """
    raw = text.encode("utf-8", "surrogatepass")
    if _THIRTEEN_DIGITS not in raw.translate(_CARD_SHAPE, b" -"):
        return text  # no 13 digits in a row even with every separator dropped
    if len(raw) == len(text):
        shape = raw.translate(_CARD_SHAPE).decode("latin-1")
    else:
        shape = text.translate(_CARD_SHAPE_STR)
    spans: list[tuple[int, int, str]] = []
    for m in _CARD_RUN_RE.finditer(shape):
        found = _card_in_run(text, m.start(), m.end())
        if found is not None:
            spans.append((*found, CARD_MARKER))
    return splice(text, spans) if spans else text


def _card_in_run(text: str, start: int, end: int) -> tuple[int, int] | None:
    """The span of the card number in a run of digit groups, else None.

    The whole run counts, or the run without a last group of at most four digits (a card
    followed by its CVV or expiry). A card is never cut out of the middle of a longer run (an
    all-digit UUID's 8-4-4 groups), so identifiers stay intact.
    """
    groups = list(_GROUP_RE.finditer(text, start, end))
    digits = "".join(g.group() for g in groups)
    if 13 <= len(digits) <= 19 and is_card(digits):
        return start, end
    last = groups[-1]
    if len(groups) > 1 and len(last.group()) <= 4:
        head = digits[: -len(last.group())]
        if 13 <= len(head) <= 19 and is_card(head):
            return start, groups[-2].end()
    return None


def digit_count(text: str) -> int:
    return text.encode("utf-8", "surrogatepass").translate(_CARD_SHAPE).count(48)
