"""Cache rules, the routes compiled from them, and a request's key material."""

from __future__ import annotations

import functools
import hashlib
from dataclasses import dataclass, field
from typing import NamedTuple
from urllib.parse import unquote_to_bytes

DEFAULT_VARY = ("accept-encoding",)
MAX_QUERY_BYTES = 4096
MAX_QUERY_PARAMS = 64
MAX_VARY_VALUE_BYTES = 512
MAX_LIFETIME_S = 15 * 86400
_CODINGS = (b"br", b"deflate", b"gzip", b"zstd")


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
class Route:
    """A rule compiled for the hot path."""

    pattern: str
    rule: CacheRule
    fresh_ms: int
    swr_ms: int
    lifetime_ms: int
    query: frozenset[bytes] | None
    vary: tuple[bytes, ...]
    vary_allowed: frozenset[str]
    credentials_ok: frozenset[bytes] | None  # None: the route serves requests with any
    generations: tuple[str, ...]
    counts: dict[str, int] = field(default_factory=dict)


class RequestKey(NamedTuple):
    """What a cacheable request contributes: its key, generations, conditions, origin query."""

    key: str
    generations: tuple[str, ...]
    if_none_match: bytes | None
    query: bytes | None


def accepted_codings(value: bytes) -> bytes:
    """`Accept-Encoding` reduced to the known codings it names, sorted.

    Named, whatever its `q`: Starlette's and Django's GZip middlewares compress for any
    `Accept-Encoding` that mentions gzip (`gzip;q=0` included), so the key follows what the app
    will do, and a client that named no coding never shares an entry with one that did.
    """
    value = value.lower()
    return b",".join(coding for coding in _CODINGS if coding in value)


def query_parts(raw: bytes, allow: frozenset[bytes] | None) -> tuple[bytes, bytes | None] | None:
    """(key part, query the app should see or None to keep it), None when it is too large."""
    if not raw:
        return b"", None
    if len(raw) > MAX_QUERY_BYTES or raw.count(b"&") >= MAX_QUERY_PARAMS:
        return None
    pairs = [pair for pair in raw.split(b"&") if pair]
    if allow is None:
        pairs.sort(key=_param_name)  # stable: repeated parameters keep their order
        return b"&".join(pairs), None
    kept = sorted((p for p in pairs if _param_name(p) in allow), key=_param_name)
    joined = b"&".join(kept)
    return joined, joined


def _param_name(pair: bytes) -> bytes:
    """A query parameter's name as the app decodes it (`pag%65` and `page` are one name).

    Pairs are ordered by name only, so `?page=2&page=1` and `?page=1&page=2` keep apart: apps
    read the last (Starlette, Django) or the first value, and each order is its own entry.
    """
    return unquote_to_bytes(pair.split(b"=", 1)[0].replace(b"+", b" "))


def join_key(*parts: bytes) -> bytes:
    """Key material: each part length-prefixed, so no two part lists give the same bytes."""
    return b"".join(b"%d:%s;" % (len(part), part) for part in parts)


@functools.lru_cache(maxsize=4096)
def path_generation(path: str) -> str:
    """The name of a normalised path's generation counter (case-insensitive)."""
    return (
        "p:"
        + hashlib.blake2b(
            path.lower().encode("utf-8", "backslashreplace"), digest_size=12
        ).hexdigest()
    )
