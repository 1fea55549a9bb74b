"""A limited /login app configured from LAUNCHREADY_* variables, for multi-process tests."""

from __future__ import annotations

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from launchready_sdk import LaunchReady


async def login(request: Request) -> JSONResponse:
    return JSONResponse({"ok": True})


app = LaunchReady().wrap(Starlette(routes=[Route("/login", login, methods=["POST"])]))
