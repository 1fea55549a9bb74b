"""A small keep-alive HTTP/1.1 client on asyncio, fast enough to load a server from one core.

`Pool` keeps up to `max_connections` connections to one origin and hands a request to an idle
one (last in, first out), opens a new one while under the cap, or queues the caller until one
is released. A response is read by `ResponseParser`: `Content-Length`, chunked bodies (with
trailers) and bodies delimited by the close of the connection; 1xx interim responses are
skipped. A connection is reused unless the server said `Connection: close`, spoke HTTP/1.0
without keep-alive, or a request on it failed. A request that fails on a reused connection
before a single response byte arrived (the server closed an idle keep-alive connection) is
retried once on a fresh one.

Not supported, on purpose: pipelining, `Expect: 100-continue`, upgrades, proxies, redirects,
cookies, compression. Every failure is a `ClientError` whose `kind` names it for reports.
"""

from __future__ import annotations

import asyncio
import collections
import ssl as ssl_module
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal, cast
from urllib.parse import urlsplit

import orjson

DEFAULT_TIMEOUT_S = 10.0
DEFAULT_MAX_CONNECTIONS = 100
MAX_HEAD_BYTES = 64 * 1024
MAX_BODY_BYTES = 64 * 1024 * 1024

ErrorKind = Literal["connect", "timeout", "closed", "protocol"]


class ClientError(Exception):
    """A request that got no usable response. `kind`: connect, timeout, closed or protocol."""

    kind: ErrorKind = "protocol"

    def __init__(self, message: str, kind: ErrorKind | None = None) -> None:
        super().__init__(message)
        if kind is not None:
            self.kind = kind


@dataclass(slots=True)
class Response:
    """A complete response: lower-case header names, repeated headers joined with ", "."""

    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        """The body parsed as JSON (raises `orjson.JSONDecodeError`)."""
        return orjson.loads(self.body)


# --- parsing ----------------------------------------------------------------------------------

_HEAD, _LENGTH, _CHUNK_SIZE, _CHUNK_DATA, _TRAILERS, _UNTIL_CLOSE, _DONE = range(7)


