"""Benchmark apps of the full overhead suite: one FastAPI app, wrapped per `BENCH_CONFIG`.

`uvicorn benchmarks.apps_full:app` with `BENCH_CONFIG` set to one of `CONFIGS`. Routes:

    GET  /products        a trivial JSON route (the measured GET route)
    GET  /products/{id}   a second catalog route (cached where a config caches "other routes")
    POST /login           the route the default rate-limit rules cover
    POST /orders          a JSON POST route (idempotent where a config says so)

Redis-backed configurations use `BENCH_REDIS_URL` and a key prefix of their own per process
(`BENCH_PREFIX`, else a random one), so several runs can share one Redis.

Feature-alone configurations put one SDK middleware directly around the app; the `sdk_full*`
configurations are `LaunchReady(Settings(...)).wrap(app)`; the `peers_full*` configurations
are the stack a user would assemble from other libraries instead.
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request

CONFIGS = (
    "bare",
    "sdk_context",
    "sdk_latency",
    "sdk_limit_memory",
    "sdk_limit_redis",
    "sdk_cache_memory",
    "sdk_cache_redis",
    "sdk_idem_memory",
    "sdk_idem_redis",
    "bare_headers",
    "sdk_perimeter",
    "sdk_perimeter_https",
    "sdk_full",
    "sdk_full_no_perimeter",
    "sdk_full_https",
    "sdk_full_route",
    "peers_full",
    "peers_full_route",
)
REDIS_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/0")
PREFIX = os.environ.get("BENCH_PREFIX") or f"bench-full-{uuid.uuid4().hex[:8]}"
# Never reached during a run, so every request is served and the check is all that is measured.
HUGE_RATE = "100000000/minute"
CACHE_TTL_S = 3600

Decorator = Callable[[Callable[..., Awaitable[Any]]], Callable[..., Awaitable[Any]]]


def _same(fn: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
    return fn


def build_api(decorate: Mapping[str, Decorator] | None = None) -> FastAPI:
    """The app; `decorate` maps a handler name to a decorator (the peers' per-route ones)."""
    deco = decorate or {}
    api = FastAPI()

    @api.get("/products")
    @deco.get("products", _same)
    async def products() -> dict[str, Any]:
        return {"items": [{"id": 1, "name": "mug", "price_cents": 1200}], "page": 1}

    @api.get("/products/{product_id}")
    @deco.get("product", _same)
    async def product(product_id: int) -> dict[str, Any]:
        return {"id": product_id, "name": "mug", "price_cents": 1200}

    @api.post("/login")
    @deco.get("login", _same)
    async def login(request: Request) -> dict[str, bool]:
        return {"ok": True}

    @api.post("/orders")
    @deco.get("orders", _same)
    async def orders() -> dict[str, Any]:
        return {"id": 1, "status": "created"}

    return api


def _store() -> Any:
    from launchready_sdk.store import RedisStore

    return RedisStore(REDIS_URL, timeout_s=0.05, cooldown_s=2.0, prefix=PREFIX)


# --- one SDK feature alone --------------------------------------------------------------------


def _context() -> Any:
    """Request context and the JSON access line: `wrap` with limits off, latency not recorded.

    `wrap` always adds the health and metrics layers; for other paths they are a comparison
    and a call each.
    """
    from launchready_sdk import LaunchReady, Settings

    lr = LaunchReady(Settings(service_name="bench", rate_limits={}, otel_exporter="none"))
    lr.latency.record = lambda *args, **kwargs: None  # type: ignore[method-assign]
    return lr.wrap(build_api())


def _latency() -> Any:
    """`sdk_context` with latency recorded, as `wrap` records it (from the request context)."""
    from launchready_sdk import LaunchReady, Settings

    lr = LaunchReady(Settings(service_name="bench", rate_limits={}, otel_exporter="none"))
    return lr.wrap(build_api())


def _limit(redis: bool) -> Any:
    from launchready_sdk.ratelimit import RateLimiter, RateLimitMiddleware

    limiter = RateLimiter({"/products": HUGE_RATE}, store=_store() if redis else None)
    return RateLimitMiddleware(build_api(), limiter=limiter)


def _cache(redis: bool) -> Any:
    from launchready_sdk.cache import CacheMiddleware

    routes = {"/products": CACHE_TTL_S}
    return CacheMiddleware(build_api(), routes=routes, store=_store() if redis else None)


def _idempotency(redis: bool) -> Any:
    from launchready_sdk.idempotency import Idempotency, IdempotencyMiddleware

    idem = Idempotency(store=_store() if redis else None)
    return IdempotencyMiddleware(build_api(), idempotency=idem, routes=("/orders",))


def _fixed_headers() -> Any:
    """The app with the six headers the perimeter adds over plain HTTP, appended by the
    simplest layer there is (no look at what the app set, no scheme): what carrying them
    costs, whoever adds them; uvicorn checks and writes every header line."""
    from launchready_sdk.perimeter import SecurityHeaders

    block = list(SecurityHeaders().plan.blocks[False])
    app = build_api()

    async def layer(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await app(scope, receive, send)
            return

        async def send_with(message: Any) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", ()), *block]
            await send(message)

        await app(scope, receive, send_with)

    return layer


def _perimeter(everything: bool) -> Any:
    """The perimeter's layers directly around the app.

    Alone: `SecurityHeadersMiddleware` with the defaults (a plain-HTTP request: no HSTS).
    `everything`: the headers, then trusted hosts, the HTTPS and canonical redirects and a
    legacy map, behind a trusted proxy that says HTTPS (`X-Forwarded-Proto`, sent by the bench
    for this row): every check runs, HSTS is added, nothing is redirected.
    """
    from launchready_sdk.perimeter import RedirectMiddleware, SecurityHeadersMiddleware
    from launchready_sdk.proxy import ProxyResolver

    app: Any = build_api()
    if not everything:
        return SecurityHeadersMiddleware(app)
    proxy = ProxyResolver(("127.0.0.1",))
    app = RedirectMiddleware(
        app,
        allowed_hosts=("127.0.0.1", "shop.example"),
        canonical_host="127.0.0.1",
        https_redirect=True,
        redirects={"/old/{id}": "/products/{id}"},
        proxy=proxy,
    )
    return SecurityHeadersMiddleware(app, proxy=proxy)


# --- the whole SDK ----------------------------------------------------------------------------


PERIMETER_HTTPS: dict[str, Any] = {
    "trusted_proxies": ("127.0.0.1",),
    "allowed_hosts": ("127.0.0.1", "shop.example"),
    "canonical_host": "127.0.0.1",
    "https_redirect": True,
    "redirects": {"/old/{id}": "/products/{id}"},
}


def _sdk_full(route_covered: bool, perimeter: bool = True, **more: Any) -> Any:
    """Default settings with Redis, the default rate-limit rules, a cache route, idempotency.

    Tracing is off. `route_covered=False`: no rule and no cache route covers `GET /products`
    (the default rules cover /login and the like; the cache route is /products/{id}).
    `route_covered=True`: `GET /products` is also limited and cached. The perimeter is on
    with its defaults (security headers and CSP; plain HTTP, so no HSTS) unless `perimeter`
    is False; `more` adds settings (`PERIMETER_HTTPS`: all of it, behind a trusted proxy).
    """
    from launchready_sdk import LaunchReady, Settings
    from launchready_sdk.ratelimit import DEFAULT_RATE_LIMITS

    cache_routes = {"/products/{id}": CACHE_TTL_S}
    rate_limits = None  # the defaults
    if route_covered:
        cache_routes["/products"] = CACHE_TTL_S
        rate_limits = {**DEFAULT_RATE_LIMITS, "/products": HUGE_RATE}
    settings = Settings(
        service_name="bench",
        redis_url=REDIS_URL,
        redis_prefix=PREFIX,
        rate_limits=rate_limits,
        cache_routes=cache_routes,
        idempotent_routes=("/orders",),
        otel_exporter="none",
        **({} if perimeter else {"security_headers": False, "csp": "", "hsts_max_age_s": 0}),
        **more,
    )
    return LaunchReady(settings).wrap(build_api())


# --- the peer stack ---------------------------------------------------------------------------


def _peers_full(route_covered: bool) -> Any:
    """The stack a user would assemble from other libraries, outermost first.

    OpenTelemetry ASGI instrumentation (SDK `TracerProvider`, `BatchSpanProcessor` to an
    exporter that drops spans, `MeterProvider` with a periodic reader to one that drops
    metrics) -> asgi-correlation-id -> prometheus-fastapi-instrumentator -> a structlog JSON
    access line from `@app.middleware("http")` -> slowapi's `SlowAPIMiddleware` with Redis
    storage -> the router, with fastapi-cache2 (Redis) on the catalog routes.

    `route_covered=True`: a default limit on every route and `GET /products` cached (every
    measured request is a cache HIT). `route_covered=False`: `GET /products` is exempt from
    the limits and not cached; `/products/{id}` stays cached and `/login` limited.
    """
    import structlog
    from asgi_correlation_id import CorrelationIdMiddleware, correlation_id
    from fastapi_cache import FastAPICache
    from fastapi_cache.backends.redis import RedisBackend
    from fastapi_cache.decorator import cache
    from opentelemetry.instrumentation.asgi import OpenTelemetryMiddleware
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import (
        MetricExporter,
        MetricExportResult,
        PeriodicExportingMetricReader,
    )
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import (
        BatchSpanProcessor,
        SpanExporter,
        SpanExportResult,
    )
    from prometheus_fastapi_instrumentator import Instrumentator
    from redis import asyncio as aioredis
    from slowapi import Limiter
    from slowapi.errors import RateLimitExceeded
    from slowapi.middleware import SlowAPIMiddleware
    from slowapi.util import get_remote_address
    from starlette.responses import JSONResponse, Response

    class DropSpans(SpanExporter):
        def export(self, spans: Any) -> SpanExportResult:
            return SpanExportResult.SUCCESS

    class DropMetrics(MetricExporter):
        def export(
            self, metrics_data: Any, timeout_millis: float = 10_000, **kwargs: Any
        ) -> MetricExportResult:
            return MetricExportResult.SUCCESS

        def force_flush(self, timeout_millis: float = 10_000) -> bool:
            return True

        def shutdown(self, timeout_millis: float = 30_000, **kwargs: Any) -> None:
            return None

    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(BatchSpanProcessor(DropSpans()))
    meter_provider = MeterProvider(
        metric_readers=[PeriodicExportingMetricReader(DropMetrics(), 10_000)]
    )

    limiter = Limiter(
        key_func=get_remote_address,
        default_limits=[HUGE_RATE] if route_covered else [],
        storage_uri=REDIS_URL,
        key_prefix=f"{PREFIX}-slowapi",
    )
    cached: Decorator = cache(expire=CACHE_TTL_S)
    decorate: dict[str, Decorator] = {
        "product": cached,
        "login": limiter.limit(HUGE_RATE),
        "products": cached if route_covered else limiter.exempt,
    }
    api = build_api(decorate)
    api.state.limiter = limiter

    async def exceeded(request: Request, exc: Exception) -> Response:
        return JSONResponse({"error": "limited"}, status_code=429)

    api.add_exception_handler(RateLimitExceeded, exceeded)

    @asynccontextmanager
    async def lifespan(_: Any) -> AsyncIterator[None]:
        client = aioredis.from_url(REDIS_URL)
        FastAPICache.init(RedisBackend(client), prefix=f"{PREFIX}-cache")
        yield
        await client.aclose()

    api.router.lifespan_context = lifespan

    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.JSONRenderer(),
        ],
        logger_factory=structlog.WriteLoggerFactory(file=open(os.devnull, "w")),  # noqa: SIM115
        cache_logger_on_first_use=True,
    )
    log = structlog.get_logger("access")

    # Added innermost first: each `add_middleware` wraps the ones added before it.
    api.add_middleware(SlowAPIMiddleware)

    @api.middleware("http")
    async def access_log(request: Request, call_next: Callable[[Request], Any]) -> Any:
        start = time.perf_counter()
        response = await call_next(request)
        log.info(
            "request",
            method=request.method,
            path=request.url.path,
            status=response.status_code,
            duration_ms=round((time.perf_counter() - start) * 1000, 3),
            client=request.client.host if request.client else None,
            request_id=correlation_id.get(),
        )
        return response

    Instrumentator().instrument(api).expose(api)
    api.add_middleware(CorrelationIdMiddleware)
    api.add_middleware(
        OpenTelemetryMiddleware,
        tracer_provider=tracer_provider,
        meter_provider=meter_provider,
    )
    return api


