"""Read cache: keys, safety rules, ETags, stampede, invalidation, @cached and Redis outages."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest
import redis.asyncio
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from launchready_sdk.cache import Cache, CacheMiddleware, CacheRule, cached
from launchready_sdk.proxy import ProxyResolver
from launchready_sdk.store import RedisStore
from launchready_sdk.types import Receive, Scope, Send


class Origin:
    """A small shop whose handlers count their calls and can be told how to answer."""

    def __init__(self) -> None:
        self.calls = 0
        self.delay_s = 0.0
        self.status = 200
        self.headers: dict[str, str] = {}
        self.data = "v1"
        self.raise_error = False
        self.seen_query: list[str] = []

    async def products(self, request: Request) -> Response:
        self.calls += 1
        self.seen_query.append(request.url.query)
        body = {"data": self.data, "lang": request.headers.get("accept-language")}
        if self.delay_s:
            await asyncio.sleep(self.delay_s)
        if self.raise_error:
            raise RuntimeError("database is down")
        return JSONResponse(body, status_code=self.status, headers=self.headers)

    async def stream(self, request: Request) -> Response:
        self.calls += 1

        async def chunks() -> AsyncIterator[bytes]:
            for i in range(3):
                yield b"x" * 1000 + str(i).encode()

        return StreamingResponse(chunks(), media_type="application/octet-stream")

    def app(self) -> Starlette:
        return Starlette(
            routes=[
                Route("/products", self.products, methods=["GET", "POST"]),
                Route("/products/{id}", self.products),
                Route("/other", self.products),
                Route("/stream", self.stream),
            ]
        )


ROUTES: dict[str, int | CacheRule] = {"/products": 60, "/products/{id}": 60, "/stream": 60}


@pytest.fixture
async def stores(redis_url: str, redis_prefix: str) -> AsyncIterator[Callable[..., Any]]:
    """`make(kind)` returns None (memory) or a RedisStore under the test's prefix."""
    opened: list[RedisStore] = []

    def make(kind: str, url: str | None = None, timeout_s: float = 1.0) -> RedisStore | None:
        if kind == "memory":
            return None
        store = RedisStore(
            url or redis_url, timeout_s=timeout_s, cooldown_s=0.3, prefix=redis_prefix
        )
        opened.append(store)
        return store

    yield make
    for store in opened:
        await store.aclose()


def client_for(app: Any, asgi_client: Any, **kwargs: Any) -> httpx.AsyncClient:
    return asgi_client(app, **kwargs)  # type: ignore[no-any-return]


BOTH = pytest.mark.parametrize("kind", ["memory", "redis"])


@BOTH
async def test_hit_replays_exact_bytes_and_allow_listed_headers(
    kind: str, stores: Any, asgi_client: Any
) -> None:
    """A second GET is a HIT with the same bytes; per-request headers are not replayed."""
    origin = Origin()
    origin.headers = {"x-request-id": "req-A", "content-language": "en", "x-internal": "1"}
    app = CacheMiddleware(origin.app(), routes=ROUTES, store=stores(kind))
    client = client_for(app, asgi_client)
    first = await client.get("/products")
    second = await client.get("/products")
    assert (first.headers["x-cache"], second.headers["x-cache"]) == ("MISS", "HIT")
    assert second.content == first.content
    assert origin.calls == 1
    assert second.headers["content-language"] == "en"
    assert "x-request-id" not in second.headers
    assert "x-internal" not in second.headers
    assert second.headers["cache-status"].startswith("launchready; hit")
    assert second.headers["etag"] == first.headers["etag"]
    assert second.headers["etag"].startswith('"')
    assert int(second.headers["age"]) >= 0


async def test_other_routes_and_methods_pass_untouched(asgi_client: Any) -> None:
    """Other routes and unsafe methods get no X-Cache and always reach the app."""
    origin = Origin()
    client = client_for(CacheMiddleware(origin.app(), routes=ROUTES), asgi_client)
    for _ in range(2):
        response = await client.get("/other")
        assert "x-cache" not in response.headers
    response = await client.post("/products")
    assert "x-cache" not in response.headers
    assert origin.calls == 3


@BOTH
async def test_thousand_concurrent_cold_requests_call_handler_once(
    kind: str, stores: Any, asgi_client: Any
) -> None:
    """1000 concurrent requests for a cold key run the handler once per process."""
    origin = Origin()
    origin.delay_s = 0.05
    app = CacheMiddleware(origin.app(), routes=ROUTES, store=stores(kind))
    client = client_for(app, asgi_client)
    responses = await asyncio.gather(*(client.get("/products/1") for _ in range(1000)))
    assert origin.calls == 1
    assert {r.status_code for r in responses} == {200}
    assert len({r.content for r in responses}) == 1


