"""`@resilient`: the outbound deadline, retry budget and breaker for any async callable."""

from __future__ import annotations

import asyncio
import functools
import inspect
from collections.abc import Awaitable, Callable
from typing import ParamSpec, TypeVar

from launchready_sdk.outbound._errors import AttemptTimeout, DeadlineExceeded
from launchready_sdk.outbound._policy import (
    DEFAULT_ATTEMPTS,
    DEFAULT_DEADLINE_S,
    DEFAULT_TIMEOUT_S,
    OutboundPolicy,
)
from launchready_sdk.outbound._recorder import HostState
from launchready_sdk.outbound._retry import Attempt, Retrying

P = ParamSpec("P")
T = TypeVar("T")


def resilient(
    *,
    retry_on: tuple[type[BaseException], ...],
    timeout_s: float = DEFAULT_TIMEOUT_S,
    attempts: int | None = DEFAULT_ATTEMPTS,
    deadline_s: float | None = DEFAULT_DEADLINE_S,
    name: str | None = None,
    policy: OutboundPolicy | None = None,
) -> Callable[[Callable[P, Awaitable[T]]], Callable[P, Awaitable[T]]]:
    """Give an async callable a deadline, retries with a budget, and a breaker.

    Args:
        retry_on: exception types that mean "try again" and count against the breaker. Attempt
            timeouts are retried only if `TimeoutError` is listed: a timed-out payment call may
            have gone through.
        timeout_s / attempts / deadline_s: as in `OutboundPolicy`.
        name: the breaker's name in logs and `recorder` (default: the function's qualified name).
        policy: a full `OutboundPolicy` instead of the three numbers.
    """
    pol = policy or OutboundPolicy(timeout_s=timeout_s, attempts=attempts, deadline_s=deadline_s)
    if not isinstance(retry_on, tuple):
        raise TypeError("retry_on must be a tuple of exception types")

    def decorate(fn: Callable[P, Awaitable[T]]) -> Callable[P, Awaitable[T]]:
        if not inspect.iscoroutinefunction(fn):
            raise TypeError("@resilient wraps async functions only")
        host = HostState(name or fn.__qualname__, pol)

        def counts(exc: BaseException) -> bool | None:
            return True if isinstance(exc, retry_on) else None

        @functools.wraps(fn)
        async def wrapper(*args: P.args, **kwargs: P.kwargs) -> T:
            call = functools.partial(fn, *args, **kwargs)
            async for attempt in Retrying(pol, host, retry_on=retry_on, counts=counts):
                with attempt:
                    result = await _timed(call, attempt, host.name)
            return result

        wrapper.outbound_state = host  # type: ignore[attr-defined]
        return wrapper

    return decorate


async def _timed(call: Callable[[], Awaitable[T]], attempt: Attempt, name: str) -> T:
    """One attempt under its timer; a timer that fires counts against the breaker."""
    timer = asyncio.timeout(attempt.timeout_s)
    try:
        async with timer:
            return await call()
    except TimeoutError as exc:
        if not timer.expired():
            raise
        attempt.count(True)
        if attempt.remaining_s() <= 0.001:
            raise DeadlineExceeded("deadline exceeded", host=name) from exc
        raise AttemptTimeout(f"attempt exceeded {attempt.timeout_s:.3f} s", host=name) from exc
