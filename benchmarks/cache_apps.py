"""Benchmark apps for the read cache, one per configuration (`BENCH_CONFIG`).

`uvicorn benchmarks.cache_apps:app` with `BENCH_CONFIG` in `CONFIGS`. Routes:
`GET /catalog` (20 products after 5 ms of simulated DB work), `GET /cold/{n}` (the same after
100 ms, for the cold-miss count), `GET /ping` (a trivial route) and `GET /calls` (how many
times the catalog and cold handlers ran). Redis-backed configurations use `BENCH_REDIS_URL`
and a key prefix per process.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from typing import Any

from fastapi import FastAPI

CONFIGS = ("bare", "ours_memory", "ours_redis", "fastapi_cache2", "cashews")
REDIS_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/0")
PREFIX = os.environ.get("BENCH_PREFIX") or f"bench-cache-{uuid.uuid4().hex[:8]}"
PRODUCTS = [
    {"id": i, "name": f"product {i}", "price_cents": 1000 + i, "tags": ["mug", "kitchen"]}
    for i in range(20)
]
CALLS = {"n": 0}


async def _catalog(delay_s: float) -> dict[str, Any]:
    CALLS["n"] += 1
    await asyncio.sleep(delay_s)
    return {"items": PRODUCTS, "page": 1}


def build_api(decorate: Any = None) -> FastAPI:
    api = FastAPI()
    wrap = decorate or (lambda fn: fn)

    @api.get("/catalog")
    @wrap
    async def catalog() -> dict[str, Any]:
        return await _catalog(0.005)

    @api.get("/cold/{n}")
    @wrap
    async def cold(n: int) -> dict[str, Any]:
        return await _catalog(0.1)

    @api.get("/ping")
    async def ping() -> dict[str, bool]:
        return {"ok": True}

    @api.get("/calls")
    async def calls() -> dict[str, int]:
        return {"calls": CALLS["n"]}

    @api.get("/stamp")
    async def stamp() -> dict[str, int]:
        CALLS["n"] += 1
        return {"pid": os.getpid(), "calls": CALLS["n"]}

    return api


def _ours(redis: bool) -> Any:
    from launchready_sdk.cache import CacheMiddleware
    from launchready_sdk.store import RedisStore

    store = None
    if redis:
        store = RedisStore(REDIS_URL, timeout_s=0.05, cooldown_s=2.0, prefix=PREFIX)
    routes = {"/catalog": 3600, "/cold/{n}": 3600, "/stamp": 3600}
    api = build_api()
    middleware = CacheMiddleware(api, routes=routes, store=store)

    @api.post("/invalidate")
    async def invalidate() -> dict[str, bool]:
        return {"ok": await middleware.cache.invalidate("/stamp")}

    return middleware


def _fastapi_cache2() -> Any:
    from contextlib import asynccontextmanager

    from fastapi_cache import FastAPICache
    from fastapi_cache.backends.redis import RedisBackend
    from fastapi_cache.decorator import cache
    from redis import asyncio as aioredis

    api = build_api(cache(expire=3600))

    @asynccontextmanager
    async def lifespan(_: Any) -> Any:
        client = aioredis.from_url(REDIS_URL)
        FastAPICache.init(RedisBackend(client), prefix=PREFIX)
        yield
        await client.aclose()

    api.router.lifespan_context = lifespan
    return api


def _cashews() -> Any:
    from cashews import cache

    cache.setup(REDIS_URL)
    return build_api(cache(ttl="1h", prefix=PREFIX))


def build(config: str) -> Any:
    """The ASGI app for one configuration."""
    if config == "bare":
        return build_api()
    if config in ("ours_memory", "ours_redis"):
        return _ours(config == "ours_redis")
    if config == "fastapi_cache2":
        return _fastapi_cache2()
    if config == "cashews":
        return _cashews()
    raise SystemExit(f"unknown BENCH_CONFIG {config!r}; choose from {', '.join(CONFIGS)}")


app = build(os.environ.get("BENCH_CONFIG", "bare"))