async def test_fleet_lock_coalesces_across_processes(stores: Any, asgi_client: Any) -> None:
    """Two caches sharing Redis (two workers) fill a cold key with one handler call."""
    origin = Origin()
    origin.delay_s = 0.2
    store_a, store_b = stores("redis"), stores("redis")
    a = client_for(CacheMiddleware(origin.app(), routes=ROUTES, store=store_a), asgi_client)
    b = client_for(CacheMiddleware(origin.app(), routes=ROUTES, store=store_b), asgi_client)
    responses = await asyncio.gather(*(c.get("/products/9") for c in [a, b] * 50))
    assert origin.calls == 1
    assert {r.status_code for r in responses} == {200}


async def test_dead_leader_lock_does_not_hang_waiters(
    stores: Any, redis_url: str, redis_prefix: str, asgi_client: Any
) -> None:
    """A fill lock left by a dead worker delays a waiter at most its lease, then one call fills."""
    origin = Origin()
    store = stores("redis")
    cache = Cache(ROUTES, store=store, lock_lease_s=0.3, wait_s=2.0)
    client = client_for(CacheMiddleware(origin.app(), cache=cache), asgi_client)
    route = cache.table.match("/products/5")
    assert route is not None
    scope = {"type": "http", "method": "GET", "path": "/products/5", "query_string": b"",
             "headers": [(b"host", b"testserver"), (b"accept-encoding", b"gzip, deflate"),
                         (b"connection", b"keep-alive"), (b"accept", b"*/*"),
                         (b"user-agent", b"python-httpx/" + httpx.__version__.encode())],
             "scheme": "http", "client": ("203.0.113.7", 50000)}  # fmt: skip
    request = cache.request(scope, route[1])
    assert not isinstance(request, str)
    raw = redis.asyncio.Redis.from_url(redis_url)
    await raw.set(request.key + ":lock", "dead-worker", px=300)
    await raw.aclose()
    started = time.monotonic()
    responses = await asyncio.gather(*(client.get("/products/5") for _ in range(20)))
    assert time.monotonic() - started < 2.0
    assert origin.calls == 1
    assert {r.status_code for r in responses} == {200}


@BOTH
@pytest.mark.parametrize(
    "headers",
    [{"authorization": "Bearer A"}, {"cookie": "session=A"}, {"x-api-key": "key-A"}],
)
async def test_credentials_bypass(
    kind: str, headers: dict[str, str], stores: Any, asgi_client: Any
) -> None:
    """Requests with Authorization, a Cookie or an API key bypass: B never gets A's response."""
    origin = Origin()
    client = client_for(
        CacheMiddleware(origin.app(), routes=ROUTES, store=stores(kind)), asgi_client
    )
    origin.data = "for-A"
    a = await client.get("/products", headers=headers)
    origin.data = "for-B"
    b = await client.get("/products", headers={k: v.replace("A", "B") for k, v in headers.items()})
    assert a.headers["x-cache"] == b.headers["x-cache"] == "BYPASS"
    assert "credentials" in a.headers["cache-status"]
    assert b.json()["data"] == "for-B"
    assert origin.calls == 2
    anonymous = await client.get("/products")
    assert anonymous.headers["x-cache"] == "MISS"


async def test_credentialed_routes_opt_in_shared_or_partitioned(asgi_client: Any) -> None:
    """allow_credentials shares one entry; vary on Authorization gives one per credential."""
    origin = Origin()
    routes = {
        "/products": CacheRule(ttl_s=60, allow_credentials=True),
        "/products/{id}": CacheRule(ttl_s=60, vary=("authorization",)),
    }
    client = client_for(CacheMiddleware(origin.app(), routes=routes), asgi_client)
    await client.get("/products", headers={"cookie": "s=1"})
    shared = await client.get("/products", headers={"cookie": "s=2"})
    assert shared.headers["x-cache"] == "HIT"
    origin.data = "A"
    await client.get("/products/1", headers={"authorization": "A"})
    origin.data = "B"
    b = await client.get("/products/1", headers={"authorization": "B"})
    assert b.json()["data"] == "B"
    assert b.headers["x-cache"] == "MISS"
    a = await client.get("/products/1", headers={"authorization": "A"})
    assert a.json()["data"] == "A"
    assert a.headers["x-cache"] == "HIT"


@pytest.mark.parametrize(
    "headers",
    [
        {"set-cookie": "session=abc"},
        {"cache-control": "private, max-age=60"},
        {"cache-control": "no-store"},
        {"cache-control": "no-cache"},
        {"vary": "*"},
        {"vary": "Accept-Language"},
        {"content-range": "bytes 0-1/10"},
    ],
)
async def test_unstorable_responses_are_not_stored(
    headers: dict[str, str], asgi_client: Any
) -> None:
    """Set-Cookie, private, no-store, no-cache, bad Vary and partials are never stored."""
    origin = Origin()
    origin.headers = headers
    client = client_for(CacheMiddleware(origin.app(), routes=ROUTES), asgi_client)
    first = await client.get("/products")
    second = await client.get("/products")
    assert first.headers["x-cache"] == second.headers["x-cache"] == "BYPASS"
    assert origin.calls == 2


