"""A small keep-alive HTTP/1.1 client on asyncio, fast enough to load a server from one core.

`Pool` keeps up to `max_connections` connections to one origin and hands a request to an idle
one (last in, first out), opens a new one while under the cap, or queues the caller until one
is released. Responses are read by `wire.ResponseParser`. A connection is reused unless the
server said `Connection: close`, spoke HTTP/1.0 without keep-alive, or a request on it failed.
A request that fails on a reused connection before a single response byte arrived (the server
closed an idle keep-alive connection) is retried once on a fresh one.

Not supported, on purpose: pipelining, `Expect: 100-continue`, upgrades, proxies, redirects,
cookies, compression. Every failure is a `ClientError` whose `kind` names it for reports
("internal" when the fault is the client's own, not the server's).
"""

from __future__ import annotations

import asyncio
import collections
import ssl as ssl_module
from collections.abc import Sequence
from dataclasses import dataclass
from typing import cast
from urllib.parse import urlsplit

from launchready_sdk.cli.wire import ClientError, Response, ResponseParser, encode_request

__all__ = ["ClientError", "Origin", "Pool", "Response"]

DEFAULT_TIMEOUT_S = 10.0
DEFAULT_MAX_CONNECTIONS = 100
READ_BYTES = 64 * 1024  # per read: bounds the parsing work one event-loop callback does


# --- connections ------------------------------------------------------------------------------


class _Connection(asyncio.BufferedProtocol):
    """One TCP connection carrying one request at a time.

    It reads into a buffer of its own of `READ_BYTES`, so a server sending a large body in
    tiny chunks is parsed in short steps, between which the event loop runs the timers (the
    `--timeout` of every request) and the other connections.
    """

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self.reusable = True
        self.used = False
        self._parser: ResponseParser | None = None
        self._waiter: asyncio.Future[Response] | None = None
        self._read = memoryview(bytearray(READ_BYTES))

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)

    def get_buffer(self, sizehint: int) -> memoryview:
        return self._read

    def buffer_updated(self, nbytes: int) -> None:
        self.data_received(bytes(self._read[:nbytes]))

    def send(self, data: bytes, head_only: bool) -> asyncio.Future[Response]:
        assert self.transport is not None
        self._parser = ResponseParser(head_only=head_only)
        self._waiter = asyncio.get_running_loop().create_future()
        self.transport.write(data)
        return self._waiter

    @property
    def received(self) -> bool:
        return self._parser is not None and self._parser.started

    def data_received(self, data: bytes) -> None:
        parser = self._parser
        if parser is None or self._waiter is None or self._waiter.done():
            self.abort()  # bytes nobody asked for: the connection cannot be trusted
            return
        try:
            response = parser.feed(data)
        except ClientError as exc:
            self._fail(exc)
            return
        except Exception as exc:  # a fault of the parser: one error, never a loop traceback
            self._fail(ClientError(f"the response parser failed: {exc!r}", "internal"))
            return
        if response is not None:
            if not parser.keep_alive or parser.leftover:
                self.reusable = False
            self.used = True
            self._parser = None
            self._waiter.set_result(response)

    def eof_received(self) -> bool:
        self.reusable = False
        self._settle_on_close()
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.reusable = False
        self._settle_on_close()

    def time_out(self) -> None:
        self._fail(ClientError("no complete response in time", "timeout"))

    def abort(self) -> None:
        self.reusable = False
        self.closed = True
        if self.transport is not None:
            self.transport.abort()

    def _settle_on_close(self) -> None:
        waiter, parser = self._waiter, self._parser
        if waiter is None or waiter.done() or parser is None:
            return
        try:
            waiter.set_result(parser.feed_eof())
        except ClientError as exc:
            waiter.set_exception(exc)

    def _fail(self, exc: ClientError) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_exception(exc)
        self.abort()


@dataclass(frozen=True, slots=True)
class Origin:
    """Where requests go: scheme, host, port and a path prefix (no trailing slash)."""

    scheme: str
    host: str
    port: int
    prefix: str = ""

    @classmethod
    def parse(cls, url: str) -> Origin:
        """Parse `http://host:port/prefix` (or https); raises ValueError when it is not one."""
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"not an http(s) URL: {url!r}")
        try:
            port = parts.port or (443 if parts.scheme == "https" else 80)
        except ValueError:
            raise ValueError(f"bad port in {url!r}") from None
        return cls(parts.scheme, parts.hostname, port, parts.path.rstrip("/"))

    @property
    def host_header(self) -> str:
        default = 443 if self.scheme == "https" else 80
        host = f"[{self.host}]" if ":" in self.host else self.host
        return host if self.port == default else f"{host}:{self.port}"

    def __str__(self) -> str:
        return f"{self.scheme}://{self.host_header}{self.prefix}"


