"""`Cache`: the routes, the store and its failure policy, single-flight and invalidation that
`CacheMiddleware` and `@cached` share."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import hashlib
import time
from collections.abc import Callable, Coroutine, Iterable, Mapping, Sequence
from typing import Any

from launchready_sdk.cache._backends import (
    DEFAULT_MEMORY_MAX_BYTES,
    Backend,
    Found,
    MemoryBackend,
    RedisBackend,
)
from launchready_sdk.cache._entry import Entry
from launchready_sdk.cache._rules import (
    MAX_LIFETIME_S,
    MAX_VARY_VALUE_BYTES,
    CacheRule,
    RequestKey,
    Route,
    accepted_codings,
    join_key,
    path_generation,
    query_parts,
)
from launchready_sdk.context import route_path
from launchready_sdk.credentials import is_credential_header
from launchready_sdk.errors import StoreUnavailable
from launchready_sdk.logs import get_logger
from launchready_sdk.patterns import PatternTable, normalize_path, validate_pattern
from launchready_sdk.proxy import ProxyResolver
from launchready_sdk.store import RedisStore
from launchready_sdk.types import Scope

_log = get_logger("launchready.cache")

DEFAULT_MAX_BODY_BYTES = 1024 * 1024
DEFAULT_STALE_WHILE_REVALIDATE_S = 10
DEFAULT_STALE_IF_ERROR_S = 300
DEFAULT_LOCK_LEASE_S = 5.0
DEFAULT_WAIT_S = 5.0
DEFAULT_CREDENTIAL_HEADERS = ("x-api-key", "x-auth-token", "x-access-token")


class Failed:
    """A flight whose leader raised; joiners re-raise the same exception."""

    def __init__(self, exc: BaseException) -> None:
        self.exc = exc


class Cache:
    """Routes, a store, single-flight and invalidation, shared by the middleware and `@cached`.

    Its API is `invalidate`, `stats` and `aclose`; the other methods serve `CacheMiddleware`
    and `@cached`.

    Args:
        routes: pattern to TTL seconds or to a `CacheRule`.
        store: a `RedisStore` to share entries across workers; None keeps them in memory.
        host: resolves the request host (`ProxyResolver.host`); the default trusts no proxy.
        scheme: resolves the request scheme (`ProxyResolver.scheme`).
        version: your app/deploy version; entries of another version are never served.
        max_body_bytes: larger responses are streamed through and not stored.
        memory_max_bytes: the memory store's bound (LRU).
        credential_headers: more request headers that carry credentials, besides every name
            `credentials.is_credential_header` recognises (auth, token, key, session...).
        stale_while_revalidate_s: default STALE window of routes given as plain TTLs.
        stale_if_error_s: default stale-if-error window of routes given as plain TTLs.
        lock_lease_s: lease of the fleet-wide fill lock (a dead leader frees it after this).
        wait_s: longest a request waits for another request's fill before calling the app.
        honor_client_no_cache: let a request's `Cache-Control: no-cache` skip the lookup.
    """

    def __init__(
        self,
        routes: Mapping[str, int | CacheRule] | None = None,
        *,
        store: RedisStore | None = None,
        host: Callable[[Scope], str | None] | None = None,
        scheme: Callable[[Scope], str] | None = None,
        version: str = "",
        max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
        memory_max_bytes: int = DEFAULT_MEMORY_MAX_BYTES,
        credential_headers: Iterable[str] = DEFAULT_CREDENTIAL_HEADERS,
        stale_while_revalidate_s: int = DEFAULT_STALE_WHILE_REVALIDATE_S,
        stale_if_error_s: int = DEFAULT_STALE_IF_ERROR_S,
        lock_lease_s: float = DEFAULT_LOCK_LEASE_S,
        wait_s: float = DEFAULT_WAIT_S,
        honor_client_no_cache: bool = False,
    ) -> None:
        resolver = ProxyResolver(())
        self.backend: Backend = (
            RedisBackend(store) if store is not None else MemoryBackend(memory_max_bytes)
        )
        self.version = version.encode()
        self.max_body_bytes = max_body_bytes
        self.lock_lease_ms = int(lock_lease_s * 1000)
        self.wait_s = wait_s
        self.honor_client_no_cache = honor_client_no_cache
        self._host = host or resolver.host
        self._scheme = scheme or resolver.scheme
        self._extra_credentials = frozenset(h.lower().encode() for h in credential_headers)
        self._defaults = (stale_while_revalidate_s, stale_if_error_s)
        self.routes = {p: self._compile(p, r) for p, r in (routes or {}).items()}
        self.table: PatternTable[Route] = PatternTable(self.routes)
        self._flights: dict[tuple[str, str], asyncio.Future[Any]] = {}
        self._refreshing: set[str] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._warned: set[tuple[str, str]] = set()

    def _compile(self, pattern: str, value: int | CacheRule) -> Route:
        rule = value if isinstance(value, CacheRule) else CacheRule(ttl_s=int(value))
        if not 0 < rule.ttl_s <= MAX_LIFETIME_S:
            raise ValueError(f"cache route {pattern!r}: ttl_s must be 1..{MAX_LIFETIME_S}")
        swr = (
            self._defaults[0]
            if rule.stale_while_revalidate_s is None
            else rule.stale_while_revalidate_s
        )
        sie = self._defaults[1] if rule.stale_if_error_s is None else rule.stale_if_error_s
        vary = tuple(dict.fromkeys(h.lower() for h in rule.vary))
        names = ("all", "r:" + normalize_path(pattern).lower(), *(f"t:{t}" for t in rule.tags))
        return Route(
            pattern=pattern,
            rule=rule,
            fresh_ms=rule.ttl_s * 1000,
            swr_ms=max(0, swr) * 1000,
            lifetime_ms=(rule.ttl_s + max(0, swr, sie)) * 1000,
            query=None if rule.query is None else frozenset(q.encode() for q in rule.query),
            vary=tuple(h.encode() for h in vary),
            vary_allowed=frozenset({*vary, "cookie", "authorization"}),
            credentials_ok=None if rule.allow_credentials else frozenset(h.encode() for h in vary),
            generations=tuple(self.backend.name("g", n) for n in names),
        )

    # -- keys --

    def request(self, scope: Scope, route: Route) -> RequestKey | str:
        """The key material of a request, or why it bypasses the cache."""
        if_none_match: bytes | None = None
        varied: dict[bytes, bytes] = {}
        ok = route.credentials_ok
        for name, value in scope["headers"]:
            if (
                ok is not None
                and name not in ok
                and (name in self._extra_credentials or is_credential_header(name))
            ):
                return "credentials"
            if name == b"if-none-match":
                if_none_match = value
            elif name == b"range":
                return "range"
            elif self.honor_client_no_cache and name == b"cache-control" and b"no-cache" in value:
                return "client-no-cache"
            if name in route.vary:
                varied[name] = varied[name] + b"," + value if name in varied else value
        host = self._host(scope)
        query = query_parts(scope.get("query_string", b""), route.query)
        if host is None or query is None:
            return "host" if host is None else "query"
        path = normalize_path(route_path(scope), decoded=True)
        parts = [
            self.version,
            self._scheme(scope).encode(),
            host.encode(),
            path.encode("utf-8", "backslashreplace"),
            query[0],
        ]
        for name in route.vary:
            value = varied.get(name, b"")
            if len(value) > MAX_VARY_VALUE_BYTES:
                return "vary"
            parts.append(accepted_codings(value) if name == b"accept-encoding" else value.strip())
        digest = hashlib.blake2b(join_key(*parts), digest_size=16).hexdigest()
        generations = (*route.generations, self.backend.name("g", path_generation(path)))
        return RequestKey(self.backend.name("e", digest), generations, if_none_match, query[1])

    # -- storage with failure policy --

    async def lookup(self, key: str, generations: Sequence[str]) -> Found | None:
        """A lookup, or None when the store is unavailable."""
        try:
            return await self.backend.lookup(key, generations)
        except StoreUnavailable:
            return None

    async def store(self, key: str, entry: Entry, generations: Sequence[str], read: str) -> bool:
        """Store unless an invalidation happened since `read`; False also when the store is down."""
        try:
            return await self.backend.store(key, entry, generations, read)
        except StoreUnavailable:
            return False

    async def lock(self, key: str) -> str | None:
        try:
            return await self.backend.lock(key, self.lock_lease_ms)
        except StoreUnavailable:
            return "unavailable"

    async def unlock(self, key: str, token: str) -> None:
        if token != "unavailable":
            with contextlib.suppress(StoreUnavailable):
                await self.backend.unlock(key, token)

    async def wait_for_fill(
        self, key: str, generations: Sequence[str]
    ) -> tuple[Found | None, str | None]:
        """Poll while another worker fills `key`: (fresh lookup, None) or (None, our lock token)."""
        deadline = time.monotonic() + self.wait_s
        delay = 0.005
        while time.monotonic() < deadline:
            await asyncio.sleep(delay)
            delay = min(delay * 2, 0.05)
            found = await self.lookup(key, generations)
            if found is None:
                return None, "unavailable"
            if found.entry is not None and found.age_ms < found.entry.fresh_ms:
                return found, None
            token = await self.lock(key)
            if token is not None:
                return None, token
        return None, "unavailable"

    # -- single-flight --

    def join(self, key: str, read: str) -> asyncio.Future[Any] | None:
        """The in-flight fill of this key under these generations, if any (on this event
        loop: a WSGI worker's threads each run one, and a future serves only its own)."""
        future = self._flights.get((key, read))
        if future is not None and future.get_loop() is not asyncio.get_running_loop():
            return None
        return future

    def lead(self, key: str, read: str) -> asyncio.Future[Any]:
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._flights[(key, read)] = future
        return future

    def land(self, key: str, read: str, future: asyncio.Future[Any], result: Any) -> None:
        if self._flights.get((key, read)) is future:
            del self._flights[(key, read)]
        if not future.done():
            future.set_result(result)

    async def joined(self, future: asyncio.Future[Any]) -> Any:
        """The leader's result, or None after `wait_s`."""
        try:
            return await asyncio.wait_for(asyncio.shield(future), self.wait_s)
        except TimeoutError:
            return None

    # -- background work --

    def spawn(self, key: str, work: Coroutine[Any, Any, None]) -> None:
        """Run one background refresh per key per process."""
        if key in self._refreshing:
            work.close()
            return
        self._refreshing.add(key)
        task = asyncio.get_running_loop().create_task(work)
        self._tasks.add(task)
        task.add_done_callback(functools.partial(self._refreshed, key))

    def _refreshed(self, key: str, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        self._refreshing.discard(key)

    async def aclose(self) -> None:
        """Cancel background refreshes (at shutdown)."""
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    def warn_once(self, route: str, detail: str) -> None:
        if (route, detail) not in self._warned and len(self._warned) < 1000:
            self._warned.add((route, detail))
            _log.warning("cache.not_storable", route=route, reason=detail)

    # -- invalidation --

    async def invalidate(
        self, path_or_pattern: str | None = None, *, tags: Iterable[str] = ()
    ) -> bool:
        """Invalidate a path (every query and host), a route pattern, tags, or (no argument) all.

        Effective for the next lookup in every worker sharing the store. Returns False (and
        logs) when the store is unavailable, so entries stored earlier may be served until
        their TTL once it is back.

        Raises:
            ValueError: a pattern that matches no cache route.
        """
        names = [self.backend.name("g", f"t:{tag}") for tag in tags]
        if path_or_pattern is not None:
            names += self._targets(path_or_pattern)
        elif not names:
            names.append(self.backend.name("g", "all"))
        try:
            await self.backend.bump(names)
        except StoreUnavailable:
            _log.error("cache.invalidate_failed", target=path_or_pattern, tags=list(tags))
            return False
        return True

    def _targets(self, path_or_pattern: str) -> list[str]:
        text = path_or_pattern.split("?", 1)[0]
        if "{" not in text and "*" not in text:
            return [self.backend.name("g", path_generation(normalize_path(text)))]
        validate_pattern(text)
        table = PatternTable({text: True})
        names = [r.generations[1] for p, r in self.routes.items() if table.match(normalize_path(p))]
        if not names:
            raise ValueError(f"{path_or_pattern!r} matches no cache route")
        return names

    def stats(self) -> dict[str, dict[str, int]]:
        """Per route pattern, how many requests were HIT, MISS, STALE and BYPASS."""
        return {pattern: dict(route.counts) for pattern, route in self.routes.items()}
