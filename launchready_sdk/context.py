"""Per-request context and the request-ID middleware.

`RequestContextMiddleware` sits outermost in the stack (outside the framework's own error
handling), so every response it sees — 200s, 404s, the SDK's 429s and unhandled 500s — leaves
with exactly one `X-Request-ID`. The ID and the client address live in a `ContextVar`, so every
log line emitted while the request runs, from any logger, carries them, and nothing leaks into
the next request on the same connection. After the response it writes one access-log line.

With `response_headers` (what `LaunchReady` passes when the perimeter's security headers are
on) it also adds those headers to every response leaving it, its own last-resort 500 included.

Security stance: an incoming `X-Request-ID` is believed only when it matches
`[A-Za-z0-9._:-]{1,128}` and comes from a trusted proxy (or from anyone, with
`trust_request_id=True`). Anything else is replaced by a fresh time-ordered ID (UUIDv7), and a
sanitised, truncated copy of what the client sent is logged as `client_request_id`.
"""

from __future__ import annotations

import asyncio
import contextvars
import os
import re
import time
from collections.abc import Awaitable, Callable
from typing import Any, ClassVar, Protocol

from launchready_sdk.responses import send_problem
from launchready_sdk.routing import route_template
from launchready_sdk.types import ASGIApp, Headers, Message, Receive, Scope, Send

REQUEST_ID_HEADER = b"x-request-id"
SCOPE_REQUEST_ID = "launchready.request_id"
SCOPE_CONTEXT = "launchready.context"
SCOPE_PATH = "launchready.path"
SCOPE_METHOD = "launchready.method"
MAX_REQUEST_ID_LENGTH = 128
_CLIENT_ID_LOG_LENGTH = 64
_VALID_ID = re.compile(rb"[A-Za-z0-9._:\-]{1,128}")
_UNSAFE_CHARS = re.compile(r"[^A-Za-z0-9._:\-]")


class RequestContext:
    """What the SDK knows about the request being served. `fields` reach the access log."""

    __slots__ = (
        "client_ip",
        "client_request_id",
        "fields",
        "jobs",
        "method",
        "outbound",
        "path",
        "query",
        "request_id",
        "route",
        "route_path",
        "sql_count",
        "sql_s",
    )

    def __init__(
        self,
        request_id: str,
        method: str,
        path: str,
        client_ip: str | None,
        query: bytes = b"",
    ) -> None:
        self.request_id = request_id
        self.method = method
        self.path = path  # as the client sent it (with any root path)
        self.route_path = path  # as the app routes on it (`route_path()`)
        self.query = query
        self.client_ip = client_ip
        self.route: str | None = None
        self.client_request_id: str | None = None
        self.fields: dict[str, Any] = {}
        self.jobs: list[Any] | None = None  # background jobs held until the response is sent
        # Where the time went (see `launchready_sdk.breakdown`): SQL statements and their time,
        # and seconds in outbound calls per host, added up while the request runs.
        self.sql_count = 0
        self.sql_s = 0.0
        self.outbound: dict[str, float] | None = None

    def add_outbound(self, host: str, seconds: float) -> None:
        """Count `seconds` spent in a call to `host` against this request."""
        spent = self.outbound
        if spent is None:
            self.outbound = {host: seconds}
        else:
            spent[host] = spent.get(host, 0.0) + seconds


_current: contextvars.ContextVar[RequestContext | None] = contextvars.ContextVar(
    "launchready_request", default=None
)


def current() -> RequestContext | None:
    """The context of the request being served, or None outside a request."""
    return _current.get()


def get_request_id() -> str | None:
    """The ID of the request being served, or None outside a request."""
    ctx = _current.get()
    return ctx.request_id if ctx is not None else None