class Pool:
    """Keep-alive connections to one origin, at most `max_connections` of them."""

    def __init__(
        self,
        origin: Origin,
        *,
        max_connections: int = DEFAULT_MAX_CONNECTIONS,
        timeout_s: float = DEFAULT_TIMEOUT_S,
    ) -> None:
        self.origin = origin
        self.max_connections = max_connections
        self.timeout_s = timeout_s
        self.opened = 0  # connections made, for reports and tests
        self._count = 0
        self._idle: list[_Connection] = []
        self._waiters: collections.deque[asyncio.Future[_Connection | None]] = collections.deque()
        self._ssl = ssl_module.create_default_context() if origin.scheme == "https" else None

    async def request(
        self,
        method: str,
        path: str,
        headers: Sequence[tuple[str, str]] = (),
        body: bytes | None = None,
    ) -> Response:
        """Send one request (`path` is joined to the origin's prefix) and read its response."""
        target = self.origin.prefix + path
        data = encode_request(method, target, self.origin.host_header, headers, body)
        return await self.send(data, head_only=method == "HEAD")

    async def send(self, data: bytes, *, head_only: bool = False) -> Response:
        """Send prepared request bytes (see `encode_request`) and read the response."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.timeout_s
        for attempt in range(2):
            conn = await self._acquire(deadline)
            reused = conn.used
            try:
                response = await self._exchange(conn, data, head_only, deadline)
            except ClientError as exc:
                started = conn.received
                self._discard(conn)
                if exc.kind == "closed" and reused and not started and attempt == 0:
                    continue
                raise
            except BaseException:
                self._discard(conn)
                raise
            self._release(conn)
            return response
        raise AssertionError("unreachable")  # pragma: no cover

    async def close(self) -> None:
        """Close every idle connection; requests in flight keep theirs until they finish."""
        for conn in self._idle:
            conn.abort()
        self._count -= len(self._idle)
        self._idle.clear()

    @property
    def idle(self) -> int:
        return len(self._idle)

    async def _exchange(
        self, conn: _Connection, data: bytes, head_only: bool, deadline: float
    ) -> Response:
        loop = asyncio.get_running_loop()
        future = conn.send(data, head_only)
        handle = loop.call_at(deadline, conn.time_out)
        try:
            return await future
        finally:
            handle.cancel()

    async def _acquire(self, deadline: float) -> _Connection:
        while self._idle:
            conn = self._idle.pop()
            if not conn.closed:
                return conn
            self._count -= 1
        if self._count < self.max_connections:
            return await self._connect(deadline)
        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[_Connection | None] = loop.create_future()
        self._waiters.append(waiter)
        handle = loop.call_at(deadline, _expire, waiter)
        try:
            handed_over = await waiter
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled() and waiter.exception() is None:
                handed = waiter.result()
                if handed is not None:
                    self._release(handed)
                else:
                    self._wake()
            raise
        finally:
            handle.cancel()
        return handed_over if handed_over is not None else await self._connect(deadline)

    async def _connect(self, deadline: float) -> _Connection:
        loop = asyncio.get_running_loop()
        self._count += 1
        origin = self.origin
        try:
            async with asyncio.timeout_at(deadline):
                _, conn = await loop.create_connection(
                    _Connection,
                    origin.host,
                    origin.port,
                    ssl=self._ssl,
                    server_hostname=origin.host if self._ssl else None,
                )
        except TimeoutError:
            self._count -= 1
            self._wake()
            message = f"connecting to {origin.host}:{origin.port} timed out"
            raise ClientError(message, "timeout") from None
        except OSError as exc:
            self._count -= 1
            self._wake()
            reason = exc.strerror or str(exc) or type(exc).__name__
            message = f"cannot connect to {origin.host}:{origin.port}: {reason}"
            raise ClientError(message, "connect") from None
        except BaseException:
            self._count -= 1
            self._wake()
            raise
        self.opened += 1
        return conn

    def _release(self, conn: _Connection) -> None:
        if not conn.reusable or conn.closed:
            self._discard(conn)
            return
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(conn)
                return
        self._idle.append(conn)

    def _discard(self, conn: _Connection) -> None:
        conn.abort()
        self._count -= 1
        self._wake()

    def _wake(self) -> None:
        """A slot is free: the first live waiter opens a connection of its own."""
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return


def _expire(waiter: asyncio.Future[_Connection | None]) -> None:
    if not waiter.done():
        waiter.set_exception(ClientError("no free connection in time", "timeout"))
