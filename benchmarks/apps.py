"""Benchmark apps: one FastAPI app, wrapped per configuration (`BENCH_CONFIG`).

`uvicorn benchmarks.apps:app` with `BENCH_CONFIG` set to one of `CONFIGS`. Routes:
`GET /products` (a trivial JSON route) and `POST /login` (a limited route where limits apply).
Redis-backed configurations use `BENCH_REDIS_URL` and a key prefix per process.
"""

from __future__ import annotations

import os
import time
import uuid
from typing import Any

from fastapi import FastAPI, Request

CONFIGS = (
    "bare",
    "sdk",
    "sdk_no_latency",
    "sdk_no_breakdown",
    "sdk_no_monitor",
    "sdk_no_perimeter",
    "sdk_no_access_log",
    "sdk_floor",
    "peers_reqid_log",
    "sdk_limit_memory",
    "sdk_limit_redis",
    "slowapi_asgi",
    "slowapi",
)
REDIS_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/0")
# Never reached during a run, so every request is served and the check is all that is measured.
HUGE_RATE = "100000000/minute"


def build_api() -> FastAPI:
    api = FastAPI()

    @api.get("/products")
    async def products() -> dict[str, Any]:
        return {"items": [{"id": 1, "name": "mug", "price_cents": 1200}], "page": 1}

    @api.post("/login")
    async def login() -> dict[str, bool]:
        return {"ok": True}

    return api


def _sdk(*, latency: bool = True, breakdown: bool = True, **settings: Any) -> Any:
    from launchready_sdk import LaunchReady, Settings

    lr = LaunchReady(Settings(service_name="bench", **settings))
    if not latency:  # the marginal cost of latency recording inside the composed stack
        lr.latency.record = lambda *args, **kwargs: None  # type: ignore[method-assign]
    if not breakdown:  # the marginal cost of the per-route breakdown (before `wrap` reads it)
        lr.breakdown.record = lambda *args, **kwargs: None  # type: ignore[method-assign]
    return lr.wrap(build_api())


def _peers() -> Any:
    """asgi-correlation-id plus a pure-ASGI structlog access logger, as a user would assemble."""
    import structlog
    from asgi_correlation_id import CorrelationIdMiddleware, correlation_id

    structlog.configure(
        processors=[
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.JSONRenderer(),
        ]
    )
    log = structlog.get_logger("access")
    inner = build_api()

    async def access_log(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await inner(scope, receive, send)
            return
        start = time.perf_counter()
        status = 0

        async def send_wrapper(message: Any) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await inner(scope, receive, send_wrapper)
        finally:
            log.info(
                "request",
                method=scope["method"],
                path=scope["path"],
                status=status,
                duration_ms=round((time.perf_counter() - start) * 1000, 3),
                request_id=correlation_id.get(),
            )

    return CorrelationIdMiddleware(access_log)


def _slowapi(asgi: bool) -> Any:
    from slowapi import Limiter
    from slowapi.errors import RateLimitExceeded
    from slowapi.middleware import SlowAPIASGIMiddleware, SlowAPIMiddleware
    from slowapi.util import get_remote_address

    api = build_api()
    limiter = Limiter(
        key_func=get_remote_address,
        default_limits=[HUGE_RATE],
        storage_uri=REDIS_URL,
        key_prefix=f"bench-slowapi-{uuid.uuid4().hex[:8]}",
        headers_enabled=True,
    )
    api.state.limiter = limiter

    async def exceeded(request: Request, exc: RateLimitExceeded) -> Any:
        from starlette.responses import JSONResponse

        return JSONResponse({"error": "limited"}, status_code=429)

    api.add_exception_handler(RateLimitExceeded, exceeded)  # type: ignore[arg-type]
    api.add_middleware(SlowAPIASGIMiddleware if asgi else SlowAPIMiddleware)
    return api


def build(config: str) -> Any:
    """The ASGI app for one configuration."""
    prefix = f"bench-{uuid.uuid4().hex[:8]}"
    if config == "bare":
        return build_api()
    if config == "sdk":
        return _sdk(rate_limits={})
    if config == "sdk_no_latency":
        return _sdk(rate_limits={}, latency=False)
    if config == "sdk_no_breakdown":
        return _sdk(rate_limits={}, breakdown=False)
    if config == "sdk_no_monitor":
        return _sdk(rate_limits={}, loop_stall_ms=None)
    if config == "sdk_no_perimeter":  # the defaults without the security headers
        return _sdk(rate_limits={}, security_headers=False, csp="", hsts_max_age_s=0)
    if config == "sdk_no_access_log":  # the defaults without the access line
        return _sdk(rate_limits={}, access_log=False)
    if config == "sdk_floor":  # request ids and the dispatch alone: every optional part off
        return _sdk(
            rate_limits={},
            access_log=False,
            latency=False,
            breakdown=False,
            loop_stall_ms=None,
            security_headers=False,
            csp="",
            hsts_max_age_s=0,
        )
    if config == "peers_reqid_log":
        return _peers()
    if config == "sdk_limit_memory":
        return _sdk(rate_limits={"/login": HUGE_RATE})
    if config == "sdk_limit_redis":
        return _sdk(rate_limits={"/login": HUGE_RATE}, redis_url=REDIS_URL, redis_prefix=prefix)
    if config == "slowapi_asgi":
        return _slowapi(asgi=True)
    if config == "slowapi":
        return _slowapi(asgi=False)
    raise SystemExit(f"unknown BENCH_CONFIG {config!r}; choose from {', '.join(CONFIGS)}")


app = build(os.environ.get("BENCH_CONFIG", "bare"))
