"""LaunchReady end to end: the wrapped app under real uvicorn, add_middleware, Redis readiness."""

from __future__ import annotations

import asyncio
import socket
import time
from typing import Any

import httpx
from fastapi import FastAPI
from starlette.applications import Starlette
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from launchready_sdk import LaunchReady, LaunchReadyMiddleware, Settings

SPEC = "tests.apps.basic:app"


def test_uvicorn_end_to_end_request_ids_in_every_line(serve: Any) -> None:
    """Under uvicorn every line of a request, async or sync view, carries the response's ID."""
    server = serve(SPEC)
    with httpx.Client(base_url=server.url) as client:
        ids = {path: client.get(path).headers["x-request-id"] for path in ("/slow", "/sync")}
        missing = client.get("/missing")
        boom = client.get("/boom")
    time.sleep(0.2)
    lines = server.log_lines()
    for event, path in [("slow.start", "/slow"), ("slow.end", "/slow"), ("sync.view", "/sync")]:
        assert [r["request_id"] for r in lines if r["event"] == event] == [ids[path]]
    stdlib_sync = [r for r in lines if r.get("logger") == "tests.basic.stdlib"]
    assert stdlib_sync[0]["request_id"] == ids["/sync"]
    assert missing.status_code == 404
    assert missing.headers["x-request-id"]
    assert boom.status_code == 500
    assert boom.headers["content-type"] == "application/problem+json"
    assert boom.json()["request_id"] == boom.headers["x-request-id"]
    access = [r for r in lines if r["event"] == "request"]
    assert {r["status"] for r in access} >= {200, 404, 500}


def test_uvicorn_lines_are_json_and_redacted(serve: Any) -> None:
    """Server, app and stdlib lines are all JSON; a password in a body never reaches the log."""
    server = serve(SPEC)
    secret = "Tr0ub4dor&3-" + "x" * 8
    with httpx.Client(base_url=server.url) as client:
        client.post("/login", json={"password": secret, "note": "token=" + secret})
        client.get("/boom")
    time.sleep(0.2)
    raw = server.raw_log()
    assert secret not in raw
    assert "hunter2" not in raw
    lines = server.log_lines()
    assert any(r.get("logger", "").startswith("uvicorn") for r in lines)
    non_json = [ln for ln in raw.splitlines() if ln.strip() and not ln.startswith("{")]
    assert non_json == []