async def test_vary_header_in_rule_gives_separate_entries(asgi_client: Any) -> None:
    """With vary=("accept-language",) each language has its own entry and gets its own body."""
    origin = Origin()
    origin.headers = {"vary": "Accept-Language"}
    routes = {"/products": CacheRule(ttl_s=60, vary=("accept-language", "accept-encoding"))}
    client = client_for(CacheMiddleware(origin.app(), routes=routes), asgi_client)
    for lang in ("en", "fr", "en", "fr"):
        response = await client.get("/products", headers={"accept-language": lang})
        assert response.json()["lang"] == lang
    assert origin.calls == 2


@pytest.mark.parametrize("status", [500, 503, 404, 401, 302, 206])
async def test_non_200_not_cached_by_default(status: int, asgi_client: Any) -> None:
    """Errors, 404s, 401s, redirects and partials reach the app every time."""
    origin = Origin()
    origin.status = status
    client = client_for(CacheMiddleware(origin.app(), routes=ROUTES), asgi_client)
    await client.get("/products", follow_redirects=False)
    response = await client.get("/products", follow_redirects=False)
    assert response.headers["x-cache"] == "BYPASS"
    assert origin.calls == 2


async def test_negative_caching_is_opt_in(asgi_client: Any) -> None:
    """negative_ttl_s stores 404s."""
    origin = Origin()
    origin.status = 404
    routes = {"/products/{id}": CacheRule(ttl_s=60, negative_ttl_s=5)}
    client = client_for(CacheMiddleware(origin.app(), routes=routes), asgi_client)
    await client.get("/products/404")
    response = await client.get("/products/404")
    assert response.status_code == 404
    assert response.headers["x-cache"] == "HIT"


async def test_query_sorted_and_allow_list(asgi_client: Any) -> None:
    """Parameter order shares an entry; an allow-list drops junk before the app sees it."""
    origin = Origin()
    routes = {"/products": 60, "/products/{id}": CacheRule(ttl_s=60, query=("page",))}
    client = client_for(CacheMiddleware(origin.app(), routes=routes), asgi_client)
    await client.get("/products?a=1&b=2")
    assert (await client.get("/products?b=2&a=1")).headers["x-cache"] == "HIT"
    await client.get("/products/1?page=2&cb=123")
    assert origin.seen_query[-1] == "page=2"
    hit = await client.get("/products/1?cb=999&page=2")
    assert hit.headers["x-cache"] == "HIT"
    assert origin.calls == 2


async def test_hostile_query_strings_bypass_without_error(asgi_client: Any) -> None:
    """10 000 parameters or a huge value are answered by the app, not cached, never a 500."""
    origin = Origin()
    client = client_for(CacheMiddleware(origin.app(), routes=ROUTES), asgi_client)
    for query in ("a=1&" * 10_000, "q=" + "x" * 50_000):
        response = await client.get(f"/products?{query}")
        assert response.status_code == 200
        assert response.headers["x-cache"] == "BYPASS"


async def test_client_no_cache_does_not_force_origin(asgi_client: Any) -> None:
    """A client's Cache-Control: no-cache, Pragma or Clear-Site-Data is answered from the cache."""
    origin = Origin()
    client = client_for(CacheMiddleware(origin.app(), routes=ROUTES), asgi_client)
    await client.get("/products")
    for headers in (
        {"cache-control": "no-cache"},
        {"pragma": "no-cache"},
        {"clear-site-data": '"cache"'},
    ):
        assert (await client.get("/products", headers=headers)).headers["x-cache"] == "HIT"
    assert origin.calls == 1


async def test_spoofed_host_never_seeds_another_hosts_entry(asgi_client: Any) -> None:
    """Host is in the key; X-Forwarded-Host from an untrusted peer is ignored."""
    origin = Origin()
    client = client_for(CacheMiddleware(origin.app(), routes=ROUTES), asgi_client)
    origin.data = "evil"
    await client.get("/products", headers={"host": "evil.example"})
    await client.get(
        "/products", headers={"x-forwarded-host": "shop.example", "host": "evil.example"}
    )
    origin.data = "good"
    real = await client.get("/products", headers={"host": "shop.example"})
    assert real.json()["data"] == "good"
    assert real.headers["x-cache"] == "MISS"


async def test_trusted_proxy_forwarded_host_is_keyed(asgi_client: Any) -> None:
    """Behind a trusted proxy the forwarded host selects the entry."""
    origin = Origin()
    resolver = ProxyResolver(["10.0.0.0/8"])
    cache = Cache(ROUTES, host=resolver.host, scheme=resolver.scheme)
    client = client_for(
        CacheMiddleware(origin.app(), cache=cache), asgi_client, client=("10.0.0.1", 1)
    )
    origin.data = "a"
    await client.get(
        "/products", headers={"x-forwarded-for": "1.2.3.4", "x-forwarded-host": "a.example"}
    )
    origin.data = "b"
    b = await client.get(
        "/products", headers={"x-forwarded-for": "1.2.3.4", "x-forwarded-host": "b.example"}
    )
    assert b.json()["data"] == "b"


