"""`@resilient`: the outbound deadline, retry budget and breaker for any async callable."""

from __future__ import annotations

import asyncio
import functools
import inspect
import time
from collections.abc import Awaitable, Callable
from typing import ParamSpec, TypeVar

import httpx

from launchready_sdk.logs import get_logger
from launchready_sdk.outbound._errors import FATAL, AttemptTimeout, DeadlineExceeded
from launchready_sdk.outbound._policy import (
    DEFAULT_ATTEMPTS,
    DEFAULT_DEADLINE_S,
    DEFAULT_TIMEOUT_S,
    OutboundPolicy,
)
from launchready_sdk.outbound._recorder import HostState, OutboundRecorder
from launchready_sdk.outbound._retry import Call, Engine

P = ParamSpec("P")
T = TypeVar("T")

_log = get_logger("launchready.outbound")


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

        @functools.wraps(fn)
        async def wrapper(*args: P.args, **kwargs: P.kwargs) -> T:
            return await _run_resilient(lambda: fn(*args, **kwargs), pol, host, retry_on)

        wrapper.outbound_state = host  # type: ignore[attr-defined]
        return wrapper

    return decorate


async def _run_resilient(
    call_fn: Callable[[], Awaitable[T]],
    policy: OutboundPolicy,
    host: HostState,
    retry_on: tuple[type[BaseException], ...],
) -> T:
    engine = Engine(policy, OutboundRecorder())
    call = Call(httpx.Request("POST", "http://resilient.invalid/"), policy.deadline_s)
    started = time.monotonic()
    attempt = 0
    while True:
        attempt += 1
        try:
            result = await _resilient_attempt(call_fn, call, host, retry_on)
        except Exception as exc:
            delay = _resilient_delay(engine, call, host, attempt, exc, retry_on)
            if delay is None:
                host.finished(started, error=True)
                raise
            await asyncio.sleep(delay)
            continue
        host.finished(started, error=False)
        return result


async def _resilient_attempt(
    call_fn: Callable[[], Awaitable[T]],
    call: Call,
    host: HostState,
    retry_on: tuple[type[BaseException], ...],
) -> T:
    budget = call.attempt_budget(host.policy.timeout_s, host.name)
    probe = host.breaker.before()
    host.attempts += 1
    timer = asyncio.timeout(budget)
    try:
        async with timer:
            result = await call_fn()
    except TimeoutError as exc:
        if not timer.expired():
            host.breaker.record(probe, True if isinstance(exc, retry_on) else None)
            raise
        host.breaker.record(probe, True)
        if call.remaining() <= 0.001:
            raise DeadlineExceeded("deadline exceeded", host=host.name) from exc
        raise AttemptTimeout(f"attempt exceeded {budget:.3f} s", host=host.name) from exc
    except BaseException as exc:
        host.breaker.record(probe, True if isinstance(exc, retry_on) else None)
        raise
    host.breaker.record(probe, False)
    return result


def _resilient_delay(
    engine: Engine,
    call: Call,
    host: HostState,
    attempt: int,
    exc: Exception,
    retry_on: tuple[type[BaseException], ...],
) -> float | None:
    if isinstance(exc, FATAL) or not isinstance(exc, retry_on):
        return None
    if call.remaining() <= 0.001:
        return None
    delay = engine._next_delay(call.request, call, host, attempt, None)
    if delay is not None:
        _log.warning(
            "outbound.retry",
            host=host.name,
            attempt=attempt,
            reason=type(exc).__name__,
            delay_s=round(delay, 3),
        )
    return delay
