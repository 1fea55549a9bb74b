"""A read cache for hot GET routes, an `@cached` decorator, and invalidation by generation.

`CacheMiddleware` sits inside the request-context, health and rate-limit layers, directly
around the app. For a GET or HEAD whose normalised path matches a cache route it answers from
the store (`X-Cache: HIT`), or calls the app once, forwards the response as it comes and stores
it (`MISS`). Every response of a cache route carries `X-Cache: HIT|MISS|STALE|BYPASS` and an RFC
9211 `Cache-Status`; requests on other routes pay one cached pattern lookup.

Keys: GET (HEAD is answered from the GET entry), scheme and host (from the trusted-proxy
resolver, so a spoofed `X-Forwarded-Host` from an untrusted peer changes nothing and a spoofed
`Host` only ever reaches entries of that host), the normalised path, the sorted query string
(with a per-route allow-list the other parameters are dropped before the app sees them, so junk
parameters neither mint entries nor poison one), the request headers the route varies on
(`Accept-Encoding` by default, reduced to the codings it names) and an app/deploy version.

Security stance:

- A request carrying `Authorization`, any `Cookie`, `Proxy-Authorization` or a configured API-key
  header bypasses the cache, unless the route opts in (`allow_credentials=True`, one shared
  entry) or varies on that header (one entry per credential).
- A response is stored only when it is a 200 (a 404 too with `negative_ttl_s`), sets no cookie,
  is not `private`, `no-store` or `no-cache`, has no `Vary: *` nor a `Vary` on a header the key
  does not hold, is not partial, not `text/event-stream`, and is no larger than the cap (1 MiB).
  Replays carry an allow-list of headers; `Set-Cookie`, `Date` and `X-Request-ID` of another
  request are never replayed. A client's `Cache-Control: no-cache` does not force origin load.
- Entries are a versioned binary format (a JSON header and the body bytes), never pickle; an
  entry that does not decode is a miss and is overwritten.
- ETags are quoted content hashes (of body, type and encoding), the same in every worker and
  across restarts; `If-None-Match` (lists, `*`, weak comparison) gets a 304 only from a valid
  entry, so an invalidated entry's ETag gets a fresh 200.

Invalidation bumps generation counters (one for everything, one per route, per tag and per
path); an entry remembers the generations it was read under and the lookup that fetches it reads
the current ones in the same Redis round trip (one Lua script), so an invalidation holds in every
worker at once without KEYS or SCAN. A miss stores its response only if the generations are
still those it read before calling the app (compare-and-set), so a slow miss cannot store data
it read before an invalidation.

Stampede: one origin call per key per process (single-flight) and, with Redis, per fleet (a
lock with a lease; other workers poll for the entry for at most `wait_s`, and a dead leader's
lease lapses). Stale-while-revalidate serves `STALE` and refreshes once in the background;
stale-if-error serves the old entry when the app fails (5xx or an exception before it answered).

Redis down, paused or slow: a request waits at most the store's command timeout once, and not at
all while the breaker is open; it is answered by the app (`BYPASS`), never with a 5xx.

Limits, candidly: a HEAD miss is passed to the app as a HEAD and not stored; streamed responses
are teed (never held back) and stored when they end under the cap, but they get no ETag on the
miss itself; `stale-if-error` cannot help once the app has started its response; without a query
allow-list every distinct query string is its own entry (bounded by TTL and Redis memory, not by
a per-route cap); tags are per route (no per-response surrogate keys); the memory store is per
process, so its invalidations reach only the process that made them.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import hashlib
import secrets
import struct
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Coroutine, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple, ParamSpec, Protocol, TypeVar
from urllib.parse import unquote_to_bytes

import orjson

from launchready_sdk.errors import StoreUnavailable
from launchready_sdk.logs import get_logger
from launchready_sdk.proxy import PatternTable, ProxyResolver, normalize_path, validate_pattern
from launchready_sdk.resp import Arg
from launchready_sdk.routing import SCOPE_ROUTE
from launchready_sdk.stores import RedisStore, Script
from launchready_sdk.types import ASGIApp, Headers, Message, Receive, Scope, Send

P = ParamSpec("P")
R = TypeVar("R")

_log = get_logger("launchready.cache")

DEFAULT_MAX_BODY_BYTES = 1024 * 1024
DEFAULT_MEMORY_MAX_BYTES = 64 * 1024 * 1024
DEFAULT_STALE_WHILE_REVALIDATE_S = 10
DEFAULT_STALE_IF_ERROR_S = 300
DEFAULT_LOCK_LEASE_S = 5.0
DEFAULT_WAIT_S = 5.0
DEFAULT_CREDENTIAL_HEADERS = ("x-api-key", "x-auth-token", "x-access-token")
DEFAULT_VARY = ("accept-encoding",)
MAX_QUERY_BYTES = 4096
MAX_QUERY_PARAMS = 64
MAX_VARY_VALUE_BYTES = 512
MAX_IF_NONE_MATCH_BYTES = 4096
MAX_LIFETIME_S = 15 * 86400
GENERATION_TTL_MS = 2 * MAX_LIFETIME_S * 1000
MEMORY_MAX_GENERATIONS = 100_000
ENTRY_MAGIC = b"LRC1"

# Response headers replayed from an entry; everything else (Set-Cookie, Date, X-Request-ID,
# rate-limit headers, tracing headers) belongs to the request that produced it.
REPLAY_HEADERS = frozenset(
    {
        b"content-type",
        b"content-encoding",
        b"content-language",
        b"content-disposition",
        b"content-location",
        b"cache-control",
        b"etag",
        b"expires",
        b"last-modified",
        b"link",
        b"vary",
        b"x-content-type-options",
    }
)
NOT_MODIFIED_HEADERS = frozenset(
    {b"etag", b"cache-control", b"vary", b"content-location", b"expires", b"last-modified"}
)
_ALWAYS_CREDENTIALS = (b"authorization", b"cookie", b"proxy-authorization")
_CODINGS = (b"br", b"deflate", b"gzip", b"zstd")
_CONDITIONAL = frozenset({b"if-none-match", b"if-modified-since"})

_X_HIT = (b"x-cache", b"HIT")
_X_MISS = (b"x-cache", b"MISS")
_X_STALE = (b"x-cache", b"STALE")
_X_BYPASS = (b"x-cache", b"BYPASS")


def _status(text: str) -> tuple[bytes, bytes]:
    return (b"cache-status", b"launchready; " + text.encode())


_CS_COALESCED = _status("hit; detail=coalesced")
_CS_STORED = _status("fwd=uri-miss; stored")
_CS_STALE_ERROR = _status("fwd=stale; detail=stale-if-error")
_CS_STORE_DOWN = _status("fwd=bypass; detail=store-unavailable")

# Generations of KEYS[2..] as "g1,g2,..." ('0' for a key never bumped).
_GENERATIONS_LUA = """
local parts = {}
if #KEYS > 1 then
  local g = redis.call('MGET', unpack(KEYS, 2))
  for i = 1, #KEYS - 1 do parts[i] = g[i] or '0' end
