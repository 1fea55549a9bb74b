"""`WSGIStack`: the SDK around a WSGI app."""

from __future__ import annotations

import contextvars
import sys
import time
from collections.abc import Awaitable, Callable, Iterable, Iterator
from functools import partial
from http import HTTPStatus
from typing import Any

from launchready_sdk.context import (
    REQUEST_ID_HEADER,
    RequestContext,
    RequestContextMiddleware,
    activate,
    deactivate,
)
from launchready_sdk.perimeter import SCOPE_CSP_NONCE
from launchready_sdk.responses import send_problem
from launchready_sdk.routing import SCOPE_ROUTE, route_template
from launchready_sdk.types import Message, Send
from launchready_sdk.wsgi._environ import (
    MAX_CHUNKED_BODY_BYTES,
    SPOOL_KEY,
    BodyRefused,
    Environ,
    all_headers,
    is_chunked,
    scope_from_environ,
    spool_chunked,
)
from launchready_sdk.wsgi._exchange import Exchange, WSGIApp
from launchready_sdk.wsgi._loops import Background, thread_loop

_ID_HEADER = REQUEST_ID_HEADER.decode()
_SERVER_ERROR = "The server failed to handle this request."
_PHRASES = {400: "400 Bad Request", 413: "413 Content Too Large", 500: "500 Internal Server Error"}
StartResponse = Callable[..., Any]
# The security headers as WSGI text, by the bytes `SecurityHeaders.finish` added.
_TEXT: dict[tuple[tuple[bytes, bytes], ...], list[tuple[str, str]]] = {}


