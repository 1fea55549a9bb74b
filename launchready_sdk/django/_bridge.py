"""`DjangoBridge`: the ASGI layer between the SDK's stack and Django's handler."""

from __future__ import annotations

from launchready_sdk.django._routes import UrlRoute, walk_urlconf
from launchready_sdk.types import ASGIApp, Message, Receive, Scope, Send


class DjangoBridge:
    """The layer between the SDK's stack and Django's ASGI handler.

    - It answers the ASGI lifespan protocol, which Django refuses; the SDK's request-context
      layer runs its start-up and shutdown hooks when the app reports them complete.
    - It ends each response when Django is done with the request: Django sends the last body
      chunk, then closes the response and runs `request_finished` (closing database
      connections) in a worker thread. The last chunk is held until then, so the layers above
      (idempotency records, latency, the access log) see the request end when it really ends,
      and a client's immediate retry cannot find its first attempt still running.

    `routes` lists the URLconf's templates for the SDK's start-up reports.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
            return
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        last: Message | None = None

        async def send_holding_last(message: Message) -> None:
            nonlocal last
            if message["type"] == "http.response.body" and not message.get("more_body", False):
                last = message
                return
            await send(message)

        try:
            await self.app(scope, receive, send_holding_last)
        finally:
            if last is not None:
                await send(last)

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return

    @property
    def routes(self) -> list[UrlRoute]:
        try:
            from django.urls import get_resolver

            return [UrlRoute(path) for path in walk_urlconf(get_resolver().url_patterns, "")]
        except Exception:  # a broken URLconf must not break a start-up report
            return []
