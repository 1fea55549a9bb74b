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
  does not hold, is not partial, not `text/event-stream`, and is no larger than the cap (1 MiB),
  and when the page did not read the request's CSP nonce (its body holds that nonce).
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

Modules: `_rules` (CacheRule, compiled routes, key material), `_entry` (the stored format,
ETags, replay), `_backends` (memory and Redis behind one Protocol), `_core` (Cache),
`_recorder` (the origin call of a fill), `_middleware` (CacheMiddleware), `_decorator`
(@cached).
"""

from __future__ import annotations

from launchready_sdk.cache._backends import DEFAULT_MEMORY_MAX_BYTES
from launchready_sdk.cache._core import (
    DEFAULT_CREDENTIAL_HEADERS,
    DEFAULT_MAX_BODY_BYTES,
    DEFAULT_STALE_IF_ERROR_S,
    DEFAULT_STALE_WHILE_REVALIDATE_S,
    Cache,
)
from launchready_sdk.cache._decorator import cached, set_default_cache
from launchready_sdk.cache._middleware import CacheMiddleware
from launchready_sdk.cache._rules import MAX_LIFETIME_S, CacheRule

__all__ = [
    "DEFAULT_CREDENTIAL_HEADERS",
    "DEFAULT_MAX_BODY_BYTES",
    "DEFAULT_MEMORY_MAX_BYTES",
    "DEFAULT_STALE_IF_ERROR_S",
    "DEFAULT_STALE_WHILE_REVALIDATE_S",
    "MAX_LIFETIME_S",
    "Cache",
    "CacheMiddleware",
    "CacheRule",
    "cached",
    "set_default_cache",
]
