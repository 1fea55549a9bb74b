"""A request that runs through the ASGI layers: its WSGI thread and its private loop, and the
WSGI app adapted to ASGI at the bottom of the layers.

The layers run as a task on the thread's loop. The WSGI thread meanwhile waits on the
exchange's queue and does what the loop asks of it: run the WSGI app (so the app keeps its
thread, its thread-locals and its database connections) and write the response chunks the
layers send, one at a time, acknowledging each once the server took it. The request body is
read from `wsgi.input` by the loop (nothing else runs on a private loop meanwhile).
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import queue
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any, TypeVar

from launchready_sdk.routing import SCOPE_ROUTE
from launchready_sdk.types import ASGIApp, Headers, Message, Receive, Scope, Send
from launchready_sdk.wsgi._environ import SPOOL_MEMORY_BYTES, Environ
from launchready_sdk.wsgi._loops import LoopThread

T = TypeVar("T")
SCOPE_EXCHANGE = "launchready.wsgi"
WSGIApp = Callable[[Environ, Callable[..., Any]], Iterable[bytes]]
# After the client went away, how long the layers get to finish before their task is cancelled.
ABANDON_GRACE_S = 10.0
_READ_BYTES = 64 * 1024


class ClientGone(ConnectionError):
    """The WSGI server could not write to the client (it went away)."""


class Exchange:
    """One request between its WSGI thread and its loop."""

    def __init__(self, runner: LoopThread, environ: Environ) -> None:
        self.runner = runner
        self.loop = runner.loop
        self.environ = environ
        self.events: queue.SimpleQueue[tuple[Any, ...]] = queue.SimpleQueue()
        self.done = False
        self._task: asyncio.Task[None] | None = None
        # Request body bytes still to read; -1 once read whole, -2 when the client left.
        self._left: int | None = None
        self._finished: asyncio.Future[None] | None = None

    # --- the loop's side ---

    def start(self, layers: ASGIApp, scope: Scope, context: contextvars.Context) -> None:
        """Run `layers` for `scope` on the loop, in the request's `context`."""
        scope[SCOPE_EXCHANGE] = self

        def begin() -> None:
            self._finished = self.loop.create_future()
            self._task = self.loop.create_task(self._serve(layers, scope), context=context)

        self.loop.call_soon_threadsafe(begin)

    async def _serve(self, layers: ASGIApp, scope: Scope) -> None:
        try:
            await layers(scope, self.receive, self.send)
        except BaseException as exc:
            self.events.put(("error", exc))
            if not isinstance(exc, Exception):
                raise
        else:
            self.events.put(("end",))
        finally:
            self.done = True
            if self._finished is not None and not self._finished.done():
                self._finished.set_result(None)

    async def call(self, fn: Callable[[], T]) -> T:
        """Run `fn` in the request's WSGI thread and return what it returns."""
        loop = self.loop
        future: asyncio.Future[T] = loop.create_future()

        def run() -> None:
            try:
                result = fn()
            except BaseException as exc:
                loop.call_soon_threadsafe(_fail, future, exc)
            else:
                loop.call_soon_threadsafe(_resolve, future, result)

        self.events.put(("call", run))
        return await future

    async def receive(self) -> Message:
        """The request body from `wsgi.input`, then (once the response ends) a disconnect."""
        if self._left is None:
            length = self.environ.get("CONTENT_LENGTH")
            self._left = int(length) if length and str(length).isdigit() else 0
        if self._left > 0:
            try:
                chunk = self.environ["wsgi.input"].read(min(self._left, _READ_BYTES))
            except Exception:
                chunk = b""
            if not chunk:  # the client left before the end of its body
                self._left = -2
                return {"type": "http.disconnect"}
            self._left -= len(chunk)
            return {"type": "http.request", "body": chunk, "more_body": self._left > 0}
        if self._left == 0:
            self._left = -1
            return {"type": "http.request", "body": b"", "more_body": False}
        if self._left == -1 and self._finished is not None:  # body read: wait for the end
            await asyncio.shield(self._finished)
        return {"type": "http.disconnect"}

    async def send(self, message: Message) -> None:
        """Hand a response message to the WSGI thread; a chunk with more to come waits
        until the server has taken it."""
        if message["type"] == "http.response.start":
            self.events.put(("start", message["status"], message.get("headers", [])))
        elif message["type"] == "http.response.body":
            body = message.get("body", b"")
            if not message.get("more_body", False):
                self.events.put(("body", body, None))
                return
            ack: asyncio.Future[None] = self.loop.create_future()
            self.events.put(("body", body, ack))
            await ack

    # --- the WSGI thread's side ---

    def next_event(self) -> tuple[Any, ...]:
        """Do what the loop asks until it says something else: start, body, end or error."""
        while True:
            event = self.events.get()
            if event[0] != "call":
                return event
            event[1]()

    def chunks(self) -> Iterator[bytes]:
        """The response body chunks as the layers send them."""
        ack: asyncio.Future[None] | None = None
        try:
            while True:
                event = self.next_event()
                kind = event[0]
                if kind == "body":
                    ack = event[2]
                    if event[1]:
                        yield event[1]
                    if ack is not None:
                        self.loop.call_soon_threadsafe(_resolve, ack, None)
                        ack = None
                elif kind == "end":
                    return
                elif kind == "error":
                    raise event[1]
        finally:
            if not self.done:
                if ack is not None:  # the chunk the server could not write
                    self.loop.call_soon_threadsafe(_fail, ack, ClientGone("client went away"))
                self.abandon()

    def abandon(self) -> None:
        """The client is gone: fail the chunk waiting to be written, let the layers unwind
        (they release claims and store nothing partial), cancel them after a grace period."""
        deadline = time.monotonic() + ABANDON_GRACE_S
        cancelled = False
        while not self.done:
            try:
                event = self.events.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                if cancelled:
                    return  # the layers ignore cancellation too: leave them to the loop
                cancelled = True
                deadline = time.monotonic() + ABANDON_GRACE_S
                with contextlib.suppress(RuntimeError):
                    self.loop.call_soon_threadsafe(self._cancel)
                continue
            if event[0] == "call":
                event[1]()
            elif event[0] == "body" and event[2] is not None:
                self.loop.call_soon_threadsafe(_fail, event[2], ClientGone("client went away"))

    def _cancel(self) -> None:
        if self._task is not None:
            self._task.cancel()