class ResponseParser:
    """Incremental parser of one response; `feed()` returns it once complete."""

    __slots__ = (
        "_buf",
        "_chunks",
        "_head_only",
        "_remaining",
        "_state",
        "headers",
        "keep_alive",
        "status",
    )

    def __init__(self, *, head_only: bool = False) -> None:
        self._buf = bytearray()
        self._chunks: list[bytes] = []
        self._head_only = head_only
        self._remaining = 0
        self._state = _HEAD
        self.status = 0
        self.headers: dict[str, str] = {}
        self.keep_alive = True

    def feed(self, data: bytes) -> Response | None:
        """Take bytes from the wire; the response once it is complete, else None."""
        buf = self._buf
        buf += data
        while True:
            state = self._state
            if state == _HEAD:
                end = buf.find(b"\r\n\r\n")
                if end < 0:
                    if len(buf) > MAX_HEAD_BYTES:
                        raise ClientError("response head too large", "protocol")
                    return None
                head = bytes(buf[:end])
                del buf[: end + 4]
                self._read_head(head)
                if self._state == _DONE:
                    return self._finish()
            elif state == _LENGTH:
                if len(buf) < self._remaining:
                    return None
                self._chunks.append(bytes(buf[: self._remaining]))
                del buf[: self._remaining]
                return self._finish()
            elif state == _CHUNK_SIZE:
                if not self._read_chunk_size():
                    return None
            elif state == _CHUNK_DATA:
                if len(buf) < self._remaining + 2:
                    return None
                if buf[self._remaining : self._remaining + 2] != b"\r\n":
                    raise ClientError("malformed chunk", "protocol")
                self._chunks.append(bytes(buf[: self._remaining]))
                del buf[: self._remaining + 2]
                self._state = _CHUNK_SIZE
            elif state == _TRAILERS:
                end = buf.find(b"\r\n")
                if end < 0:
                    return None
                line = bytes(buf[:end])
                del buf[: end + 2]
                if not line:
                    return self._finish()
            elif state == _UNTIL_CLOSE:
                self._grow(len(buf))
                self._chunks.append(bytes(buf))
                buf.clear()
                return None
            else:
                raise ClientError("data after the end of a response", "protocol")

    def feed_eof(self) -> Response:
        """The connection closed: the response, if its body was delimited by the close."""
        if self._state == _UNTIL_CLOSE:
            return self._finish()
        raise ClientError("connection closed before a complete response", "closed")

    @property
    def started(self) -> bool:
        return self._state != _HEAD or bool(self._buf) or self.status != 0

    @property
    def leftover(self) -> bool:
        return bool(self._buf)

    def _read_head(self, head: bytes) -> None:
        lines = head.split(b"\r\n")
        parts = lines[0].split(b" ", 2)
        if len(parts) < 2 or not parts[0].startswith(b"HTTP/1.") or not parts[1].isdigit():
            raise ClientError(f"bad status line {lines[0][:80]!r}", "protocol")
        status = int(parts[1])
        headers: dict[str, str] = {}
        for line in lines[1:]:
            name, sep, value = line.partition(b":")
            if not sep or not name or name != name.strip():
                raise ClientError(f"bad header line {line[:80]!r}", "protocol")
            key = name.decode("latin-1").lower()
            text = value.strip().decode("latin-1")
            headers[key] = f"{headers[key]}, {text}" if key in headers else text
        if 100 <= status < 200:
            if status == 101:
                raise ClientError("the server switched protocols", "protocol")
            return  # an interim response: the real one follows
        self.status, self.headers = status, headers
        connection = headers.get("connection", "").lower()
        if parts[0] == b"HTTP/1.0":
            self.keep_alive = "keep-alive" in connection
        else:
            self.keep_alive = "close" not in connection
        self._choose_body(headers)

    def _choose_body(self, headers: dict[str, str]) -> None:
        if self._head_only or self.status in (204, 304):
            self._state = _DONE
            return
        encoding = headers.get("transfer-encoding")
        if encoding is not None:
            if encoding.lower().rsplit(",", 1)[-1].strip() != "chunked":
                self._until_close()
            else:
                self._state = _CHUNK_SIZE
            return
        length = headers.get("content-length")
        if length is None:
            self._until_close()
            return
        values = {v.strip() for v in length.split(",")}
        if len(values) != 1 or not next(iter(values)).isdigit():
            raise ClientError(f"bad Content-Length {length!r}", "protocol")
        self._remaining = int(values.pop())
        self._grow(self._remaining)
        self._state = _LENGTH

    def _until_close(self) -> None:
        self.keep_alive = False
        self._state = _UNTIL_CLOSE

    def _read_chunk_size(self) -> bool:
        buf = self._buf
        end = buf.find(b"\r\n")
        if end < 0:
            if len(buf) > MAX_HEAD_BYTES:
                raise ClientError("chunk size line too long", "protocol")
            return False
        line = bytes(buf[:end]).split(b";", 1)[0].strip()
        del buf[: end + 2]
        try:
            size = int(line, 16)
        except ValueError:
            raise ClientError(f"bad chunk size {line[:20]!r}", "protocol") from None
        if size < 0:
            raise ClientError("negative chunk size", "protocol")
        if size == 0:
            self._state = _TRAILERS
        else:
            self._grow(size)
            self._remaining = size
            self._state = _CHUNK_DATA
        return True

    def _grow(self, n: int) -> None:
        if sum(map(len, self._chunks)) + n > MAX_BODY_BYTES:
            raise ClientError("response body too large", "protocol")

    def _finish(self) -> Response:
        self._state = _DONE
        body = self._chunks[0] if len(self._chunks) == 1 else b"".join(self._chunks)
        return Response(self.status, self.headers, body)


# --- connections ------------------------------------------------------------------------------


class _Connection(asyncio.Protocol):
    """One TCP connection carrying one request at a time."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self.reusable = True
        self.used = False
        self._parser: ResponseParser | None = None
        self._waiter: asyncio.Future[Response] | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)

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


def encode_request(
    method: str,
    target: str,
    host: str,
    headers: Sequence[tuple[str, str]] = (),
    body: bytes | None = None,
) -> bytes:
    """The bytes of one request; raises ValueError on a line break in any header or target."""
    lines = [f"{method} {target} HTTP/1.1", f"Host: {host}"]
    lines.extend(f"{name}: {value}" for name, value in headers)
    if body is not None:
        lines.append(f"Content-Length: {len(body)}")
    if any("\r" in line or "\n" in line for line in lines):
        raise ValueError("a line break inside a request header or target")
    head = "\r\n".join(lines)
    data = (head + "\r\n\r\n").encode()
    return data + body if body else data


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
