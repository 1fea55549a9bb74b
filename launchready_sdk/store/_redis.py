"""The Redis store: the process's connection behind a breaker, and Lua scripts."""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from typing import Any

from launchready_sdk.errors import StoreUnavailable
from launchready_sdk.logs import get_logger
from launchready_sdk.store._resp import Arg, RedisReplyError, RespClient

_log = get_logger("launchready.stores")

DEFAULT_TIMEOUT_S = 0.05  # connect and per-command
DEFAULT_COOLDOWN_S = 2.0  # how long the breaker stays open before a probe
DEFAULT_PREFIX = "launchready"


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

    def __init__(
        self,
        url: str,
        *,
        timeout_s: float = DEFAULT_TIMEOUT_S,
        cooldown_s: float = DEFAULT_COOLDOWN_S,
        prefix: str = DEFAULT_PREFIX,
    ) -> None:
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
