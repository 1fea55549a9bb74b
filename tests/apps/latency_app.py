"""A FastAPI app with plain, included and mounted routes, inside `LaunchReady().wrap()`.

`build()` is the bare app. `app` (built on first access, so importing `build` sets nothing
up) is that app wrapped by `LaunchReady`, beside two routes the tests read the tracker
through, `/_snapshot` and `/_tick`, which are answered outside the SDK's stack and so are
never recorded themselves.

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

from launchready_sdk import LaunchReady, Settings

CONTROL_PATHS = frozenset({"/_snapshot", "/_tick"})


async def star_item(request: Request) -> PlainTextResponse:
    return PlainTextResponse("star " + request.path_params["id"])


class LongPoll:
    """A raw ASGI endpoint that answers nothing until the client goes away."""

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        while (await receive())["type"] != "http.disconnect":
            pass


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

    star = Starlette(routes=[Route("/items/{id}", star_item), Route("/poll", LongPoll())])
    api.mount("/star", star)
    sub = FastAPI()

    @sub.get("/things/{thing_id}")
    async def thing(thing_id: str) -> dict[str, str]:
        return {"thing": thing_id}

    api.mount("/sub", sub)
    api.mount("/users/{user_id}", Starlette(routes=[Route("/items/{id}", star_item)]))
    return api


def _control(lr: LaunchReady) -> FastAPI:
    control = FastAPI()

    @control.get("/_snapshot")
    async def snapshot(fleet: bool = False) -> dict[str, Any]:
        return {"routes": lr.latency.snapshot(fleet=fleet), "dropped": lr.latency.dropped}

    @control.post("/_tick")
    async def tick() -> dict[str, bool]:
        await lr.latency.tick()
        return {"ok": True}

    return control


def _broken(*args: Any) -> None:
    raise RuntimeError("recorder failure")


def serve() -> Any:
    """The SDK-wrapped app, with the control routes beside it."""
    redis_url = os.environ.get("LATENCY_REDIS_URL")
    lr = LaunchReady(
        Settings(
            service_name="latency-test",
            redis_url=redis_url,
            redis_prefix=os.environ.get("LATENCY_PREFIX", "lrtest-latency"),
            redis_timeout_s=0.5,
            latency_flush_interval_s=float(os.environ.get("LATENCY_FLUSH_S", "0.2")),
            latency_budgets={"GET /sleep/{ms}": 50},
        )
    )
    if os.environ.get("LATENCY_BROKEN"):
        lr.latency.record = _broken  # type: ignore[method-assign]
    wrapped, control = lr.wrap(build()), _control(lr)

    async def app(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http" and scope["path"] in CONTROL_PATHS:
            await control(scope, receive, send)
        else:
            await wrapped(scope, receive, send)

    return app


def __getattr__(name: str) -> Any:
    if name == "app":
        globals()["app"] = built = serve()
        return built
    raise AttributeError(name)
