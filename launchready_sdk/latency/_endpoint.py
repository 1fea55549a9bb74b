"""`MetricsEndpoint`: the instance's Prometheus text on `GET|HEAD /metrics`.

The figures are this worker's merged with those of the other workers behind the same port
(`latency._workers`), rendered by hand (`latency._exposition`), and the rendered text is
reused for `cache_s` (one second by default): a scrape costs one render per second at most,
whoever loops on the endpoint. A scraper that accepts gzip (Prometheus does) gets the text
compressed, also once per render: at the route cap that is a few hundred kilobytes instead of
several megabytes to send. A render of many series (past `THREAD_ABOVE_SERIES`) runs in a
worker thread, so requests keep being served while it runs, and concurrent scrapes share one
render.

Security stance: `allow` (CIDR networks, matched against the client address the trusted
proxies give) and `token` (`Authorization: Bearer <token>`, compared in constant time) each
admit a scraper; with neither, anyone may read the endpoint. A refused scraper gets 401 with
`WWW-Authenticate: Bearer` when a token is configured, else 404, as if there were no
endpoint. Labels are route templates, fixed methods and status classes, never client text.

Limits, candidly: without `allow` or `token` the endpoint is public, as it was before these
settings; the README's production example sets one.
"""

from __future__ import annotations

import asyncio
import gzip
import hmac
import ipaddress
import os
import time
from collections.abc import Callable, Iterable

from launchready_sdk.latency._exposition import family, merge, render
from launchready_sdk.latency._tracker import LatencyTracker
from launchready_sdk.latency._workers import WorkerShare
from launchready_sdk.responses import send_problem
from launchready_sdk.types import ASGIApp, Receive, Scope, Send

DEFAULT_CACHE_S = 1.0
THREAD_ABOVE_SERIES = 300
THREAD_ABOVE_BYTES = 256 * 1024
GZIP_ABOVE_BYTES = 1024
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
# How many workers a scrape speaks for: `process_*` figures are the answering worker's alone.
WORKERS_METRIC = "launchready_workers"


