"""Shared state: one Redis client per process behind a breaker, and bounded in-memory stores.

`RedisStore.execute(...)` is the one boundary where Redis errors are translated: a connection error,
a timeout, a `READONLY`/`LOADING`/auth error all become `StoreUnavailable`, and the breaker opens.
While it is open, `execute` fails at once without I/O, so no request waits on a dead Redis; after
`cooldown_s` one call is let through as a probe, and its success closes the breaker. An outage
logs one warning and its end one info line, never a line per request.

Each command is bounded by a short socket timeout (`redis_timeout_s`, 50 ms by default) and the
client never retries on its own: callers decide what a failure means (fail open, fail closed,
fall back to memory).
"""

from __future__ import annotations

import hashlib
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator
from typing import Any, Generic, TypeVar

from launchready_sdk.errors import StoreUnavailable
from launchready_sdk.logs import get_logger
from launchready_sdk.resp import Arg, RedisReplyError, RespClient

T = TypeVar("T")
K = TypeVar("K")
V = TypeVar("V")

_log = get_logger("launchready.stores")


class Breaker:
    """Closed → open on a failure → half-open after `cooldown_s` (one probe) → closed on success."""

    CLOSED, OPEN, HALF_OPEN = "closed", "open", "half_open"

    def __init__(
        self, name: str, cooldown_s: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.name = name
        self.cooldown_s = cooldown_s
        self.state = self.CLOSED
        self._clock = clock
        self._retry_at = 0.0
        self._outage_started = 0.0

    def allow(self) -> bool:
        """True when a call may go out now (closed, or the single half-open probe)."""
        if self.state == self.CLOSED:
            return True
        now = self._clock()
        if now >= self._retry_at:  # one probe per cool-down, even if an earlier probe never ended
            self.state = self.HALF_OPEN
            self._retry_at = now + self.cooldown_s
            return True
        return False

    def success(self) -> None:
        if self.state != self.CLOSED:
            self.state = self.CLOSED
            down_s = round(self._clock() - self._outage_started, 3)
            _log.info("store.recovered", store=self.name, down_s=down_s)

    def failure(self, exc: BaseException) -> None:
        now = self._clock()
        if self.state == self.CLOSED:
            self._outage_started = now
            _log.warning(
                "store.unavailable",
                store=self.name,
                error=type(exc).__name__,
                retry_in_s=self.cooldown_s,
            )
        self.state = self.OPEN
        self._retry_at = now + self.cooldown_s

    @property
    def is_open(self) -> bool:
        return self.state != self.CLOSED


class Script:
    """A Lua script run by its SHA1 (EVALSHA), loaded on demand after a restart or flush."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.sha = hashlib.sha1(source.encode(), usedforsecurity=False).hexdigest()


class RedisStore:
    """The process's Redis connection, its key prefix and its breaker.

    Args:
        url: a redis://, rediss:// or unix:// URL.
        timeout_s: connect and per-command timeout.
        cooldown_s: how long the breaker stays open before probing again.
        prefix: prepended to every key the SDK writes (`key()`).
    """

    def __init__(self, url: str, *, timeout_s: float, cooldown_s: float, prefix: str) -> None:
        self.url = url
        self.timeout_s = timeout_s
        self.prefix = prefix
        self.breaker = Breaker("redis", cooldown_s)
        self.client = RespClient(url, timeout_s=timeout_s)

    def key(self, *parts: str) -> str:
        """A namespaced key: `<prefix>:<part>:<part>...`."""
        return ":".join((self.prefix, *parts))

    @property
    def available(self) -> bool:
        """False while the breaker is open (callers can skip Redis without trying)."""
        return not self.breaker.is_open

    async def execute(self, *args: Arg) -> Any:
        """One command; `StoreUnavailable` on an outage, an error reply or an open breaker."""
        if not self.breaker.allow():
            raise StoreUnavailable("Redis is unavailable (breaker open)")
        try:
            reply = await self.client.execute(*args)
        except (RedisReplyError, OSError, TimeoutError) as exc:
            if isinstance(exc, RedisReplyError) and str(exc).startswith("NOSCRIPT"):
                self.breaker.success()
                raise
            self.breaker.failure(exc)
            raise StoreUnavailable(f"Redis is unavailable ({type(exc).__name__})") from exc
        self.breaker.success()
        return reply

    async def run_script(self, script: Script, keys: list[str], args: list[Arg]) -> Any:
        """EVALSHA, loading the script first if Redis lost it (restart, SCRIPT FLUSH)."""
        try:
            return await self.execute("EVALSHA", script.sha, len(keys), *keys, *args)
        except RedisReplyError:
            await self.execute("SCRIPT", "LOAD", script.source)
            return await self.execute("EVALSHA", script.sha, len(keys), *keys, *args)

    async def ping(self) -> None:
        """Readiness check: PING through the breaker."""
        await self.execute("PING")

    async def aclose(self) -> None:
        """Close the connection (at shutdown)."""
        await self.client.aclose()


class BoundedLRU(Generic[K, V]):
    """A dict capped at `max_items`, evicting the least recently used entry."""

    def __init__(self, max_items: int) -> None:
        if max_items < 1:
            raise ValueError("max_items must be at least 1")
        self.max_items = max_items
        self._data: OrderedDict[K, V] = OrderedDict()
        self.evictions = 0

    def get(self, key: K) -> V | None:
        value = self._data.get(key)
        if value is not None:
            self._data.move_to_end(key)
        return value

    def set(self, key: K, value: V) -> None:
        self._data[key] = value
        self._data.move_to_end(key)
        while len(self._data) > self.max_items:
            self._data.popitem(last=False)
            self.evictions += 1

    def pop(self, key: K) -> V | None:
        return self._data.pop(key, None)

    def __len__(self) -> int:
        return len(self._data)

    def __iter__(self) -> Iterator[K]:
        return iter(self._data)
