"""A Starlette app behind LaunchReady for `launchready bench` tests.

Routes: `/` and `/items/{id}` answer at once; `/slow` sleeps `BENCH_SLOW_MS` (default 100);
`/boom` answers 500; `/flaky` answers 500 every `BENCH_FLAKY_EVERY`th request (default 4);
`/chunked` streams its body; `POST /signup` (rate limited by the SDK's defaults, 5/minute per
client) answers 201 with a token that `GET /me` requires as `Authorization: Bearer <token>`,
and says which client address the SDK saw.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import secrets
from collections.abc import AsyncIterator

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from launchready_sdk import LaunchReady

SLOW_S = float(os.environ.get("BENCH_SLOW_MS", "100")) / 1000
FLAKY_EVERY = int(os.environ.get("BENCH_FLAKY_EVERY", "4"))
_tokens: dict[str, str] = {}
_flaky = itertools.count(1)


async def home(request: Request) -> JSONResponse:
    return JSONResponse({"hello": "bench"})


async def item(request: Request) -> JSONResponse:
    return JSONResponse({"id": int(request.path_params["item_id"])})


async def slow(request: Request) -> JSONResponse:
    await asyncio.sleep(SLOW_S)
    return JSONResponse({"slept_s": SLOW_S})


async def boom(request: Request) -> Response:
    return JSONResponse({"error": "always"}, status_code=500)


async def flaky(request: Request) -> Response:
    if next(_flaky) % FLAKY_EVERY == 0:
        return JSONResponse({"error": "sometimes"}, status_code=500)
    return JSONResponse({"ok": True})


async def chunked(request: Request) -> StreamingResponse:
    async def parts() -> AsyncIterator[bytes]:
        for i in range(3):
            yield f"part {i}\n".encode()

    return StreamingResponse(parts(), media_type="text/plain")


async def signup(request: Request) -> Response:
    body = await request.json()
    if not isinstance(body, dict) or "@" not in str(body.get("email", "")):
        return JSONResponse({"error": "email required"}, status_code=422)
    token = secrets.token_urlsafe(12)
    client = request.client.host if request.client else ""
    _tokens[token] = str(request.scope.get("launchready.client_ip", client))
    return JSONResponse({"token": token, "email": body["email"]}, status_code=201)


async def me(request: Request) -> Response:
    auth = request.headers.get("authorization", "")
    token = auth.removeprefix("Bearer ")
    if token not in _tokens:
        return JSONResponse({"error": "unauthorized"}, status_code=401)
    return JSONResponse({"token": token})


routes = [
    Route("/", home),
    Route("/items/{item_id:int}", item),
    Route("/slow", slow),
    Route("/boom", boom),
    Route("/flaky", flaky),
    Route("/chunked", chunked),
    Route("/signup", signup, methods=["POST"]),
    Route("/me", me),
]
app = LaunchReady().wrap(Starlette(routes=routes))