class MetricsEndpoint:
    """Answers `GET|HEAD <path>` with the Prometheus text of the instance; the rest passes.

    Args:
        app: the ASGI app to wrap.
        tracker: the figures to expose.
        path: where (default `/metrics`).
        include_default_registry: also expose `prometheus_client`'s global registry (the
            app's own metrics and the process collectors; with `PROMETHEUS_MULTIPROC_DIR`
            set, the app's metrics of every worker, through its multiprocess collector).
        allow: CIDR networks whose clients may scrape.
        token: a bearer token that admits a scraper.
        client_ip: the client address of a request (the trusted-proxy one in `LaunchReady`).
        cache_s: how long a rendered text is reused.
        share: the per-instance exchange of the workers' figures (None: this worker only).
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        tracker: LatencyTracker,
        path: str = "/metrics",
        include_default_registry: bool = True,
        allow: Iterable[str] = (),
        token: str | None = None,
        client_ip: Callable[[Scope], str | None] | None = None,
        cache_s: float = DEFAULT_CACHE_S,
        share: WorkerShare | None = None,
    ) -> None:
        self.app = app
        self.tracker = tracker
        self.paths = frozenset((path, path.rstrip("/") + "/"))
        self.include_default_registry = include_default_registry
        self.networks = tuple(ipaddress.ip_network(n, strict=False) for n in allow)
        self.token = token.encode() if token else None
        self.client_ip = client_ip or _peer
        self.cache_s = cache_s
        self.share = share
        self._body: bytes | None = None
        self._gzipped: bytes | None = None
        self._body_at = 0.0
        self._rendering: asyncio.Future[bytes] | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] != "http"
            or scope["path"] not in self.paths
            or scope["method"] not in ("GET", "HEAD")
        ):
            await self.app(scope, receive, send)
            return
        if not self.admits(scope):
            if self.token is not None:
                challenge = [(b"www-authenticate", b'Bearer realm="metrics"')]
                await send_problem(send, 401, "A bearer token is needed.", scope=scope,
                                   headers=challenge)  # fmt: skip
            else:
                await send_problem(send, 404, "Not Found", scope=scope)
            return
        body = await self.body()
        headers = [(b"content-type", CONTENT_TYPE.encode()), (b"cache-control", b"no-store"),
                   (b"vary", b"accept-encoding")]  # fmt: skip
        if len(body) >= GZIP_ABOVE_BYTES and _accepts_gzip(scope):
            body = await self.gzipped(body)
            headers.append((b"content-encoding", b"gzip"))
        headers.append((b"content-length", str(len(body)).encode()))
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        head = scope["method"] == "HEAD"
        await send({"type": "http.response.body", "body": b"" if head else body})

    def admits(self, scope: Scope) -> bool:
        """Whether this request may read the metrics."""
        if not self.networks and self.token is None:
            return True
        if self.token is not None:
            for name, value in scope.get("headers", ()):
                if (
                    name == b"authorization"
                    and value[:7].lower() == b"bearer "
                    and hmac.compare_digest(value[7:].strip(), self.token)
                ):
                    return True
        if self.networks:
            address = self.client_ip(scope)
            try:
                ip = ipaddress.ip_address(address) if address else None
            except ValueError:
                ip = None
            if ip is not None and any(ip in network for network in self.networks):
                return True
        return False

    async def body(self) -> bytes:
        """The rendered text: reused for `cache_s`; one render at a time."""
        if self._body is not None and time.monotonic() - self._body_at < self.cache_s:
            return self._body
        if self._rendering is not None:
            return await asyncio.shield(self._rendering)
        loop = asyncio.get_running_loop()
        future: asyncio.Future[bytes] = loop.create_future()
        self._rendering = future
        try:
            if len(self.tracker.series) > THREAD_ABOVE_SERIES:
                body = await asyncio.to_thread(self.render_bytes)
            else:
                body = self.render_bytes()
        except BaseException as exc:
            future.set_exception(exc)
            future.exception()  # retrieved: the scrapers sharing it get it through `await`
            raise
        finally:
            self._rendering = None
        self._body, self._body_at, self._gzipped = body, time.monotonic(), None
        future.set_result(body)
        return body

    async def gzipped(self, body: bytes) -> bytes:
        """The gzip of the current text, made once per render (Prometheus asks for gzip)."""
        gzipped = self._gzipped
        if gzipped is None or self._body is not body:
            if len(body) > THREAD_ABOVE_BYTES:
                gzipped = await asyncio.to_thread(gzip.compress, body, 1)
            else:
                gzipped = gzip.compress(body, 1)
            if self._body is body:
                self._gzipped = gzipped
        return gzipped

    def render_bytes(self) -> bytes:
        """Render now: this worker's figures, the siblings', the default registry."""
        figures = self.tracker.figures()
        workers = 1
        if self.share is not None:
            for other in self.share.siblings():
                merge(figures, other)
                workers += 1
        help = "Worker processes whose figures this scrape adds up"
        family(figures, WORKERS_METRIC, "gauge", help)["samples"][""] = workers
        body = render(figures)
        if self.include_default_registry:
            body += _default_registry()
        return body

    def render(self) -> tuple[bytes, str]:
        """The exposition text and its content type (rendered now, not cached)."""
        return self.render_bytes(), CONTENT_TYPE


def _default_registry() -> bytes:
    from prometheus_client import REGISTRY, generate_latest

    directory = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if directory and os.path.isdir(directory):
        from prometheus_client import CollectorRegistry, multiprocess

        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry, path=directory)  # type: ignore[no-untyped-call]
        return generate_latest(registry)
    return generate_latest(REGISTRY)


def _accepts_gzip(scope: Scope) -> bool:
    for name, value in scope.get("headers", ()):
        if name == b"accept-encoding":
            for part in value.lower().split(b","):
                coding, _, params = part.strip().partition(b";")
                if coding.strip() == b"gzip":
                    q = params.strip()
                    return not (
                        q.startswith(b"q=") and q[2:].strip() in (b"0", b"0.0", b"0.00", b"0.000")
                    )
    return False


def _peer(scope: Scope) -> str | None:
    client = scope.get("client")
    return str(client[0]) if client else None
