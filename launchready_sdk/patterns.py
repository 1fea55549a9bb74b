"""Route patterns: path normalisation, the pattern grammar and `PatternTable`.

Rate-limit, cache, idempotency, budget and perimeter rules are looked up in a `PatternTable`
with a path from `normalize_path`. A pattern starts with `/`; `{name}` matches one path
segment; a trailing `*` matches the rest. A rule may name the methods it covers
(`"GET,POST /search"`, see `split_methods`).

Security stance: paths are percent-decoded at most once, dot segments are resolved without
climbing above the root, repeated and trailing slashes are dropped, and patterns match
case-insensitively, so `/LOGIN/`, `//login`, `/%6Cogin` and `/api/../login` all meet the rule
for `/login`. Matrix parameters (`/login;x=1`) are left alone: ASGI routers do not strip them
either. Lookups are cached per path in bounded LRUs.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Generic, NamedTuple, TypeVar
from urllib.parse import unquote

__all__ = ["PatternTable", "normalize_path", "split_methods", "validate_pattern"]

_V = TypeVar("_V")
_MATCH_CACHE_SIZE = 2048
_MAX_CACHED_PATH = 512
_MAX_PATTERN_LENGTH = 2048
_PLACEHOLDER = re.compile(r"\{([a-z_][a-z0-9_]*)\}")


def normalize_path(path: str, *, decoded: bool = False) -> str:
    """Return the canonical form of a URL path; never raises, linear in the input.

    Percent-decodes once unless `decoded` (pass True for ASGI `scope["path"]`, which the
    server already decoded), resolves `.` and `..` without climbing above the root, collapses
    repeated slashes and drops a trailing one. Case is kept; matching lowercases. Bad
    escapes are left as they are and invalid UTF-8 becomes U+FFFD.
    """
    if not decoded and "%" in path:
        path = unquote(path)
    if (
        path[:1] == "/"
        and "//" not in path
        and "/." not in path
        and (path[-1] != "/" or len(path) == 1)
    ):
        return path
    segments: list[str] = []
    for segment in path.split("/"):
        if segment == "..":
            if segments:
                segments.pop()
        elif segment and segment != ".":
            segments.append(segment)
    return "/" + "/".join(segments)


# --- patterns ------------------------------------------------------------------------------


class _Pattern(NamedTuple):
    key: str
    segments: tuple[str, ...]

    @property
    def is_exact(self) -> bool:
        return not any(s == "*" or s.startswith("{") for s in self.segments)

    def rank(self) -> tuple[Any, ...]:
        """Sort key, most specific first: more literal segments, more fixed segments (literal
        or `{name}`), no `*`, then literals further left, then the text itself."""
        kinds = tuple(0 if s == "*" else 1 if s.startswith("{") else 2 for s in self.segments)
        literals = kinds.count(2)
        fixed = literals + kinds.count(1)
        return (-literals, -fixed, 0 in kinds, tuple(-kind for kind in kinds), self.key)

    def regex(self) -> str:
        parts = []
        for segment in self.segments:
            if segment == "*":
                parts.append("(?:/.*)?")
            elif segment.startswith("{"):
                parts.append("/[^/]+")
            else:
                parts.append("/" + re.escape(segment))
        return "".join(parts) or "/"


def validate_pattern(pattern: str) -> None:
    """Check a route pattern such as `/login`, `/products/{id}` or `/webhooks/*`.

    A pattern starts with `/`; `{name}` (an identifier) matches exactly one path segment and
    must be a whole segment; `*` matches the rest of the path, including nothing, and must be
    the last segment.

    Raises:
        ValueError: saying what is wrong with the pattern.
    """
    _compile_pattern(pattern)


def _compile_pattern(pattern: str) -> _Pattern:
    if not isinstance(pattern, str) or not pattern.startswith("/"):
        raise ValueError(f"route pattern {pattern!r} must be a string starting with '/'")
    if len(pattern) > _MAX_PATTERN_LENGTH:
        raise ValueError(f"route pattern is longer than {_MAX_PATTERN_LENGTH} characters")
    key = normalize_path(pattern).lower()
    segments = tuple(key.split("/")[1:]) if key != "/" else ()
    names: set[str] = set()
    for index, segment in enumerate(segments):
        _check_segment(pattern, segment, index == len(segments) - 1, names)
    return _Pattern(key, segments)


def _check_segment(pattern: str, segment: str, is_last: bool, names: set[str]) -> None:
    where = f"route pattern {pattern!r}, segment {segment!r}"
    if segment == "*":
        if not is_last:
            raise ValueError(f"{where}: '*' is only allowed as the last segment")
        return
    placeholder = _PLACEHOLDER.fullmatch(segment)
    if placeholder is not None:
        if placeholder[1] in names:
            raise ValueError(f"{where}: placeholder name {placeholder[1]!r} is used twice")
        names.add(placeholder[1])
    elif "*" in segment:
        raise ValueError(f"{where}: '*' must be a whole segment, such as /webhooks/*")
    elif segment.startswith("{") and segment.endswith("}"):
        raise ValueError(f"{where}: a placeholder name must be an identifier, such as {{id}}")
    elif "{" in segment or "}" in segment:
        raise ValueError(f"{where}: a placeholder must be a whole segment, such as /items/{{id}}")


class PatternTable(Generic[_V]):
    """Route patterns mapped to values, matched against normalised paths.

    Matching is case-insensitive. When several patterns match, an exact pattern (no `{name}`,
    no `*`) wins; otherwise the one with more literal segments, then more fixed segments
    (literal or `{name}`), then without `*`, then with its literals further left. Two patterns
    that normalise alike (`/login` and `/LOGIN/`) are refused. Results are cached per path in
    a bounded LRU, so a client sending millions of distinct paths cannot grow memory.

    Args:
        mapping: pattern to value, e.g. `{"/login": "5/minute", "/webhooks/*": "300/minute"}`.

    Raises:
        ValueError: naming a bad or duplicate pattern.
    """

    def __init__(self, mapping: Mapping[str, _V]) -> None:
        self._exact: dict[str, tuple[str, _V]] = {}
        wildcards: list[tuple[_Pattern, str, _V]] = []
        seen: dict[str, str] = {}
        for pattern, value in mapping.items():
            compiled = _compile_pattern(pattern)
            if compiled.key in seen:
                raise ValueError(
                    f"route patterns {seen[compiled.key]!r} and {pattern!r} are the same route"
                )
            seen[compiled.key] = pattern
            if compiled.is_exact:
                self._exact[compiled.key] = (pattern, value)
            else:
                wildcards.append((compiled, pattern, value))
        wildcards.sort(key=lambda item: item[0].rank())
        self._wildcards = [(pattern, value) for _, pattern, value in wildcards]
        self._regex = _alternation([compiled for compiled, _, _ in wildcards])
        self._cached: Callable[[str], tuple[str, _V] | None] = functools.lru_cache(
            maxsize=_MATCH_CACHE_SIZE
        )(self._lookup)

    def __bool__(self) -> bool:
        return bool(self._exact or self._wildcards)

    def __len__(self) -> int:
        return len(self._exact) + len(self._wildcards)

    def __repr__(self) -> str:
        patterns = [p for p, _ in self._exact.values()] + [p for p, _ in self._wildcards]
        return f"PatternTable({patterns!r})"

    @property
    def cached_paths(self) -> int:
        """How many paths the match cache holds now (at most 2048)."""
        info: Any = self._cached.cache_info()  # type: ignore[attr-defined]
        return int(info.currsize)

    def match(self, normalized_path: str) -> tuple[str, _V] | None:
        """Return `(pattern, value)` for the best pattern matching the path, else None.

        `normalized_path` should come from `normalize_path`; it is normalised again (without
        decoding) so a raw path cannot slip past. The pattern is returned as written.
        """
        if self._regex is None and not self._exact:
            return None
        if len(normalized_path) > _MAX_CACHED_PATH:
            return self._lookup(normalized_path)
        return self._cached(normalized_path)

    def _lookup(self, path: str) -> tuple[str, _V] | None:
        key = normalize_path(path, decoded=True).lower()
        exact = self._exact.get(key)
        if exact is not None or self._regex is None:
            return exact
        found = self._regex.fullmatch(key)
        if found is None or found.lastgroup is None:
            return None
        return self._wildcards[int(found.lastgroup[1:])]


def _alternation(patterns: Sequence[_Pattern]) -> re.Pattern[str] | None:
    """One regex trying the patterns in order; the named group that matched gives the index."""
    if not patterns:
        return None
    body = "|".join(f"(?P<p{index}>{p.regex()})" for index, p in enumerate(patterns))
    return re.compile(body, re.DOTALL)


def split_methods(spec: str) -> tuple[frozenset[str] | None, str]:
    """`"GET,POST /search"` -> ({"GET", "POST"}, "/search"); `"/login"` -> (None, "/login")."""
    head, sep, rest = spec.strip().partition(" ")
    if sep and not head.startswith("/"):
        methods = frozenset(m.strip().upper() for m in head.split(",") if m.strip())
        if not methods or not all(m.isalpha() for m in methods):
            raise ValueError(f"bad method list in rule {spec!r}")
        return methods, rest.strip()
    return None, spec.strip()
