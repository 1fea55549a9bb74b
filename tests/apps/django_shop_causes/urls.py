"""The bundled Django shop's routes plus three injected bottlenecks: an N+1 view, an async
view that blocks the event loop with `time.sleep`, and a 500 KB JSON view."""

from __future__ import annotations

import time

from django.http import HttpRequest, JsonResponse
from django.urls import path

from examples.django_shop.shop.models import Product
from examples.django_shop.urls import urlpatterns as shop_urls
from tests.apps.causes import BLOCK_S, N_PLUS_ONE_PRODUCTS, big_payload


def n_plus_one(request: HttpRequest) -> JsonResponse:
    ids = list(Product.objects.values_list("id", flat=True)[:N_PLUS_ONE_PRODUCTS])
    return JsonResponse({"names": [Product.objects.get(id=i).name for i in ids]})


async def block(request: HttpRequest) -> JsonResponse:
    time.sleep(BLOCK_S)  # noqa: ASYNC251 (deliberately blocking: the monitor must catch it)
    return JsonResponse({"status": "slept"})


def big(request: HttpRequest) -> JsonResponse:
    return JsonResponse(big_payload())


urlpatterns = [
    path("causes/n1", n_plus_one),
    path("causes/block", block),
    path("causes/big", big),
    *shop_urls,
]