class WSGIStack:
    """The SDK around a WSGI app: request context for every request, the dispatch's gate
    (trusted hosts, redirects), the ASGI layers for the paths they act on, and the security
    headers of every response.

    Args:
        app: the WSGI app.
        dispatch: decides which route paths go through the layers (`dispatch.layers`,
            around the app adapted to ASGI); its `gate`, when set, may answer first.
        context: the request-context layer whose context, access log, error log and
            response headers every request gets.
        startup: awaited on the background loop at the first request of a process.
        shutdown: awaited there at interpreter exit.
        max_chunked_body_bytes: a chunked request body larger than this is refused (413).
    """

    def __init__(
        self,
        app: WSGIApp,
        *,
        dispatch: Any,
        context: RequestContextMiddleware,
        startup: Callable[[], Awaitable[None]],
        shutdown: Callable[[], Awaitable[None]],
        max_chunked_body_bytes: int = MAX_CHUNKED_BODY_BYTES,
    ) -> None:
        self.app = app
        self.dispatch = dispatch
        self.context = context
        self.background = Background(startup, shutdown)
        self.max_chunked_body_bytes = max_chunked_body_bytes
        self._access_log = context.access_log
        self._error_log = context.error_log
        self._gate = dispatch.gate
        self._extra = context.response_headers

    def __call__(self, environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
        started = time.perf_counter()
        self.background.ensure_started()
        thread_loop()  # async_to_sync in this thread runs there, sharing its Redis connection
        scope = scope_from_environ(environ, lean=True)
        ctx = self.context.context_of(scope)
        token = activate(ctx)
        body = _Body(self, ctx, scope, started, token)
        try:
            extra = self._extra
            if extra is not None:
                body.extra = extra.begin(scope)
                nonce = scope.get(SCOPE_CSP_NONCE)
                if nonce is not None:  # for the Django middleware: `request.csp_nonce`
                    environ[SCOPE_CSP_NONCE] = nonce
            gate = self._gate
            if gate is not None and (answer := gate.check(scope)) is not None:
                return body.collected(start_response, partial(gate.respond, scope, answer=answer))
            if is_chunked(environ):
                body.environ = environ
                spool_chunked(environ, self.max_chunked_body_bytes)
            if self.dispatch.covered(ctx.route_path, scope):
                return self._through_layers(environ, start_response, scope, body)
            result = self.app(environ, body.start_response(start_response))
        except BodyRefused as refused:
            return body.problem(start_response, refused.status, refused.detail)
        except Exception as exc:
            body.failed(exc)
            return body.problem(start_response, 500, _SERVER_ERROR, sys.exc_info())
        body.inner = result
        body.environ = environ
        body.direct = True
        return body

    def _through_layers(
        self, environ: Environ, start_response: StartResponse, scope: Any, body: _Body
    ) -> Iterable[bytes]:
        body.environ = environ
        scope["headers"] = all_headers(environ)
        exchange = Exchange(thread_loop(), environ)
        exchange.start(self.dispatch.layers, scope, contextvars.copy_context())
        event = exchange.next_event()
        if event[0] == "error":
            body.failed(event[1])
            return body.problem(start_response, 500, _SERVER_ERROR)
        if event[0] == "end":  # the client left before the app answered
            body.status = 499
            start_response(_PHRASES[400], [("Content-Length", "0"), (_ID_HEADER, body.id)])
            return body
        _, status, headers = event
        body.status = status
        if body.extra is not None:
            headers = self._extra.finish(scope, body.extra, list(headers))  # type: ignore[union-attr]
        wsgi_headers = [
            (name.decode("latin-1"), value.decode("latin-1"))
            for name, value in headers
            if name.lower() != REQUEST_ID_HEADER
        ]
        wsgi_headers.append((_ID_HEADER, body.id))
        start_response(f"{status} {_reason(status)}", wsgi_headers)
        body.inner = exchange.chunks()
        return body


class _Body:
    """The response as the WSGI server iterates it: counts the bytes; at `close()` the app's
    close runs, then the latency and access line of the request."""

    __slots__ = (
        "_closed",
        "ctx",
        "direct",
        "environ",
        "extra",
        "id",
        "inner",
        "scope",
        "sent",
        "server_start",
        "stack",
        "started",
        "status",
        "token",
    )

    def __init__(
        self,
        stack: WSGIStack,
        ctx: RequestContext,
        scope: Any,
        started: float,
        token: contextvars.Token[RequestContext | None],
    ) -> None:
        self.stack = stack
        self.ctx = ctx
        self.scope = scope
        self.id = ctx.request_id
        self.started = started
        self.token = token
        self.status = 0
        self.sent = 0
        self.inner: Iterable[bytes] = ()
        self.environ: Environ | None = None
        self.direct = False  # the app answered without the layers: its route is in environ
        self.server_start: StartResponse | None = None
        self.extra: Any = None  # the security headers' state for this request (`begin`)
        self._closed = False

    def start_response(self, start_response: StartResponse) -> StartResponse:
        """The server's `start_response`, with the request's `X-Request-ID` (and no other)."""
        self.server_start = start_response
        return self._start

    def _start(self, status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
        self.status = int(status[:3])
        for name, _ in headers:
            if len(name) == 12 and name.lower() == "x-request-id":
                headers = [h for h in headers if h[0].lower() != "x-request-id"]
                break
        headers = headers if isinstance(headers, list) else list(headers)
        headers.append((_ID_HEADER, self.id))
        if self.extra is not None:
            headers = self._secured(headers)
        assert self.server_start is not None  # set by start_response() before the app runs
        return self.server_start(status, headers, exc_info)

    def _secured(self, headers: list[tuple[str, str]]) -> list[tuple[str, str]]:
        """`headers` with the security headers the app did not set."""
        raw = [(k.encode("latin-1"), v.encode("latin-1")) for k, v in headers]
        known = len(raw)
        raw = self.stack._extra.finish(self.scope, self.extra, raw)  # type: ignore[union-attr]
        added = tuple(raw[known:])  # mostly the same few blocks: their text is kept
        text = _TEXT.get(added)
        if text is None:
            text = [(k.decode("latin-1"), v.decode("latin-1")) for k, v in added]
            if len(_TEXT) >= 64:
                _TEXT.clear()
            _TEXT[added] = text
        headers.extend(text)
        return headers

    def __iter__(self) -> Iterator[bytes]:
        try:
            for chunk in self.inner:
                self.sent += len(chunk)
                yield chunk
        except GeneratorExit:
            raise
        except Exception as exc:
            self.failed(exc)
            raise

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        ctx = self.ctx
        try:
            close = getattr(self.inner, "close", None)
            if callable(close):
                close()
        finally:
            environ = self.environ if self.environ is not None else {}
            spool = environ.get(SPOOL_KEY)
            if spool is not None:
                spool.close()
            if self.direct:
                route = environ.get(SCOPE_ROUTE)
                ctx.route = route if isinstance(route, str) else None
            else:
                ctx.route = route_template(self.scope, self.scope.get("root_path", ""), self.status)
            log = self.stack._access_log
            if log is not None:
                log(ctx, self.status, self.sent, time.perf_counter() - self.started)
            try:
                deactivate(self.token)
            except ValueError:  # closed in another context than the one it began in
                activate(None)

    def failed(self, exc: BaseException) -> None:
        log = self.stack._error_log
        if log is not None:
            log(self.ctx, exc)

    def problem(
        self, start_response: StartResponse, status: int, detail: str, exc_info: Any = None
    ) -> _Body:
        """A complete problem response (problem+json, or a page for a browser)."""
        return self.collected(
            start_response,
            lambda send: send_problem(send, status, detail, scope=self.scope),
            exc_info,
        )

    def collected(
        self,
        start_response: StartResponse,
        respond: Callable[[Send], Awaitable[None]],
        exc_info: Any = None,
    ) -> _Body:
        """The response `respond` sends whole without waiting (a problem, a redirect), with
        the request ID and the security headers."""
        messages: list[Message] = []

        async def collect(message: Message) -> None:
            messages.append(message)

        coroutine = respond(collect)
        try:
            coroutine.send(None)  # type: ignore[attr-defined]
        except StopIteration:
            pass
        else:  # it waited on something: never the case for what is sent here
            coroutine.close()  # type: ignore[attr-defined]
            raise RuntimeError("a response written here must not wait")
        start = messages[0]
        status = self.status = start["status"]
        headers = [(k, v) for k, v in start.get("headers", ()) if k.lower() != REQUEST_ID_HEADER]
        headers.append((REQUEST_ID_HEADER, self.id.encode()))
        if self.extra is not None:
            headers = self.stack._extra.finish(self.scope, self.extra, headers)  # type: ignore[union-attr]
        wsgi_headers = [(k.decode("latin-1"), v.decode("latin-1")) for k, v in headers]
        start_response(f"{status} {_reason(status)}", wsgi_headers, exc_info)
        self.inner = [b"".join(m.get("body", b"") for m in messages[1:])]
        return self


def _reason(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Unknown"