def route_path(scope: Scope) -> str:
    """The path the app routes on: `scope["path"]` without the `root_path` prefix.

    Servers started with a root path (`uvicorn --root-path /shop`) and mounts put the prefix
    in `scope["path"]` (`/shop/login`); the app's router matches `/login`, so every rule does
    too. Computed once per request by the request-context layer; layers used alone compute
    it here.
    """
    path = scope.get(SCOPE_PATH)
    if path is None:
        path = scope[SCOPE_PATH] = _route_path(scope)
    return str(path)


def request_method(scope: Scope) -> str:
    """The request's method, upper-cased once (h11 accepts `post`; Django upper-cases it)."""
    method = scope.get(SCOPE_METHOD)
    if method is None:
        method = scope[SCOPE_METHOD] = str(scope.get("method") or "GET").upper()
    return str(method)


def _route_path(scope: Scope) -> str:
    path: str = scope["path"]
    root_path: str = scope.get("root_path") or ""
    if not root_path or not path.startswith(root_path):
        return path
    rest = path[len(root_path) :]
    if not rest:
        return "/"
    return rest if rest[0] == "/" else path


def activate(ctx: RequestContext | None) -> contextvars.Token[RequestContext | None]:
    """Make `ctx` the current request's context (for server adapters; the middleware sets
    its own). Undo with `deactivate(token)`."""
    return _current.set(ctx)


def deactivate(token: contextvars.Token[RequestContext | None]) -> None:
    """Restore the context that was current before `activate` returned `token`."""
    _current.reset(token)


def bind(**fields: Any) -> None:
    """Attach fields (user id, order id) to the current request's access-log line."""
    ctx = _current.get()
    if ctx is not None:
        ctx.fields.update(fields)


class _IdSource:
    """UUIDv7 text: the millisecond prefix is formatted once per millisecond, and the random
    tails are cut in batches from OS randomness, refilled as they run out and after a fork."""

    _BATCH_BYTES = 4096
    _VARIANT: ClassVar[dict[str, str]] = {c: "89ab"[int(c, 16) & 3] for c in "0123456789abcdef"}

    def __init__(self) -> None:
        self._ms = -1
        self._prefix = ""
        self._tails: list[str] = []

    def reset(self) -> None:
        self._tails = []

    def _refill(self) -> list[str]:
        pool = os.urandom(self._BATCH_BYTES).hex()
        v = self._VARIANT
        self._tails = [
            f"{pool[i : i + 3]}-{v[pool[i + 3]]}{pool[i + 4 : i + 7]}-{pool[i + 7 : i + 19]}"
            for i in range(0, len(pool) - 18, 19)
        ]
        return self._tails

    def __call__(self) -> str:
        ms = time.time_ns() // 1_000_000
        if ms != self._ms:
            self._ms = ms
            t = f"{ms & 0xFFFFFFFFFFFF:012x}"
            self._prefix = f"{t[:8]}-{t[8:]}-7"
        return self._prefix + (self._tails or self._refill()).pop()


new_request_id = _IdSource()
"""A UUIDv7 (RFC 9562): 48 bits of Unix milliseconds, then random bits, so IDs sort by time."""
os.register_at_fork(after_in_child=new_request_id.reset)


def valid_request_id(value: bytes) -> bool:
    """True when an incoming ID is safe to echo and log: `[A-Za-z0-9._:-]{1,128}`."""
    return _VALID_ID.fullmatch(value) is not None


def sanitize_client_id(value: bytes) -> str:
    """A log-safe rendering of a rejected ID: unsafe characters become `_`, at most 64 kept."""
    text = value[: _CLIENT_ID_LOG_LENGTH * 4].decode("latin-1")
    return _UNSAFE_CHARS.sub("_", text)[:_CLIENT_ID_LOG_LENGTH]


AccessLog = Callable[[RequestContext, int, int, float], None]
ErrorLog = Callable[[RequestContext, BaseException], None]


class ResponseHeaders(Protocol):
    """Headers added to every response as it leaves the request-context layer (the
    perimeter's security headers), without a layer of their own."""

    def begin(self, scope: Scope) -> Any:
        """Called as the request arrives; what it returns is given to `finish`."""

    def finish(self, scope: Scope, state: Any, headers: Headers) -> Headers:
        """The response's headers (a list the caller owns, changed in place) with the added
        ones."""


