"""Rate limits: budgets, headers, path variants, client keys, Redis sharing and outages."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
import redis.asyncio
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Mount, Route

from launchready_sdk import LaunchReady, Settings
from launchready_sdk.patterns import split_methods
from launchready_sdk.ratelimit import (
    DEFAULT_RATE_LIMITS,
    Backend,
    MemoryBackend,
    RateLimiter,
    RedisBackend,
    bucket_key,
    client_key,
    parse_rule,
)
from launchready_sdk.store import RedisStore


class Counter:
    """Counts handler executions."""

    def __init__(self) -> None:
        self.calls = 0

    async def endpoint(self, request: Request) -> Response:
        self.calls += 1
        return JSONResponse({"ok": True})


def shop(counter: Counter) -> Starlette:
    async def stream(request: Request) -> Response:
        async def body() -> Any:
            for i in range(50):
                yield f"{i},".encode()

        return StreamingResponse(body())

    api = Starlette(routes=[Route("/v1/login", counter.endpoint, methods=["POST"])])
    return Starlette(
        routes=[
            Route("/login", counter.endpoint, methods=["GET", "POST"]),
            Route("/webhooks/{provider}", counter.endpoint, methods=["POST"]),
            Route("/stream", stream, methods=["POST"]),
            Route("/products", counter.endpoint, methods=["GET", "POST"]),
            Route("/otp/{code}", counter.endpoint, methods=["GET"]),
            Mount("/api", app=api),
        ]
    )


_opened: list[LaunchReady] = []


@pytest.fixture(autouse=True)
async def _close_stores() -> AsyncIterator[None]:
    """Close the Redis clients of every LaunchReady a test built."""
    yield
    while _opened:
        await _opened.pop().shutdown()


def wrap(counter: Counter, **settings: Any) -> Any:
    settings.setdefault("configure_logging", False)
    lr = LaunchReady(Settings(**settings))
    _opened.append(lr)
    return lr.wrap(shop(counter))


def client(app: Any, ip: str = "203.0.113.9") -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=app, client=(ip, 40000))
    return httpx.AsyncClient(transport=transport, base_url="http://shop.test")


# --- backends: one suite, run against memory and a real Redis ------------------------------


@pytest.fixture(params=["memory", "redis"])
async def backend(
    request: pytest.FixtureRequest, redis_url: str, redis_prefix: str
) -> AsyncIterator[Backend]:
    """Each backend in turn: this process's memory, then the shared Redis under a fresh prefix."""
    if request.param == "memory":
        yield MemoryBackend()
        return
    store = RedisStore(redis_url, timeout_s=1.0, cooldown_s=1.0, prefix=redis_prefix)
    yield RedisBackend(store)
    await store.aclose()


async def test_gcra_admits_the_burst_then_refuses_with_retry_after(backend: Backend) -> None:
    """5/minute admits 5 at once; the 6th is refused with a Retry-After of about 12 s."""
    limiter = backend
    rule = parse_rule("/login", "5/minute")
    decisions = [await limiter.hit("k", rule) for _ in range(6)]
    assert [d.allowed for d in decisions] == [True] * 5 + [False]
    assert [d.remaining for d in decisions[:5]] == [4, 3, 2, 1, 0]
    refused = decisions[-1]
    assert refused.remaining == 0
    assert 1 <= refused.retry_after_s <= 12
    assert refused.reset_s == refused.retry_after_s


async def test_multiple_rates_report_the_tightest(backend: Backend) -> None:
    """With `2/second;3/minute` the minute budget is the one that refuses the 4th request."""
    limiter = backend
    rule = parse_rule("/login", "2/second;3/minute")
    first = await limiter.hit("k", rule)
    assert first.allowed
    assert first.limit == 2
    await limiter.hit("k", rule)
    await asyncio.sleep(1.05)
    third = await limiter.hit("k", rule)
    assert third.allowed
    assert (third.limit, third.remaining) == (3, 0)
    fourth = await limiter.hit("k", rule)
    assert not fourth.allowed
    assert fourth.limit == 3
    assert fourth.retry_after_s > 1


