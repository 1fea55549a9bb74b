"""`CacheMiddleware`: answers the cache routes' GET/HEAD requests from the store (its keys,
security stance and limits are in the `launchready_sdk.cache` docstring)."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

from launchready_sdk.cache._backends import Found
from launchready_sdk.cache._core import Cache
from launchready_sdk.cache._entry import (
    CS_COALESCED,
    CS_STALE_ERROR,
    CS_STORE_DOWN,
    X_BYPASS,
    X_HIT,
    X_STALE,
    Entry,
    cache_status,
    replay,
)
from launchready_sdk.cache._recorder import (
    Recorder,
    carry_route,
    discarding,
    origin_scope,
    quiet_receive,
)
from launchready_sdk.cache._rules import CacheRule, RequestKey, Route
from launchready_sdk.context import request_method, route_path
from launchready_sdk.logs import get_logger
from launchready_sdk.perimeter import SCOPE_CSP_NONCE
from launchready_sdk.routing import SCOPE_ROUTE, route_template
from launchready_sdk.store import RedisStore
from launchready_sdk.types import ASGIApp, Message, Receive, Scope, Send

_log = get_logger("launchready.cache")


class CacheMiddleware:
    """Serves GET/HEAD responses of the cache routes from the store (see `launchready_sdk.cache`).

    Args:
        app: the ASGI app to wrap.
        routes: pattern to TTL seconds or `CacheRule` (ignored when `cache` is given).
        store: a `RedisStore`, or None for the in-process store.
        cache: an existing `Cache` (what `LaunchReady` passes); other options then ignored.
        **options: the other keyword arguments of `Cache`.
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        routes: Mapping[str, int | CacheRule] | None = None,
        store: RedisStore | None = None,
        cache: Cache | None = None,
        **options: Any,
    ) -> None:
        self.app = app
        self.cache = cache if cache is not None else Cache(routes, store=store, **options)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        found = self.cache.table.match(route_path(scope))
        if found is None:
            await self.app(scope, receive, send)
            return
        route = found[1]
        method = request_method(scope)
        if method != "GET" and method != "HEAD":
            await self.app(scope, receive, send)
            return
        request = self.cache.request(scope, route)
        if isinstance(request, str):
            await self._bypass(
                scope, receive, send, route, cache_status(f"fwd=bypass; detail={request}")
            )
            return
        await self._serve(scope, receive, send, route, request)

    async def _bypass(
        self, scope: Scope, receive: Receive, send: Send, route: Route, status: tuple[bytes, bytes]
    ) -> None:
        route.counts["bypass"] = route.counts.get("bypass", 0) + 1

        async def send_marked(message: Message) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", ()), X_BYPASS, status]}
            await send(message)

        await self.app(scope, receive, send_marked)

    async def _serve(
        self, scope: Scope, receive: Receive, send: Send, route: Route, request: RequestKey
    ) -> None:
        cache = self.cache
        found = await cache.lookup(request.key, request.generations)
        if found is None:
            await self._bypass(scope, receive, send, route, CS_STORE_DOWN)
            return
        entry, age_ms = found.entry, found.age_ms
        head = request_method(scope) == "HEAD"
        if entry is not None and age_ms < entry.fresh_ms:
            _answered(scope, route, "hit", entry)
            status = cache_status(f"hit; ttl={(entry.fresh_ms - age_ms) // 1000}")
            await replay(send, entry, request.if_none_match, head, age_ms, X_HIT, status)
            return
        if entry is not None and age_ms < entry.fresh_ms + route.swr_ms:
            _answered(scope, route, "stale", entry)
            cache.spawn(request.key, self._refresh(scope, route, request))
            ttl = (entry.fresh_ms - age_ms) // 1000
            status = cache_status(f"hit; fwd=stale; ttl={ttl}; detail=stale-while-revalidate")
            await replay(send, entry, request.if_none_match, head, age_ms, X_STALE, status)
            return
        if head:
            status = cache_status("fwd=uri-miss; detail=head")
            await self._bypass(scope, receive, send, route, status)
            return
        await self._miss(scope, receive, send, route, request, found)

    async def _miss(
        self,
        scope: Scope,
        receive: Receive,
        send: Send,
        route: Route,
        request: RequestKey,
        found: Found,
    ) -> None:
        """Join this process's fill of the key, or lead it: take the fleet lock (or wait for
        another worker's fill), call the app, and hand the entry to the joiners."""
        cache = self.cache
        flight = cache.join(request.key, found.generations)
        if flight is not None:
            shared = await cache.joined(flight)
            if isinstance(shared, Entry):
                _answered(scope, route, "hit", shared)
                await replay(send, shared, request.if_none_match, False, 0, X_HIT, CS_COALESCED)
            else:
                await self._origin(scope, receive, send, route, request, found)
            return
        future = cache.lead(request.key, found.generations)
        result: Entry | None = None
        token: str | None = None
        try:
            token = await cache.lock(request.key)
            if token is None:
                filled, token = await cache.wait_for_fill(request.key, request.generations)
                if filled is not None and filled.entry is not None:
                    _answered(scope, route, "hit", filled.entry)
                    age_ms = filled.age_ms
                    inm = request.if_none_match
                    await replay(send, filled.entry, inm, False, age_ms, X_HIT, CS_COALESCED)
                    result = filled.entry
                    return
            result = await self._origin(scope, receive, send, route, request, found)
        finally:
            if token is not None:
                await cache.unlock(request.key, token)
            cache.land(request.key, found.generations, future, result)

    async def _origin(
        self,
        scope: Scope,
        receive: Receive,
        send: Send,
        route: Route,
        request: RequestKey,
        found: Found,
    ) -> Entry | None:
        """Call the app, forward its response, store it; serve the stale entry if it fails."""
        stale = found.entry
        nonce = scope.get(SCOPE_CSP_NONCE)
        recorder = Recorder(
            send, self.cache, route, request.if_none_match, stale is not None, nonce=nonce
        )
        origin = origin_scope(scope, request)
        root_path = scope.get("root_path", "")
        try:
            await self.app(origin, receive, recorder)
        except Exception:
            if stale is None or recorder.started:
                raise
            _log.warning("cache.stale_if_error", route=route.pattern, exc_info=True)
            recorder.fell_back = True
        finally:
            carry_route(origin, scope)
        if recorder.fell_back and not recorder.started and stale is not None:
            _answered(scope, route, "stale", stale)
            await replay(
                send, stale, request.if_none_match, False, found.age_ms, X_STALE, CS_STALE_ERROR
            )
            return None
        if recorder.entry is not None:
            recorder.entry.route = route_template(scope, root_path, recorder.entry.status)
        return await self._keep(route, request, found, recorder)

    async def _keep(
        self, route: Route, request: RequestKey, found: Found, recorder: Recorder
    ) -> Entry | None:
        kind = "miss" if recorder.reason is None else "bypass"
        route.counts[kind] = route.counts.get(kind, 0) + 1
        if recorder.reason is not None and recorder.reason.startswith(("vary", "cache-control")):
            self.cache.warn_once(route.pattern, recorder.reason)
        entry = recorder.entry
        if entry is None:
            return None
        await self.cache.store(request.key, entry, request.generations, found.generations)
        return entry

    async def _refresh(self, scope: Scope, route: Route, request: RequestKey) -> None:
        """Background revalidation of a stale entry, once per fleet (the fill lock)."""
        cache = self.cache
        token = await cache.lock(request.key)
        if token is None:
            return
        try:
            found = await cache.lookup(request.key, request.generations)
            if found is None:
                return
            done = asyncio.Event()
            recorder = Recorder(discarding(done), cache, route, None, False)
            refresh = RequestKey(request.key, request.generations, None, request.query)
            origin = origin_scope(scope, refresh)
            await self.app(origin, quiet_receive(done), recorder)
            if recorder.entry is not None:
                root_path = scope.get("root_path", "")
                recorder.entry.route = route_template(origin, root_path, recorder.entry.status)
                await cache.store(
                    request.key, recorder.entry, request.generations, found.generations
                )
        except Exception:
            _log.warning("cache.refresh_failed", route=route.pattern, exc_info=True)
        finally:
            await cache.unlock(request.key, token)


def _answered(scope: Scope, route: Route, kind: str, entry: Entry) -> None:
    """Count a request answered from the store, and name its route (the app never saw it):
    the app's route template the entry was stored with, else the cache rule's pattern."""
    route.counts[kind] = route.counts.get(kind, 0) + 1
    scope[SCOPE_ROUTE] = entry.route or route.pattern