@BOTH
async def test_etag_conditional_requests(kind: str, stores: Any, asgi_client: Any) -> None:
    """If-None-Match lists, weak tags and * get a 304 with ETag, Cache-Control and Vary."""
    origin = Origin()
    origin.headers = {"cache-control": "public, max-age=30", "vary": "Accept-Encoding"}
    client = client_for(
        CacheMiddleware(origin.app(), routes=ROUTES, store=stores(kind)), asgi_client
    )
    etag = (await client.get("/products")).headers["etag"]
    for value in (etag, f'"other", W/{etag}', "*"):
        response = await client.get("/products", headers={"if-none-match": value})
        assert response.status_code == 304
        assert response.content == b""
        assert response.headers["etag"] == etag
        assert response.headers["cache-control"] == "public, max-age=30"
        assert response.headers["vary"] == "Accept-Encoding"
    assert (await client.get("/products", headers={"if-none-match": '"nope"'})).status_code == 200


@BOTH
async def test_invalidated_etag_gets_fresh_200(kind: str, stores: Any, asgi_client: Any) -> None:
    """After invalidation the old ETag no longer gets a 304."""
    origin = Origin()
    app = CacheMiddleware(origin.app(), routes=ROUTES, store=stores(kind))
    client = client_for(app, asgi_client)
    etag = (await client.get("/products")).headers["etag"]
    origin.data = "v2"
    assert await app.cache.invalidate("/products")
    response = await client.get("/products", headers={"if-none-match": etag})
    assert response.status_code == 200
    assert response.json()["data"] == "v2"


async def test_etag_is_deterministic_and_quoted(stores: Any, asgi_client: Any) -> None:
    """The same body and type give the same quoted ETag in any process; the encoding changes it."""

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        headers = [(b"content-type", b"application/json")]
        if scope["path"] == "/gzip":
            headers.append((b"content-encoding", b"gzip"))
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": b'{"a":1}'})

    routes: dict[str, int | CacheRule] = {"/plain": 60, "/gzip": 60}
    one, two = (
        client_for(CacheMiddleware(app, routes=routes, store=stores(kind)), asgi_client)
        for kind in ("memory", "redis")
    )

    async def etag(client: httpx.AsyncClient, path: str) -> str:
        async with client.stream("GET", path) as response:  # headers only: the body is not gzip
            assert response.headers["x-cache"] == "MISS"
            return response.headers["etag"]

    a = await etag(one, "/plain")
    assert a == await etag(two, "/plain")
    assert a.startswith('"')
    assert a.endswith('"')
    assert a != await etag(one, "/gzip")
    assert (await two.get("/plain", headers={"if-none-match": f'W/"x", {a}'})).status_code == 304
    assert (await two.get("/plain", headers={"if-none-match": '"x"'})).status_code == 200


@BOTH
async def test_invalidation_by_path_pattern_tag_and_all(
    kind: str, stores: Any, asgi_client: Any
) -> None:
    """invalidate() by path, pattern, tag or everything makes the next request a MISS."""
    origin = Origin()
    routes: dict[str, int | CacheRule] = {
        "/products": CacheRule(ttl_s=60, tags=("catalog",)),
        "/products/{id}": 60,
    }
    app = CacheMiddleware(origin.app(), routes=routes, store=stores(kind))
    client = client_for(app, asgi_client)

    async def state(path: str) -> str:
        return (await client.get(path)).headers["x-cache"]

    await state("/products")
    await state("/products/1")
    await app.cache.invalidate("/products/{id}")
    assert (await state("/products"), await state("/products/1")) == ("HIT", "MISS")
    await app.cache.invalidate(tags=["catalog"])
    assert (await state("/products"), await state("/products/1")) == ("MISS", "HIT")
    await app.cache.invalidate("/products/1?x=1")
    assert await state("/products/1") == "MISS"
    await app.cache.invalidate()
    assert (await state("/products"), await state("/products/1")) == ("MISS", "MISS")
    with pytest.raises(ValueError, match="matches no cache route"):
        await app.cache.invalidate("/nothing/{id}")


async def test_invalidation_seen_by_another_worker(stores: Any, asgi_client: Any) -> None:
    """An invalidation made through one worker's cache holds in another at once."""
    origin = Origin()
    a = CacheMiddleware(origin.app(), routes=ROUTES, store=stores("redis"))
    b = CacheMiddleware(origin.app(), routes=ROUTES, store=stores("redis"))
    ca, cb = client_for(a, asgi_client), client_for(b, asgi_client)
    await ca.get("/products")
    assert (await cb.get("/products")).headers["x-cache"] == "HIT"
    await a.cache.invalidate("/products")
    assert (await cb.get("/products")).headers["x-cache"] == "MISS"


@BOTH
async def test_slow_miss_cannot_store_data_read_before_invalidation(
    kind: str, stores: Any, asgi_client: Any
) -> None:
    """A miss that read old data before an invalidation does not store it afterwards."""
    origin = Origin()
    origin.delay_s = 0.2
    app = CacheMiddleware(origin.app(), routes=ROUTES, store=stores(kind))
    client = client_for(app, asgi_client)
    slow = asyncio.ensure_future(client.get("/products"))
    await asyncio.sleep(0.05)  # the handler has read "v1"
    origin.data = "v2"
    await app.cache.invalidate("/products")
    assert (await slow).json()["data"] == "v1"
    origin.delay_s = 0
    fresh = await client.get("/products")
    assert fresh.json()["data"] == "v2"
    assert fresh.headers["x-cache"] == "MISS"