async def test_memory_limiter_is_bounded() -> None:
    """A million distinct client keys keep the in-memory limiter at its cap."""
    limiter = MemoryBackend(max_keys=10_000)
    rule = parse_rule("/login", "5/minute")
    for i in range(1_000_000):
        await limiter.hit(str(i), rule)
    assert len(limiter) == 10_000


@pytest.mark.parametrize(
    ("ip", "key"),
    [
        ("203.0.113.9", "203.0.113.9"),
        ("2001:db8:1:2:3:4:5:6", "2001:db8:1:2::/64"),
        ("2001:db8:1:2:ffff::1", "2001:db8:1:2::/64"),
        (None, "no-address"),
        ("", "no-address"),
        ("garbage", "no-address"),
    ],
)
def test_client_keys_aggregate_ipv6_and_never_go_empty(ip: str | None, key: str) -> None:
    """IPv6 clients in one /64 share a bucket; no address means one shared bucket, not a bypass."""
    assert client_key(ip, 64) == key


def test_bucket_keys_are_bounded_and_do_not_collide() -> None:
    """Keys are fixed-length hashes; ("a/b", "c") and ("a", "b/c") differ."""
    assert bucket_key("/a/b", "ip", "c") != bucket_key("/a", "ip", "b/c")
    assert len(bucket_key("/login", "ip", "x" * 65536)) == 32


def test_method_prefix_in_rule() -> None:
    """A rule can name its methods: `GET,POST /search`."""
    assert split_methods("GET,post /search") == (frozenset({"GET", "POST"}), "/search")
    assert split_methods("/login") == (None, "/login")
    limiter = RateLimiter({"GET /search": "5/minute"})
    assert limiter.rule_for("GET", "/search") is not None
    assert limiter.rule_for("POST", "/search") is None


def test_default_rules_cover_auth_and_webhooks() -> None:
    """With rate_limits=None the common auth, sign-up, reset and webhook routes are limited,
    for the methods that change state: a GET (or HEAD) of a login form spends nothing."""
    limiter = RateLimiter(None)
    for path in [
        "/login",
        "/signup",
        "/register",
        "/password-reset",
        "/forgot-password",
        "/auth/callback",
        "/token",
        "/webhooks/stripe",
        "/api/webhooks/github",
    ]:
        assert limiter.rule_for("POST", path) is not None, path
    assert limiter.rule_for("POST", "/products") is None
    assert limiter.rule_for("PUT", "/login") is not None
    assert limiter.rule_for("GET", "/login") is None
    assert limiter.rule_for("HEAD", "/login") is None
    assert limiter.rule_for("OPTIONS", "/login") is None
    assert limiter.rules == DEFAULT_RATE_LIMITS


# --- middleware ----------------------------------------------------------------------------


async def test_limited_route_headers_and_429_problem() -> None:
    """Served requests carry RateLimit-*; the refused one is 429 problem+json with Retry-After."""
    counter = Counter()
    app = wrap(counter, rate_limits={"/login": "3/minute"})
    async with client(app) as c:
        served = [await c.post("/login") for _ in range(3)]
        refused = await c.post("/login")
    assert [r.headers["ratelimit-remaining"] for r in served] == ["2", "1", "0"]
    assert all(r.headers["ratelimit-limit"] == "3" for r in served)
    assert all("retry-after" not in r.headers for r in served)
    assert refused.status_code == 429
    assert refused.headers["content-type"] == "application/problem+json"
    assert int(refused.headers["retry-after"]) >= 1
    assert refused.headers["retry-after"] == refused.headers["ratelimit-reset"]
    assert refused.json()["request_id"] == refused.headers["x-request-id"]
    assert counter.calls == 3


async def test_unlimited_routes_have_no_headers() -> None:
    """Routes no rule covers carry no rate-limit headers."""
    app = wrap(Counter(), rate_limits={"/login": "3/minute"})
    async with client(app) as c:
        response = await c.get("/products")
    assert "ratelimit-limit" not in response.headers