def build(config: str) -> Any:
    """The ASGI app for one configuration."""
    builders: dict[str, Callable[[], Any]] = {
        "bare": build_api,
        "sdk_context": _context,
        "sdk_latency": _latency,
        "sdk_limit_memory": lambda: _limit(redis=False),
        "sdk_limit_redis": lambda: _limit(redis=True),
        "sdk_cache_memory": lambda: _cache(redis=False),
        "sdk_cache_redis": lambda: _cache(redis=True),
        "sdk_idem_memory": lambda: _idempotency(redis=False),
        "sdk_idem_redis": lambda: _idempotency(redis=True),
        "bare_headers": _fixed_headers,
        "sdk_perimeter": lambda: _perimeter(everything=False),
        "sdk_perimeter_https": lambda: _perimeter(everything=True),
        "sdk_full": lambda: _sdk_full(route_covered=False),
        "sdk_full_no_perimeter": lambda: _sdk_full(route_covered=False, perimeter=False),
        "sdk_full_https": lambda: _sdk_full(route_covered=False, **PERIMETER_HTTPS),
        "sdk_full_route": lambda: _sdk_full(route_covered=True),
        "peers_full": lambda: _peers_full(route_covered=False),
        "peers_full_route": lambda: _peers_full(route_covered=True),
    }
    if config not in builders:
        raise SystemExit(f"unknown BENCH_CONFIG {config!r}; choose from {', '.join(CONFIGS)}")
    return builders[config]()


app = build(os.environ.get("BENCH_CONFIG", "bare"))
