"""Line numbers for keys of a TOML document, which `tomllib` does not report.

`find_line(text, path, key)` finds where `key` is written inside the table at `path` (table
names and array-of-tables indexes, e.g. `("flow", 1, "step", 0)`). It follows `[table]` and
`[[array]]` headers, counting array entries per parent, and looks for `key =` in the matching
section, also inside inline tables on its lines. It is a search, not a parser: quoted keys
with dots or brackets inside, or multi-line strings that look like headers, can mislead it,
and then it answers with the first plausible line, or None.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import cast

Path = Sequence[str | int]

_HEADER = re.compile(r"^\s*(\[\[?)\s*(.+?)\s*\]\]?\s*(?:#.*)?$")


def split_dotted(text: str) -> list[str]:
    """`a."b.c".d` -> ["a", "b.c", "d"]."""
    keys: list[str] = []
    for match in re.finditer(r'\s*("(?:[^"\\]|\\.)*"|\'[^\']*\'|[^.\s]+)\s*(?:\.|$)', text):
        token = match.group(1)
        keys.append(token[1:-1] if token[:1] in "\"'" else token)
    return keys


def sections(text: str) -> list[tuple[tuple[str | int, ...], int, int]]:
    """(concrete path, first line index, end line index) of every section, the root first."""
    lines = text.splitlines()
    counts: dict[tuple[str | int, ...], int] = {}
    arrays: set[tuple[str, ...]] = set()
    current: dict[tuple[str, ...], int] = {}
    found: list[tuple[tuple[str | int, ...], int, int]] = []
    start, path = 0, cast(tuple[str | int, ...], ())
    for i, line in enumerate(lines):
        match = _HEADER.match(line)
        if match is None or line.lstrip().startswith("#"):
            continue
        found.append((path, start, i))
        keys = split_dotted(match.group(2))
        concrete: list[str | int] = []
        for depth, key in enumerate(keys):
            concrete.append(key)
            abstract = tuple(keys[: depth + 1])
            last = depth == len(keys) - 1
            if match.group(1) == "[[" and last:
                parent = tuple(concrete)
                counts[parent] = counts.get(parent, -1) + 1
                current[abstract] = counts[parent]
                arrays.add(abstract)
                concrete.append(counts[parent])
            elif abstract in arrays and not last:
                concrete.append(current[abstract])
        start, path = i, tuple(concrete)
    found.append((path, start, len(lines)))
    return found


def find_line(text: str, path: Path, key: str) -> int | None:
    """The 1-based line where `key` is set inside the table at `path`, or None."""
    lines = text.splitlines()
    pattern = re.compile(rf"(?:^|[\s{{,.])[\"']?{re.escape(key)}[\"']?\s*=")
    target = tuple(path)
    best: tuple[int, int, int] | None = None  # (matched depth, start, end)
    for concrete, start, end in sections(text):
        depth = len(concrete)
        if target[:depth] == concrete and (best is None or depth > best[0]):
            best = (depth, start, end)
    if best is not None:
        _, start, end = best
        for i in range(start, end):
            if pattern.search(_strip_comment(lines[i])):
                return i + 1
    for i, line in enumerate(lines):
        if pattern.search(_strip_comment(line)):
            return i + 1
    return None


def _strip_comment(line: str) -> str:
    # Good enough for scenario files: a '#' inside a quoted string keeps the line whole.
    if "#" in line and line.count('"') == 0 and line.count("'") == 0:
        return line.split("#", 1)[0]
    return line