async def test_app_version_is_part_of_the_key(stores: Any, asgi_client: Any) -> None:
    """Entries written by another deploy version are not served."""
    origin = Origin()
    old = Cache(ROUTES, store=stores("redis"), version="v1")
    new = Cache(ROUTES, store=stores("redis"), version="v2")
    await client_for(CacheMiddleware(origin.app(), cache=old), asgi_client).get("/products")
    response = await client_for(CacheMiddleware(origin.app(), cache=new), asgi_client).get(
        "/products"
    )
    assert response.headers["x-cache"] == "MISS"


async def test_corrupt_redis_entries_are_misses(
    stores: Any, redis_url: str, redis_prefix: str, asgi_client: Any
) -> None:
    """Garbage, truncated or old-format bytes under the key are a MISS, never a 500."""
    origin = Origin()
    client = client_for(
        CacheMiddleware(origin.app(), routes=ROUTES, store=stores("redis")), asgi_client
    )
    await client.get("/products")
    raw = redis.asyncio.Redis.from_url(redis_url)
    keys = [k async for k in raw.scan_iter(match=f"{{{redis_prefix}:cache}}:e:*")]
    assert len(keys) == 1
    value = await raw.get(keys[0])
    prefix = value.split(b"|", 1)[0] + b"|"
    for garbage in (
        b"\xff\xfe",
        b"LRC1\x00\x00\x00\x10{",
        b"LRC0" + value[len(prefix) + 4 :],
        b"\x80\x04pickle",
    ):
        await raw.set(keys[0], prefix + garbage, px=60_000)
        response = await client.get("/products")
        assert response.status_code == 200
        assert response.headers["x-cache"] == "MISS"
    await raw.aclose()
    assert origin.calls == 5


async def test_entry_format_round_trips_and_rejects_garbage(
    stores: Any, redis_url: str, redis_prefix: str, asgi_client: Any
) -> None:
    """Entries are stored without pickle and replay as they were; malformed bytes are a MISS."""
    origin = Origin()
    origin.headers = {"etag": '"x"'}
    client = client_for(
        CacheMiddleware(origin.app(), routes=ROUTES, store=stores("redis")), asgi_client
    )
    first = await client.get("/products")
    raw = redis.asyncio.Redis.from_url(redis_url)
    keys = [k async for k in raw.scan_iter(match=f"{{{redis_prefix}:cache}}:e:*")]
    assert len(keys) == 1
    generations, payload = (await raw.get(keys[0])).split(b"|", 1)
    size = int.from_bytes(payload[4:8], "big")
    meta = json.loads(payload[8 : 8 + size])
    assert payload[:4] == b"LRC1"
    assert meta["s"] == 200
    assert sorted(meta["h"]) == [["content-type", "application/json"], ["etag", '"x"']]
    assert payload[8 + size :] == first.content
    back = await client.get("/products")
    assert back.headers["x-cache"] == "HIT"
    assert back.content == first.content
    assert back.headers["content-type"] == "application/json"
    assert back.headers["etag"] == '"x"'
    for junk in (b"", b"LRC1", b"LRC1\xff\xff\xff\xff", payload[:10], b"pickle"):
        await raw.set(keys[0], generations + b"|" + junk, px=60_000)
        response = await client.get("/products")
        assert (response.status_code, response.headers["x-cache"]) == (200, "MISS")
    await raw.aclose()
    assert origin.calls == 6


async def test_streaming_is_not_held_back_and_large_bodies_not_stored() -> None:
    """A chunk reaches the client before the app sends the next; over the cap: not stored."""
    gate = asyncio.Event()
    calls = 0

    async def app(scope: Any, receive: Any, send: Any) -> None:
        nonlocal calls
        calls += 1
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-type", b"text/plain")],
            }
        )
        await send({"type": "http.response.body", "body": b"a" * 600, "more_body": True})
        await asyncio.wait_for(gate.wait(), 2)
        await send({"type": "http.response.body", "body": b"b" * 600, "more_body": False})

    middleware = CacheMiddleware(app, routes={"/s": 60}, max_body_bytes=1000)
    scope = {"type": "http", "method": "GET", "path": "/s", "query_string": b"",
             "headers": [(b"host", b"x")],
             "scheme": "http"}  # fmt: skip

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    for _ in range(2):
        gate.clear()
        sent: list[dict[str, Any]] = []

        async def send(message: dict[str, Any], sent: list[dict[str, Any]] = sent) -> None:
            sent.append(message)
            if message.get("body", b"").startswith(b"a"):
                gate.set()

        await middleware(dict(scope), receive, send)
        assert b"".join(m.get("body", b"") for m in sent[1:]) == b"a" * 600 + b"b" * 600
    assert calls == 2


