"""Benchmark app: a minimal Django project served under WSGI, bare or inside the SDK.

`gunicorn benchmarks.wsgi_app:application` with `BENCH_CONFIG` set to one of `CONFIGS`:
`bare` is `get_wsgi_application()`, `sdk` is `launchready_django_wsgi()` with the default
settings (request ids, the access line, latency, health, metrics; the default auth limits,
which do not cover the measured routes). Routes: `GET /ping` (a trivial sync view), `POST
/login` (limited by the SDK's defaults, at a rate never reached here) and `GET /products/1`
(a cache route under `sdk`).
"""

from __future__ import annotations

import os

from django.conf import settings

CONFIGS = ("bare", "sdk")
CONFIG = os.environ.get("BENCH_CONFIG", "bare")
if CONFIG not in CONFIGS:
    raise SystemExit(f"BENCH_CONFIG must be one of {CONFIGS}")

settings.configure(
    DEBUG=False,
    SECRET_KEY="bench-not-a-secret",
    ALLOWED_HOSTS=["*"],
    ROOT_URLCONF=__name__,
    MIDDLEWARE=[],
    INSTALLED_APPS=[],
    DATABASES={},
    LAUNCHREADY={
        "service_name": "bench-wsgi",
        "rate_limits": {"/login": "100000000/minute"},
        "cache_routes": {"/products/{id}": 60},
    },
)

import django  # noqa: E402

django.setup()

from django.http import HttpRequest, HttpResponse, JsonResponse  # noqa: E402
from django.urls import path  # noqa: E402
from django.views.decorators.csrf import csrf_exempt  # noqa: E402


def ping(request: HttpRequest) -> HttpResponse:
    return HttpResponse(b"pong", content_type="text/plain")


@csrf_exempt
def login(request: HttpRequest) -> JsonResponse:
    return JsonResponse({"ok": True})


def product(request: HttpRequest, id: int) -> JsonResponse:
    return JsonResponse({"id": id, "name": "mug", "price_cents": 1200})


urlpatterns = [
    path("ping", ping),
    path("login", login),
    path("products/<int:id>", product),
]

if CONFIG == "bare":
    from django.core.wsgi import get_wsgi_application

    application = get_wsgi_application()
else:
    from launchready_sdk.django import launchready_django_wsgi

    application = launchready_django_wsgi()
