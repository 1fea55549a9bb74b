"""The SDK instance, the provider clients and the shop's configuration, shared by the views."""

from __future__ import annotations

import asyncio
import threading

import httpx
from django.conf import settings

from examples.shopcore import ShopConfig
from launchready_sdk import LaunchReady, get_logger
from launchready_sdk.django import get_launchready

log = get_logger("shop")


class Providers:
    """Where the payment and email providers are, and the clients that call them.

    The sync clients serve the sync views (from any worker thread); the async client serves
    the async webhook view, one per event loop (an ASGI server has one; under WSGI each
    worker thread has its own).
    """

    def __init__(self) -> None:
        self.payment_url: str | None = None
        self.email_url: str | None = None
        self._lock = threading.Lock()
        self._payment: httpx.Client | None = None
        self._email: httpx.Client | None = None
        self._email_async: dict[asyncio.AbstractEventLoop, httpx.AsyncClient] = {}

    def payment(self) -> httpx.Client:
        with self._lock:
            if self._payment is None:
                self._payment = lr().http_client_sync(base_url=self._url(self.payment_url))
            return self._payment

    def email(self) -> httpx.Client:
        with self._lock:
            if self._email is None:
                self._email = lr().http_client_sync(base_url=self._url(self.email_url))
            return self._email

    def email_async(self) -> httpx.AsyncClient:
        loop = asyncio.get_running_loop()
        client = self._email_async.get(loop)
        if client is None:
            client = self._email_async[loop] = lr().http_client(base_url=self._url(self.email_url))
        return client

    def _url(self, url: str | None) -> str:
        if url is None:
            raise RuntimeError("the providers are not set up: import the shop's asgi or wsgi")
        return url


providers = Providers()


def config() -> ShopConfig:
    shop: ShopConfig = settings.SHOP
    return shop


def lr() -> LaunchReady:
    return get_launchready()
