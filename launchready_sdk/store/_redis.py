"""The Redis store: the process's connection behind a breaker, and Lua scripts."""

from __future__ import annotations

import collections
import hashlib
import time
from collections.abc import Callable
from typing import Any, NamedTuple, Protocol

from launchready_sdk.errors import StoreUnavailable
from launchready_sdk.logs import get_logger
from launchready_sdk.store._cluster import ClusterClient
from launchready_sdk.store._resp import Arg, RedisReplyError, RespClient, encode_command
from launchready_sdk.store._sentinel import SentinelResolver
from launchready_sdk.store._url import parse_url

_log = get_logger("launchready.stores")

DEFAULT_TIMEOUT_S = 0.05  # per command
DEFAULT_CONNECT_TIMEOUT_S = 1.0  # opening a connection: TCP, TLS, AUTH (a Sentinel query too)
DEFAULT_COOLDOWN_S = 2.0  # how long the breaker stays open before a probe
CONNECT_LOG_INTERVAL_S = 60.0
DEFAULT_OUTAGE_S = 0.5  # failures with no success in between for this long open the breaker
# Error replies that mean "this server cannot serve you now": the connection is dropped, so
# the next command reconnects (and, through Sentinel, finds the new master).
_RECONNECT_ON = ("READONLY", "LOADING", "MASTERDOWN", "NOAUTH", "CLUSTERDOWN")
DEFAULT_PREFIX = "launchready"


class Breaker:
    """Closed → open on an outage → half-open after `cooldown_s` (one probe) → closed on success.

    An outage is not one failure: a slow reply on a busy host, or a Redis paused for a few
    hundred milliseconds, fails a few commands and the breaker stays closed. It opens when
    failures have gone on with no success in between for `outage_s` (at least
    `min_failures` of them), or when, in `bad_seconds` of the last `window_s` seconds, at
    least `failure_ratio` of the calls failed (a flapping Redis; a burst of timeouts within
    one second is a blip). A failed probe reopens it.
    """

    CLOSED, OPEN, HALF_OPEN = "closed", "open", "half_open"

    def __init__(
        self,
        name: str,
        cooldown_s: float,
        clock: Callable[[], float] = time.monotonic,
        *,
        outage_s: float = DEFAULT_OUTAGE_S,
        min_failures: int = 3,
        failure_ratio: float = 0.5,
        window_s: int = 5,
        bad_seconds: int = 3,
    ) -> None:
        self.name = name
        self.cooldown_s = cooldown_s
        self.state = self.CLOSED
        self.outage_s = outage_s
        self.min_failures = min_failures
        self.failure_ratio = failure_ratio
        self.bad_seconds = bad_seconds
        self.opened = 0  # how many times it opened (for tests and figures)
        self._clock = clock
        self._retry_at = 0.0
        self._outage_started = 0.0
        self._failing_since: float | None = None
        self._failures_in_row = 0
        # Per-second [calls, failures] over the last `window_s` seconds, oldest first.
        self._seconds: collections.deque[list[int]] = collections.deque(maxlen=window_s)
        self._second = -1
        self._quiet = True  # closed, and no failure in the window: success() has nothing to do

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
        if self._quiet:  # the common case, on every command: nothing to count
            return
        self._failures_in_row = 0
        self._failing_since = None
        if self.state != self.CLOSED:
            self.state = self.CLOSED
            self._seconds.clear()
            self._second = -1
            self._quiet = True
            down_s = round(self._clock() - self._outage_started, 3)
            _log.info("store.recovered", store=self.name, down_s=down_s)
            return
        self._count(self._clock(), 0)
        if not any(bucket[1] for bucket in self._seconds):
            self._quiet = True  # the window forgot its last failure

    def failure(self, exc: BaseException) -> None:
        self._quiet = False
        now = self._clock()
        if self.state != self.CLOSED:  # the probe failed, or a call that left before it opened
            self.state = self.OPEN
            self._retry_at = now + self.cooldown_s
            return
        bad = self._count(now, 1)
        self._failures_in_row += 1
        if self._failing_since is None or now - self._failing_since > 10 * self.outage_s:
            self._failing_since = now
        in_row = (
            self._failures_in_row >= self.min_failures
            and now - self._failing_since >= self.outage_s
        )
        ratio = bad >= self.bad_seconds
        if in_row or ratio:
            self._open(now, exc, "failures in a row" if in_row else "failure ratio")

    def _open(self, now: float, exc: BaseException, why: str) -> None:
        self.state = self.OPEN
        self.opened += 1
        self._outage_started = now
        self._retry_at = now + self.cooldown_s
        _log.warning(
            "store.unavailable",
            store=self.name,
            error=type(exc).__name__,
            detail=str(exc)[:200],
            why=why,
            retry_in_s=self.cooldown_s,
        )

    def _count(self, now: float, failed: int) -> int:
        """Count one call in the current second; after a failure, how many seconds of the
        window had at least `failure_ratio` of their calls fail."""
        second = int(now)
        if second != self._second:
            for _ in range(min(second - self._second, self._seconds.maxlen or 1)):
                self._seconds.append([0, 0])
            self._second = second
        bucket = self._seconds[-1]
        bucket[0] += 1
        bucket[1] += failed
        if not failed:
            return 0
        return sum(1 for calls, bad in self._seconds if calls and bad >= self.failure_ratio * calls)

    @property
    def is_open(self) -> bool:
        return self.state != self.CLOSED