@pytest.mark.parametrize(
    "path",
    [
        "/login",
        "/login/",
        "/LOGIN",
        "/%6Cogin",
        "//login",
        "/./login",
        "/api/../login",
        "/login?x=1",
        "/Login/?next=/",
    ],
)
async def test_path_variants_share_the_budget(path: str) -> None:
    """Every spelling of /login draws from one budget; the handler runs at most `limit` times."""
    counter = Counter()
    app = wrap(counter, rate_limits={"/login": "2/minute"})
    async with client(app) as c:
        await c.post("/login")
        await c.post("/login")
        response = await c.post(path)
    assert response.status_code in (429, 404, 307)
    assert counter.calls == 2


async def test_options_never_drains_a_budget_and_head_counts_like_get() -> None:
    """OPTIONS never spends a budget; HEAD spends one wherever GET does, since the framework
    runs the GET handler for it (20 HEADs must not each run an OTP check)."""
    counter = Counter()
    app = wrap(counter, rate_limits={"/login": "2/minute", "GET /otp/{code}": "3/minute"})
    async with client(app) as c:
        for _ in range(10):
            await c.options("/login")
        responses = [await c.post("/login") for _ in range(2)]
        heads = [await c.head(f"/otp/{i}") for i in range(5)]
        gets = [await c.get("/otp/9") for _ in range(2)]
    assert [r.status_code for r in responses] == [200, 200]
    assert [r.status_code for r in heads] == [200, 200, 200, 429, 429]
    assert [r.status_code for r in gets] == [429, 429]


async def test_mounted_routes_are_covered() -> None:
    """A rule covers routes of a mounted sub-app."""
    counter = Counter()
    app = wrap(counter, rate_limits={"/api/v1/login": "1/minute"})
    async with client(app) as c:
        assert (await c.post("/api/v1/login")).status_code == 200
        assert (await c.post("/API/v1/login/")).status_code == 429
    assert counter.calls == 1


async def test_spoofed_forwarding_headers_are_ignored_without_trusted_proxies() -> None:
    """Rotating X-Forwarded-For, X-Real-IP and Forwarded values all count against the peer."""
    counter = Counter()
    app = wrap(counter, rate_limits={"/login": "5/minute"})
    async with client(app) as c:
        for i in range(20):
            await c.post(
                "/login",
                headers={
                    "X-Forwarded-For": f"198.51.100.{i}",
                    "X-Real-IP": f"198.51.100.{i}",
                    "Forwarded": f"for=198.51.100.{i}",
                    "CF-Connecting-IP": f"198.51.100.{i}",
                },
            )
    assert counter.calls == 5


async def test_trusted_proxy_clients_get_their_own_budgets() -> None:
    """Behind a trusted proxy each client has its own budget; a spoofed victim is untouched."""
    counter = Counter()
    app = wrap(counter, rate_limits={"/login": "2/minute"}, trusted_proxies=("10.0.0.0/8",))
    async with client(app, ip="10.0.0.5") as c:
        for _ in range(5):
            await c.post("/login", headers={"X-Forwarded-For": "192.0.2.66, 203.0.113.1"})
        victim = await c.post("/login", headers={"X-Forwarded-For": "192.0.2.66"})
    assert counter.calls == 3
    assert victim.status_code == 200


async def test_ipv6_rotation_within_a_64_shares_one_bucket() -> None:
    """An attacker rotating through addresses of one /64 stays in one bucket."""
    counter = Counter()
    app = wrap(counter, rate_limits={"/login": "3/minute"})
    for i in range(10):
        async with client(app, ip=f"2001:db8:aa:bb::{i + 1:x}") as c:
            await c.post("/login")
    assert counter.calls == 3


async def test_refused_request_body_is_not_read() -> None:
    """A 429 is sent without consuming the request body."""
    counter = Counter()
    app = wrap(counter, rate_limits={"/login": "1/minute"})
    reads = 0

    async def receive() -> dict[str, Any]:
        nonlocal reads
        reads += 1
        return {"type": "http.request", "body": b"x" * 1024, "more_body": True}

    sent: list[dict[str, Any]] = []

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "method": "POST",
        "path": "/login",
        "headers": [],
        "client": ("203.0.113.50", 1),
        "query_string": b"",
        "root_path": "",
        "scheme": "http",
        "server": ("t", 80),
        "http_version": "1.1",
        "raw_path": b"/login",
    }
    await app(dict(scope), receive, send)
    reads_before = reads
    sent.clear()
    await app(dict(scope), receive, send)
    assert sent[0]["status"] == 429
    assert reads == reads_before