def _resolve(future: asyncio.Future[T], value: T) -> None:
    if not future.done():
        future.set_result(value)


def _fail(future: asyncio.Future[Any], exc: BaseException) -> None:
    if not future.done():
        future.set_exception(exc)


class WSGIAsASGI:
    """A WSGI app as the innermost ASGI app of the layers (inside an `Exchange` only).

    The body the layers pass down is spooled (in memory up to 1 MiB, then in a temporary
    file) and given to the app as `wsgi.input` with its `CONTENT_LENGTH`, as Django's own
    ASGI handler does; the app then runs in the request's WSGI thread. Its response is sent
    on chunk by chunk; an ordinary response (one chunk) costs one trip to that thread.
    """

    def __init__(self, app: WSGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        exchange: Exchange = scope[SCOPE_EXCHANGE]
        spool = await _spool(receive)
        if spool is None:
            return  # the client left before its body arrived: nobody to answer
        try:
            await self._respond(exchange, scope, spool, send)
        finally:
            spool[0].close()

    async def _respond(
        self, exchange: Exchange, scope: Scope, spool: tuple[Any, str], send: Send
    ) -> None:
        environ = dict(exchange.environ)
        environ["wsgi.input"], environ["CONTENT_LENGTH"] = spool
        environ.pop("HTTP_TRANSFER_ENCODING", None)
        status, headers, first, rest = await exchange.call(lambda: _begin(self.app, environ))
        route = environ.get(SCOPE_ROUTE)
        if isinstance(route, str):
            scope[SCOPE_ROUTE] = route
        try:
            await send({"type": "http.response.start", "status": status, "headers": headers})
            if rest is None:
                body = first[0] if len(first) == 1 else b"".join(first)
                await send({"type": "http.response.body", "body": body, "more_body": False})
                return
            for chunk in first:
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
            while True:
                more: bytes | None = await exchange.call(rest.next)
                if more is None:
                    break
                if more:
                    await send({"type": "http.response.body", "body": more, "more_body": True})
        finally:
            if rest is not None:
                await exchange.call(rest.close)
        await send({"type": "http.response.body", "body": b"", "more_body": False})


class _Remaining:
    """The rest of a streamed WSGI response, pulled chunk by chunk from the WSGI thread."""

    def __init__(self, iterator: Iterator[bytes], result: Iterable[bytes]) -> None:
        self.iterator = iterator
        self.result = result

    def next(self) -> bytes | None:
        return next(self.iterator, None)

    def close(self) -> None:
        _close(self.result)


async def _spool(receive: Receive) -> tuple[Any, str] | None:
    """The whole request body in a spooled file, and its length as text; None on a
    disconnect."""
    spool = tempfile.SpooledTemporaryFile(max_size=SPOOL_MEMORY_BYTES)  # noqa: SIM115
    size = 0
    while True:
        message = await receive()
        if message["type"] != "http.request":
            spool.close()
            return None
        chunk = message.get("body", b"")
        if chunk:
            spool.write(chunk)
            size += len(chunk)
        if not message.get("more_body", False):
            break
    spool.seek(0)
    return spool, str(size)


def _begin(app: WSGIApp, environ: Environ) -> tuple[int, Headers, list[bytes], _Remaining | None]:
    """Run the WSGI app up to its first body chunk (in the WSGI thread). A response that is
    done by then is closed here (Django's request_finished runs), so a plain response costs
    one trip."""
    started: list[Any] = []
    written: list[bytes] = []

    def start_response(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
        if exc_info is not None and started:
            raise exc_info[1].with_traceback(exc_info[2])
        started[:] = [status, headers]
        return written.append

    result = app(environ, start_response)
    try:
        iterator = iter(result)
        first: list[bytes] = list(written)
        for chunk in iterator:
            if chunk:
                first.append(chunk)
                break
        else:
            _close(result)
            return (*_head(started), first, None)
        for chunk in iterator:  # a second chunk: a streamed response
            if chunk:
                first.append(chunk)
            return (*_head(started), first, _Remaining(iterator, result))
        _close(result)
        return (*_head(started), first, None)
    except BaseException:
        _close(result)
        raise


def _head(started: list[Any]) -> tuple[int, Headers]:
    if not started:
        raise RuntimeError("the WSGI app returned without calling start_response")
    status, headers = started
    return int(str(status)[:3]), [
        (str(name).lower().encode("latin-1"), str(value).encode("latin-1"))
        for name, value in headers
    ]


def _close(result: Any) -> None:
    close = getattr(result, "close", None)
    if callable(close):
        close()
