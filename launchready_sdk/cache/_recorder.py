"""The origin call of a fill: the scope and channels the app gets, and `Recorder`, which
forwards the app's response as it comes and builds the entry to store."""

from __future__ import annotations

import asyncio

from launchready_sdk.cache._core import Cache
from launchready_sdk.cache._entry import (
    CS_STORED,
    REPLAY_HEADERS,
    X_BYPASS,
    X_MISS,
    Entry,
    cache_status,
    content_etag,
    etag_matches,
)
from launchready_sdk.cache._rules import RequestKey, Route
from launchready_sdk.routing import SCOPE_ROUTE
from launchready_sdk.types import Headers, Message, Receive, Scope, Send

_CONDITIONAL = frozenset({b"if-none-match", b"if-modified-since"})


class Recorder:
    """Wraps `send` for an origin call: forwards as the app responds and builds the entry."""

    def __init__(
        self,
        send: Send,
        cache: Cache,
        route: Route,
        if_none_match: bytes | None,
        stale: bool,
        nonce: object = None,
    ) -> None:
        self.send = send
        self.nonce = nonce  # the request's CSP nonce: a page that read it is never stored
        self.cache = cache
        self.route = route
        self.if_none_match = if_none_match
        self.can_fall_back = stale
        self.start: Message | None = None
        self.started = False
        self.fell_back = False
        self.reason: str | None = None
        self.chunks: list[bytes] | None = None
        self.size = 0
        self.entry: Entry | None = None
        self.fresh_ms = route.fresh_ms

    async def __call__(self, message: Message) -> None:
        kind = message["type"]
        if kind == "http.response.start":
            self.start = message
            self.reason = self._judge(message)
            return
        if self.fell_back:
            return
        if kind != "http.response.body" or self.started:
            await self._more(message)
            return
        await self._first(message)

    def _judge(self, start: Message) -> str | None:
        """Why this response cannot be stored, or None."""
        if getattr(self.nonce, "used", False):
            return "csp-nonce"
        status = start["status"]
        if status == 404 and self.route.rule.negative_ttl_s > 0:
            self.fresh_ms = self.route.rule.negative_ttl_s * 1000
        elif status != 200:
            return f"status-{status}" if status < 500 else "error"
        for name, value in start.get("headers", ()):
            reason = self._judge_header(name.lower(), value.lower())
            if reason is not None:
                return reason
        return None

    def _judge_header(self, name: bytes, value: bytes) -> str | None:
        if name == b"set-cookie":
            return "set-cookie"
        if name == b"cache-control" and any(
            d in value for d in (b"private", b"no-store", b"no-cache")
        ):
            return "cache-control"
        if name == b"vary":
            names = {v.strip().decode("latin-1") for v in value.split(b",") if v.strip()}
            if "*" in names or not names <= self.route.vary_allowed:
                return "vary"
        if name == b"content-range":
            return "partial"
        if name == b"content-type" and value.startswith(b"text/event-stream"):
            return "event-stream"
        if name == b"content-length" and value.isdigit() and int(value) > self.cache.max_body_bytes:
            return "too-large"
        return None

    async def _first(self, message: Message) -> None:
        assert self.start is not None
        if self.start["status"] >= 500 and self.can_fall_back:
            self.fell_back = True
            return
        body, more = message.get("body", b""), message.get("more_body", False)
        headers = list(self.start.get("headers", ()))
        if self.reason is None and not more and len(body) > self.cache.max_body_bytes:
            self.reason = "too-large"
        if self.reason is None and not more:
            self.entry = self._entry(headers, body)
            headers = self._with_etag(headers)
            if self.if_none_match is not None and etag_matches(self.if_none_match, self.entry.etag):
                await self._not_modified()
                return
        elif self.reason is None and more:
            self.chunks, self.size = [body], len(body)
        await self._open(headers)
        await self.send(message)

    def _with_etag(self, headers: Headers) -> Headers:
        assert self.entry is not None
        if any(n.lower() == b"etag" for n, _ in headers):
            return headers
        return [*headers, (b"etag", self.entry.etag)]

    async def _open(self, headers: Headers) -> None:
        marker = (
            (X_MISS, CS_STORED)
            if self.reason is None
            else (X_BYPASS, cache_status(f"fwd=uri-miss; detail={self.reason}"))
        )
        self.started = True
        assert self.start is not None
        await self.send({**self.start, "headers": [*headers, *marker]})

    async def _not_modified(self) -> None:
        assert self.entry is not None
        self.started = True
        headers = [*self.entry.not_modified, X_MISS, CS_STORED]
        await self.send({"type": "http.response.start", "status": 304, "headers": headers})
        await self.send({"type": "http.response.body", "body": b""})
        self.fell_back = True  # swallow nothing more: the response is complete

    async def _more(self, message: Message) -> None:
        if not self.started:  # e.g. http.response.pathsend: nothing to tee
            self.reason = self.reason or "not-a-body"
            await self._open(list(self.start.get("headers", ())) if self.start else [])
        await self.send(message)
        if message["type"] != "http.response.body":
            self.chunks = None
        if self.chunks is None:
            return
        body = message.get("body", b"")
        self.size += len(body)
        if self.size > self.cache.max_body_bytes:
            self.chunks = None
            return
        self.chunks.append(body)
        if not message.get("more_body", False):
            assert self.start is not None
            self.entry = self._entry(list(self.start.get("headers", ())), b"".join(self.chunks))

    def _entry(self, headers: Headers, body: bytes) -> Entry:
        assert self.start is not None
        kept = [(n.lower(), v) for n, v in headers if n.lower() in REPLAY_HEADERS]
        if not any(n == b"etag" for n, _ in kept):
            kept.append((b"etag", content_etag(body, kept)))
        lifetime = max(self.route.lifetime_ms, self.fresh_ms)
        return Entry(self.start["status"], kept, body, self.fresh_ms, lifetime)


def origin_scope(scope: Scope, request: RequestKey) -> Scope:
    """The scope the app sees on a fill: GET, no conditional headers, the allowed query."""
    headers = [(n, v) for n, v in scope["headers"] if n not in _CONDITIONAL]
    origin = {**scope, "headers": headers}
    if request.query is not None:
        origin["query_string"] = request.query
    return origin


def carry_route(origin: Scope, scope: Scope) -> None:
    """Copy what the router left in the origin scope back, so outer layers see the route."""
    for key in _ROUTING_KEYS:
        if key in origin:
            scope[key] = origin[key]


_ROUTING_KEYS = ("route", "fastapi", "root_path", "path_params", "endpoint", SCOPE_ROUTE)


def discarding(done: asyncio.Event) -> Send:
    """A `send` for a background refresh: drops the response, sets `done` at its end."""

    async def send(message: Message) -> None:
        if message["type"] == "http.response.body" and not message.get("more_body", False):
            done.set()

    return send


def quiet_receive(done: asyncio.Event) -> Receive:
    """A `receive` for a background refresh: an empty body, then a disconnect once `done`."""
    sent = False

    async def receive() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": b"", "more_body": False}
        await done.wait()
        return {"type": "http.disconnect"}

    return receive