async def test_streaming_response_on_limited_route_is_intact() -> None:
    """A streamed body through the limiter arrives whole, with headers."""
    app = wrap(Counter(), rate_limits={"/stream": "5/minute"})
    async with client(app) as c:
        response = await c.post("/stream")
    assert response.text == "".join(f"{i}," for i in range(50))
    assert response.headers["ratelimit-limit"] == "5"


async def test_concurrent_requests_admit_exactly_the_limit_in_memory() -> None:
    """200 concurrent requests against a limit of 10 admit exactly 10."""
    counter = Counter()
    app = wrap(counter, rate_limits={"/login": "10/minute"})
    async with client(app) as c:
        responses = await asyncio.gather(*(c.post("/login") for _ in range(200)))
    assert sum(r.status_code == 200 for r in responses) == 10
    assert counter.calls == 10


async def test_limits_off_with_empty_mapping() -> None:
    """rate_limits={} turns limiting off, even on /login."""
    counter = Counter()
    app = wrap(counter, rate_limits={})
    async with client(app) as c:
        for _ in range(30):
            assert (await c.post("/login")).status_code == 200


# --- Redis ---------------------------------------------------------------------------------


async def test_redis_concurrency_admits_exactly_the_limit(
    redis_url: str, redis_prefix: str
) -> None:
    """200 concurrent requests on Redis against a limit of 10 admit exactly 10."""
    counter = Counter()
    app = wrap(
        counter,
        rate_limits={"/login": "10/minute"},
        redis_url=redis_url,
        redis_prefix=redis_prefix,
        redis_timeout_s=1.0,
    )
    async with client(app) as c:
        responses = await asyncio.gather(*(c.post("/login") for _ in range(200)))
    assert sum(r.status_code == 200 for r in responses) == 10


async def test_two_instances_share_one_budget(redis_url: str, redis_prefix: str) -> None:
    """Two app instances on one Redis draw from one budget."""
    counter = Counter()
    settings = dict(
        rate_limits={"/login": "6/minute"},
        redis_url=redis_url,
        redis_prefix=redis_prefix,
        redis_timeout_s=1.0,
    )
    first, second = wrap(counter, **settings), wrap(counter, **settings)
    async with client(first) as a, client(second) as b:
        results = await asyncio.gather(*(c.post("/login") for c in [a, b] * 10))
    assert sum(r.status_code == 200 for r in results) == 6
    assert counter.calls == 6


async def test_redis_check_is_one_round_trip(private_redis: Any) -> None:
    """One limit check with two rates costs exactly one Redis command (the script)."""
    store = RedisStore(private_redis.url, timeout_s=1.0, cooldown_s=1.0, prefix="t")
    limiter = RateLimiter({"/login": "5/minute;50/hour"}, store=store)
    rule = limiter.rule_for("POST", "/login")
    assert rule is not None
    await limiter.hit(rule, "warm-up")
    inspector = redis.asyncio.Redis.from_url(private_redis.url)
    await inspector.config_resetstat()
    for _ in range(10):
        await limiter.hit(rule, "client")
    stats = await inspector.info("commandstats")
    await inspector.aclose()
    assert stats["cmdstat_evalsha"]["calls"] == 10
    client_commands = {k for k in stats if k not in ("cmdstat_get", "cmdstat_set", "cmdstat_time")}
    assert client_commands == {"cmdstat_evalsha", "cmdstat_config|resetstat"}
    await store.aclose()


async def test_redis_and_memory_agree(redis_url: str, redis_prefix: str) -> None:
    """The Redis script and the memory limiter give the same sequence of decisions."""
    store = RedisStore(redis_url, timeout_s=1.0, cooldown_s=1.0, prefix=redis_prefix)
    on_redis = RateLimiter({"/login": "4/minute;6/hour"}, store=store)
    in_memory = RateLimiter({"/login": "4/minute;6/hour"})
    rule = on_redis.rule_for("POST", "/login")
    assert rule is not None
    for _ in range(6):
        r = await on_redis.hit(rule, "same")
        m = await in_memory.hit(rule, "same")
        assert r is not None
        assert m is not None
        assert (r.allowed, r.limit, r.remaining) == (m.allowed, m.limit, m.remaining)
        assert abs(r.reset_s - m.reset_s) <= 1
        assert abs(r.retry_after_s - m.retry_after_s) <= 1
    await store.aclose()