class Script:
    """A Lua script run by its SHA1 (EVALSHA), loaded on demand after a restart or flush."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.sha = hashlib.sha1(source.encode(), usedforsecurity=False).hexdigest()

    def prepare(self, keys: list[str], args: list[Arg]) -> Prepared:
        """The EVALSHA of these keys and arguments, encoded once (for a caller that sends the
        same call again and again, such as a rate-limit check of one client)."""
        command = encode_command(("EVALSHA", self.sha, len(keys), *keys, *args))
        return Prepared(self, command, keys[0].encode() if keys else None, keys, args)


class Prepared(NamedTuple):
    """An encoded script call, the key it is routed by, and its parts (for a reload)."""

    script: Script
    command: bytes
    key: bytes | None
    keys: list[str]
    args: list[Arg]


class RedisStore:
    """The process's Redis connection, its key prefix and its breaker.

    Args:
        url: any form `store._url` takes: redis://, rediss://, unix://, redis+sentinel://,
            redis+cluster://.
        timeout_s: per-command timeout.
        cooldown_s: how long the breaker stays open before probing again.
        prefix: prepended to every key the SDK writes (`key()`).
        connect_timeout_s: the timeout of opening a connection.
    """

    def __init__(
        self,
        url: str,
        *,
        timeout_s: float = DEFAULT_TIMEOUT_S,
        cooldown_s: float = DEFAULT_COOLDOWN_S,
        prefix: str = DEFAULT_PREFIX,
        connect_timeout_s: float = DEFAULT_CONNECT_TIMEOUT_S,
    ) -> None:
        self.url = url
        self.timeout_s = timeout_s
        self.prefix = prefix
        self.breaker = Breaker("redis", cooldown_s)
        self.target = parse_url(url)
        self.kind = self.target.kind
        self.client: Client
        if self.kind == "cluster":
            self.client = ClusterClient(
                self.target, timeout_s=timeout_s, connect_timeout_s=connect_timeout_s
            )
        elif self.kind == "sentinel":
            self.sentinel = SentinelResolver(self.target, timeout_s=connect_timeout_s)
            self.client = RespClient(
                url,
                timeout_s=timeout_s,
                connect_timeout_s=connect_timeout_s,
                resolve=self.sentinel.master,
            )
            self.sentinel.on_change = self.client.reset
        else:
            self.client = RespClient(url, timeout_s=timeout_s, connect_timeout_s=connect_timeout_s)
        self._connect_logged_at = -1e9
        self.client.on_connect_error = self._connect_failed

    def _connect_failed(self, exc: BaseException) -> None:
        """One line per minute at most saying why connecting fails (a wrong CA, a wrong
        password, no master): the breaker's warning comes only once it opens."""
        now = time.monotonic()
        if now - self._connect_logged_at >= CONNECT_LOG_INTERVAL_S:
            self._connect_logged_at = now
            _log.warning(
                "store.connect_failed",
                store="redis",
                kind=self.kind,
                error=type(exc).__name__,
                detail=str(exc)[:200],
            )

    def key(self, *parts: str) -> str:
        """A namespaced key: `<prefix>:<part>:<part>...`."""
        return ":".join((self.prefix, *parts))

    @property
    def available(self) -> bool:
        """False while the breaker is open (callers can skip Redis without trying)."""
        return not self.breaker.is_open

    async def execute(self, *args: Arg, timeout_s: float | None = None) -> Any:
        """One command; `StoreUnavailable` on an outage, an error reply or an open breaker.

        `timeout_s` overrides the store's command timeout for this command (a caller for
        whom waiting out a blip is better than failing, such as an idempotency claim).
        """
        if not self.breaker.allow():
            raise StoreUnavailable("Redis is unavailable (breaker open)")
        try:
            reply = await self.client.execute(*args, timeout_s=timeout_s)
        except (RedisReplyError, OSError, TimeoutError) as exc:
            if isinstance(exc, RedisReplyError):
                text = str(exc)
                if text.startswith("NOSCRIPT"):
                    self.breaker.success()
                    raise
                if text.startswith(_RECONNECT_ON):
                    self.client.reset()
            self.breaker.failure(exc)
            raise StoreUnavailable(f"Redis is unavailable ({type(exc).__name__})") from exc
        self.breaker.success()
        return reply

    async def run_script(
        self, script: Script, keys: list[str], args: list[Arg], timeout_s: float | None = None
    ) -> Any:
        """EVALSHA, loading the script first if Redis lost it (restart, SCRIPT FLUSH, a
        promoted replica). Only `StoreUnavailable` leaves: a script lost again right after
        loading it (the connection moved to another server in between) is an outage too."""
        try:
            return await self.execute(
                "EVALSHA", script.sha, len(keys), *keys, *args, timeout_s=timeout_s
            )
        except RedisReplyError:  # NOSCRIPT (every other error reply is StoreUnavailable)
            pass
        await self.execute("SCRIPT", "LOAD", script.source)
        try:
            return await self.execute(
                "EVALSHA", script.sha, len(keys), *keys, *args, timeout_s=timeout_s
            )
        except RedisReplyError as exc:
            self.breaker.failure(exc)
            raise StoreUnavailable("Redis lost the script again (a failover?)") from exc

    async def run_prepared(self, call: Prepared, timeout_s: float | None = None) -> Any:
        """`run_script` for a call encoded once (`Script.prepare`): the breaker, the failure
        boundary and the NOSCRIPT reload, without encoding the command again."""
        if not self.breaker.allow():
            raise StoreUnavailable("Redis is unavailable (breaker open)")
        try:
            reply = await self.client.execute_raw(call.command, call.key, timeout_s)
        except RedisReplyError as exc:
            if str(exc).startswith("NOSCRIPT"):
                self.breaker.success()
                return await self.run_script(call.script, call.keys, call.args, timeout_s)
            if str(exc).startswith(_RECONNECT_ON):
                self.client.reset()
            self.breaker.failure(exc)
            raise StoreUnavailable(f"Redis is unavailable ({type(exc).__name__})") from exc
        except (OSError, TimeoutError) as exc:
            self.breaker.failure(exc)
            raise StoreUnavailable(f"Redis is unavailable ({type(exc).__name__})") from exc
        self.breaker.success()
        return reply

    async def ping(self) -> None:
        """Readiness check: PING through the breaker (every node of a cluster)."""
        if isinstance(self.client, ClusterClient):
            if not self.breaker.allow():
                raise StoreUnavailable("Redis is unavailable (breaker open)")
            try:
                await self.client.ping_all()
            except (RedisReplyError, OSError, TimeoutError) as exc:
                self.breaker.failure(exc)
                raise StoreUnavailable(f"Redis is unavailable ({type(exc).__name__})") from exc
            self.breaker.success()
            return
        await self.execute("PING")

    async def aclose(self) -> None:
        """Close the connection (at shutdown)."""
        if self.kind == "sentinel":
            await self.sentinel.aclose()
        await self.client.aclose()


class Client(Protocol):
    """What `RedisStore` needs of a client: `RespClient` and `ClusterClient` both are one."""

    async def execute(self, *args: Arg, timeout_s: float | None = None) -> Any: ...

    async def execute_raw(
        self, command: bytes, key: bytes | None = None, timeout_s: float | None = None
    ) -> Any: ...

    on_connect_error: Callable[[BaseException], None] | None

    @property
    def connections(self) -> int: ...

    def reset(self) -> None: ...

    async def aclose(self) -> None: ...
