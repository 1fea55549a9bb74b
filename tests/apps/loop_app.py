"""A Starlette app whose `/block` holds the event loop with `time.sleep`, for the loop monitor."""

from __future__ import annotations

import asyncio
import os
import time

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from launchready_sdk import LaunchReady

BLOCK_S = float(os.environ.get("LOOP_APP_BLOCK_S", "0.3"))


async def block(request: Request) -> JSONResponse:
    time.sleep(BLOCK_S)  # noqa: ASYNC251 (deliberately blocking: the monitor must catch it)
    return JSONResponse({"slept": BLOCK_S})


async def wait(request: Request) -> JSONResponse:
    await asyncio.sleep(float(request.query_params.get("s", "0.1")))
    return JSONResponse({"ok": True})


async def fast(request: Request) -> JSONResponse:
    return JSONResponse({"ok": True})


app = LaunchReady().wrap(
    Starlette(
        routes=[Route("/block", block), Route("/wait", wait), Route("/fast", fast)],
    )
)
