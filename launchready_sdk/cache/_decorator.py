"""`@cached`: cache an async function's JSON-serialisable result, with the default `Cache`."""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Awaitable, Callable, Iterable
from typing import Any, ParamSpec, TypeVar

import orjson

from launchready_sdk.cache._core import Cache, Failed
from launchready_sdk.cache._entry import Entry
from launchready_sdk.cache._rules import MAX_LIFETIME_S, join_key

P = ParamSpec("P")
R = TypeVar("R")

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
        join_key(cache.version, name.encode(), material), digest_size=16
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
        if isinstance(shared, Failed):
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
        shared = Failed(exc)
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
