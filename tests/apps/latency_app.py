"""A FastAPI app with plain, included and mounted routes behind the latency layers.

Environment: `LATENCY_REDIS_URL` and `LATENCY_PREFIX` turn on the fleet view;
`LATENCY_FLUSH_S` sets the flush interval; `LATENCY_BROKEN=1` makes recording raise.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from typing import Any

from fastapi import APIRouter, FastAPI
from fastapi.responses import JSONResponse, StreamingResponse
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from launchready_sdk.context import RequestContextMiddleware
from launchready_sdk.latency import LatencyMiddleware, LatencyTracker, MetricsEndpoint
from launchready_sdk.store import RedisStore


class BrokenTracker(LatencyTracker):
    def record(
        self, method: str, route: str | None, status: int, seconds: float, now: float
    ) -> None:
        raise RuntimeError("recorder failure")


async def star_item(request: Request) -> PlainTextResponse:
    return PlainTextResponse("star " + request.path_params["id"])


def build() -> Any:
    api = FastAPI()
    router = APIRouter(prefix="/v1")
    nested = APIRouter(prefix="/nested")

    @router.get("/orders/{order_id}")
    async def order(order_id: str) -> dict[str, str]:
        return {"order": order_id}

    @nested.get("/deep/{x}")
    async def deep(x: str) -> dict[str, str]:
        return {"x": x}

    router.include_router(nested)
    api.include_router(router, prefix="/api")

    @api.get("/products/{product_id}")
    async def product(product_id: int) -> dict[str, int]:
        return {"id": product_id}

    @api.get("/sleep/{ms}")
    async def sleep(ms: int) -> dict[str, int]:
        await asyncio.sleep(ms / 1000)
        return {"slept": ms}

    @api.get("/boom")
    async def boom() -> dict[str, str]:
        raise RuntimeError("boom")

    @api.get("/fail")
    async def fail() -> JSONResponse:
        return JSONResponse({"error": "upstream"}, status_code=503)

    @api.get("/stream")
    async def stream() -> StreamingResponse:
        async def chunks() -> AsyncIterator[bytes]:
            for _ in range(200):
                yield b"x" * 65536
                await asyncio.sleep(0.005)

        return StreamingResponse(chunks(), media_type="application/octet-stream")

    @api.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @api.get("/_snapshot")
    async def snapshot(fleet: bool = False) -> dict[str, Any]:
        return {"routes": tracker.snapshot(fleet=fleet), "dropped": tracker.dropped}

    @api.post("/_tick")
    async def tick() -> dict[str, bool]:
        await tracker.tick()
        return {"ok": True}

    api.mount("/star", Starlette(routes=[Route("/items/{id}", star_item)]))
    sub = FastAPI()

    @sub.get("/things/{thing_id}")
    async def thing(thing_id: str) -> dict[str, str]:
        return {"thing": thing_id}

    api.mount("/sub", sub)
    api.mount("/users/{user_id}", Starlette(routes=[Route("/items/{id}", star_item)]))
    return api


store = None
if os.environ.get("LATENCY_REDIS_URL"):
    store = RedisStore(
        os.environ["LATENCY_REDIS_URL"],
        timeout_s=0.5,
        cooldown_s=1.0,
        prefix=os.environ.get("LATENCY_PREFIX", "lrtest-latency"),
    )
tracker_class = BrokenTracker if os.environ.get("LATENCY_BROKEN") else LatencyTracker
tracker = tracker_class(
    store=store,
    flush_interval_s=float(os.environ.get("LATENCY_FLUSH_S", "0.2")),
    budgets={"GET /sleep/{ms}": 50},
    budget_min_samples=5,
)
exempt = ("/healthz", "/metrics", "/_snapshot", "/_tick")
app = RequestContextMiddleware(
    MetricsEndpoint(
        LatencyMiddleware(build(), tracker=tracker, exempt_paths=exempt), tracker=tracker
    ),
    on_startup=tracker.start,
    on_shutdown=tracker.stop,
)
