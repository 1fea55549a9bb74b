"""User patterns (`extra_patterns`): validation at start-up, and the windows they run in."""

from __future__ import annotations

import importlib
import re
from collections.abc import Iterable
from typing import Any, Final

from launchready_sdk.errors import SettingsError
from launchready_sdk.redaction._markers import marker_for

EXTRA_WINDOW: Final = 16_384
EXTRA_OVERLAP: Final = 512


def _has_nested_repeat(pattern: str) -> bool:
    """Whether `pattern` repeats a group that itself repeats, the usual shape of ReDoS."""
    try:
        parser = importlib.import_module("re._parser")
        return _nested(parser.parse(pattern).data, parser, outer_max=1)
    except Exception:  # the private parser moved: the pattern is still compiled and used
        return False


def _nested(items: Any, parser: Any, outer_max: int) -> bool:
    """Walk a parsed pattern; True when an unbounded repeat sits inside another repeat."""
    repeats = (parser.MAX_REPEAT, parser.MIN_REPEAT, getattr(parser, "POSSESSIVE_REPEAT", -1))
    for op, av in items:
        if any(op is r for r in repeats):
            _low, high, sub = av
            if outer_max > 1 and high > 1 and parser.MAXREPEAT in (outer_max, high):
                return True
            if _nested(sub.data, parser, max(outer_max, high)):
                return True
        elif any(_nested(sub.data, parser, outer_max) for sub in _subpatterns(av, parser)):
            return True
    return False


def _subpatterns(av: Any, parser: Any) -> list[Any]:
    if isinstance(av, parser.SubPattern):
        return [av]
    if isinstance(av, (list, tuple)):
        return [sub for item in av for sub in _subpatterns(item, parser)]
    return []


def compile_extra(patterns: Iterable[tuple[str, str]]) -> tuple[tuple[str, re.Pattern[str]], ...]:
    compiled = []
    for name, source in patterns:
        rule = re.sub(r"[^a-z0-9_]", "_", str(name).lower()).strip("_")[:40]
        if not rule:
            raise SettingsError("extra_patterns", f"rule name {name!r} has no letters or digits")
        try:
            pattern = re.compile(source)
        except re.error as exc:
            raise SettingsError("extra_patterns", f"{rule}: invalid regex ({exc})") from exc
        if pattern.fullmatch(""):
            raise SettingsError("extra_patterns", f"{rule}: the pattern matches the empty string")
        if _has_nested_repeat(source):
            raise SettingsError(
                "extra_patterns",
                f"{rule}: a repeated group that repeats again can take exponential time",
                r"r'acme_[A-Za-z0-9]{32}'",
            )
        compiled.append((marker_for(rule), pattern))
    return tuple(compiled)


def overlaps(
    start: int, end: int, protected: list[tuple[int, int]], spans: list[tuple[int, int, str]]
) -> bool:
    if any(start < p_end and p_start < end for p_start, p_end in protected):
        return True
    return any(start < s_end and s_start < end for s_start, s_end, _ in spans)
