"""Redaction markers (`[REDACTED:<rule>]`) and splicing them into text."""

from __future__ import annotations

import re
from typing import Final


def _marker(rule: str) -> str:
    return f"[REDACTED:{rule}]"


DEPTH_MARKER: Final = _marker("depth")
CYCLE_MARKER: Final = _marker("cycle")
ERROR_MARKER: Final = _marker("error")
OVERSIZE_MARKER: Final = _marker("oversize")
_CARD_MARKER: Final = _marker("card")
_EMAIL_MARKER: Final = _marker("email")
_MARKER_RE: Final = re.compile(r"\[REDACTED(?::[a-z0-9_.\-]{1,64})?\]")


def _cut_point(text: str, limit: int) -> int:
    """Where to cut `text` to at most `limit` characters: at a space, so no marker is split."""
    if len(text) <= limit:
        return len(text)
    space = text.rfind(" ", limit - 256, limit)
    return space if space > 0 else limit


def _splice(text: str, spans: list[tuple[int, int, str]]) -> str:
    """`text` with each (start, end, replacement) span applied; spans sorted, not overlapping."""
    parts: list[str] = []
    pos = 0
    for start, end, replacement in spans:
        parts.append(text[pos:start])
        parts.append(replacement)
        pos = end
    parts.append(text[pos:])
    return "".join(parts)
