"""A lean, pipelining Redis client for the SDK's per-request commands.

Every limited, cached or idempotent request sends one Redis command, and a general-purpose
client spends far more CPU around that command than Redis spends answering it. This client
keeps one connection per event loop (one per process under an ASGI server) and writes each
command as soon as it is issued, so concurrent requests share the connection and their
commands travel together (automatic pipelining: everything issued in one event-loop iteration
leaves in one write); replies are parsed by hiredis and handed back in order.

It does only what the SDK needs: commands with bytes/str/int/float arguments, AUTH (ACL user
or password) and SELECT from the URL, TLS for `rediss://` (options in `_url`), unix sockets,
and an address found at connect time (a Sentinel's master). Errors are plain:
`RedisReplyError` for an error reply, `ConnectionError` for a lost or refused connection,
`TimeoutError` when a reply takes longer than the timeout.

A slow reply fails only its own command: the connection stays, the late reply is read and
dropped when it comes, so replies never shift onto the wrong command. Only a connection that
has answered nothing for `stall_s` while replies are owed is given up. Connecting has its own
timeout; after a failed connect the next attempt waits a jittered, doubling delay (at most
`MAX_BACKOFF_S`), and commands meanwhile fail at once without I/O. Failure policy (breaker,
fail open or closed) belongs to `store.RedisStore`, not here.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import math
import random
import time
from collections.abc import Awaitable, Callable
from typing import Any

import hiredis

from launchready_sdk.store._url import parse_url

Arg = bytes | str | int | float
Resolve = Callable[[], Awaitable[tuple[str, int]]]
MIN_BACKOFF_S = 0.05
MAX_BACKOFF_S = 2.0
_INCOMPLETE = object()  # the parser's "no whole reply yet" (False is a RESP3 reply)


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
    """One connection: a FIFO of (future, deadline) fed by the hiredis parser.

    Deadlines are enforced by one timer per connection (`_sweep`), not one per command: the
    timer fires at the earliest pending deadline, fails the commands past theirs (their
    replies are dropped when they come) and drops the connection when it has answered
    nothing for `stall_s` while replies are owed.
    """

    def __init__(self, stall_s: float = 2.0) -> None:
        self.reader = hiredis.Reader(replyError=RedisReplyError, notEnoughData=_INCOMPLETE)
        self.waiting: collections.deque[tuple[asyncio.Future[Any], float]] = collections.deque()
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self.stall_s = stall_s
        self.loop = asyncio.get_running_loop()
        self.progress_at = self.loop.time()  # the last reply, or when replies became owed
        self._outgoing: list[bytes] = []
        self._sweeper: asyncio.TimerHandle | None = None

    def send(self, command: bytes, future: asyncio.Future[Any], deadline: float) -> None:
        """Queue a command; all commands queued in one loop iteration leave in one write."""
        if not self.waiting:
            self.progress_at = self.loop.time()
        self.waiting.append((future, deadline))
        if not self._outgoing:
            self.loop.call_soon(self._flush)
        self._outgoing.append(command)
        if self._sweeper is None:
            self._sweeper = self.loop.call_at(deadline, self._sweep)

    def _sweep(self) -> None:
        self._sweeper = None
        now = self.loop.time()
        if self.waiting and now - self.progress_at > self.stall_s:
            self._fail(ConnectionError("Redis stopped answering"))
            if self.transport is not None:
                self.transport.abort()
            return
        earliest = math.inf
        for future, deadline in self.waiting:
            if future.done():
                continue
            if deadline <= now:
                future.set_exception(TimeoutError("Redis did not answer in time"))
            elif deadline < earliest:
                earliest = deadline
        if earliest < math.inf:
            self._sweeper = self.loop.call_at(earliest, self._sweep)

    def _flush(self) -> None:
        data, self._outgoing = b"".join(self._outgoing), []
        if self.transport is not None and not self.closed:
            self.transport.write(data)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self.progress_at = self.loop.time()
        self.reader.feed(data)
        while True:
            try:
                reply = self.reader.gets()
            except hiredis.ProtocolError as exc:
                self._fail(ConnectionError(f"Redis protocol error: {exc}"))
                if self.transport is not None:
                    self.transport.close()
                return
            if reply is _INCOMPLETE:
                return
            if not self.waiting:  # a reply nobody asked for: the stream can't be trusted
                self._fail(ConnectionError("unexpected reply from Redis"))
                if self.transport is not None:
                    self.transport.close()
                return
            future = self.waiting.popleft()[0]
            if not future.done():
                future.set_result(reply)

    def connection_lost(self, exc: Exception | None) -> None:
        self._fail(ConnectionError("connection to Redis lost"))

    def _fail(self, exc: Exception) -> None:
        self.closed = True
        if self._sweeper is not None:
            self._sweeper.cancel()
            self._sweeper = None
        while self.waiting:
            future = self.waiting.popleft()[0]
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
        timeout_s: the per-command reply timeout.
        connect_timeout_s: the timeout of opening a connection (TLS and AUTH included);
            `timeout_s` when not given.
        resolve: finds the address to connect to at each connect (a Sentinel's master);
            the URL's host otherwise.
        stall_s: a connection owing replies that answers nothing for this long is dropped.
    """

    def __init__(
        self,
        url: str,
        *,
        timeout_s: float,
        connect_timeout_s: float | None = None,
        resolve: Resolve | None = None,
        stall_s: float | None = None,
    ) -> None:
        self.url = url
        self.timeout_s = timeout_s
        self.connect_timeout_s = connect_timeout_s or timeout_s
        self.stall_s = stall_s if stall_s is not None else max(2.0, 20 * timeout_s)
        self._target = parse_redis_url(url)
        self._resolve = resolve
        self._links: dict[asyncio.AbstractEventLoop, _Link] = {}
        self._failed_connects = 0
        self._next_connect_at = 0.0
        self.on_connect_error: Callable[[BaseException], None] | None = None

    async def execute(self, *args: Arg, timeout_s: float | None = None) -> Any:
        """Send one command and return its reply (error replies are raised).

        A reply later than the timeout raises `TimeoutError` for this command only; its reply
        is dropped when it comes (the connection's timer, see `_Protocol`)."""
        return await self.execute_raw(encode_command(args), None, timeout_s)

    async def execute_raw(
        self, command: bytes, key: bytes | None = None, timeout_s: float | None = None
    ) -> Any:
        """`execute` for a command already encoded (`key` is for a cluster's routing)."""
        loop = asyncio.get_running_loop()
        link = self._links.get(loop)
        protocol = link.protocol if link is not None else None
        if protocol is None or protocol.closed:
            protocol = await self._connect(loop)
        future: asyncio.Future[Any] = loop.create_future()
        protocol.send(command, future, loop.time() + (timeout_s or self.timeout_s))
        reply = await future
        if isinstance(reply, RedisReplyError):
            raise reply
        return reply

    def _factory(self) -> _Protocol:
        return _Protocol(self.stall_s)

    def reset(self) -> None:
        """Drop the connections (a demoted master, a moved node): the next command of each
        loop reconnects. Another thread's loop drops its own, soon after."""
        current = _running_loop()
        for loop, link in list(self._links.items()):
            protocol = link.protocol
            if protocol is None or protocol.closed:
                continue
            if loop is current:
                _drop(protocol, ConnectionError("connection reset"))
            elif not loop.is_closed():
                with contextlib.suppress(RuntimeError):  # closed in between
                    loop.call_soon_threadsafe(_drop, protocol, ConnectionError("connection reset"))

    async def _connect(self, loop: asyncio.AbstractEventLoop) -> _Protocol:
        link = self._links.get(loop)
        if link is None:  # a new event loop (a thread's, a test's): forget closed ones
            for old in [known for known in list(self._links) if known.is_closed()]:
                self._links.pop(old, None)
            link = self._links[loop] = _Link()
        if link.connecting is None:
            if time.monotonic() < self._next_connect_at:  # backing off: no I/O, fail at once
                raise ConnectionError("Redis is unreachable (reconnecting after a delay)")
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
            # Bounded, jittered back-off: many workers do not reconnect in lockstep.
            self._failed_connects += 1
            ceiling = min(MAX_BACKOFF_S, MIN_BACKOFF_S * 2 ** min(self._failed_connects, 8))
            self._next_connect_at = time.monotonic() + random.uniform(ceiling / 2, ceiling)
            exc = task.exception()
            if isinstance(exc, TimeoutError):
                exc = TimeoutError("connecting to Redis timed out")
            elif not isinstance(exc, OSError | RedisReplyError):  # e.g. from a resolver
                exc = ConnectionError(f"connecting to Redis failed ({type(exc).__name__})")
            if self.on_connect_error is not None and exc is not None:
                self.on_connect_error(exc)
            connecting.set_exception(exc)
        else:
            self._failed_connects = 0
            link.protocol = task.result()
            connecting.set_result(link.protocol)

    async def _open(self) -> _Protocol:
        loop = asyncio.get_running_loop()
        target = self._target
        async with asyncio.timeout(self.connect_timeout_s):
            host, port = (
                await self._resolve() if self._resolve else (target["host"], target["port"])
            )
            if target["unix"]:
                _, protocol = await loop.create_unix_connection(self._factory, target["unix"])
            else:
                _, protocol = await loop.create_connection(
                    self._factory, host, port, ssl=target["ssl"]
                )
            for command in target["setup"]:
                future: asyncio.Future[Any] = loop.create_future()
                protocol.waiting.append((future, math.inf))  # bounded by the connect timeout
                protocol.transport.write(encode_command(command))  # type: ignore[union-attr]
                try:
                    reply = await future
                except BaseException:
                    protocol.transport.abort()  # type: ignore[union-attr]
                    raise
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


def _drop(protocol: _Protocol, exc: Exception) -> None:
    protocol._fail(exc)
    if protocol.transport is not None:
        protocol.transport.abort()


def _running_loop() -> asyncio.AbstractEventLoop | None:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None


def parse_redis_url(url: str) -> dict[str, Any]:
    """What a connection needs from a URL: host, port, unix path, TLS context, setup commands."""
    return parse_url(url).connection()
