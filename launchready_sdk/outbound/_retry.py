"""The retry decision, shared by the async and sync transports and by `@resilient`: one
call's deadline, when to retry, and how long to back off."""

from __future__ import annotations

import math
import random
import time
from typing import Final

import httpx

from launchready_sdk.context import get_request_id
from launchready_sdk.logs import get_logger
from launchready_sdk.outbound._errors import (
    FATAL,
    MAYBE_SENT,
    NOT_SENT,
    DeadlineExceeded,
    ResponseTooLarge,
    RetryAfterTooLong,
)
from launchready_sdk.outbound._policy import KEYED_METHODS, OutboundPolicy, parse_retry_after
from launchready_sdk.outbound._recorder import HostState, OutboundRecorder
from launchready_sdk.outbound._urls import (
    host_name,
    min_timeout,
    origin,
    safe_url,
    strip_credentials,
)

_CALL_KEY: Final = "launchready.outbound_call"

_log = get_logger("launchready.outbound")
_sleep_scale = 1.0


class Call:
    """One logical call: its deadline, the request it began with and that request's origin."""

    __slots__ = ("deadline", "origin", "request")

    def __init__(self, request: httpx.Request, deadline_s: float | None) -> None:
        self.deadline = math.inf if deadline_s is None else time.monotonic() + deadline_s
        self.request = request
        self.origin = origin(request.url)

    def remaining(self) -> float:
        return self.deadline - time.monotonic()

    def attempt_budget(self, timeout_s: float, host: str | None) -> float:
        """Seconds this attempt may take, or `DeadlineExceeded` when none is left."""
        remaining = self.remaining()
        if remaining <= 0.001:
            raise DeadlineExceeded("outbound deadline exceeded", host=host)
        return min(timeout_s, remaining)


class Engine:
    """Everything about a call that does not depend on async or sync I/O."""

    def __init__(self, policy: OutboundPolicy, recorder: OutboundRecorder) -> None:
        self.policy = policy
        self.recorder = recorder

    def begin(self, request: httpx.Request) -> tuple[Call, HostState]:
        """The call this request belongs to (a redirect hop continues its call), and its host."""
        call = request.extensions.get(_CALL_KEY)
        if not isinstance(call, Call) or call.request is request:
            call = Call(request, self.policy.deadline_s)
            request.extensions[_CALL_KEY] = call
        elif origin(request.url) != call.origin:
            strip_credentials(request.headers)
        request_id = get_request_id()
        if request_id is not None and "x-request-id" not in request.headers:
            request.headers["X-Request-ID"] = request_id
        return call, self.recorder.host(host_name(request.url), self.policy)

    def set_timeouts(self, request: httpx.Request, budget: float) -> None:
        """httpx's per-operation timeouts, no longer than this attempt's budget."""
        given = request.extensions.get("timeout") or {}
        connect = min(self.policy.connect_timeout_s, budget)
        request.extensions["timeout"] = {
            "connect": min_timeout(given.get("connect"), connect),
            "read": min_timeout(given.get("read"), budget),
            "write": min_timeout(given.get("write"), budget),
            "pool": min_timeout(given.get("pool"), budget),
        }

    def error_delay(
        self, request: httpx.Request, call: Call, host: HostState, attempt: int, exc: Exception
    ) -> float:
        """The sleep before the next attempt after `exc`; re-raises when there is none."""
        if isinstance(exc, FATAL):
            raise exc
        if call.remaining() <= 0.001:
            raise DeadlineExceeded("outbound deadline exceeded", host=host.name) from exc
        sent = not isinstance(exc, NOT_SENT)
        if sent and not (isinstance(exc, MAYBE_SENT) and self._idempotent(request)):
            raise exc
        delay = self._next_delay(request, call, host, attempt, None)
        if delay is None:
            raise exc
        self._log_retry(request, host, attempt, type(exc).__name__, delay)
        return delay

    def response_delay(
        self, request: httpx.Request, call: Call, host: HostState, attempt: int, r: httpx.Response
    ) -> float | None:
        """The sleep before retrying this response, None to return it; may raise
        `RetryAfterTooLong`."""
        if r.status_code not in self.policy.retry_statuses or not self._idempotent(request):
            return None
        if r.headers.get("stripe-should-retry") == "false":
            return None
        retry_after = parse_retry_after(r.headers.get("retry-after"))
        delay = self._next_delay(request, call, host, attempt, retry_after)
        if delay is not None:
            self._log_retry(request, host, attempt, str(r.status_code), delay)
        return delay

    def _idempotent(self, request: httpx.Request) -> bool:
        method = request.method
        if method in self.policy.retry_methods:
            return True
        return method in KEYED_METHODS and "idempotency-key" in request.headers

    def _next_delay(
        self,
        request: httpx.Request,
        call: Call,
        host: HostState,
        attempt: int,
        retry_after: float | None,
    ) -> float | None:
        attempts = self.policy.attempts
        if attempts is not None and attempt >= attempts:
            return None
        if not isinstance(request.stream, httpx.ByteStream):
            return None
        delay = self._delay(call, host, attempt, retry_after)
        if delay is None:
            return None
        if not host.budget.withdraw():
            host.budget_exhausted += 1
            return None
        host.retries += 1
        return delay

    def _delay(
        self, call: Call, host: HostState, attempt: int, retry_after: float | None
    ) -> float | None:
        """Retry-After or full-jitter backoff; None when it would not fit in the deadline."""
        remaining = call.remaining()
        p = self.policy
        if retry_after is not None:
            if retry_after > min(remaining, p.retry_after_max_s):
                raise RetryAfterTooLong(retry_after, remaining, host=host.name)
            delay = retry_after
        else:
            delay = random.uniform(
                0.0, min(p.backoff_max_s, p.backoff_initial_s * 2 ** (attempt - 1))
            )
        delay *= _sleep_scale
        return delay if delay < remaining else None

    def _log_retry(
        self, request: httpx.Request, host: HostState, attempt: int, reason: str, delay: float
    ) -> None:
        _log.warning(
            "outbound.retry",
            host=host.name,
            method=request.method,
            url=safe_url(request.url),
            attempt=attempt,
            reason=reason,
            delay_s=round(delay, 3),
        )

    def check_size(self, response: httpx.Response, host: HostState) -> None:
        """`ResponseTooLarge` when the declared length already exceeds the cap."""
        limit = self.policy.max_response_bytes
        length = response.headers.get("content-length")
        if limit is not None and length is not None and length.isdigit() and int(length) > limit:
            raise ResponseTooLarge(limit, host=host.name)


def set_sleep_scale(scale: float) -> float:
    """Multiply every backoff and Retry-After sleep by `scale` (0 in tests); returns the old."""
    global _sleep_scale
    previous, _sleep_scale = _sleep_scale, scale
    return previous
