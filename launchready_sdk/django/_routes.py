"""Route templates from Django's resolver, in the SDK's `{name}` style, and the URLconf's list."""

from __future__ import annotations

import dataclasses
import functools
import re
from collections.abc import Iterable, Iterator
from typing import Any


@dataclasses.dataclass(frozen=True)
class UrlRoute:
    path: str
    endpoint: object = None


def walk_urlconf(patterns: Iterable[Any], prefix: str, depth: int = 0) -> Iterator[str]:
    if depth > 16:
        return
    for entry in patterns:
        route = prefix + _strip_start(str(entry.pattern), bool(prefix))
        children = getattr(entry, "url_patterns", None)
        if children is not None:
            yield from walk_urlconf(children, route, depth + 1)
        else:
            yield django_route_template(route)


def _strip_start(route: str, inner: bool) -> str:
    return route[1:] if inner and route.startswith("^") else route


_PATH_PARAM = re.compile(r"<(?:[^<>:]+:)?(\w+)>")
_REGEX_UNESCAPE = re.compile(r"\\([./\-_~])")


@functools.lru_cache(maxsize=2048)
def django_route_template(route: str) -> str:
    """A Django route (`products/<int:pk>/`, `^a/(?P<slug>[-\\w]+)/$`) in `{name}` style."""
    text = _regex_groups(route) if "(" in route else route
    text = _PATH_PARAM.sub(r"{\1}", text)
    text = text.replace("\\A", "").replace("\\Z", "")
    text = text.replace("^", "").replace("$", "")
    text = _REGEX_UNESCAPE.sub(r"\1", text)
    return "/" + text.lstrip("/")


def _regex_groups(route: str) -> str:
    """Replace each top-level group: `(?P<name>...)` by `{name}`, unnamed ones by `{argN}`."""
    out: list[str] = []
    depth = 0
    start_name: str | None = None
    unnamed = 0
    i = 0
    while i < len(route):
        ch = route[i]
        if ch == "\\" and i + 1 < len(route):
            if depth == 0:
                out.append(route[i : i + 2])
            i += 2
            continue
        if ch == "(":
            if depth == 0:
                named = re.match(r"\(\?P<(\w+)>", route[i:])
                if named:
                    start_name = named.group(1)
                elif route.startswith("(?:", i) or not route.startswith("(?", i):
                    unnamed += 1
                    start_name = f"arg{unnamed}"
                else:
                    start_name = None  # a look-around or flag group: dropped
            depth += 1
        elif ch == ")" and depth:
            depth -= 1
            if depth == 0 and start_name is not None:
                out.append("{" + start_name + "}")
        elif depth == 0:
            out.append(ch)
        i += 1
    return "".join(out)