class RequestContextMiddleware:
    """Request IDs, client address and access log; the last-resort 500 with the request ID.

    Args:
        app: the ASGI app to wrap.
        client_ip: resolves the client address from the scope (trusted-proxy aware).
        is_trusted_peer: tells whether the socket peer may set `X-Request-ID`.
        trust_request_id: believe a valid incoming ID from any peer.
        access_log: called once per request after the response (None: no access log).
        error_log: called with an exception that escaped the app.
        on_startup: awaited when the app reports lifespan start-up complete.
        on_shutdown: awaited when the app reports lifespan shutdown complete.
        response_headers: adds headers to every response, the last-resort 500 included.
        in_flight: when given, each request's scope and root path are kept there under its
            task while it runs (the event-loop monitor reads it to name the routes a stall
            held up).
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        client_ip: Callable[[Scope], str | None] | None = None,
        is_trusted_peer: Callable[[Scope], bool] | None = None,
        trust_request_id: bool = False,
        access_log: AccessLog | None = None,
        error_log: ErrorLog | None = None,
        on_startup: Callable[[], Awaitable[None]] | None = None,
        on_shutdown: Callable[[], Awaitable[None]] | None = None,
        response_headers: ResponseHeaders | None = None,
        in_flight: dict[Any, tuple[Scope, str]] | None = None,
    ) -> None:
        self.app = app
        self._extra = response_headers
        self._in_flight = in_flight
        self._client_ip = client_ip or _peer_ip
        self._is_trusted_peer = is_trusted_peer or (lambda scope: False)
        self._trust_all = trust_request_id
        self._access_log = access_log
        self._error_log = error_log
        self._on_startup = on_startup
        self._on_shutdown = on_shutdown

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self._other(scope, receive, send)
            return
        start = time.perf_counter()
        root_path = scope.get("root_path", "")
        ctx = self._context(scope)
        token = _current.set(ctx)
        in_flight = self._in_flight
        if in_flight is not None:
            task = asyncio.current_task()
            in_flight[task] = (scope, root_path)
        header = (REQUEST_ID_HEADER, ctx.request_id.encode("ascii"))
        extra = self._extra
        state = extra.begin(scope) if extra is not None else None
        status = 0
        sent = 0
        complete = False
        # A framework's own 500 page is held back: if the exception that caused it reaches us,
        # the SDK's problem+json replaces it; if not, it is sent unchanged when the app returns.
        held: list[Message] | None = None

        async def send_with_id(message: Message) -> None:
            nonlocal status, sent, complete, held
            if message["type"] == "http.response.start":
                status = message["status"]
                headers = _with_header(list(message.get("headers", ())), header)
                message["headers"] = (
                    headers if extra is None else extra.finish(scope, state, headers)
                )
                if status == 500:
                    held = []
            else:
                sent += len(message.get("body", b""))
                complete = not message.get("more_body", False)
            if held is None:
                await send(message)
            else:
                held.append(message)

        try:
            await self.app(scope, receive, send_with_id)
        except Exception as exc:
            if _client_left(exc):  # not an error of the app's: recorded as nginx does, 499
                if status == 0 or held is not None:
                    held, status, sent = None, 499, 0
                return
            if self._error_log is not None:
                self._error_log(ctx, exc)
            if status == 0 or held is not None:
                held, status, sent = None, 500, 0
                await send_problem(
                    send if extra is None else _finishing(send, extra, scope, state),
                    500,
                    "The server failed to handle this request.",
                    scope=scope,
                    request_id=ctx.request_id,
                    headers=[header],
                )
            elif not complete:
                raise
        finally:
            if held is not None:
                messages, held = held, None
                for message in messages:
                    await send(message)
            ctx.route = route_template(scope, root_path, status)
            if in_flight is not None:
                in_flight.pop(task, None)
            if self._access_log is not None:
                self._access_log(ctx, status, sent, time.perf_counter() - start)
            _current.reset(token)

    async def _other(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Websockets get a request context; lifespan events reach the start-up/shutdown hooks."""
        if scope["type"] == "websocket":
            token = _current.set(self._context(scope))
            try:
                await self.app(scope, receive, send)
            finally:
                _current.reset(token)
        elif scope["type"] == "lifespan" and (self._on_startup or self._on_shutdown):
            await self.app(scope, receive, self._lifespan_send(send))
        else:
            await self.app(scope, receive, send)

    def _lifespan_send(self, send: Send) -> Send:
        async def hooked(message: Message) -> None:
            if message["type"] == "lifespan.startup.complete" and self._on_startup:
                await self._on_startup()
            elif message["type"] == "lifespan.shutdown.complete" and self._on_shutdown:
                await self._on_shutdown()
            await send(message)

        return hooked

    @property
    def access_log(self) -> AccessLog | None:
        """What is called once per request after the response."""
        return self._access_log

    @property
    def error_log(self) -> ErrorLog | None:
        """What is called with an exception that escaped the app."""
        return self._error_log

    @property
    def response_headers(self) -> ResponseHeaders | None:
        """What adds headers to every response (the perimeter's security headers)."""
        return self._extra

    def context_of(self, scope: Scope) -> RequestContext:
        """A new request's context from its scope: its ID, client address and paths (for
        server adapters that run the rest of this layer's work themselves)."""
        return self._context(scope)

    def _context(self, scope: Scope) -> RequestContext:
        incoming: bytes | None = None
        for name, value in scope["headers"]:
            if name == REQUEST_ID_HEADER:
                incoming = value
                break
        client_ip = self._client_ip(scope)
        request_id: str | None = None
        if (
            incoming is not None
            and valid_request_id(incoming)
            and (self._trust_all or self._is_trusted_peer(scope))
        ):
            request_id = incoming.decode("ascii")
        method = scope[SCOPE_METHOD] = str(scope.get("method") or "GET").upper()
        ctx = RequestContext(
            request_id or new_request_id(),
            method,
            scope["path"],
            client_ip,
            scope.get("query_string", b""),
        )
        ctx.route_path = scope[SCOPE_PATH] = _route_path(scope)
        if incoming is not None and request_id is None:
            ctx.client_request_id = sanitize_client_id(incoming)
        scope[SCOPE_REQUEST_ID] = ctx.request_id
        scope[SCOPE_CONTEXT] = ctx
        return ctx