end
local gens = table.concat(parts, ',')
"""
# KEYS: entry, generations... Returns {payload or nil, pttl, generations}: the entry only if it
# was stored under the current generations.
LOOKUP = Script(
    _GENERATIONS_LUA
    + """
local e = redis.call('GET', KEYS[1])
if e and string.sub(e, 1, #gens + 1) == gens .. '|' then
  return {string.sub(e, #gens + 2), redis.call('PTTL', KEYS[1]), gens}
end
return {false, 0, gens}
"""
)
# KEYS: entry, generations... ARGV: generations read before the origin call, payload, px.
STORE = Script(
    _GENERATIONS_LUA
    + """
if gens ~= ARGV[1] then return 0 end
redis.call('SET', KEYS[1], gens .. '|' .. ARGV[2], 'PX', ARGV[3])
return 1
"""
)
BUMP = Script(
    """
for i = 1, #KEYS do
  redis.call('INCR', KEYS[i])
  redis.call('PEXPIRE', KEYS[i], ARGV[1])
end
return #KEYS
"""
)
UNLOCK = Script(
    """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""
)


# --- rules ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CacheRule:
    """How one cache route is cached.

    Args:
        ttl_s: seconds an entry is fresh.
        query: allow-list of query parameters; others are dropped before the app sees the
            request. None keeps every parameter (sorted) in the key.
        vary: request headers that partition the key (lowercase names).
        tags: names `Cache.invalidate(tags=...)` accepts for this route.
        allow_credentials: serve one shared entry to requests carrying credentials too.
        stale_while_revalidate_s: after `ttl_s`, serve STALE this long while refreshing once
            in the background (None: the middleware default).
        stale_if_error_s: after `ttl_s`, serve the old entry this long when the app fails.
        negative_ttl_s: when > 0, store 404 responses for this many seconds.
    """

    ttl_s: int
    query: tuple[str, ...] | None = None
    vary: tuple[str, ...] = DEFAULT_VARY
    tags: tuple[str, ...] = ()
    allow_credentials: bool = False
    stale_while_revalidate_s: int | None = None
    stale_if_error_s: int | None = None
    negative_ttl_s: int = 0


@dataclass(slots=True)
class _Route:
    """A rule compiled for the hot path."""

    pattern: str
    rule: CacheRule
    fresh_ms: int
    swr_ms: int
    lifetime_ms: int
    query: frozenset[bytes] | None
    vary: tuple[bytes, ...]
    vary_allowed: frozenset[str]
    credentials_ok: frozenset[bytes]
    generations: tuple[str, ...]
    counts: dict[str, int] = field(default_factory=dict)


# --- entries -------------------------------------------------------------------------------


@dataclass(slots=True)
class Entry:
    """A stored response: status, allow-listed headers (with ETag), body and its lifetimes."""

    status: int
    headers: Headers
    body: bytes
    fresh_ms: int
    lifetime_ms: int
    etag: bytes = b""
    replay: Headers = field(default_factory=list)
    not_modified: Headers = field(default_factory=list)

    def __post_init__(self) -> None:
        self.etag = next((v for n, v in self.headers if n == b"etag"), b"")
        self.replay = [*self.headers, (b"content-length", b"%d" % len(self.body))]
        self.not_modified = [(n, v) for n, v in self.headers if n in NOT_MODIFIED_HEADERS]


def encode_entry(entry: Entry) -> bytes:
    """The versioned wire form: magic, header length, JSON header, body."""
    meta = orjson.dumps(
        {
            "s": entry.status,
            "h": [[n.decode("latin-1"), v.decode("latin-1")] for n, v in entry.headers],
            "f": entry.fresh_ms,
            "l": entry.lifetime_ms,
        }
    )
    return b"".join((ENTRY_MAGIC, struct.pack(">I", len(meta)), meta, entry.body))


def decode_entry(data: bytes) -> Entry | None:
    """An entry from its wire form, or None for anything malformed or of another version."""
    if not isinstance(data, bytes) or data[:4] != ENTRY_MAGIC or len(data) < 8:
        return None
    try:
        (size,) = struct.unpack(">I", data[4:8])
        meta = orjson.loads(data[8 : 8 + size])
        headers = [(n.encode("latin-1"), v.encode("latin-1")) for n, v in meta["h"]]
        status, fresh, lifetime = meta["s"], meta["f"], meta["l"]
        if not all(type(x) is int for x in (status, fresh, lifetime)) or len(data) < 8 + size:
            return None
        return Entry(status, headers, data[8 + size :], fresh, lifetime)
    except (ValueError, TypeError, KeyError, AttributeError, UnicodeError, struct.error):
        return None


def content_etag(body: bytes, headers: Headers) -> bytes:
    """A strong, quoted ETag: a hash of the body, its content type and its encoding."""
    digest = hashlib.blake2b(body, digest_size=16)
    for name, value in headers:
        if name in (b"content-type", b"content-encoding"):
            digest.update(b"\0" + name + b"=" + value)
    return b'"' + digest.hexdigest().encode() + b'"'


def etag_matches(if_none_match: bytes, etag: bytes) -> bool:
    """Weak comparison of `If-None-Match` (a list, or `*`) against an entry's ETag."""
    if not etag or len(if_none_match) > MAX_IF_NONE_MATCH_BYTES:
        return False
    if if_none_match.strip() == b"*":
        return True
    ours = etag.removeprefix(b"W/")
    return any(tag.strip().removeprefix(b"W/") == ours for tag in if_none_match.split(b","))


# --- backends ------------------------------------------------------------------------------


class Found(NamedTuple):
    """A lookup: the valid entry (or None), the generations read, the entry's age in ms."""

    entry: Entry | None
    generations: str
    age_ms: int


class CacheBackend(Protocol):
    """Storage for entries, generation counters and fill locks."""

    def name(self, *parts: str) -> str: ...

    async def lookup(self, key: str, generations: Sequence[str]) -> Found: ...

    async def store(
        self, key: str, entry: Entry, generations: Sequence[str], read: str
    ) -> bool: ...

    async def bump(self, generations: Sequence[str]) -> None: ...

    async def lock(self, key: str, lease_ms: int) -> str | None: ...

    async def unlock(self, key: str, token: str) -> None: ...


class MemoryBackend:
    """Entries in one process, LRU-bounded by bytes; generation counters in a dict."""

    def __init__(self, max_bytes: int = DEFAULT_MEMORY_MAX_BYTES) -> None:
        self.max_bytes = max_bytes
        self.bytes = 0
        self._entries: OrderedDict[str, tuple[float, str, Entry, int]] = OrderedDict()
        self._generations: dict[str, int] = {}
        self._epoch = 0

    def name(self, *parts: str) -> str:
        return ":".join(parts)

    def _read(self, generations: Sequence[str]) -> str:
        return ",".join([str(self._gen(name)) for name in generations])

    def _gen(self, name: str) -> int:
        return self._epoch if name == "all" else self._generations.get(name, 0)

    async def lookup(self, key: str, generations: Sequence[str]) -> Found:
        read = self._read(generations)
        item = self._entries.get(key)
        if item is None:
            return Found(None, read, 0)
        stored_at, stored_read, entry, _ = item
        age_ms = int((time.monotonic() - stored_at) * 1000)
        if stored_read != read or age_ms >= entry.lifetime_ms:
            self._drop(key)
            return Found(None, read, 0)
        self._entries.move_to_end(key)
        return Found(entry, read, age_ms)

    async def store(self, key: str, entry: Entry, generations: Sequence[str], read: str) -> bool:
        if self._read(generations) != read:
            return False
        size = len(entry.body) + 64 * (len(entry.headers) + 4)
        if size > self.max_bytes:
            return False
        self._drop(key)
        self._entries[key] = (time.monotonic(), read, entry, size)
        self.bytes += size
        while self.bytes > self.max_bytes:
            self._drop(next(iter(self._entries)))
        return True

    def _drop(self, key: str) -> None:
        item = self._entries.pop(key, None)
        if item is not None:
            self.bytes -= item[3]

    async def bump(self, generations: Sequence[str]) -> None:
        for name in generations:
            if name == "all":
                self._epoch += 1
            else:
                self._generations[name] = self._generations.get(name, 0) + 1
        if len(self._generations) > MEMORY_MAX_GENERATIONS:
            self._generations.clear()  # forgetting counters is safe only with a new epoch
            self._epoch += 1

    async def lock(self, key: str, lease_ms: int) -> str | None:
        return "local"

    async def unlock(self, key: str, token: str) -> None:
        return None


class RedisBackend:
    """Entries, counters and fill locks in Redis, each operation one round trip."""

    def __init__(self, store: RedisStore) -> None:
        self.redis = store

    def name(self, *parts: str) -> str:
        return self.redis.key("cache", *parts)

    async def lookup(self, key: str, generations: Sequence[str]) -> Found:
        payload, pttl, read = await self.redis.run_script(LOOKUP, [key, *generations], [])
        read = read.decode()
        if payload is None:
            return Found(None, read, 0)
        entry = decode_entry(payload)
        if entry is None or pttl < 0:
            return Found(None, read, 0)
        return Found(entry, read, max(0, entry.lifetime_ms - pttl))

    async def store(self, key: str, entry: Entry, generations: Sequence[str], read: str) -> bool:
        args: list[Arg] = [read, encode_entry(entry), entry.lifetime_ms]
        return bool(await self.redis.run_script(STORE, [key, *generations], args))

    async def bump(self, generations: Sequence[str]) -> None:
        await self.redis.run_script(BUMP, list(generations), [GENERATION_TTL_MS])

    async def lock(self, key: str, lease_ms: int) -> str | None:
        token = secrets.token_hex(8)
        reply = await self.redis.execute("SET", key + ":lock", token, "NX", "PX", lease_ms)
        return token if reply is not None else None

    async def unlock(self, key: str, token: str) -> None:
        await self.redis.run_script(UNLOCK, [key + ":lock"], [token])


# --- requests ------------------------------------------------------------------------------


class _Request(NamedTuple):
    """What a cacheable request contributes: its key, generations, conditions, origin query."""

    key: str
    generations: tuple[str, ...]
    if_none_match: bytes | None
    query: bytes | None


def _codings(value: bytes) -> bytes:
    """`Accept-Encoding` reduced to the known codings it accepts, sorted."""
    value = value.lower()
    accepted = []
    for coding in _CODINGS:
        at = value.find(coding)
        if at >= 0 and not value[at:].split(b",", 1)[0].replace(b" ", b"").endswith(b"q=0"):
            accepted.append(coding)
    return b",".join(accepted)


def _query(raw: bytes, allow: frozenset[bytes] | None) -> tuple[bytes, bytes | None] | None:
    """(key part, query the app should see or None to keep it), None when it is too large."""
    if not raw:
        return b"", None
    if len(raw) > MAX_QUERY_BYTES or raw.count(b"&") >= MAX_QUERY_PARAMS:
        return None
    pairs = [pair for pair in raw.split(b"&") if pair]
    if allow is None:
        pairs.sort()
        return b"&".join(pairs), None
    kept = sorted(p for p in pairs if unquote_to_bytes(p.split(b"=", 1)[0]) in allow)
    joined = b"&".join(kept)
    return joined, joined


def _key(*parts: bytes) -> bytes:
    return b"".join(b"%d:%s;" % (len(part), part) for part in parts)


@functools.lru_cache(maxsize=4096)
def _path_generation(path: str) -> str:
    return (
        "p:"
        + hashlib.blake2b(
            path.lower().encode("utf-8", "backslashreplace"), digest_size=12
        ).hexdigest()
    )


# --- the cache -----------------------------------------------------------------------------


class _Failed:
    """A flight whose leader raised; joiners re-raise the same exception."""

    def __init__(self, exc: BaseException) -> None:
        self.exc = exc


class Cache:
    """Routes, a store, single-flight and invalidation, shared by the middleware and `@cached`.

    Args:
        routes: pattern to TTL seconds or to a `CacheRule`.
        store: a `RedisStore` to share entries across workers; None keeps them in memory.
        host: resolves the request host (`ProxyResolver.host`); the default trusts no proxy.
        scheme: resolves the request scheme (`ProxyResolver.scheme`).
        version: your app/deploy version; entries of another version are never served.
        max_body_bytes: larger responses are streamed through and not stored.
        memory_max_bytes: the memory store's bound (LRU).
        credential_headers: request headers besides Authorization/Cookie that carry credentials.
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
        self.backend: CacheBackend = (
            RedisBackend(store) if store is not None else MemoryBackend(memory_max_bytes)
        )
        self.version = version.encode()
        self.max_body_bytes = max_body_bytes
        self.lock_lease_ms = int(lock_lease_s * 1000)
        self.wait_s = wait_s
        self.honor_client_no_cache = honor_client_no_cache
        self._host = host or resolver.host
        self._scheme = scheme or resolver.scheme
        self._credentials = frozenset(
            (*_ALWAYS_CREDENTIALS, *(h.lower().encode() for h in credential_headers))
        )
        self._defaults = (stale_while_revalidate_s, stale_if_error_s)
        self.routes = {p: self._compile(p, r) for p, r in (routes or {}).items()}
        self.table: PatternTable[_Route] = PatternTable(self.routes)
        self._flights: dict[tuple[str, str], asyncio.Future[Any]] = {}
        self._refreshing: set[str] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._warned: set[tuple[str, str]] = set()

    def _compile(self, pattern: str, value: int | CacheRule) -> _Route:
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
        return _Route(
            pattern=pattern,
            rule=rule,
            fresh_ms=rule.ttl_s * 1000,
            swr_ms=max(0, swr) * 1000,
            lifetime_ms=(rule.ttl_s + max(0, swr, sie)) * 1000,
            query=None if rule.query is None else frozenset(q.encode() for q in rule.query),
            vary=tuple(h.encode() for h in vary),
            vary_allowed=frozenset({*vary, "cookie", "authorization"}),
            credentials_ok=self._credentials
            if rule.allow_credentials
            else frozenset(h.encode() for h in vary),
            generations=tuple(self.backend.name("g", n) for n in names),
        )

    # -- keys --

    def request(self, scope: Scope, route: _Route) -> _Request | str:
        """The key material of a request, or why it bypasses the cache."""
        if_none_match: bytes | None = None
        varied: dict[bytes, bytes] = {}
        for name, value in scope["headers"]:
            if name in self._credentials and name not in route.credentials_ok:
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
        query = _query(scope.get("query_string", b""), route.query)
        if host is None or query is None:
            return "host" if host is None else "query"
        path = normalize_path(scope["path"], decoded=True)
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
            parts.append(_codings(value) if name == b"accept-encoding" else value.strip())
        digest = hashlib.blake2b(_key(*parts), digest_size=16).hexdigest()
        generations = (*route.generations, self.backend.name("g", _path_generation(path)))
        return _Request(self.backend.name("e", digest), generations, if_none_match, query[1])

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
        """The in-flight fill of this key under these generations, if any."""
        return self._flights.get((key, read))

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
            return [self.backend.name("g", _path_generation(normalize_path(text)))]
        validate_pattern(text)
        table = PatternTable({text: True})
        names = [r.generations[1] for p, r in self.routes.items() if table.match(normalize_path(p))]
        if not names:
            raise ValueError(f"{path_or_pattern!r} matches no cache route")
        return names

    def stats(self) -> dict[str, dict[str, int]]:
        """Per route pattern, how many requests were HIT, MISS, STALE and BYPASS."""
        return {pattern: dict(route.counts) for pattern, route in self.routes.items()}


# --- the middleware ------------------------------------------------------------------------


class _Recorder:
    """Wraps `send` for an origin call: forwards as the app responds and builds the entry."""

    def __init__(
        self, send: Send, cache: Cache, route: _Route, if_none_match: bytes | None, stale: bool
    ) -> None:
        self.send = send
        self.cache = cache
        self.route = route
        self.if_none_match = if_none_match
        self.can_fall_back = stale
        self.start: Message | None = None
        self.started = False
        self.fell_back = False
        self.reason: str | None = None
        self.chunks: list[bytes] | None = None
        self.size = 0
        self.entry: Entry | None = None
        self.fresh_ms = route.fresh_ms

    async def __call__(self, message: Message) -> None:
        kind = message["type"]
        if kind == "http.response.start":
            self.start = message
            self.reason = self._judge(message)
            return
        if self.fell_back:
            return
        if kind != "http.response.body" or self.started:
            await self._more(message)
            return
        await self._first(message)

    def _judge(self, start: Message) -> str | None:
        """Why this response cannot be stored, or None."""
        status = start["status"]
        if status == 404 and self.route.rule.negative_ttl_s > 0:
            self.fresh_ms = self.route.rule.negative_ttl_s * 1000
        elif status != 200:
            return f"status-{status}" if status < 500 else "error"
        for name, value in start.get("headers", ()):
            reason = self._judge_header(name.lower(), value.lower())
            if reason is not None:
                return reason
        return None

    def _judge_header(self, name: bytes, value: bytes) -> str | None:
        if name == b"set-cookie":
            return "set-cookie"
        if name == b"cache-control" and any(
            d in value for d in (b"private", b"no-store", b"no-cache")
        ):
            return "cache-control"
        if name == b"vary":
            names = {v.strip().decode("latin-1") for v in value.split(b",") if v.strip()}
            if "*" in names or not names <= self.route.vary_allowed:
                return "vary"
        if name == b"content-range":
            return "partial"
        if name == b"content-type" and value.startswith(b"text/event-stream"):
            return "event-stream"
        if name == b"content-length" and value.isdigit() and int(value) > self.cache.max_body_bytes:
            return "too-large"
        return None

    async def _first(self, message: Message) -> None:
        assert self.start is not None
        if self.start["status"] >= 500 and self.can_fall_back:
            self.fell_back = True
            return
        body, more = message.get("body", b""), message.get("more_body", False)
        headers = list(self.start.get("headers", ()))
        if self.reason is None and not more and len(body) > self.cache.max_body_bytes:
            self.reason = "too-large"
        if self.reason is None and not more:
            self.entry = self._entry(headers, body)
            headers = self._with_etag(headers)
            if self.if_none_match is not None and etag_matches(self.if_none_match, self.entry.etag):
                await self._not_modified()
                return
        elif self.reason is None and more:
            self.chunks, self.size = [body], len(body)
        await self._open(headers)
        await self.send(message)

    def _with_etag(self, headers: Headers) -> Headers:
        assert self.entry is not None
        if any(n.lower() == b"etag" for n, _ in headers):
            return headers
        return [*headers, (b"etag", self.entry.etag)]

    async def _open(self, headers: Headers) -> None:
        marker = (
            (_X_MISS, _CS_STORED)
            if self.reason is None
            else (_X_BYPASS, _status(f"fwd=uri-miss; detail={self.reason}"))
        )
        self.started = True
        assert self.start is not None
        await self.send({**self.start, "headers": [*headers, *marker]})

    async def _not_modified(self) -> None:
        assert self.entry is not None
        self.started = True
        headers = [*self.entry.not_modified, _X_MISS, _CS_STORED]
        await self.send({"type": "http.response.start", "status": 304, "headers": headers})
        await self.send({"type": "http.response.body", "body": b""})
        self.fell_back = True  # swallow nothing more: the response is complete

    async def _more(self, message: Message) -> None:
        if not self.started:  # e.g. http.response.pathsend: nothing to tee
            self.reason = self.reason or "not-a-body"
            await self._open(list(self.start.get("headers", ())) if self.start else [])
        await self.send(message)
        if message["type"] != "http.response.body":
            self.chunks = None
        if self.chunks is None:
            return
        body = message.get("body", b"")
        self.size += len(body)
        if self.size > self.cache.max_body_bytes:
            self.chunks = None
            return
        self.chunks.append(body)
        if not message.get("more_body", False):
            assert self.start is not None
            self.entry = self._entry(list(self.start.get("headers", ())), b"".join(self.chunks))

    def _entry(self, headers: Headers, body: bytes) -> Entry:
        assert self.start is not None
        kept = [(n.lower(), v) for n, v in headers if n.lower() in REPLAY_HEADERS]
        if not any(n == b"etag" for n, _ in kept):
            kept.append((b"etag", content_etag(body, kept)))
        lifetime = max(self.route.lifetime_ms, self.fresh_ms)
        return Entry(self.start["status"], kept, body, self.fresh_ms, lifetime)


class CacheMiddleware:
    """Serves GET/HEAD responses of the cache routes from the store (see the module doc).

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
        found = self.cache.table.match(scope["path"])
        if found is None:
            await self.app(scope, receive, send)
            return
        route = found[1]
        method = scope["method"]
        if method != "GET" and method != "HEAD":
            await self.app(scope, receive, send)
            return
        request = self.cache.request(scope, route)
        if isinstance(request, str):
            await self._bypass(
                scope, receive, send, route, _status(f"fwd=bypass; detail={request}")
            )
            return
        await self._serve(scope, receive, send, route, request)

    async def _bypass(
        self, scope: Scope, receive: Receive, send: Send, route: _Route, status: tuple[bytes, bytes]
    ) -> None:
        route.counts["bypass"] = route.counts.get("bypass", 0) + 1

        async def send_marked(message: Message) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", ()), _X_BYPASS, status]}
            await send(message)

        await self.app(scope, receive, send_marked)

    async def _serve(
        self, scope: Scope, receive: Receive, send: Send, route: _Route, request: _Request
    ) -> None:
        cache = self.cache
        found = await cache.lookup(request.key, request.generations)
        if found is None:
            await self._bypass(scope, receive, send, route, _CS_STORE_DOWN)
            return
        entry, age_ms = found.entry, found.age_ms
        head = scope["method"] == "HEAD"
        if entry is not None and age_ms < entry.fresh_ms:
            route.counts["hit"] = route.counts.get("hit", 0) + 1
            ttl = (entry.fresh_ms - age_ms) // 1000
            scope[SCOPE_ROUTE] = route.pattern  # answered here: name the route
            await _replay(
                send, entry, request.if_none_match, head, age_ms, _X_HIT, _status(f"hit; ttl={ttl}")
            )
            return
        if entry is not None and age_ms < entry.fresh_ms + route.swr_ms:
            route.counts["stale"] = route.counts.get("stale", 0) + 1
            cache.spawn(request.key, self._refresh(scope, route, request))
            ttl = (entry.fresh_ms - age_ms) // 1000
            status = _status(f"hit; fwd=stale; ttl={ttl}; detail=stale-while-revalidate")
            scope[SCOPE_ROUTE] = route.pattern  # answered here: name the route
            await _replay(send, entry, request.if_none_match, head, age_ms, _X_STALE, status)
            return
        if head:
            await self._bypass(scope, receive, send, route, _status("fwd=uri-miss; detail=head"))
            return
        await self._miss(scope, receive, send, route, request, found)

    async def _miss(
        self,
        scope: Scope,
        receive: Receive,
        send: Send,
        route: _Route,
        request: _Request,
        found: Found,
    ) -> None:
        cache = self.cache
        flight = cache.join(request.key, found.generations)
        if flight is not None:
            shared = await cache.joined(flight)
            if isinstance(shared, Entry):
                route.counts["hit"] = route.counts.get("hit", 0) + 1
                scope[SCOPE_ROUTE] = route.pattern  # answered here: name the route
                await _replay(send, shared, request.if_none_match, False, 0, _X_HIT, _CS_COALESCED)
                return
            await self._origin(scope, receive, send, route, request, found)
            return
        future = cache.lead(request.key, found.generations)
        result: Entry | None = None
        try:
            result = await self._lead(scope, receive, send, route, request, found)
        finally:
            cache.land(request.key, found.generations, future, result)

    async def _lead(
        self,
        scope: Scope,
        receive: Receive,
        send: Send,
        route: _Route,
        request: _Request,
        found: Found,
    ) -> Entry | None:
        cache = self.cache
        token = await cache.lock(request.key)
        if token is None:
            filled, token = await cache.wait_for_fill(request.key, request.generations)
            if filled is not None and filled.entry is not None:
                route.counts["hit"] = route.counts.get("hit", 0) + 1
                scope[SCOPE_ROUTE] = route.pattern  # answered here: name the route
                await _replay(
                    send,
                    filled.entry,
                    request.if_none_match,
                    False,
                    filled.age_ms,
                    _X_HIT,
                    _CS_COALESCED,
                )
                return filled.entry
        try:
            return await self._origin(scope, receive, send, route, request, found)
        finally:
            if token is not None:
                await cache.unlock(request.key, token)

    async def _origin(
        self,
        scope: Scope,
        receive: Receive,
        send: Send,
        route: _Route,
        request: _Request,
        found: Found,
    ) -> Entry | None:
        """Call the app, forward its response, store it; serve the stale entry if it fails."""
        stale = found.entry
        recorder = _Recorder(send, self.cache, route, request.if_none_match, stale is not None)
        origin = _origin_scope(scope, request)
        try:
            await self.app(origin, receive, recorder)
        except Exception:
            if stale is None or recorder.started:
                raise
            _log.warning("cache.stale_if_error", route=route.pattern, exc_info=True)
            recorder.fell_back = True
        finally:
            _carry_route(origin, scope)
        if recorder.fell_back and not recorder.started and stale is not None:
            route.counts["stale"] = route.counts.get("stale", 0) + 1
            scope[SCOPE_ROUTE] = route.pattern  # answered here: name the route
            await _replay(
                send, stale, request.if_none_match, False, found.age_ms, _X_STALE, _CS_STALE_ERROR
            )
            return None
        return await self._keep(route, request, found, recorder)

    async def _keep(
        self, route: _Route, request: _Request, found: Found, recorder: _Recorder
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

    async def _refresh(self, scope: Scope, route: _Route, request: _Request) -> None:
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
            recorder = _Recorder(_discarding(done), cache, route, None, False)
            refresh = _Request(request.key, request.generations, None, request.query)
            await self.app(_origin_scope(scope, refresh), _quiet_receive(done), recorder)
            if recorder.entry is not None:
                await cache.store(
                    request.key, recorder.entry, request.generations, found.generations
                )
        except Exception:
            _log.warning("cache.refresh_failed", route=route.pattern, exc_info=True)
        finally:
            await cache.unlock(request.key, token)


def _origin_scope(scope: Scope, request: _Request) -> Scope:
    """The scope the app sees on a fill: GET, no conditional headers, the allowed query."""
    headers = [(n, v) for n, v in scope["headers"] if n not in _CONDITIONAL]
    origin = {**scope, "headers": headers}
    if request.query is not None:
        origin["query_string"] = request.query
    return origin


def _carry_route(origin: Scope, scope: Scope) -> None:
    """Copy what the router left in the origin scope back, so outer layers see the route."""
    for key in _ROUTING_KEYS:
        if key in origin:
            scope[key] = origin[key]


_ROUTING_KEYS = ("route", "fastapi", "root_path", "path_params", "endpoint", SCOPE_ROUTE)


def _discarding(done: asyncio.Event) -> Send:
    async def send(message: Message) -> None:
        if message["type"] == "http.response.body" and not message.get("more_body", False):
            done.set()

    return send


def _quiet_receive(done: asyncio.Event) -> Receive:
    sent = False

    async def receive() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": b"", "more_body": False}
        await done.wait()
        return {"type": "http.disconnect"}

    return receive


async def _replay(
    send: Send,
    entry: Entry,
    if_none_match: bytes | None,
    head: bool,
    age_ms: int,
    marker: tuple[bytes, bytes],
    status: tuple[bytes, bytes],
) -> None:
    """Send an entry (or its 304) with a fresh Age and the cache markers."""
    age = (b"age", b"%d" % (age_ms // 1000))
    if if_none_match is not None and etag_matches(if_none_match, entry.etag):
        headers = [*entry.not_modified, age, marker, status]
        await send({"type": "http.response.start", "status": 304, "headers": headers})
        await send({"type": "http.response.body", "body": b""})
        return
    await send(
        {
            "type": "http.response.start",
            "status": entry.status,
            "headers": [*entry.replay, age, marker, status],
        }
    )
    await send({"type": "http.response.body", "body": b"" if head else entry.body})


# --- @cached -------------------------------------------------------------------------------

_default_cache: Cache | None = None


def set_default_cache(cache: Cache | None) -> None:
    """Make `cache` the one `@cached` functions use when given none (LaunchReady does this)."""
    global _default_cache
    _default_cache = cache


def default_cache() -> Cache:
    """The cache `@cached` uses by default (an in-memory one until LaunchReady sets its own)."""
    global _default_cache
    if _default_cache is None:
        _default_cache = Cache()
    return _default_cache


def cached(
    ttl: int,
    *,
    tags: Iterable[str] = (),
    key: Callable[..., str] | None = None,
    cache: Cache | None = None,
) -> Callable[[Callable[P, Awaitable[R]]], Callable[P, Awaitable[R]]]:
    """Cache an async function's JSON-serialisable result for `ttl` seconds.

    Concurrent calls with the same key run the function once per process (and once per fleet
    with Redis); a raised exception reaches every waiting caller and is not cached. A hit
    returns what JSON gives back (tuples become lists, dataclasses dicts).

    Args:
        ttl: seconds a result is fresh.
        tags: `Cache.invalidate(tags=...)` names that drop this function's results.
        key: builds the key from the call's arguments; by default their JSON form (which
            must exist: pass `key=` for arguments such as DB sessions).
        cache: the `Cache` to use; by default LaunchReady's (or an in-memory one).
    """
    if not 0 < ttl <= MAX_LIFETIME_S:
        raise ValueError(f"ttl must be 1..{MAX_LIFETIME_S} seconds")
    tag_names = tuple(tags)

    def decorate(fn: Callable[P, Awaitable[R]]) -> Callable[P, Awaitable[R]]:
        name = f"{fn.__module__}.{fn.__qualname__}"

        @functools.wraps(fn)
        async def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
            target = cache if cache is not None else default_cache()
            material = key(*args, **kwargs).encode() if key else _arguments(name, args, kwargs)
            return await _call(target, fn, name, ttl, tag_names, material, args, kwargs)  # type: ignore[no-any-return]

        return wrapper

    return decorate


def _arguments(name: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> bytes:
    try:
        return orjson.dumps([args, kwargs], option=orjson.OPT_SORT_KEYS | orjson.OPT_NON_STR_KEYS)
    except TypeError as exc:
        raise TypeError(
            f"@cached {name}: arguments are not JSON-serialisable; pass key=lambda ...: str"
        ) from exc


async def _call(
    cache: Cache,
    fn: Callable[..., Awaitable[Any]],
    name: str,
    ttl: int,
    tags: tuple[str, ...],
    material: bytes,
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
) -> Any:
    backend = cache.backend
    digest = hashlib.blake2b(
        _key(cache.version, name.encode(), material), digest_size=16
    ).hexdigest()
    entry_key = backend.name("f", digest)
    generations = (backend.name("g", "all"), *(backend.name("g", f"t:{t}") for t in tags))
    found = await cache.lookup(entry_key, generations)
    if found is not None and found.entry is not None and found.age_ms < found.entry.fresh_ms:
        return orjson.loads(found.entry.body)
    read = found.generations if found is not None else "unavailable"
    flight = cache.join(entry_key, read)
    if flight is not None:
        shared = await cache.joined(flight)
        if isinstance(shared, _Failed):
            raise shared.exc
        if isinstance(shared, bytes):
            return orjson.loads(shared)
    return await _fill(cache, fn, entry_key, generations, read, ttl, args, kwargs)


async def _fill(
    cache: Cache,
    fn: Callable[..., Awaitable[Any]],
    entry_key: str,
    generations: tuple[str, ...],
    read: str,
    ttl: int,
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
) -> Any:
    future = cache.lead(entry_key, read)
    shared: Any = None
    token = await cache.lock(entry_key) if read != "unavailable" else None
    try:
        if token is None and read != "unavailable":
            filled, token = await cache.wait_for_fill(entry_key, generations)
            if filled is not None and filled.entry is not None:
                shared = filled.entry.body
                return orjson.loads(shared)
        value = await fn(*args, **kwargs)
        shared = _store_value(cache, entry_key, generations, read, ttl, value)
        if shared is not None:
            await cache.store(
                entry_key, Entry(200, [], shared, ttl * 1000, ttl * 1000), generations, read
            )
        return value
    except Exception as exc:
        shared = _Failed(exc)
        raise
    finally:
        cache.land(entry_key, read, future, shared)
        if token is not None:
            await cache.unlock(entry_key, token)


def _store_value(
    cache: Cache, key: str, generations: tuple[str, ...], read: str, ttl: int, value: Any
) -> bytes | None:
    try:
        return orjson.dumps(value)
    except TypeError:
        cache.warn_once(key, "result is not JSON-serialisable")
        return None
