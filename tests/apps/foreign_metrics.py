"""An app without the SDK whose /metrics is another exporter's (prometheus_client's defaults)."""

from __future__ import annotations

from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, generate_latest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route


async def home(request: Request) -> JSONResponse:
    return JSONResponse({"rows": list(range(50))})


async def healthz(request: Request) -> JSONResponse:
    return JSONResponse({"status": "ok"})


async def metrics(request: Request) -> Response:
    return Response(generate_latest(REGISTRY), media_type=CONTENT_TYPE_LATEST)


app = Starlette(routes=[Route("/", home), Route("/healthz", healthz), Route("/metrics", metrics)])