async def test_streamed_response_under_cap_is_stored(asgi_client: Any) -> None:
    """A streamed body that ends under the cap is stored and replayed whole."""
    origin = Origin()
    client = client_for(CacheMiddleware(origin.app(), routes=ROUTES), asgi_client)
    first = await client.get("/stream")
    second = await client.get("/stream")
    assert second.headers["x-cache"] == "HIT"
    assert second.content == first.content
    assert origin.calls == 1


async def test_head_is_answered_from_the_get_entry(asgi_client: Any) -> None:
    """HEAD after a GET is a HIT with the GET's headers and no body."""
    origin = Origin()
    client = client_for(CacheMiddleware(origin.app(), routes=ROUTES), asgi_client)
    body = (await client.get("/products")).content
    head = await client.head("/products")
    assert head.headers["x-cache"] == "HIT"
    assert head.content == b""
    assert int(head.headers["content-length"]) == len(body)


async def test_stale_while_revalidate_refreshes_once(asgi_client: Any) -> None:
    """Past the TTL inside the window, STALE is served and one background refresh runs."""
    origin = Origin()
    routes = {"/products": CacheRule(ttl_s=1, stale_while_revalidate_s=30)}
    app = CacheMiddleware(origin.app(), routes=routes)
    client = client_for(app, asgi_client)
    await client.get("/products")
    origin.data, origin.delay_s = "v2", 0.1
    await asyncio.sleep(1.05)
    stale = await asyncio.gather(*(client.get("/products") for _ in range(20)))
    assert {r.headers["x-cache"] for r in stale} == {"STALE"}
    assert {r.json()["data"] for r in stale} == {"v1"}
    await asyncio.sleep(0.3)
    fresh = await client.get("/products")
    assert fresh.headers["x-cache"] == "HIT"
    assert fresh.json()["data"] == "v2"
    assert origin.calls == 2


@pytest.mark.parametrize("failure", ["status", "exception"])
async def test_stale_if_error_serves_old_entry(failure: str, asgi_client: Any) -> None:
    """When the app fails after the TTL, the old entry is served (STALE), within the window."""
    origin = Origin()
    routes = {"/products": CacheRule(ttl_s=1, stale_while_revalidate_s=0, stale_if_error_s=60)}
    client = client_for(CacheMiddleware(origin.app(), routes=routes), asgi_client)
    await client.get("/products")
    await asyncio.sleep(1.05)
    if failure == "status":
        origin.status = 503
    else:
        origin.raise_error = True
    response = await client.get("/products")
    assert response.status_code == 200
    assert response.headers["x-cache"] == "STALE"
    assert "stale-if-error" in response.headers["cache-status"]


async def test_leader_error_is_not_cached(asgi_client: Any) -> None:
    """A handler that raises caches nothing; the next request calls it again."""
    origin = Origin()
    origin.raise_error = True
    client = client_for(CacheMiddleware(origin.app(), routes=ROUTES), asgi_client)
    with pytest.raises(RuntimeError):
        await client.get("/products")
    origin.raise_error = False
    response = await client.get("/products")
    assert response.status_code == 200
    assert response.headers["x-cache"] == "MISS"


async def test_non_utf8_paths_and_odd_headers_do_not_fail() -> None:
    """Non-UTF-8 path bytes, no Host and several Host lines are served by the app, never raised."""
    origin = Origin()
    middleware = CacheMiddleware(origin.app(), routes={"/products/{id}": 60})
    cases = [
        ("/products/\udcff\udcfe", [(b"host", b"x")]),
        ("/products/1", []),
        ("/products/1", [(b"host", b"a"), (b"host", b"b")]),
        ("/products/1", [(b"host", b"x"), (b"accept-encoding", b"\xff" * 10_000)]),
    ]
    for path, headers in cases:
        sent: list[dict[str, Any]] = []

        async def send(message: dict[str, Any], sent: list[dict[str, Any]] = sent) -> None:
            sent.append(message)

        async def receive() -> dict[str, Any]:
            return {"type": "http.request", "body": b"", "more_body": False}

        raw_path = path.encode("utf-8", "surrogateescape")
        scope = {"type": "http", "method": "GET", "path": path, "raw_path": raw_path,
                 "query_string": b"", "headers": headers, "scheme": "http"}  # fmt: skip
        await middleware(scope, receive, send)
        assert sent[0]["status"] in (200, 404)


@BOTH
async def test_cached_decorator(kind: str, stores: Any) -> None:
    """@cached runs once for concurrent calls, honours ttl keys and tag invalidation."""
    cache = Cache(store=stores(kind))
    calls = 0

    @cached(ttl=60, tags=["pricing"], cache=cache)
    async def price(sku: str, currency: str = "EUR") -> dict[str, Any]:
        nonlocal calls
        calls += 1
        await asyncio.sleep(0.05)
        return {"sku": sku, "cents": 1200, "currency": currency}

    results = await asyncio.gather(*(price("mug") for _ in range(200)))
    assert calls == 1
    assert all(r == {"sku": "mug", "cents": 1200, "currency": "EUR"} for r in results)
    await price("mug", currency="USD")
    assert calls == 2
    await price("mug")
    assert calls == 2
    await cache.invalidate(tags=["pricing"])
    await price("mug")
    assert calls == 3


