"""An app with launch risks for `launchready audit`: a CORS policy that lets any origin make
credentialed requests, and a route slower than its budget. Budget: LAUNCHREADY_LATENCY_BUDGET_MS."""

from __future__ import annotations

import asyncio

from starlette.applications import Starlette
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from launchready_sdk import LaunchReady


async def home(request: Request) -> JSONResponse:
    return JSONResponse({"shop": "open"})


async def report(request: Request) -> JSONResponse:
    await asyncio.sleep(0.25)
    return JSONResponse({"report": "done"})


inner = Starlette(routes=[Route("/", home), Route("/reports/{id}", report)])
inner.add_middleware(
    CORSMiddleware, allow_origins=["*"], allow_credentials=True, allow_methods=["*"]
)
app = LaunchReady().wrap(inner)