async def test_redis_killed_fails_open_to_bounded_local_limits(private_redis: Any) -> None:
    """With Redis dead and fail=open, limits still hold per process and nothing 500s."""
    counter = Counter()
    app = wrap(counter, rate_limits={"/login": "3/minute"}, redis_url=private_redis.url)
    private_redis.kill()
    async with client(app) as c:
        statuses = [(await c.post("/login")).status_code for _ in range(10)]
        other = await c.get("/products")
    assert statuses == [200] * 3 + [429] * 7
    assert other.status_code == 200


async def test_redis_killed_fails_closed_with_503(private_redis: Any) -> None:
    """With fail=closed, limited routes answer 503 problem+json while Redis is down."""
    counter = Counter()
    app = wrap(
        counter,
        rate_limits={"/login": "3/minute"},
        redis_url=private_redis.url,
        rate_limit_fail="closed",
    )
    private_redis.kill()
    async with client(app) as c:
        refused = await c.post("/login")
        other = await c.get("/products")
    assert refused.status_code == 503
    assert refused.headers["content-type"] == "application/problem+json"
    assert int(refused.headers["retry-after"]) >= 1
    assert refused.json()["request_id"] == refused.headers["x-request-id"]
    assert other.status_code == 200
    assert counter.calls == 1


async def test_paused_redis_does_not_hang_requests(private_redis: Any) -> None:
    """A SIGSTOPped Redis costs each request at most the command timeout until the breaker
    opens (about half a second of failures in a row); after that none waits."""
    counter = Counter()
    app = wrap(
        counter,
        rate_limits={"/login": "100/minute"},
        redis_url=private_redis.url,
        redis_timeout_s=0.05,
        redis_cooldown_s=30,
    )
    async with client(app) as c:
        await c.post("/login")
        private_redis.pause()
        try:
            started = time.perf_counter()
            first = await c.post("/login")
            first_s = time.perf_counter() - started
            during = []
            while time.perf_counter() - started < 1.0:
                during.append(await c.post("/login"))
            started = time.perf_counter()
            rest = [await c.post("/login") for _ in range(20)]
            rest_s = time.perf_counter() - started
        finally:
            private_redis.cont()
    assert first.status_code == 200
    assert all(r.status_code in (200, 429) for r in [*during, *rest])  # memory limits now
    assert first_s < 1.0
    assert rest_s < 0.5


async def test_redis_decisions_resume_after_restart(private_redis: Any) -> None:
    """After an outage the limiter goes back to Redis once the breaker's cool-down ends."""
    store = RedisStore(private_redis.url, timeout_s=0.05, cooldown_s=0.2, prefix="t")
    limiter = RateLimiter({"/login": "100/minute"}, store=store)
    rule = limiter.rule_for("POST", "/login")
    assert rule is not None
    await limiter.hit(rule, "c")
    private_redis.pause()
    deadline = time.monotonic() + 3
    while store.available and time.monotonic() < deadline:
        await limiter.hit(rule, "c")
        await asyncio.sleep(0.02)
    assert not store.available
    private_redis.cont()
    await asyncio.sleep(0.25)
    await limiter.hit(rule, "c")
    assert store.available
    assert await store.execute("KEYS", "t:rl:*")
    await store.aclose()


# --- per-account limits --------------------------------------------------------------------


async def test_account_limit_throttles_credential_stuffing_across_ips() -> None:
    """One account attacked from a hundred addresses is refused after its budget."""
    counter = Counter()
    app = wrap(counter, rate_limits={}, rate_limit_accounts={"/login": "5/hour"})
    statuses = []
    for i in range(100):
        async with client(app, ip=f"198.51.100.{i}") as c:
            r = await c.post("/login", json={"username": "Alice@Example.com", "password": "x"})
            statuses.append(r.status_code)
    assert statuses.count(200) == 5
    assert counter.calls == 5


