"""Sentinel: which server is the master of a service, asked again at every (re)connect.

Discovery uses redis-py's `Sentinel.discover_master`, because that is where Sentinel's
subtleties live and redis-py has handled them for years: it asks each sentinel in turn, skips
a sentinel that is down or slow, believes only a master that is flagged neither
subjectively nor objectively down, and moves the sentinel that answered to the front. It runs
only when a connection is opened (start-up, after a loss), so its cost is off the hot path:
commands still go through the SDK's pipelining `RespClient` to the master found.

Following a failover: while connected, a background task asks the sentinels again every
`WATCH_INTERVAL_S` (one second), and when they name another master the connection is dropped,
so the next command connects to the new one. (A demoted master keeps accepting writes until
Sentinel reconfigures it, which can take seconds; without the watch, those writes would be
lost with the old master's data.) A command that reaches a replica gets `READONLY`, and a
master Sentinel disconnects closes the connection: both also lead to a new discovery.

A sentinel that names no master for the service (a typo in the service name, a master down
with no replica promoted yet) is a `ConnectionError` like an unreachable server: logged by
the store, never a hang, since the whole connect, discovery included, runs under the connect
timeout.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from typing import Any

from launchready_sdk.logs import get_logger
from launchready_sdk.store._url import RedisURL

_log = get_logger("launchready.stores")
WATCH_INTERVAL_S = 1.0


class SentinelResolver:
    """`await master()` -> (host, port) of the service's master, as the sentinels say now.

    Args:
        target: a parsed `redis+sentinel://` URL (its hosts are the sentinels).
        timeout_s: each sentinel's connect and reply timeout.
    """

    def __init__(self, target: RedisURL, *, timeout_s: float) -> None:
        if target.service is None:
            raise ValueError("a Sentinel URL names its service")
        self.target = target
        self.service = target.service
        self.timeout_s = timeout_s
        self.current: tuple[str, int] | None = None
        self.on_change: Callable[[], None] | None = None
        self._watches: dict[asyncio.AbstractEventLoop, asyncio.Task[None]] = {}

    def _sentinel_kwargs(self) -> dict[str, Any]:
        t = self.target
        kwargs: dict[str, Any] = {
            "socket_timeout": self.timeout_s,
            "socket_connect_timeout": self.timeout_s,
        }
        if t.sentinel_password is not None:
            kwargs["password"] = t.sentinel_password
            if t.sentinel_username:
                kwargs["username"] = t.sentinel_username
        if t.tls:
            kwargs.update(
                ssl=True,
                ssl_cert_reqs=t.cert_reqs,
                ssl_ca_certs=t.ca_certs,
                ssl_certfile=t.certfile,
                ssl_keyfile=t.keyfile,
                ssl_check_hostname=t.check_hostname and t.cert_reqs != "none",
            )
        return kwargs

    async def master(self) -> tuple[str, int]:
        """Ask the sentinels; `ConnectionError` when none names a usable master."""
        found = await self._discover()
        self._changed(found)
        loop = asyncio.get_running_loop()
        watch = self._watches.get(loop)
        if watch is None or watch.done():  # one watch per event loop that connects
            for old in [known for known in list(self._watches) if known.is_closed()]:
                self._watches.pop(old, None)
            self._watches[loop] = loop.create_task(self._watching())
        return found

    async def _discover(self) -> tuple[str, int]:
        from redis.asyncio.sentinel import MasterNotFoundError, Sentinel
        from redis.exceptions import RedisError

        sentinel = Sentinel(list(self.target.hosts), sentinel_kwargs=self._sentinel_kwargs())
        try:
            address = await sentinel.discover_master(self.service)
        except MasterNotFoundError:
            raise ConnectionError(
                f"no sentinel names a master for service {self.service!r}"
            ) from None
        except (RedisError, OSError) as exc:
            raise ConnectionError(f"the sentinels cannot be asked ({type(exc).__name__})") from None
        finally:
            for client in sentinel.sentinels:
                with contextlib.suppress(Exception):
                    await client.aclose()
        return (str(address[0]), int(address[1]))

    def _changed(self, found: tuple[str, int]) -> bool:
        if found == self.current:
            return False
        if self.current is not None:
            _log.info("store.master_changed", service=self.service, master=_show(found))
        self.current = found
        return True

    async def _watching(self) -> None:
        """Ask again every WATCH_INTERVAL_S; a new master drops the connection to the old."""
        while True:
            await asyncio.sleep(WATCH_INTERVAL_S)
            try:
                found = await self._discover()
            except ConnectionError:
                continue  # the connection's own failures will tell
            if self._changed(found) and self.on_change is not None:
                self.on_change()

    async def aclose(self) -> None:
        """Stop the watch of this event loop (another loop's ends with its loop)."""
        task = self._watches.pop(asyncio.get_running_loop(), None)
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


def _show(address: tuple[str, int]) -> str:
    return f"{address[0]}:{address[1]}"