async def test_cached_decorator_key_function_and_errors() -> None:
    """key= builds the key; errors reach every waiter and are not cached."""
    cache = Cache()
    calls = 0

    class Session:
        """Stands for a DB session, which has no JSON form."""

    @cached(ttl=60, key=lambda session, sku: sku, cache=cache)
    async def lookup(session: Session, sku: str) -> str:
        nonlocal calls
        calls += 1
        await asyncio.sleep(0.02)
        if sku == "bad":
            raise LookupError(sku)
        return sku.upper()

    assert await lookup(Session(), "mug") == "MUG"
    assert await lookup(Session(), "mug") == "MUG"
    assert calls == 1
    outcomes = await asyncio.gather(
        *(lookup(Session(), "bad") for _ in range(5)), return_exceptions=True
    )
    assert all(isinstance(o, LookupError) for o in outcomes)
    assert calls == 2

    @cached(ttl=60, cache=cache)
    async def plain(session: Session) -> int:
        return 1

    with pytest.raises(TypeError, match="key="):
        await plain(Session())


async def test_redis_killed_mid_run_serves_origin_then_recovers(
    private_redis: Any, stores: Any, asgi_client: Any
) -> None:
    """Redis killed: every request 200 (BYPASS), none slow; recovers after a restart."""
    origin = Origin()
    store = stores("redis", url=private_redis.url)
    client = client_for(CacheMiddleware(origin.app(), routes=ROUTES, store=store), asgi_client)
    await client.get("/products")
    assert (await client.get("/products")).headers["x-cache"] == "HIT"
    private_redis.kill()
    for _ in range(20):
        started = time.monotonic()
        response = await client.get("/products")
        assert response.status_code == 200
        assert response.headers["x-cache"] == "BYPASS"
        assert time.monotonic() - started < 0.5
    private_redis.start()
    await asyncio.sleep(0.4)
    states = [(await client.get("/products")).headers["x-cache"] for _ in range(4)]
    assert states[-1] == "HIT"


async def test_redis_paused_waits_at_most_the_timeout(
    private_redis: Any, stores: Any, asgi_client: Any
) -> None:
    """Redis paused (SIGSTOP): no request waits much past the command timeout; then not at all."""
    origin = Origin()
    store = stores("redis", url=private_redis.url, timeout_s=0.05)
    client = client_for(CacheMiddleware(origin.app(), routes=ROUTES, store=store), asgi_client)
    await client.get("/products")
    private_redis.pause()
    try:
        durations = []
        for _ in range(10):
            started = time.monotonic()
            response = await client.get("/products")
            durations.append(time.monotonic() - started)
            assert response.status_code == 200
        assert max(durations) < 0.5
        concurrent = await asyncio.gather(*(client.get("/products/2") for _ in range(50)))
        assert {r.status_code for r in concurrent} == {200}
    finally:
        private_redis.cont()


def test_two_uvicorn_workers_share_entries_and_invalidation(
    serve: Any, redis_url: str, redis_prefix: str
) -> None:
    """Two uvicorn processes on one Redis share entries; an invalidation holds in both."""
    env = {"BENCH_CONFIG": "ours_redis", "BENCH_REDIS_URL": redis_url, "BENCH_PREFIX": redis_prefix}
    a = serve("benchmarks.cache_apps:app", env, ready="/ping")
    b = serve("benchmarks.cache_apps:app", env, ready="/ping")
    with httpx.Client(timeout=5, headers={"host": "shop.example"}) as http:
        first = http.get(a.url + "/stamp")
        assert first.headers["x-cache"] == "MISS"
        other = http.get(b.url + "/stamp")
        assert other.headers["x-cache"] == "HIT"
        assert other.content == first.content
        assert http.post(b.url + "/invalidate").json() == {"ok": True}
        after = http.get(a.url + "/stamp")
        assert after.headers["x-cache"] == "MISS"
        assert after.content != first.content
        assert http.get(b.url + "/stamp").content == after.content


def test_package_exports_the_documented_names() -> None:
    """`launchready_sdk.cache` exports its documented API and the defaults Settings uses."""
    import launchready_sdk.cache

    assert sorted(launchready_sdk.cache.__all__) == [
        "Cache",
        "CacheMiddleware",
        "CacheRule",
        "DEFAULT_CREDENTIAL_HEADERS",
        "DEFAULT_MAX_BODY_BYTES",
        "DEFAULT_MEMORY_MAX_BYTES",
        "DEFAULT_STALE_IF_ERROR_S",
        "DEFAULT_STALE_WHILE_REVALIDATE_S",
        "MAX_LIFETIME_S",
        "cached",
        "set_default_cache",
    ]
    for name in launchready_sdk.cache.__all__:
        assert getattr(launchready_sdk.cache, name) is not None


# --- hardening: credentials by name, the key is what the app sees ---------------------------