async def test_account_limit_reads_forms_and_hands_the_body_on() -> None:
    """A form login is keyed by its email and the app still receives the body intact."""
    seen: list[bytes] = []

    async def login(request: Request) -> Response:
        seen.append(await request.body())
        return JSONResponse({"ok": True})

    lr = LaunchReady(
        Settings(configure_logging=False, rate_limits={}, rate_limit_accounts={"/login": "2/hour"})
    )
    app = lr.wrap(Starlette(routes=[Route("/login", login, methods=["POST"])]))
    async with client(app) as c:
        body = "email=bob%40example.com&password=hunter2"
        headers = {"content-type": "application/x-www-form-urlencoded"}
        codes = [
            (await c.post("/login", content=body, headers=headers)).status_code for _ in range(3)
        ]
        other = await c.post("/login", content="email=carol%40example.com", headers=headers)
    assert codes == [200, 200, 429]
    assert other.status_code == 200
    assert seen[0] == body.encode()


async def test_account_limit_oversize_body_is_413() -> None:
    """A body above the cap on a per-account route gets 413 problem+json."""
    counter = Counter()
    app = wrap(counter, rate_limits={}, rate_limit_accounts={"/login": "5/hour"})
    async with client(app) as c:
        response = await c.post(
            "/login", content=b"x" * (128 * 1024), headers={"content-type": "application/json"}
        )
    assert response.status_code == 413
    assert response.headers["content-type"] == "application/problem+json"
    assert counter.calls == 0


async def test_account_limit_without_account_is_charged_to_the_address() -> None:
    """Malformed or account-less bodies are not a way around the account rule: they share one
    account budget per client address, which an attacker cannot rotate like a username."""
    counter = Counter()
    app = wrap(
        counter, rate_limits={"/login": "100/minute"}, rate_limit_accounts={"/login": "2/hour"}
    )
    async with client(app) as c:
        codes = []
        for body in [b"{not json", b"[]", b'{"username": ""}', b'{"password": "x"}']:
            r = await c.post("/login", content=body, headers={"content-type": "application/json"})
            codes.append(r.status_code)
        other = await c.post("/login", json={"username": "someone"})
    assert codes == [200, 200, 429, 429]
    assert other.status_code == 200  # a named account has a budget of its own
    assert counter.calls == 3


# --- processes, scripts, reports and header styles -----------------------------------------


def test_two_uvicorn_processes_share_one_budget(
    serve: Any, redis_url: str, redis_prefix: str
) -> None:
    """Two uvicorn processes on one Redis admit exactly the limit between them."""
    env = {
        "LAUNCHREADY_REDIS_URL": redis_url,
        "LAUNCHREADY_REDIS_PREFIX": redis_prefix,
        "LAUNCHREADY_RATE_LIMITS": "/login=7/minute",
        "LAUNCHREADY_REDIS_TIMEOUT_S": "1",
    }
    first = serve("tests.apps.limited:app", env)
    second = serve("tests.apps.limited:app", env)

    async def flood() -> list[int]:
        async with httpx.AsyncClient() as c:
            responses = await asyncio.gather(
                *(c.post(server.url + "/login") for server in [first, second] * 20)
            )
        return [r.status_code for r in responses]

    statuses = asyncio.run(flood())
    assert statuses.count(200) == 7
    assert statuses.count(429) == 33


async def test_script_flush_is_survived(private_redis: Any) -> None:
    """After SCRIPT FLUSH (or a restart) the script is reloaded and checks go on."""
    store = RedisStore(private_redis.url, timeout_s=1.0, cooldown_s=1.0, prefix="t")
    limiter = RateLimiter({"/login": "3/minute"}, store=store)
    rule = limiter.rule_for("POST", "/login")
    assert rule is not None
    first = await limiter.hit(rule, "c")
    await store.execute("SCRIPT", "FLUSH")
    second = await limiter.hit(rule, "c")
    assert first is not None
    assert second is not None
    assert (first.remaining, second.remaining) == (2, 1)
    assert store.available
    await store.aclose()


