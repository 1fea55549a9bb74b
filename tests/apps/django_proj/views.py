"""Views of the Django test project: async and sync, logging, naive queries, failures."""

from __future__ import annotations

import logging
from typing import Any

from django.http import HttpRequest, HttpResponse, JsonResponse
from django.template import Context, Engine

from launchready_sdk import cached, get_logger, get_request_id
from launchready_sdk.django import cached_sync, get_launchready
from tests.apps.django_proj.models import Book

log = get_logger("tests.django_proj")
stdlib_log = logging.getLogger("tests.django_proj.stdlib")
computed_calls = {"count": 0}


async def home(request: HttpRequest) -> JsonResponse:
    return JsonResponse({"hello": "django"})


def item(request: HttpRequest, pk: int) -> JsonResponse:
    return JsonResponse({"id": pk})


async def product(request: HttpRequest, **kwargs: Any) -> JsonResponse:
    return JsonResponse({k: str(v) for k, v in kwargs.items()})


def sync_view(request: HttpRequest) -> JsonResponse:
    log.info("sync.view", password="hunter2-sync")
    stdlib_log.warning("sync stdlib line token=%s", "tok-secret-123")
    return JsonResponse({"request_id": get_request_id()})


async def login(request: HttpRequest) -> JsonResponse:
    log.info("login.attempt", password="hunter2-login")
    return JsonResponse({"ok": True})


def naive_books(request: HttpRequest) -> JsonResponse:
    # Deliberately naive: one query for the books, then one per book for its author.
    return JsonResponse({"books": [[b.title, b.author.name] for b in Book.objects.order_by("id")]})


def few_books(request: HttpRequest) -> JsonResponse:
    books = Book.objects.select_related("author").filter(title__startswith="secret-title")
    return JsonResponse({"books": [[b.title, b.author.name] for b in books]})


async def boom(request: HttpRequest) -> JsonResponse:
    raise RuntimeError("database password=hunter2 exploded")


def boom_sync(request: HttpRequest) -> JsonResponse:
    raise RuntimeError("sync view api_key=sk_live_abcdef123456 exploded")


def cached_page(request: HttpRequest, pk: int) -> JsonResponse:
    return JsonResponse({"id": pk, "count": Book.objects.count()})


@cached_sync(60)
def expensive(pk: int) -> dict[str, int]:
    computed_calls["count"] += 1
    return {"pk": pk, "books": Book.objects.count()}


def computed(request: HttpRequest, pk: int) -> JsonResponse:
    return JsonResponse({**expensive(pk), "calls": computed_calls["count"]})


def outbound(request: HttpRequest) -> JsonResponse:
    target = request.build_absolute_uri("/echo")
    with get_launchready().http_client_sync() as client:
        answer = client.get(target)
    return JsonResponse({"request_id": get_request_id(), "echo": answer.json()})


def echo(request: HttpRequest) -> JsonResponse:
    return JsonResponse({"x-request-id": request.headers.get("X-Request-Id")})


@cached(60)
async def expensive_async(pk: int) -> dict[str, int]:
    computed_calls["async"] = computed_calls.get("async", 0) + 1
    return {"pk": pk}


async def computed_async(request: HttpRequest, pk: int) -> JsonResponse:
    return JsonResponse({**await expensive_async(pk), "calls": computed_calls.get("async", 0)})


def boom_local(request: HttpRequest, pk: int) -> JsonResponse:
    card_secret = "sk_live_" + "51HbQpLxL8kQ2vYtRz9WmN3c"  # held in a local: never shown
    raise KeyError(f"charge with key={card_secret} failed")


def page(request: HttpRequest) -> HttpResponse:
    """An HTML page with an inline script carrying the request's CSP nonce."""
    template = Engine().from_string('<script nonce="{{ request.csp_nonce }}">let x;</script>')
    return HttpResponse(template.render(Context({"request": request})))
