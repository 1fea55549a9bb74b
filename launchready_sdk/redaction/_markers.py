"""Redaction markers (`[REDACTED:<rule>]`) and splicing them into text."""

from __future__ import annotations

import re
from typing import Final


def marker_for(rule: str) -> str:
    return f"[REDACTED:{rule}]"


DEPTH_MARKER: Final = marker_for("depth")
CYCLE_MARKER: Final = marker_for("cycle")
ERROR_MARKER: Final = marker_for("error")
OVERSIZE_MARKER: Final = marker_for("oversize")
CARD_MARKER: Final = marker_for("card")
EMAIL_MARKER: Final = marker_for("email")
MARKER_RE: Final = re.compile(r"\[REDACTED(?::[a-z0-9_.\-]{1,64})?\]")


def cut_point(text: str, limit: int) -> int:
    """Where to cut `text` to at most `limit` characters: at a space, so no marker is split."""
    if len(text) <= limit:
        return len(text)
    space = text.rfind(" ", limit - 256, limit)
    return space if space > 0 else limit


def splice(text: str, spans: list[tuple[int, int, str]]) -> str:
    """`text` with each (start, end, replacement) span applied; spans sorted, not overlapping."""
    parts: list[str] = []
    pos = 0
    for start, end, replacement in spans:
        parts.append(text[pos:start])
        parts.append(replacement)
        pos = end
    parts.append(text[pos:])
    return "".join(parts)