async def test_structured_headers_style() -> None:
    """rate_limit_headers="structured" emits the IETF RateLimit-Policy and RateLimit fields."""
    app = wrap(Counter(), rate_limits={"/login": "2/minute"}, rate_limit_headers="structured")
    async with client(app) as c:
        served = await c.post("/login")
        await c.post("/login")
        refused = await c.post("/login")
    assert served.headers["ratelimit-policy"] == '"/login";q=2;w=60'
    assert served.headers["ratelimit"].startswith('"/login";r=1;t=')
    assert "ratelimit-limit" not in served.headers
    assert refused.status_code == 429
    assert refused.headers["ratelimit"] == f'"/login";r=0;t={refused.headers["retry-after"]}'


async def test_startup_report_names_covered_routes_and_warns_on_none(log_stream: Any) -> None:
    """At start-up the limited routes are logged with their rates; a configured rule covering
    no route warns."""
    lr = LaunchReady(
        Settings(rate_limits={"/login": "5/minute", "/nothing-here": "1/minute"}),
        log_stream=log_stream,
    )
    _opened.append(lr)
    app = lr.wrap(shop(Counter()))
    messages = [{"type": "lifespan.startup"}, {"type": "lifespan.shutdown"}]

    async def receive() -> dict[str, Any]:
        return messages.pop(0)

    async def send(message: dict[str, Any]) -> None:
        return None

    await app({"type": "lifespan", "asgi": {"version": "3.0"}, "state": {}}, receive, send)
    records = {r["event"]: r for r in log_stream.records() if r["event"].startswith("ratelimit")}
    assert records["ratelimit.protected"]["routes"] == [{"route": "/login", "rate": "5/minute"}]
    assert records["ratelimit.rule_covers_no_route"]["rule"] == "/nothing-here"


# --- per-account limits that cannot be walked around ----------------------------------------


def _multipart(fields: dict[str, str], boundary: str = "XyZ") -> tuple[bytes, str]:
    parts = [
        f'--{boundary}\r\nContent-Disposition: form-data; name="{k}"\r\n\r\n{v}\r\n'
        for k, v in fields.items()
    ]
    return (
        "".join(parts) + f"--{boundary}--\r\n"
    ).encode(), f"multipart/form-data; boundary={boundary}"


@pytest.mark.parametrize(
    ("body", "content_type"),
    [
        (b'{"username": "decoy", "email": "victim@example.com"}', "application/json"),
        (b'{"email": "victim@example.com", "password": NaN}', "application/json"),
        (b'{"email": "victim@example.com", "note": "\\ud800"}', "application/json"),
        (b'\xef\xbb\xbf{"email": "victim@example.com"}', "application/json"),
        ('{"email": "victim@example.com"}'.encode("utf-16"), "application/json"),
        (b'{"email": "victim@example.com"}', "text/plain"),
        (b'{"email": "victim@example.com"}', ""),
        (b"username=decoy&email=victim%40example.com", "application/x-www-form-urlencoded"),
        (b'{"user": {"email": "Victim@Example.com "}}', "application/json"),
        (*_multipart({"username": "victim@example.com", "password": "x"}),),
    ],
)
async def test_account_limit_cannot_be_walked_around(body: bytes, content_type: str) -> None:
    """Decoy fields, JSON the strict parser refuses but the app accepts (NaN, lone surrogate,
    BOM, UTF-16), text/plain or no content type, multipart forms: the victim's budget is
    spent every time, from whatever address."""
    counter = Counter()
    app = wrap(
        counter, rate_limits={"/login": "1000/minute"}, rate_limit_accounts={"/login": "2/hour"}
    )
    warm = [b'{"email": "victim@example.com"}', b'{"email": "victim@example.com"}']
    async with client(app, ip="203.0.113.50") as c:
        for w in warm:
            await c.post("/login", content=w, headers={"content-type": "application/json"})
    headers = {"content-type": content_type} if content_type else {}
    async with client(app, ip="203.0.113.51") as c:
        r = await c.post("/login", content=body, headers=headers)
    assert r.status_code == 429, (body, r.status_code)


# --- keys beyond the client address, per-endpoint limits --------------------------------------


