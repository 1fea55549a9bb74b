"""A lean, pipelining Redis client for the SDK's per-request commands.

Every limited, cached or idempotent request sends one Redis command, and a general-purpose
client spends far more CPU around that command than Redis spends answering it. This client
keeps one connection per event loop (one per process under an ASGI server) and writes each
command as soon as it is issued, so concurrent requests share the connection and their
commands travel together (automatic pipelining: everything issued in one event-loop iteration
leaves in one write); replies are parsed by hiredis and handed back in order.

It does only what the SDK needs: commands with bytes/str/int/float arguments, AUTH and SELECT
from the URL, TLS for `rediss://`, unix sockets. Errors are plain: `RedisReplyError` for an
error reply, `ConnectionError` for a lost or refused connection, `TimeoutError` when a reply
takes longer than the timeout. A reply that arrives after its caller gave up is read and
dropped, so replies never shift onto the wrong command. Failure policy (breaker, fail open or
closed) belongs to `stores.RedisStore`, not here.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import ssl
import urllib.parse
from typing import Any

import hiredis

Arg = bytes | str | int | float


class RedisReplyError(Exception):
    """Redis answered with an error reply (`NOSCRIPT`, `READONLY`, `WRONGPASS`, ...)."""


def encode_command(args: tuple[Arg, ...]) -> bytes:
    """RESP encoding of one command."""
    parts = [b"*%d\r\n" % len(args)]
    for arg in args:
        if isinstance(arg, bytes):
            data = arg
        elif isinstance(arg, str):
            data = arg.encode()
        else:
            data = repr(arg).encode() if isinstance(arg, float) else b"%d" % arg
        parts.append(b"$%d\r\n%s\r\n" % (len(data), data))
    return b"".join(parts)


class _Protocol(asyncio.Protocol):
    """One connection: a FIFO of waiting futures fed by the hiredis parser."""

    def __init__(self) -> None:
        self.reader = hiredis.Reader(replyError=RedisReplyError)
        self.waiting: collections.deque[asyncio.Future[Any]] = collections.deque()
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self._outgoing: list[bytes] = []

    def send(self, command: bytes) -> None:
        """Queue a command; all commands queued in one loop iteration leave in one write."""
        if not self._outgoing:
            asyncio.get_running_loop().call_soon(self._flush)
        self._outgoing.append(command)

    def _flush(self) -> None:
        data, self._outgoing = b"".join(self._outgoing), []
        if self.transport is not None and not self.closed:
            self.transport.write(data)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self.reader.feed(data)
        while True:
            try:
                reply = self.reader.gets()
            except hiredis.ProtocolError as exc:
                self._fail(ConnectionError(f"Redis protocol error: {exc}"))
                if self.transport is not None:
                    self.transport.close()
                return
            if reply is False:
                return
            if not self.waiting:  # a reply nobody asked for: the stream can't be trusted
                self._fail(ConnectionError("unexpected reply from Redis"))
                if self.transport is not None:
                    self.transport.close()
                return
            future = self.waiting.popleft()
            if not future.done():
                future.set_result(reply)

    def connection_lost(self, exc: Exception | None) -> None:
        self._fail(ConnectionError("connection to Redis lost"))

    def _fail(self, exc: Exception) -> None:
        self.closed = True
        while self.waiting:
            future = self.waiting.popleft()
            if not future.done():
                future.set_exception(exc)


class _Link:
    """The connection of one event loop, and its opening in progress."""

    __slots__ = ("connecting", "protocol")

    def __init__(self) -> None:
        self.protocol: _Protocol | None = None
        self.connecting: asyncio.Future[_Protocol] | None = None


class RespClient:
    """One auto-pipelined connection per event loop, opened on first use and reopened after
    a loss.

    A server runs one loop per process, so that is one connection; a WSGI worker with
    several threads runs a private loop per thread, and each gets its own connection, since
    a connection belongs to the loop that opened it. Links of loops that have closed are
    dropped when a new loop connects.

    Args:
        url: `redis://[user:password@]host[:port][/db]`, `rediss://...` or `unix:///path?db=N`.
        timeout_s: connect timeout and per-command reply timeout.
    """

    def __init__(self, url: str, *, timeout_s: float) -> None:
        self.url = url
        self.timeout_s = timeout_s
        self._target = parse_redis_url(url)
        self._links: dict[asyncio.AbstractEventLoop, _Link] = {}

    async def execute(self, *args: Arg) -> Any:
        """Send one command and return its reply (error replies are raised)."""
        loop = asyncio.get_running_loop()
        link = self._links.get(loop)
        protocol = link.protocol if link is not None else None
        if protocol is None or protocol.closed:
            protocol = await self._connect(loop)
        future: asyncio.Future[Any] = loop.create_future()
        protocol.waiting.append(future)
        protocol.send(encode_command(args))
        try:
            async with asyncio.timeout(self.timeout_s):
                reply = await future
        except TimeoutError:
            # A connection that stalls is not trusted again: later commands use a fresh one.
            protocol.closed = True
            if protocol.transport is not None:
                protocol.transport.abort()
            raise
        if isinstance(reply, RedisReplyError):
            raise reply
        return reply

    async def _connect(self, loop: asyncio.AbstractEventLoop) -> _Protocol:
        link = self._links.get(loop)
        if link is None:  # a new event loop (a thread's, a test's): forget closed ones
            for old in [known for known in list(self._links) if known.is_closed()]:
                self._links.pop(old, None)
            link = self._links[loop] = _Link()
        if link.connecting is None:
            link.connecting = loop.create_future()
            task = loop.create_task(self._open())
            task.add_done_callback(lambda done: self._opened(link, done))
        return await asyncio.shield(link.connecting)

    def _opened(self, link: _Link, task: asyncio.Task[_Protocol]) -> None:
        connecting, link.connecting = link.connecting, None
        if connecting is None or connecting.done():
            return
        if task.cancelled():
            connecting.set_exception(ConnectionError("connecting to Redis was cancelled"))
        elif task.exception() is not None:
            connecting.set_exception(task.exception())  # type: ignore[arg-type]
        else:
            link.protocol = task.result()
            connecting.set_result(link.protocol)

    async def _open(self) -> _Protocol:
        loop = asyncio.get_running_loop()
        target = self._target
        async with asyncio.timeout(self.timeout_s):
            if target["unix"]:
                _, protocol = await loop.create_unix_connection(_Protocol, target["unix"])
            else:
                _, protocol = await loop.create_connection(
                    _Protocol, target["host"], target["port"], ssl=target["ssl"]
                )
        for command in target["setup"]:
            future: asyncio.Future[Any] = loop.create_future()
            protocol.waiting.append(future)
            protocol.transport.write(encode_command(command))  # type: ignore[union-attr]
            async with asyncio.timeout(self.timeout_s):
                reply = await future
            if isinstance(reply, RedisReplyError):
                protocol.transport.close()  # type: ignore[union-attr]
                raise reply
        return protocol

    @property
    def connections(self) -> int:
        """How many event loops hold an open connection now."""
        links = list(self._links.values())
        return sum(1 for link in links if link.protocol is not None and not link.protocol.closed)

    async def aclose(self) -> None:
        """Close the connections; pending commands fail with ConnectionError. Another
        thread's loop closes its own, soon after; a closed loop's is dropped."""
        current = asyncio.get_running_loop()
        links, self._links = list(self._links.items()), {}
        for loop, link in links:
            protocol, link.protocol = link.protocol, None
            if protocol is None or protocol.transport is None:
                continue
            protocol.closed = True
            if loop is current:
                protocol.transport.close()
            elif not loop.is_closed():
                with contextlib.suppress(RuntimeError):  # closed in between
                    loop.call_soon_threadsafe(protocol.transport.close)


def parse_redis_url(url: str) -> dict[str, Any]:
    parsed = urllib.parse.urlsplit(url)
    query = urllib.parse.parse_qs(parsed.query)
    setup: list[tuple[Arg, ...]] = []
    password = urllib.parse.unquote(parsed.password) if parsed.password else None
    username = urllib.parse.unquote(parsed.username) if parsed.username else None
    if password is not None:
        setup.append(("AUTH", username, password) if username else ("AUTH", password))
    db = parsed.path.lstrip("/") if parsed.scheme != "unix" else query.get("db", ["0"])[0]
    if db and db != "0":
        setup.append(("SELECT", int(db)))
    return {
        "unix": parsed.path if parsed.scheme == "unix" else None,
        "host": parsed.hostname or "127.0.0.1",
        "port": parsed.port or 6379,
        "ssl": ssl.create_default_context() if parsed.scheme == "rediss" else None,
        "setup": setup,
    }