_ID_HEADER_LENGTH = len(REQUEST_ID_HEADER)


def _with_header(out: Headers, header: tuple[bytes, bytes]) -> Headers:
    """The response headers (a list of the caller's own, changed in place) without any
    `X-Request-ID` the app set, plus the SDK's."""
    for name, _ in out:
        if len(name) == _ID_HEADER_LENGTH and name.lower() == REQUEST_ID_HEADER:
            out = [h for h in out if h[0].lower() != REQUEST_ID_HEADER]
            break
    out.append(header)
    return out


def _finishing(send: Send, extra: ResponseHeaders, scope: Scope, state: Any) -> Send:
    """`send` for a response the layer writes itself, with the added headers."""

    async def finish(message: Message) -> None:
        if message["type"] == "http.response.start":
            message["headers"] = extra.finish(scope, state, list(message.get("headers", ())))
        await send(message)

    return finish


def _client_left(exc: BaseException) -> bool:
    """Whether `exc` says the client went away while the app read its request (Starlette's
    `ClientDisconnect`, raised when `receive` returns `http.disconnect`): nobody is left to
    answer, and the app did nothing wrong."""
    kind = type(exc)
    return kind.__name__ == "ClientDisconnect" and kind.__module__.startswith("starlette")


def _peer_ip(scope: Scope) -> str | None:
    client = scope.get("client")
    return client[0] if client else None
