"""`MetricsEndpoint`: a tracker's Prometheus text on `GET|HEAD /metrics`."""

from __future__ import annotations

from typing import Any

from launchready_sdk.latency._tracker import LatencyTracker
from launchready_sdk.types import ASGIApp, Receive, Scope, Send


class MetricsEndpoint:
    """Answers `GET|HEAD <path>` with the Prometheus text of a tracker; the rest passes through.

    Args:
        app: the ASGI app to wrap.
        tracker: the figures to expose.
        path: where (default `/metrics`).
        include_default_registry: also expose `prometheus_client`'s global registry (the
            app's own metrics and the process collectors).
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        tracker: LatencyTracker,
        path: str = "/metrics",
        include_default_registry: bool = True,
    ) -> None:
        self.app = app
        self.tracker = tracker
        self.paths = frozenset((path, path.rstrip("/") + "/"))
        self.include_default_registry = include_default_registry
        self._registry: Any = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] != "http"
            or scope["path"] not in self.paths
            or scope["method"] not in ("GET", "HEAD")
        ):
            await self.app(scope, receive, send)
            return
        body, content_type = self.render()
        headers = [
            (b"content-type", content_type.encode()),
            (b"content-length", str(len(body)).encode()),
            (b"cache-control", b"no-store"),
        ]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        head = scope["method"] == "HEAD"
        await send({"type": "http.response.body", "body": b"" if head else body})

    def render(self) -> tuple[bytes, str]:
        """The exposition text and its content type."""
        from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, generate_latest
        from prometheus_client.registry import CollectorRegistry

        if self._registry is None:
            self._registry = CollectorRegistry(auto_describe=False)
            self._registry.register(self.tracker.prometheus_collector())
        body = generate_latest(self._registry)
        if self.include_default_registry:
            body += generate_latest(REGISTRY)
        return body, CONTENT_TYPE_LATEST