@BOTH
@pytest.mark.parametrize(
    "header", ["apikey", "Api-Key", "X-Session-Token", "X-User-Token", "X-Auth", "X-Jwt"]
)
async def test_any_credential_named_header_bypasses_the_cache(
    kind: str, header: str, stores: Any, asgi_client: Any
) -> None:
    """A request carrying a header named like a credential is never stored nor served a
    shared entry, so an anonymous client never gets the user's data as a HIT."""
    origin = Origin()
    app = CacheMiddleware(origin.app(), routes=ROUTES, store=stores(kind))
    client = client_for(app, asgi_client)
    origin.data = "private-to-the-user"
    user = await client.get("/products", headers={header: "u-123"})
    origin.data = "public"
    anonymous = await client.get("/products")
    assert user.headers["x-cache"] == "BYPASS"
    assert "credentials" in user.headers["cache-status"]
    assert anonymous.json()["data"] == "public"


async def test_a_client_that_names_no_coding_never_gets_compressed_bytes(
    asgi_client: Any,
) -> None:
    """`Accept-Encoding: gzip;q=0` is keyed as gzip, because Starlette's GZip compresses for
    it; a client that sent no Accept-Encoding then gets plain bytes, never that entry."""
    from starlette.middleware.gzip import GZipMiddleware

    async def big(request: Request) -> Response:
        return JSONResponse({"items": ["x" * 40] * 100})

    inner = GZipMiddleware(Starlette(routes=[Route("/products", big)]), minimum_size=10)
    app = CacheMiddleware(inner, routes=ROUTES)
    client = client_for(app, asgi_client)
    first = await client.get("/products", headers={"Accept-Encoding": "gzip;q=0"})
    assert first.headers.get("content-encoding") == "gzip"  # what Starlette does with it
    plain = await client.get("/products", headers={"Accept-Encoding": "identity"})
    assert plain.headers.get("content-encoding") is None
    assert plain.json()["items"][0] == "x" * 40
    transport = httpx.ASGITransport(app=app, client=("203.0.113.7", 1))
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as raw:
        request = raw.build_request("GET", "/products")
        del request.headers["accept-encoding"]
        bare = await raw.send(request)
    assert bare.headers.get("content-encoding") is None
    assert json.loads(bare.content)["items"][0] == "x" * 40


@BOTH
async def test_repeated_query_parameters_keep_their_order_in_the_key(
    kind: str, stores: Any, asgi_client: Any
) -> None:
    """`?page=2&page=1` and `?page=1&page=2` are two entries: apps read the last value."""

    async def page(request: Request) -> Response:
        return JSONResponse({"page": request.query_params["page"]})  # Starlette: the last

    app = CacheMiddleware(
        Starlette(routes=[Route("/products", page)]), routes=ROUTES, store=stores(kind)
    )
    client = client_for(app, asgi_client)
    assert (await client.get("/products?page=2&page=1")).json() == {"page": "1"}
    assert (await client.get("/products?page=1&page=2")).json() == {"page": "2"}
    again = await client.get("/products?page=1&page=2")
    assert (again.json(), again.headers["x-cache"]) == ({"page": "2"}, "HIT")
    encoded = await client.get("/products?pag%65=1&page=2")
    assert encoded.json() == {"page": "2"}
    other = await client.get("/products?page=2&pag%65=1")
    assert other.json() == {"page": "1"}


@pytest.mark.parametrize("shared", [False, True])
async def test_a_hit_counts_under_the_apps_own_route_template(
    shared: bool, redis_url: str, redis_prefix: str, asgi_client: Any
) -> None:
    """The cache rule says `/catalog/{id}`, the app's route `/catalog/{item_id}`: a HIT, which
    the app never sees, is counted under the app's template like the MISS, not as a second
    route. With Redis, a second worker that never ran the app names it the same way."""
    from fastapi import FastAPI

    from launchready_sdk import LaunchReady, Settings

    def worker() -> tuple[Any, Any]:
        api = FastAPI()

        @api.get("/catalog/{item_id}")
        async def item(item_id: int) -> dict[str, int]:
            return {"id": item_id}

        settings = Settings(
            configure_logging=False,
            rate_limits={},
            cache_routes={"/catalog/{id}": 60},
            redis_url=redis_url if shared else None,
            redis_prefix=redis_prefix,
        )
        lr = LaunchReady(settings)
        return lr, lr.wrap(api)

    lr, app = worker()
    client = asgi_client(app)
    miss = await client.get("/catalog/7")
    hit = await client.get("/catalog/7")
    assert (miss.headers["x-cache"], hit.headers["x-cache"]) == ("MISS", "HIT")
    assert set(lr.latency.snapshot()) == {"GET /catalog/{item_id}"}
    assert lr.latency.snapshot()["GET /catalog/{item_id}"]["count"] == 2
    if shared:
        other, other_app = worker()
        again = await asgi_client(other_app).get("/catalog/7")
        assert again.headers["x-cache"] == "HIT"
        assert set(other.latency.snapshot()) == {"GET /catalog/{item_id}"}
        await other.shutdown()
    await lr.shutdown()
