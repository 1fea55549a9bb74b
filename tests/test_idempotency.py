"""Idempotency-Key replay and `once()`: memory and real Redis, conflicts, caps and outages."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest
import structlog.testing
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from launchready_sdk.errors import StoreUnavailable
from launchready_sdk.idempotency import (
    Idempotency,
    IdempotencyMiddleware,
    MemoryBackend,
    decode,
    default_identity,
    encode_done,
    valid_key,
)
from launchready_sdk.store import RedisStore

Make = Callable[..., Idempotency]


class Shop:
    """A checkout that counts its runs; `slow` holds it until released."""

    def __init__(self) -> None:
        self.calls = 0
        self.fail_next = False
        self.slow = False
        self.release = asyncio.Event()
        self.started = asyncio.Event()

    async def checkout(self, request: Request) -> Response:
        self.calls += 1
        self.started.set()
        body = await request.body()
        if self.slow:
            await self.release.wait()
        if self.fail_next:
            self.fail_next = False
            return JSONResponse({"error": "provider down"}, status_code=500)
        headers = {"location": f"/orders/{self.calls}", "x-order": str(self.calls)}
        headers["set-cookie"] = "theme=secret-theme"  # never stored nor replayed
        content = {"order": self.calls, "size": len(body)}
        return JSONResponse(content, status_code=201, headers=headers)

    def app(self) -> Starlette:
        return Starlette(
            routes=[
                Route("/checkout", self.checkout, methods=["POST"]),
                Route("/orders/{id}/pay", self.checkout, methods=["POST"]),
                Route("/other", self.checkout, methods=["POST"]),
            ]
        )


@pytest.fixture(params=["memory", "redis"])
async def make(request: Any, redis_url: str, redis_prefix: str) -> AsyncIterator[Make]:
    """Builds an `Idempotency` on memory or on the shared Redis (closed after the test)."""
    stores: list[RedisStore] = []

    def build(**kwargs: Any) -> Idempotency:
        store = None
        if request.param == "redis":
            store = RedisStore(redis_url, timeout_s=1.0, cooldown_s=1.0, prefix=redis_prefix)
            stores.append(store)
        return Idempotency(store=store, **kwargs)

    yield build
    for store in stores:
        await store.aclose()


def wrapped(shop: Shop, idem: Idempotency, **kwargs: Any) -> IdempotencyMiddleware:
    routes = ["/checkout", "/orders/{id}/pay"]
    return IdempotencyMiddleware(shop.app(), idempotency=idem, routes=routes, **kwargs)


def key(value: str) -> dict[str, str]:
    return {"Idempotency-Key": value}


async def test_retry_replays_the_stored_response(make: Make, asgi_client: Any) -> None:
    """A retry with the same key and body replays status, kept headers and body; one run."""
    shop = Shop()
    c = asgi_client(wrapped(shop, make()))
    first = await c.post("/checkout", json={"cart": 1}, headers=key("k-1"))
    second = await c.post("/checkout", json={"cart": 1}, headers=key("k-1"))
    assert shop.calls == 1
    assert first.status_code == second.status_code == 201
    assert second.content == first.content
    assert second.headers["idempotent-replayed"] == "true"
    assert "idempotent-replayed" not in first.headers
    assert second.headers["location"] == "/orders/1"
    assert second.headers["x-order"] == "1"
    assert second.headers["content-type"] == "application/json"
    assert "set-cookie" not in second.headers


async def test_concurrent_duplicate_gets_409(make: Make, asgi_client: Any) -> None:
    """While the first request runs, a duplicate with the same key gets 409 problem+json."""
    shop = Shop()
    shop.slow = True
    c = asgi_client(wrapped(shop, make()))
    first = asyncio.create_task(c.post("/checkout", json={"a": 1}, headers=key("dup")))
    await asyncio.wait_for(shop.started.wait(), 2)
    duplicate = await c.post("/checkout", json={"a": 1}, headers=key("dup"))
    shop.release.set()
    assert (await first).status_code == 201
    assert duplicate.status_code == 409
    assert duplicate.headers["content-type"] == "application/problem+json"
    assert shop.calls == 1


async def test_a_retry_the_moment_the_response_ends_is_replayed(make: Make) -> None:
    """The record is stored before the last body chunk leaves, so a client that retries as
    soon as it has the response is replayed it, even while the app is still cleaning up."""
    cleanup = asyncio.Event()

    async def app(scope: Any, receive: Any, send: Any) -> None:
        while (await receive()).get("more_body"):
            pass
        await send({"type": "http.response.start", "status": 201, "headers": []})
        await send({"type": "http.response.body", "body": b'{"order": 1}'})
        await cleanup.wait()  # work after the response, as Django's request_finished does

    mw = IdempotencyMiddleware(app, idempotency=make(), routes=["/checkout"])

    def scope() -> dict[str, Any]:
        return {
            "type": "http",
            "method": "POST",
            "path": "/checkout",
            "root_path": "",
            "query_string": b"",
            "headers": [(b"idempotency-key", b"k-now"), (b"content-type", b"application/json")],
            "client": ("203.0.113.9", 1),
        }

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"{}", "more_body": False}

    retried: list[dict[str, Any]] = []
    replayed = asyncio.Event()

    async def retry_send(message: dict[str, Any]) -> None:
        retried.append(message)
        if message["type"] == "http.response.body":
            replayed.set()

    async def first_send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.body" and not message.get("more_body"):
            await mw(scope(), receive, retry_send)  # the retry, the moment the body is out

    first = asyncio.create_task(mw(scope(), receive, first_send))
    await asyncio.wait_for(replayed.wait(), 5)
    cleanup.set()
    await first
    assert retried[0]["status"] == 201
    assert (b"idempotent-replayed", b"true") in retried[0]["headers"]
    assert retried[1]["body"] == b'{"order": 1}'


async def test_a_slow_handler_keeps_its_key_past_the_lease(make: Make, asgi_client: Any) -> None:
    """The claim is renewed while the handler runs: a duplicate after the lease still gets 409."""
    shop = Shop()
    shop.slow = True
    c = asgi_client(wrapped(shop, make(lease_s=1)))
    first = asyncio.create_task(c.post("/checkout", json={"a": 1}, headers=key("slow")))
    await asyncio.wait_for(shop.started.wait(), 2)
    await asyncio.sleep(1.6)  # past the 1 s lease
    duplicate = await c.post("/checkout", json={"a": 1}, headers=key("slow"))
    shop.release.set()
    assert (await first).status_code == 201
    assert duplicate.status_code == 409
    retry = await c.post("/checkout", json={"a": 1}, headers=key("slow"))
    assert retry.headers["idempotent-replayed"] == "true"
    assert shop.calls == 1


async def test_different_body_same_key_gets_422(make: Make, asgi_client: Any) -> None:
    """The same key with another body is refused with 422 and the handler does not run."""
    shop = Shop()
    c = asgi_client(wrapped(shop, make()))
    await c.post("/checkout", json={"cart": 1}, headers=key("k-2"))
    other = await c.post("/checkout", json={"cart": 2}, headers=key("k-2"))
    assert other.status_code == 422
    assert other.headers["content-type"] == "application/problem+json"
    assert shop.calls == 1


async def test_server_error_is_not_stored(make: Make, asgi_client: Any) -> None:
    """A 500 releases the key: the retry runs the handler again and its success is stored."""
    shop = Shop()
    shop.fail_next = True
    c = asgi_client(wrapped(shop, make()))
    failed = await c.post("/checkout", json={}, headers=key("k-3"))
    retried = await c.post("/checkout", json={}, headers=key("k-3"))
    replayed = await c.post("/checkout", json={}, headers=key("k-3"))
    assert (failed.status_code, retried.status_code, replayed.status_code) == (500, 201, 201)
    assert shop.calls == 2
    assert replayed.headers["idempotent-replayed"] == "true"


async def test_requests_without_key_or_off_route_pass_through(make: Make, asgi_client: Any) -> None:
    """No header, another route or another method: the app runs every time, untouched."""
    shop = Shop()
    c = asgi_client(wrapped(shop, make()))
    for _ in range(2):
        assert (await c.post("/checkout", json={})).status_code == 201
        assert (await c.post("/other", json={}, headers=key("k"))).status_code == 201
    assert (await c.get("/checkout", headers=key("k"))).status_code == 405
    assert shop.calls == 4


async def test_invalid_keys_get_400_with_request_id(asgi_client: Any) -> None:
    """Empty, too long, non-visible or repeated keys get 400 problem+json naming the request."""
    shop = Shop()
    inner = wrapped(shop, Idempotency(store=None))

    async def app(scope: Any, receive: Any, send: Any) -> None:
        scope["launchready.request_id"] = "req-123"
        await inner(scope, receive, send)

    c = asgi_client(app)
    for bad in ("", "x" * 256, "has space", "tab\there"):
        response = await c.post("/checkout", json={}, headers=key(bad))
        assert response.status_code == 400, bad
        assert response.json()["request_id"] == "req-123"
    twice = [("Idempotency-Key", "a"), ("Idempotency-Key", "b")]
    assert (await c.post("/checkout", json={}, headers=twice)).status_code == 400
    assert shop.calls == 0
    assert valid_key(b"x" * 255)
    assert valid_key(b"~!")


async def test_body_over_cap_gets_413(asgi_client: Any) -> None:
    """A request body over the cap is refused with 413 before the handler runs."""
    shop = Shop()
    c = asgi_client(wrapped(shop, Idempotency(store=None, max_body_bytes=100)))
    response = await c.post("/checkout", content=b"x" * 101, headers=key("big"))
    assert response.status_code == 413
    assert shop.calls == 0
    assert (await c.post("/checkout", content=b"x" * 50, headers=key("ok"))).status_code == 201


async def test_identities_do_not_collide(make: Make, asgi_client: Any) -> None:
    """Two callers (tokens or addresses) using the same key each get their own run."""
    shop = Shop()
    app = wrapped(shop, make())
    alice = asgi_client(app, client=("198.51.100.1", 1))
    bob = asgi_client(app, client=("198.51.100.2", 1))
    headers = key("same")
    await alice.post("/checkout", json={}, headers=headers)
    await bob.post("/checkout", json={}, headers=headers)
    await alice.post("/checkout", json={}, headers={**headers, "Authorization": "Bearer a"})
    await alice.post("/checkout", json={}, headers={**headers, "Authorization": "Bearer b"})
    assert shop.calls == 4
    replay = await bob.post("/checkout", json={}, headers={**headers, "Authorization": "Bearer b"})
    assert replay.headers["idempotent-replayed"] == "true"
    assert shop.calls == 4


async def test_custom_identity_and_path_in_fingerprint(make: Make, asgi_client: Any) -> None:
    """A custom identity is honoured; one key on two paths of one pattern, or with two query
    strings, is a mismatch."""
    shop = Shop()
    c = asgi_client(wrapped(shop, make(), identity=lambda scope: "everyone"))
    assert (await c.post("/orders/1/pay", json={}, headers=key("p"))).status_code == 201
    assert (await c.post("/orders/2/pay", json={}, headers=key("p"))).status_code == 422
    assert shop.calls == 1
    first = await c.post("/checkout?coupon=A", json={}, headers=key("q"))
    other_query = await c.post("/checkout?coupon=B", json={}, headers=key("q"))
    assert (first.status_code, other_query.status_code) == (201, 422)


async def test_once_is_true_exactly_once_under_concurrency(make: Make) -> None:
    """100 concurrent `once()` calls for one event id: exactly one True."""
    idem = make()
    results = await asyncio.gather(*(idem.once("evt_1") for _ in range(100)))
    assert results.count(True) == 1
    assert await idem.once("evt_2") is True


async def test_forget_lets_a_failed_event_run_again(make: Make) -> None:
    """After `forget()`, the next delivery of the event is new again; other events untouched."""
    idem = make()
    assert await idem.once("evt_f") is True
    assert await idem.once("evt_g") is True
    assert await idem.once("evt_f") is False
    await idem.forget("evt_f")
    assert await idem.once("evt_f") is True
    assert await idem.once("evt_f") is False
    assert await idem.once("evt_g") is False
    await idem.forget("never-seen")  # harmless


async def test_memory_entries_expire() -> None:
    """After the TTL a key runs again and an event is new again (memory backend)."""
    shop = Shop()
    idem = Idempotency(store=None, ttl_s=1)
    transport = httpx.ASGITransport(app=wrapped(shop, idem))
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
        await c.post("/checkout", json={}, headers=key("exp"))
        assert await idem.once("evt", ttl_s=1) is True
        assert await idem.once("evt", ttl_s=1) is False
        await asyncio.sleep(1.05)
        again = await c.post("/checkout", json={}, headers=key("exp"))
    assert "idempotent-replayed" not in again.headers
    assert shop.calls == 2
    assert await idem.once("evt", ttl_s=1) is True


async def test_corrupt_record_is_treated_as_absent(asgi_client: Any) -> None:
    """A record that does not parse is replaced and the request runs."""
    shop = Shop()
    idem = Idempotency(store=None)
    backend = idem.backend
    assert isinstance(backend, MemoryBackend)
    original = backend.claim

    async def corrupting(k: str, value: bytes, lease_s: int, replace: bytes = b"") -> Any:
        if not replace:
            await original(k, b"not json", lease_s)
        return await original(k, value, lease_s, replace)

    backend.claim = corrupting  # type: ignore[method-assign]
    c = asgi_client(wrapped(shop, idem))
    assert (await c.post("/checkout", json={}, headers=key("c"))).status_code == 201
    assert shop.calls == 1
    assert decode(b"\x00garbage") is None
    assert decode(encode_done("f", 200, [(b"etag", b'"1"')], b"hi")) is not None


@pytest.mark.parametrize("fail", ["proceed", "refuse"])
async def test_redis_outage_follows_policy(fail: Any, private_redis: Any, asgi_client: Any) -> None:
    """Redis killed: proceed runs the handler (and warns); refuse answers 503 with Retry-After."""
    store = RedisStore(private_redis.url, timeout_s=0.2, cooldown_s=5.0, prefix="t")
    shop = Shop()
    idem = Idempotency(store=store, fail=fail)
    c = asgi_client(wrapped(shop, idem))
    assert (await c.post("/checkout", json={}, headers=key("before"))).status_code == 201
    private_redis.kill()
    with structlog.testing.capture_logs() as logs:
        response = await c.post("/checkout", json={}, headers=key("during"))
    if fail == "proceed":
        assert response.status_code == 201
        assert any(line["event"] == "idempotency.unprotected" for line in logs)
        assert shop.calls == 2
        assert await idem.once("evt") is True
    else:
        assert response.status_code == 503
        assert response.headers["retry-after"] == "5"
        assert shop.calls == 1
        with pytest.raises(StoreUnavailable):
            await idem.once("evt")
    await store.aclose()


# --- hardening: callers, transient refusals ---------------------------------------------------


@pytest.mark.parametrize(
    "credential",
    [
        {"Cookie": "sessionid=user-a"},
        {"Cookie": "_ga=1; connect.sid=user-a"},
        {"X-Api-Key": "key-a"},
        {"X-Session-Token": "tok-a"},
        {"Authorization": "Bearer a"},
    ],
)
async def test_two_users_behind_one_address_never_share_a_record(
    make: Make, asgi_client: Any, credential: dict[str, str]
) -> None:
    """Two users behind one NAT sending the same key and body each get their own order: the
    caller is every credential the request carries, cookies and API-key headers included."""
    shop = Shop()
    c = asgi_client(wrapped(shop, make(), identity=default_identity))
    name, value = next(iter(credential.items()))
    other = {name: value.replace("-a", "-b").replace(" a", " b")}
    first = await c.post("/checkout", json={"cart": 1}, headers={**key("k-nat"), **credential})
    c.cookies.clear()
    second = await c.post("/checkout", json={"cart": 1}, headers={**key("k-nat"), **other})
    assert shop.calls == 2
    assert first.json()["order"] == 1
    assert second.json()["order"] == 2
    assert "idempotent-replayed" not in second.headers


async def test_analytics_cookies_do_not_split_a_caller(make: Make, asgi_client: Any) -> None:
    """Cookies not named like a session (analytics, preferences) do not change the caller."""
    shop = Shop()
    c = asgi_client(wrapped(shop, make(), identity=default_identity))
    await c.post("/checkout", json={"cart": 1}, headers={**key("k-ga"), "Cookie": "_ga=1"})
    again = await c.post("/checkout", json={"cart": 1}, headers={**key("k-ga"), "Cookie": "_ga=2"})
    assert shop.calls == 1
    assert again.headers["idempotent-replayed"] == "true"


async def test_an_app_named_caller_survives_a_token_refresh(asgi_client: Any) -> None:
    """`LaunchReady.idempotency_caller` names the caller (a user id): a retry after the
    token was refreshed still replays the first response."""
    from launchready_sdk import LaunchReady, Settings

    shop = Shop()
    lr = LaunchReady(Settings(idempotent_routes=("/checkout",), configure_logging=False))

    @lr.idempotency_caller
    def user_id(scope: Any) -> str | None:
        return dict(scope["headers"]).get(b"x-user", b"").decode() or None

    c = asgi_client(lr.wrap(shop.app()))
    old = {**key("k-r"), "Authorization": "Bearer old", "X-User": "u1"}
    new = {**key("k-r"), "Authorization": "Bearer refreshed", "X-User": "u1"}
    await c.post("/checkout", json={"cart": 1}, headers=old)
    retry = await c.post("/checkout", json={"cart": 1}, headers=new)
    assert shop.calls == 1
    assert retry.headers["idempotent-replayed"] == "true"


@pytest.mark.parametrize("status", [408, 409, 423, 425, 429])
async def test_transient_refusals_are_not_stored(make: Make, asgi_client: Any, status: int) -> None:
    """A 429 with Retry-After (or a 408, 409, 423, 425) is not replayed for 24 hours: the
    retry reaches the handler again."""

    calls = 0

    async def refuse_once(request: Request) -> Response:
        nonlocal calls
        calls += 1
        if calls == 1:
            return JSONResponse({"error": "busy"}, status_code=status, headers={"retry-after": "1"})
        return JSONResponse({"order": 1}, status_code=201)

    app = IdempotencyMiddleware(
        Starlette(routes=[Route("/checkout", refuse_once, methods=["POST"])]),
        idempotency=make(),
        routes=["/checkout"],
    )
    c = asgi_client(app)
    first = await c.post("/checkout", json={}, headers=key(f"k-{status}"))
    retry = await c.post("/checkout", json={}, headers=key(f"k-{status}"))
    assert first.status_code == status
    assert retry.status_code == 201
    assert calls == 2


async def test_by_default_an_outage_refuses_rather_than_risking_a_second_order(
    asgi_client: Any,
) -> None:
    """LaunchReady's default while Redis is unreachable: 503 with Retry-After, the handler
    never runs, and once() raises instead of saying "first time"."""
    from launchready_sdk import LaunchReady, Settings
    from tests.conftest import free_port

    orders: list[int] = []

    async def checkout(request: Request) -> Response:
        orders.append(1)
        return JSONResponse({"order": len(orders)}, status_code=201)

    lr = LaunchReady(
        Settings(
            redis_url=f"redis://127.0.0.1:{free_port()}/0",
            idempotent_routes=("/checkout",),
            configure_logging=False,
            rate_limits={},
        )
    )
    assert lr.settings.idempotency_fail == "refuse"
    app = lr.wrap(Starlette(routes=[Route("/checkout", checkout, methods=["POST"])]))
    response = await asgi_client(app).post(
        "/checkout", json={"cart": 1}, headers={"idempotency-key": "k1"}
    )
    assert response.status_code == 503
    assert response.headers["retry-after"]
    assert response.headers["content-type"].startswith("application/problem+json")
    assert orders == []
    with pytest.raises(StoreUnavailable):
        await lr.idempotency.once("evt_1")
    await lr.shutdown()
