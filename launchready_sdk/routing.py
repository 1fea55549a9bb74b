"""Route templates: of a finished request, and of every route an app serves.

`route_template(scope, ...)` names a finished request by the full template of the route that
served it (`/api/v1/orders/{oid}`), from what the routers left in the scope: Starlette's
`scope["route"]`, FastAPI's effective route context for included routers, and the root path
that mounts added. It never re-walks the routes per request and never uses the raw path.

`iter_route_paths(app)` lists the templates an app serves, for start-up reports (which app
routes a rate-limit rule covers). It follows `.app` through middleware layers and walks
Starlette and FastAPI routers, mounted sub-apps and included routers. Anything either function
cannot read is skipped: a framework change can make them less complete but never break a
request.
"""

from __future__ import annotations

from collections.abc import Iterator, MutableMapping
from typing import Any

_MAX_DEPTH = 16
# A layer that answers for the app (a cache hit) names the route it answered for here.
SCOPE_ROUTE = "launchready.route"
Scope = MutableMapping[str, Any]


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


# --- route templates --------------------------------------------------------------------------


def route_template(scope: Scope, root_path: str = "", status: int = 200) -> str | None:
    """The full route template of a finished request, from what the routers left in the scope.

    `root_path` is the scope's root path when the request reached the caller, so the prefix
    that mounts added is `scope["root_path"]` minus it. None when nothing matched.
    """
    named = scope.get(SCOPE_ROUTE)
    if isinstance(named, str):
        return named
    route = scope.get("route")
    if route is None:
        return None
    facts = _ROUTE_FACTS.get(id(route))
    if facts is None or facts[0] is not route:
        facts = _route_facts(route)
    path = facts[1]
    fastapi_scope = scope.get("fastapi")
    if fastapi_scope:  # FastAPI ≥ 0.137 included routers: the full path format
        effective = fastapi_scope.get("effective_route_context")
        if effective is not None and getattr(effective, "original_route", None) is route:
            full_format = getattr(effective, "path_format", None)
            if isinstance(full_format, str) and full_format:
                path = full_format
    if path is None:
        return None
    full: str = scope.get("root_path", "")
    if not full and not facts[2]:  # the common case: no mount anywhere on the way
        return path
    prefix = full[len(root_path) :] if full.startswith(root_path) else ""
    if facts[2]:
        if status == 404:
            return None  # a mounted router that matched nothing
        prefix, path = prefix or path, "/{path}"
    if prefix:
        prefix = _template_prefix(prefix, scope.get("path_params"), route)
    return prefix + path


# id(route) -> (route, its path, is a mount); the route is kept so its id cannot be reused.
_ROUTE_FACTS: dict[int, tuple[Any, str | None, bool]] = {}


def _route_facts(route: Any) -> tuple[Any, str | None, bool]:
    path = getattr(route, "path", None)
    # A Mount (or a mount-like route without an endpoint); a catch-all `Route("/{path:path}")`
    # has the same path format but an endpoint, and is a route like any other.
    mount = type(route).__name__ == "Mount" or (
        not hasattr(route, "endpoint")
        and str(getattr(route, "path_format", "")).endswith("/{path}")
    )
    facts = (route, path if isinstance(path, str) else None, mount)
    if len(_ROUTE_FACTS) > 10_000:
        _ROUTE_FACTS.clear()
    _ROUTE_FACTS[id(route)] = facts
    return facts


def _template_prefix(prefix: str, params: Any, route: Any) -> str:
    """Put `{name}` back into a mount prefix for path parameters the innermost route lacks."""
    if not isinstance(params, dict) or not params:
        return prefix
    own = getattr(route, "param_convertors", None) or {}
    values = {str(v): k for k, v in params.items() if k not in own}
    if not values:
        return prefix
    return "/".join(f"{{{values[s]}}}" if s in values else s for s in prefix.split("/"))
