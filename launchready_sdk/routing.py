"""Route discovery for start-up reports: the path templates an app serves.

Used once at start-up (never per request) to tell which app routes a rate-limit rule covers.
It follows `.app` through middleware layers and walks Starlette and FastAPI routers, mounted
sub-apps and included routers. Anything it cannot read is skipped: discovery is a report, and
a framework change can make it less complete but never break a request.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

_MAX_DEPTH = 16


def iter_route_paths(app: Any) -> Iterator[str]:
    """Yield the full path template of every route reachable from `app`."""
    yield from _walk(app, "", 0, set())


def _walk(app: Any, prefix: str, depth: int, seen: set[int]) -> Iterator[str]:
    if app is None or depth > _MAX_DEPTH or id(app) in seen:
        return
    seen.add(id(app))
    routes = _routes_of(app)
    if routes is None:
        yield from _walk(getattr(app, "app", None), prefix, depth + 1, seen)
        return
    for route in routes:
        included = getattr(route, "original_router", None)  # FastAPI's included routers
        if included is not None:
            extra = getattr(getattr(route, "include_context", None), "prefix", "") or ""
            yield from _walk(included, prefix + str(extra), depth + 1, seen)
            continue
        path = getattr(route, "path", None)
        if not isinstance(path, str):
            continue
        full = prefix + path
        children = getattr(route, "routes", None)
        inner = getattr(route, "app", None)
        if children is not None or (inner is not None and _routes_of(inner) is not None):
            yield from _walk(route, full, depth + 1, seen)
        elif hasattr(route, "endpoint") or inner is not None:
            yield full or "/"


def _routes_of(app: Any) -> list[Any] | None:
    try:
        routes = getattr(app, "routes", None)
    except Exception:
        return None
    return list(routes) if isinstance(routes, list | tuple) else None
