"""The retry loop, written once for `for` and `async for`.

`Retrying` holds the attempts of one call. The sync transport iterates it with `for`, the async
transport and `@resilient` with `async for`, the way stamina's retry context works:

    async for attempt in Retrying(policy, host, retry_on=(ConnectionError,), counts=...):
        with attempt:
            result = await send(timeout=attempt.timeout_s)

Each attempt is admitted by the host's breaker (or the call ends with `CircuitOpen`) and has
`timeout_s`, what is left of the deadline capped by the policy's timeout. When the block exits,
the outcome is recorded on the breaker and the loop decides from plain facts whether another
attempt follows: whether the outcome is retryable, whether the request can be sent again, the
Retry-After value, the attempt number, the call's deadline and the host's retry budget. The
iteration then sleeps (with `asyncio.sleep` or `time.sleep`) and yields the next attempt; one
`outbound.retry` warning is logged per retry. A result that asks for a retry without raising (a
503) is reported with `attempt.retry(...)`.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Awaitable, Callable
from types import TracebackType
from typing import Protocol

import httpx

from launchready_sdk.logs import get_logger
from launchready_sdk.outbound._errors import (
    FATAL,
    CircuitOpen,
    DeadlineExceeded,
    RetryAfterTooLong,
)
from launchready_sdk.outbound._policy import OutboundPolicy
from launchready_sdk.outbound._recorder import HostState
from launchready_sdk.outbound._urls import safe_url

_log = get_logger("launchready.outbound")
_sleep_scale = 1.0


def set_sleep_scale(scale: float) -> float:
    """Multiply every backoff and Retry-After sleep of the process by `scale`; returns the previous
    scale. `launchready_sdk.testing.no_retry_sleeps()` sets 0 for a block."""
    global _sleep_scale
    previous, _sleep_scale = _sleep_scale, scale
    return previous


class Discardable(Protocol):
    """A result dropped for the next attempt (an httpx response): closed before the sleep."""

    def close(self) -> None: ...

    def aclose(self) -> Awaitable[None]: ...


class Retrying:
    """The attempts of one call: iterate it with `for` or `async for`.

    Args:
        policy: attempts, backoff, the Retry-After ceiling, the attempt timeout and the deadline.
        host: the breaker, retry budget and counters the attempts go through.
        retry_on: exceptions worth another attempt (the SDK's own policy errors never are).
        counts: whether an attempt's exception counts against the breaker (True), for it
            (False) or not at all (None).
        deadline: the `time.monotonic()` the call ends by (default: `policy.deadline_s` from now).
        replayable: whether the request can be sent again (a streamed upload cannot).
        expire: exceptions that become `DeadlineExceeded` when they end an attempt after the
            deadline has passed.
        method / url: for the retry log line (the URL is redacted there).
    """

    __slots__ = (
        "_counts",
        "_discard",
        "_error",
        "_expire",
        "_method",
        "_next_delay",
        "_result_error",
        "_started",
        "_url",
        "deadline",
        "host",
        "number",
        "policy",
        "replayable",
        "retry_on",
    )

    def __init__(
        self,
        policy: OutboundPolicy,
        host: HostState,
        *,
        retry_on: tuple[type[BaseException], ...],
        counts: Callable[[BaseException], bool | None],
        deadline: float | None = None,
        replayable: bool = True,
        expire: tuple[type[Exception], ...] = (),
        method: str | None = None,
        url: httpx.URL | None = None,
    ) -> None:
        self._started = time.monotonic()
        if deadline is None:
            deadline = math.inf if policy.deadline_s is None else self._started + policy.deadline_s
        self.policy = policy
        self.host = host
        self.retry_on = retry_on
        self.deadline = deadline
        self.replayable = replayable
        self.number = 0
        self._counts = counts
        self._expire = expire
        self._method = method
        self._url = url
        self._next_delay: float | None = None
        self._error: Exception | None = None
        self._result_error = False
        self._discard: Discardable | None = None

    def __iter__(self) -> Retrying:
        return self

    def __aiter__(self) -> Retrying:
        return self

    def __next__(self) -> Attempt:
        if self.number:
            if self._discard is not None:
                self._discard.close()
            time.sleep(self._pause(StopIteration))
        return self._start()

    async def __anext__(self) -> Attempt:
        if self.number:
            if self._discard is not None:
                await self._discard.aclose()
            await asyncio.sleep(self._pause(StopAsyncIteration))
        return self._start()

    def _pause(self, stop: type[Exception]) -> float:
        """The sleep before the next attempt; raises the call's error, or `stop` when done."""
        self._discard = None
        if self._error is not None:
            self._finish()
            raise self._error
        delay, self._next_delay = self._next_delay, None
        if delay is None:
            raise stop
        return delay

    def _start(self) -> Attempt:
        host = self.host
        remaining = self.deadline - time.monotonic()
        if remaining <= 0.001:
            self._finish(error=True)
            raise DeadlineExceeded("outbound deadline exceeded", host=host.name)
        try:
            probe = host.breaker.before()
        except CircuitOpen:
            host.rejected += 1
            self._finish(error=True)
            raise
        host.attempts += 1
        self.number += 1
        return Attempt(self, min(self.policy.timeout_s, remaining), probe)

    def _finish(self, error: bool | None = None) -> None:
        self.host.finished(self._started, error=self._result_error if error is None else error)

    def _ended(self, attempt: Attempt, exc: BaseException | None) -> bool:
        """Record how an attempt ended; True when its exception is swallowed for a retry."""
        if not attempt.counted:
            self.host.breaker.record(attempt.probe, False if exc is None else self._counts(exc))
        if exc is None:
            if self._next_delay is None and self._error is None:
                self._finish()
            return False
        if not isinstance(exc, Exception):
            return False
        if self._retry_error(exc):
            return True
        self._finish(error=True)
        return False

    def _retry_error(self, exc: Exception) -> bool:
        if isinstance(exc, FATAL):
            return False
        if self.deadline - time.monotonic() <= 0.001:
            if isinstance(exc, self._expire):
                self._finish(error=True)
                raise DeadlineExceeded("outbound deadline exceeded", host=self.host.name) from exc
            return False
        if not isinstance(exc, self.retry_on):
            return False
        self._next_delay = self._delay(type(exc).__name__, None)
        return self._next_delay is not None

    def _retry_result(self, reason: str, retry_after: float | None, discard: Discardable) -> bool:
        try:
            self._next_delay = self._delay(reason, retry_after)
        except RetryAfterTooLong as exc:
            self._result_error = True
            self._error = exc
        if self._next_delay is None and self._error is None:
            return False
        self._discard = discard
        return True

    def _delay(self, reason: str, retry_after: float | None) -> float | None:
        """The sleep before the next attempt, or None when there is none to be had."""
        policy, host = self.policy, self.host
        if policy.attempts is not None and self.number >= policy.attempts:
            return None
        if not self.replayable:
            return None
        remaining = self.deadline - time.monotonic()
        if retry_after is not None:
            if retry_after > min(remaining, policy.retry_after_max_s):
                raise RetryAfterTooLong(retry_after, remaining, host=host.name)
            delay = retry_after
        else:
            delay = policy.backoff_s(self.number)
        delay *= _sleep_scale
        if delay >= remaining:
            return None
        if not host.budget.withdraw():
            host.budget_exhausted += 1
            return None
        host.retries += 1
        self._log_retry(reason, delay)
        return delay

    def _log_retry(self, reason: str, delay: float) -> None:
        where: dict[str, object] = {"host": self.host.name}
        if self._url is not None:
            where["method"] = self._method
            where["url"] = safe_url(self._url)
        _log.warning(
            "outbound.retry", **where, attempt=self.number, reason=reason, delay_s=round(delay, 3)
        )


class Attempt:
    """One attempt of a `Retrying` loop: use it as `with attempt:` around the attempt's work."""

    __slots__ = ("counted", "number", "probe", "retrying", "timeout_s")

    def __init__(self, retrying: Retrying, timeout_s: float, probe: bool) -> None:
        self.retrying = retrying
        self.number = retrying.number
        self.timeout_s = timeout_s
        self.probe = probe
        self.counted = False

    def __enter__(self) -> Attempt:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> bool:
        return self.retrying._ended(self, exc)

    def remaining_s(self) -> float:
        """Seconds left before the call's deadline."""
        return self.retrying.deadline - time.monotonic()

    def count(self, failed: bool | None, *, error: bool = False) -> None:
        """Record this attempt on the breaker now (`failed`: True against it, False for it, None
        not at all) instead of when the block exits; `error` is how the call counts in the
        recorder if it ends with this attempt's result."""
        self.counted = True
        self.retrying.host.breaker.record(self.probe, failed)
        self.retrying._result_error = error

    def retry(self, reason: str, retry_after: float | None, *, discard: Discardable) -> bool:
        """A result that asks for another attempt (a 429, a 503), with its Retry-After seconds.

        True when `discard` is dropped: another attempt follows, or the call ends with
        `RetryAfterTooLong`, which the loop raises once `discard` is closed. False when the
        result stands (no attempts, deadline or budget left, or the request cannot be resent).
        """
        return self.retrying._retry_result(reason, retry_after, discard)

    def fail(self, error: Exception, *, discard: Discardable) -> None:
        """End the call with `error`, which the loop raises once `discard` is closed."""
        self.retrying._error = error
        self.retrying._discard = discard
