"""`LatencyMiddleware`: times each request and records it under its route template."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable

from launchready_sdk.latency.endpoint import MetricsEndpoint
from launchready_sdk.latency.tracker import LatencyTracker
from launchready_sdk.routing import SCOPE_ROUTE, route_template
from launchready_sdk.types import ASGIApp, Message, Receive, Scope, Send


class LatencyMiddleware:
    """Times each request and records it under its route template (see the module doc).

    Args:
        app: the ASGI app to wrap.
        tracker: where the figures go.
        exempt_paths: paths never recorded (health, readiness, metrics), exact match.
        metrics_path: also answer `GET|HEAD` here with the Prometheus text (one layer
            instead of a separate `MetricsEndpoint`); None: do not serve metrics.
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        tracker: LatencyTracker,
        exempt_paths: Iterable[str] = (),
        metrics_path: str | None = None,
    ) -> None:
        self.app = app
        self.tracker = tracker
        paths = [*exempt_paths, *([metrics_path] if metrics_path else [])]
        self.exempt = frozenset(p for path in paths for p in (path, path.rstrip("/") + "/"))
        self.metrics = (
            MetricsEndpoint(app, tracker=tracker, path=metrics_path) if metrics_path else None
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in self.exempt:
            await (self.metrics or self.app)(scope, receive, send)
            return
        start = time.perf_counter()
        root_path = scope.get("root_path", "")
        status = 0
        disconnected = False

        async def timed_send(message: Message) -> None:
            nonlocal status, disconnected
            if message["type"] == "http.response.start":
                status = message["status"]
            try:
                await send(message)
            except OSError:
                disconnected = True
                raise

        try:
            await self.app(scope, receive, timed_send)
        except BaseException as exc:
            # A client that went away is not a server error: 499, as nginx logs it.
            gone = disconnected or isinstance(exc, asyncio.CancelledError)
            status = 499 if gone else 500
            raise
        finally:
            self._record(scope, root_path, status, start)

    def _record(self, scope: Scope, root_path: str, status: int, start: float) -> None:
        now = time.perf_counter()
        try:
            route = route_template(scope, root_path, status)
            if route is not None:  # the outer layers (access log) read it from here
                scope[SCOPE_ROUTE] = route
            self.tracker.record(scope["method"], route, status, now - start, now)
        except Exception:
            self.tracker.dropped += 1
