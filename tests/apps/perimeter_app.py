"""A Starlette app for the perimeter's end-to-end tests, configured from LAUNCHREADY_* variables.

Routes: an HTML page that reads the CSP nonce (`/page`), a cached catalog route
(`/products`), a page that fails (`/boom`), a limited login, a payment webhook, OAuth
callbacks, admin pages, a page that sets its own X-Frame-Options and one that sets its own
Referrer-Policy and CSP, the new home of legacy URLs, and `/seen` (what the app was told).
"""

from __future__ import annotations

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Route

from launchready_sdk import LaunchReady
from launchready_sdk.perimeter import csp_nonce


async def page(request: Request) -> HTMLResponse:
    nonce = csp_nonce(request)
    return HTMLResponse(f'<!doctype html><script nonce="{nonce}">let x = 1;</script>')


async def products(request: Request) -> JSONResponse:
    return JSONResponse({"items": [1, 2, 3]})


async def boom(request: Request) -> Response:
    raise RuntimeError("boom")


async def ok(request: Request) -> JSONResponse:
    return JSONResponse({"ok": True, "method": request.method, "path": request.url.path})


async def framed(request: Request) -> JSONResponse:
    return JSONResponse({"framed": True}, headers={"X-Frame-Options": "SAMEORIGIN"})


async def own(request: Request) -> JSONResponse:
    headers = {
        "Referrer-Policy": "no-referrer",
        "Content-Security-Policy": "default-src 'none'; frame-ancestors https://partner.example",
    }
    return JSONResponse({"own": True}, headers=headers)


async def seen(request: Request) -> JSONResponse:
    host = request.headers.get("host")
    return JSONResponse({"scheme": request.url.scheme, "host": host, "path": request.url.path})


app = LaunchReady().wrap(
    Starlette(
        routes=[
            Route("/page", page),
            Route("/products", products),
            Route("/boom", boom),
            Route("/login", ok, methods=["POST"]),
            Route("/webhooks/payment", ok, methods=["POST"]),
            Route("/auth/callback", ok),
            Route("/oauth/callback", ok),
            Route("/admin/orders", ok, methods=["GET", "POST"]),
            Route("/framed", framed),
            Route("/own", own),
            Route("/new/{id}", ok),
            Route("/seen", seen),
            Route("/", ok),
        ]
    )
)
