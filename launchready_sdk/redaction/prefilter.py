"""Cheap proofs, by substring tests and character classes, that no rule can change a string.

They keep the hot path off the regexes: IDs, timestamps and lowercase paths pass untouched.
"""

from __future__ import annotations

import datetime
import re
from typing import Final

from launchready_sdk.redaction._personal import digit_count


def _is_timestamp(text: str) -> bool:
    """An ISO 8601 date-time (`2024-05-01T12:00:00.123456+00:00`); the caller checks length."""
    if text[10] not in "T " or text[13] != ":" or not text.isascii():
        return False
    try:
        datetime.datetime.fromisoformat(text)
    except ValueError:
        return False
    return True


def _is_uuid(text: str) -> bool:
    """A dashed hexadecimal UUID (`3f2b6c1e-9a4d-...`); the caller checks length and text[8]."""
    if text[13] != "-" or text[18] != "-" or text[23] != "-":
        return False
    digits = text.replace("-", "")
    if len(digits) != 32 or not digits.isalnum() or not digits.isascii():
        return False
    try:
        int(digits, 16)
    except ValueError:
        return False
    return True


SAFE_SHAPE: Final = (
    r"(?:[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"
    r"|[0-9]{4}-[0-9]{2}-[0-9]{2}[T ][0-9]{2}:[0-9]{2}(?::[0-9]{2}(?:[.,][0-9]{1,9})?)?"
    r"(?:Z|[+\-][0-9]{2}(?::?[0-9]{2})?)?"
    r"|[0-9]{1,3}(?:\.[0-9]{1,3}){3}"
    r"|[/a-z{}]*(?:[0-9]{1,12}[/a-z{}]+)*[0-9]{0,12})"
)
# Lines that no rule can change: UUIDs, ISO timestamps, IPv4 addresses, and lowercase words or
# paths (no `-`, `_`, `.`, capitals or punctuation that a rule needs; digit runs of at most 12).
SAFE_SHAPES: Final = re.compile(rf"{SAFE_SHAPE}(?:\n{SAFE_SHAPE})*")


def _class_table() -> bytes:
    table = bytearray(b"!" * 256)  # anything unlisted may start or belong to a rule
    for chars, cls in ((b"0123456789", b"0"), (b"abcdefTZ", b"h"), (b"-:./+,\n", None)):
        for c in chars:
            table[c] = c if cls is None else cls[0]
    for c in b"ghijklmnopqrstuvwyz":  # `x` stays `!`: it starts `xox` and `xapp-`
        table[c] = ord("a")
    return bytes(table)


_CLASSES: Final = _class_table()


def plain_classes(text: str) -> bool:
    """A cheap proof that no rule matches: only lowercase but `x`, digits, `-:./+,`, newlines,
    `T` and `Z`.

    In that alphabet a rule needs a letter from g-z before a dash (`glpat-`, `sk-`, `pypi-`),
    `hooks.`, or a card-like digit run: PEM headers and every other prefix hold a capital, an
    `x` or a character outside the alphabet. UUIDs, ISO timestamps, IPv4 addresses and most
    lowercase paths pass.
    """
    try:
        shape = text.encode().translate(_CLASSES).decode("latin-1")
    except UnicodeEncodeError:  # a lone surrogate
        return False
    if "!" in shape or "a-" in shape or "0000000000000" in shape or "0000-0000" in shape:
        return False
    return "hook" not in text


def needs_scan(text: str) -> bool:
    """False only when no value rule can match `text`; substring tests only, no regex.

    Every rule of `_scan` needs one of the characters or words tested here. ISO timestamps and
    UUIDs are accepted by shape: they hold nothing a rule could match.
    """
    n = len(text)
    if n == 36 and text[8] == "-" and _is_uuid(text):
        return False
    if 19 <= n <= 32 and text[4] == "-" and _is_timestamp(text):
        return False
    if "=" in text or "@" in text or "_" in text or "%" in text or "$" in text:
        return True
    if text[0] in "{[" or ": " in text or '":' in text or "':" in text:
        return True
    if "</" in text or ":AA" in text or "/webhook" in text:
        return True
    if "-" in text and ("--" in text or ("-p" in text and ("mysql" in text or "mariadb" in text))):
        return True
    if n < 13:
        return False
    if "-" in text:
        if "-----" in text or "glpat-" in text or "xox" in text or "xapp-" in text:
            return True
        if "sk-" in text or "pypi-" in text:
            return True
    if (" " in text or "\t" in text) and (
        "earer" in text or "EARER" in text or "asic" in text or "ASIC" in text
    ):
        return True
    if not text.islower():  # the remaining hints all hold a capital letter
        if "A" in text and ("IA" in text or "ACCA" in text or "AIza" in text):
            return True
        if "SG." in text or "SK" in text or "eyJ" in text:
            return True
        if n >= 59 and "." in text:  # a Discord bot token
            return True
    return "hooks.slack.com" in text or digit_count(text) >= 13
