"""A small Starlette shop for scale-out tests: limits, a cached catalog, idempotent checkout.

`build(settings)` for in-process tests; `tests.apps.scale_server:app` for uvicorn and gunicorn
(configured from LAUNCHREADY_* variables).
"""

from __future__ import annotations

import os
import uuid

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse
from starlette.routing import Route

from launchready_sdk import LaunchReady, Settings
from launchready_sdk.types import ASGIApp


def build(settings: Settings | None = None, **kwargs: object) -> tuple[LaunchReady, ASGIApp]:
    """(LaunchReady, the wrapped app); orders made are counted in `app.state.orders`."""
    lr = LaunchReady(settings, **kwargs)  # type: ignore[arg-type]
    orders: list[str] = []
    views = {"catalog": 0}

    async def login(request: Request) -> PlainTextResponse:
        return PlainTextResponse("ok")

    async def products(request: Request) -> JSONResponse:
        views["catalog"] += 1
        return JSONResponse({"products": [1, 2, 3], "rendered": views["catalog"]})

    async def checkout(request: Request) -> JSONResponse:
        order = uuid.uuid4().hex
        orders.append(order)
        return JSONResponse({"order": order, "pid": os.getpid()}, status_code=201)

    async def ping(request: Request) -> PlainTextResponse:
        return PlainTextResponse(str(os.getpid()))

    app = Starlette(
        routes=[
            Route("/login", login, methods=["POST"]),
            Route("/products", products),
            Route("/checkout", checkout, methods=["POST"]),
            Route("/ping", ping),
        ]
    )
    app.state.orders = orders
    app.state.views = views
    return lr, lr.wrap(app)