@pytest.fixture(params=["memory", "redis"])
def store_kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def _settings(kind: str, redis_url: str, prefix: str, **values: Any) -> Settings:
    extra = {"redis_url": redis_url, "redis_prefix": prefix} if kind == "redis" else {}
    return Settings(configure_logging=False, **extra, **values)


async def test_a_header_key_gives_each_value_its_budget(
    store_kind: str, redis_url: str, redis_prefix: str
) -> None:
    """With `header:X-Api-Key`, two keys behind one address each get the whole budget; a
    missing, empty or 10 KB header is charged to the address, so leaving it out is no bypass."""
    counter = Counter()
    lr = LaunchReady(
        _settings(
            store_kind, redis_url, redis_prefix,
            rate_limits={"/products": "2/minute"},
            rate_limit_keys={"/products": "header:X-Api-Key"},
        )
    )  # fmt: skip
    _opened.append(lr)
    app = lr.wrap(shop(counter))
    async with client(app) as c:
        a = [(await c.post("/products", headers={"X-Api-Key": "A"})).status_code for _ in range(3)]
        b = [(await c.post("/products", headers={"X-Api-Key": "B"})).status_code for _ in range(3)]
        odd = [
            (await c.post("/products", headers=h)).status_code
            for h in ({}, {"X-Api-Key": ""}, {"X-Api-Key": "x" * 10_240})
        ]
    assert a == [200, 200, 429]
    assert b == [200, 200, 429]
    assert odd == [200, 200, 429]  # one address budget for all three


async def test_a_callable_key_names_the_user(
    store_kind: str, redis_url: str, redis_prefix: str
) -> None:
    """`LaunchReady.rate_limit_key(pattern)` charges a rule to whom the callable names."""
    lr = LaunchReady(
        _settings(store_kind, redis_url, redis_prefix, rate_limits={"/products": "1/minute"})
    )
    _opened.append(lr)

    @lr.rate_limit_key("/products")
    def user(scope: Any) -> str | None:
        return dict(scope["headers"]).get(b"x-user", b"").decode() or None

    app = lr.wrap(shop(Counter()))
    async with client(app) as c:
        u1 = [(await c.post("/products", headers={"X-User": "u1"})).status_code for _ in range(2)]
        u2 = (await c.post("/products", headers={"X-User": "u2"})).status_code
    assert u1 == [200, 429]
    assert u2 == 200


async def test_a_fastapi_dependency_limits_its_endpoint(
    store_kind: str, redis_url: str, redis_prefix: str
) -> None:
    """`Depends(lr.limit("2/minute"))` sits beside the route it protects: the same rates
    grammar, the RateLimit headers, a 429 with Retry-After, one Redis round trip each."""
    from fastapi import Depends, FastAPI

    lr = LaunchReady(_settings(store_kind, redis_url, redis_prefix, rate_limits={}))
    _opened.append(lr)
    api = FastAPI()

    @api.post("/reports/{kind}", dependencies=[Depends(lr.limit("2/minute;10/hour"))])
    async def report(kind: str) -> dict[str, str]:
        return {"kind": kind}

    app = lr.wrap(api)
    async with client(app) as c:
        first = await c.post("/reports/sales")
        codes = [first.status_code] + [(await c.post("/reports/tax")).status_code for _ in range(3)]
    assert first.headers["ratelimit-limit"] == "2"
    assert codes == [200, 200, 429, 429]  # one budget per route template, not per path
    with pytest.raises(ValueError, match="unreadable rate"):
        lr.limit("often")


def test_a_throttled_test_client_gets_a_hint(log_stream: Any) -> None:
    """When Starlette's TestClient is rate-limited, one warning says how tests switch it off."""
    from starlette.testclient import TestClient

    lr = LaunchReady(Settings(rate_limits={"/login": "1/minute"}), log_stream=log_stream)
    _opened.append(lr)
    with TestClient(lr.wrap(shop(Counter()))) as client:
        codes = [client.post("/login").status_code for _ in range(3)]
    assert codes == [200, 429, 429]
    hints = [r for r in log_stream.records() if r["event"] == "ratelimit.test_client_limited"]
    assert len(hints) == 1
    assert "rate_limits_off()" in hints[0]["detail"]