def _raw_get(port: int, request_id: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(
            b"GET / HTTP/1.1\r\nHost: x\r\nX-Request-ID: "
            + request_id
            + b"\r\nConnection: close\r\n\r\n"
        )
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    return data.split(b"\r\n\r\n")[0].lower()


def test_uvicorn_hostile_request_id_never_breaks_logs(serve: Any) -> None:
    """An over-long, quoted ID over a raw socket gets a fresh ID; the log stays JSON."""
    server = serve(SPEC)
    head = _raw_get(server.port, b'"' + b"A" * 5000 + b'\\" {"x": 1}')
    assert head.count(b"x-request-id:") == 1
    assert b"aaaa" not in head
    time.sleep(0.2)
    access = [r for r in server.log_lines() if r["event"] == "request"]
    assert access
    assert len(access[-1]["client_request_id"]) <= 64


def test_uvicorn_control_characters_in_id_inject_nothing(serve: Any) -> None:
    """Control characters are refused by the server or replaced; no header is injected."""
    server = serve(SPEC)
    head = _raw_get(server.port, b"abc\x1b[2J\x00def")
    assert b"\x1b" not in head
    assert b"\x00" not in head
    assert head.count(b"x-request-id:") <= 1
    non_json = [ln for ln in server.raw_log().splitlines() if ln and not ln.startswith("{")]
    assert non_json == []


def test_stream_passes_through_untouched(serve: Any) -> None:
    """A streaming response arrives whole with its ID header."""
    server = serve(SPEC)
    response = httpx.get(server.url + "/stream")
    assert response.text == "".join(f"chunk{i}\n" for i in range(5))
    assert response.headers["x-request-id"]


def test_readiness_with_dead_redis_is_503_and_app_keeps_serving(
    serve: Any, private_redis: Any
) -> None:
    """Redis killed: /readyz says 503 within its deadline, /healthz and routes stay 200."""
    server = serve(SPEC, {"LAUNCHREADY_REDIS_URL": private_redis.url})
    with httpx.Client(base_url=server.url, timeout=5) as client:
        assert client.get("/readyz").json()["checks"]["redis"]["status"] == "pass"
        private_redis.kill()
        time.sleep(1.1)  # readiness verdicts are cached for a second
        started = time.monotonic()
        ready = client.get("/readyz")
        assert time.monotonic() - started < 2.5
        assert ready.status_code == 503
        assert ready.json()["checks"]["redis"]["status"] == "fail"
        assert client.get("/healthz").status_code == 200
        assert client.get("/").status_code == 200


def test_readiness_with_paused_redis_answers_within_deadline(
    serve: Any, private_redis: Any
) -> None:
    """Redis SIGSTOPped: /readyz answers 503 quickly instead of hanging."""
    server = serve(SPEC, {"LAUNCHREADY_REDIS_URL": private_redis.url})
    private_redis.pause()
    try:
        started = time.monotonic()
        ready = httpx.get(server.url + "/readyz", timeout=5)
        elapsed = time.monotonic() - started
    finally:
        private_redis.cont()
    assert ready.status_code == 503
    assert elapsed < 2.5


async def test_add_middleware_gives_the_same_stack(log_stream: Any) -> None:
    """app.add_middleware(LaunchReadyMiddleware, settings=...) adds IDs, health and logs."""
    app = FastAPI()

    @app.get("/hello")
    async def hello() -> dict[str, str]:
        return {"hi": "there"}

    app.add_middleware(LaunchReadyMiddleware, settings=Settings(configure_logging=False))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as c:
        hello_response = await c.get("/hello")
        health = await c.get("/healthz")
    assert hello_response.headers["x-request-id"]
    assert health.status_code == 200


async def test_add_health_check_is_used_by_readyz() -> None:
    """A check added with add_health_check decides /readyz."""
    lr = LaunchReady(Settings(configure_logging=False))
    healthy = True

    async def db() -> None:
        if not healthy:
            raise ConnectionError("down")

    lr.add_health_check("db", db)
    app = lr.wrap(Starlette(routes=[Route("/", lambda r: PlainTextResponse("ok"))]))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as c:
        assert (await c.get("/readyz")).status_code == 200
        healthy = False
        lr.readiness.cache_s = 0
        assert (await c.get("/readyz")).status_code == 503


async def test_lifespan_closes_redis_and_drains(redis_url: str, redis_prefix: str) -> None:
    """Lifespan start-up and shutdown pass through; shutdown drains readiness and closes Redis."""
    lr = LaunchReady(
        Settings(configure_logging=False, redis_url=redis_url, redis_prefix=redis_prefix)
    )
    app = lr.wrap(Starlette())
    queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    sent: list[str] = []
    await queue.put({"type": "lifespan.startup"})
    await queue.put({"type": "lifespan.shutdown"})

    async def send(message: dict[str, Any]) -> None:
        sent.append(message["type"])

    assert lr.redis is not None
    await lr.redis.ping()
    await app({"type": "lifespan", "asgi": {"version": "3.0"}, "state": {}}, queue.get, send)
    assert sent == ["lifespan.startup.complete", "lifespan.shutdown.complete"]
    assert lr.readiness.draining
    assert lr.redis.client.connections == 0


def test_launchready_without_arguments_reads_the_environment(monkeypatch: Any) -> None:
    """LaunchReady() builds its settings from LAUNCHREADY_* variables."""
    monkeypatch.setenv("LAUNCHREADY_SERVICE_NAME", "from-env")
    monkeypatch.setenv("LAUNCHREADY_CONFIGURE_LOGGING", "false")
    assert LaunchReady().settings.service_name == "from-env"


async def test_http_client_carries_request_id_and_feeds_metrics() -> None:
    """lr.http_client() sends the request's ID upstream; /metrics shows routes and hosts."""
    seen: list[bytes] = []

    async def upstream(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        seen.append(head)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok")
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(upstream, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    lr = LaunchReady(Settings(configure_logging=False, rate_limits={}))

    async def pay(request: Any) -> PlainTextResponse:
        async with lr.http_client() as client:
            upstream_response = await client.post(f"http://127.0.0.1:{port}/charges", json={})
        return PlainTextResponse(upstream_response.text)

    app = lr.wrap(Starlette(routes=[Route("/pay/{order_id}", pay, methods=["POST"])]))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as c:
        paid = await c.post("/pay/42")
        metrics = await c.get("/metrics")
    server.close()
    await server.wait_closed()
    assert paid.text == "ok"
    request_id = paid.headers["x-request-id"]
    assert f"x-request-id: {request_id}".encode() in seen[0].lower()
    assert 'route="/pay/{order_id}"' in metrics.text
    assert "launchready_outbound_calls" in metrics.text
    assert f"127.0.0.1:{port}" in metrics.text
    snapshot = lr.latency.snapshot()
    assert snapshot["POST /pay/{order_id}"]["count"] == 1


async def test_cache_hits_are_timed_under_their_route() -> None:
    """A response served from the cache is recorded under its route, not as unmatched."""
    lr = LaunchReady(
        Settings(configure_logging=False, rate_limits={}, cache_routes={"/items/{id}": 30})
    )

    async def item(request: Any) -> PlainTextResponse:
        return PlainTextResponse("item")

    app = lr.wrap(Starlette(routes=[Route("/items/{id}", item)]))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as c:
        first = await c.get("/items/1")
        second = await c.get("/items/1")
    assert (first.headers["x-cache"], second.headers["x-cache"]) == ("MISS", "HIT")
    snapshot = lr.latency.snapshot()
    assert snapshot["GET /items/{id}"]["count"] == 2
    assert not any("unmatched" in route for route in snapshot)


async def test_idempotent_checkout_through_the_stack(redis_url: str, redis_prefix: str) -> None:
    """A retried checkout with the same Idempotency-Key is replayed; the order is made once."""
    orders: list[int] = []
    lr = LaunchReady(
        Settings(
            configure_logging=False,
            rate_limits={},
            idempotent_routes=("/checkout",),
            redis_url=redis_url,
            redis_prefix=redis_prefix,
            redis_timeout_s=1.0,
        )
    )

    async def checkout(request: Any) -> PlainTextResponse:
        orders.append(1)
        return PlainTextResponse(f"order {len(orders)}", status_code=201)

    app = lr.wrap(Starlette(routes=[Route("/checkout", checkout, methods=["POST"])]))
    headers = {"Idempotency-Key": "cart-42-attempt"}
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as c:
        first = await c.post("/checkout", content=b'{"cart": 42}', headers=headers)
        retry = await c.post("/checkout", content=b'{"cart": 42}', headers=headers)
        other = await c.post("/checkout", content=b'{"cart": 43}', headers=headers)
    assert (first.status_code, retry.status_code, other.status_code) == (201, 201, 422)
    assert retry.text == first.text == "order 1"
    assert retry.headers["idempotent-replayed"] == "true"
    assert other.headers["content-type"] == "application/problem+json"
    assert orders == [1]
    assert await lr.idempotency.once("evt_123") is True
    assert await lr.idempotency.once("evt_123") is False
    await lr.shutdown()


async def test_path_dispatch_skips_the_layers_only_for_paths_no_layer_acts_on() -> None:
    """Covered paths (in any spelling the layers accept) still meet their layers; others skip."""
    lr = LaunchReady(
        Settings(
            configure_logging=False,
            rate_limits={"/login": "2/minute"},
            cache_routes={"/products/{id}": 30},
        )
    )
    calls: list[str] = []

    async def endpoint(request: Any) -> PlainTextResponse:
        calls.append(request.url.path)
        return PlainTextResponse("ok")

    routes = [Route("/{path:path}", endpoint, methods=["GET", "POST"])]
    app = lr.wrap(Starlette(routes=routes))
    transport = httpx.ASGITransport(app=app, client=("203.0.113.5", 1))
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
        logins = [await c.post(p) for p in ("/login", "/LOGIN/", "/login//", "/Login")]
        assert [r.status_code for r in logins] == [200, 200, 429, 429]
        assert calls == ["/login", "/LOGIN/"]
        assert (await c.get("/products/7")).headers["x-cache"] == "MISS"
        assert (await c.get("/products/7")).headers["x-cache"] == "HIT"
        plain = await c.get("/about")
        assert plain.status_code == 200
        assert lr.latency.snapshot()["GET /{path:path}"]["count"] >= 1
        assert "x-cache" not in plain.headers
        assert "ratelimit-limit" not in plain.headers
        assert (await c.get("/healthz/")).json() == {"status": "pass"}
        assert (await c.get("/metrics")).status_code == 200


async def test_path_dispatch_table_is_bounded() -> None:
    """Decisions are remembered per raw path in a table that never grows past its bound."""
    from launchready_sdk.app import PathDispatch

    seen: list[str] = []

    def covers(path: str) -> bool:
        seen.append(path)
        return path.startswith("/limited")

    async def app(scope: Any, receive: Any, send: Any) -> None:
        scope["reached"] = "app"

    async def layers(scope: Any, receive: Any, send: Any) -> None:
        scope["reached"] = "layers"

    dispatch = PathDispatch(layers, app, covers, max_paths=8)

    async def reach(path: str) -> str:
        scope: dict[str, Any] = {"type": "http", "path": path}
        await dispatch(scope, None, None)  # type: ignore[arg-type]
        return str(scope["reached"])

    assert await reach("/limited/1") == "layers"
    assert await reach("/open") == "app"
    assert await reach("/open") == "app"
    assert seen == ["/limited/1", "/open"]  # the second /open was remembered
    for i in range(100):
        await reach(f"/junk/{i}")
    assert dispatch.remembered <= 8
    dispatch.forget()
    long_path = "/open/" + "x" * 60_000
    assert await reach(long_path) == "app"
    assert await reach(long_path) == "app"
    assert dispatch.remembered == 0  # a long path is decided each time, never kept
    lifespan: dict[str, Any] = {"type": "lifespan"}
    await dispatch(lifespan, None, None)  # type: ignore[arg-type]
    assert lifespan["reached"] == "layers"
