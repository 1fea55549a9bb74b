"""Outbound calls to payment, email and webhook providers that cannot hang a request.

`http_client(policy)` returns an `httpx.AsyncClient` (and `http_client_sync(policy)` an
`httpx.Client`) whose transport applies one `OutboundPolicy`, outermost first:

    total deadline → retry (with a budget) → per-host breaker → per-host concurrency limit
    → per-attempt timeout → httpx's own transport

- **Deadline.** One logical call (every attempt, every backoff, every redirect hop and the reading
  of the body) ends by `deadline_s`. A provider that accepts and never answers, or drips a byte a
  second, is cut there. In the async client a body of declared length up to 256 KiB is read
  inside the attempt (so a reset mid-body is retried like any other for idempotent requests);
  other bodies are streamed under the same deadline. A `Retry-After` longer
  than what is left (or than `retry_after_max_s`) fails at once with `RetryAfterTooLong`.
- **Retries.** `attempts` counts every try. GET, HEAD, PUT, DELETE and OPTIONS are retried on
  connect errors, timeouts, resets, 429, 502, 503 and 504; POST and PATCH only when they carry an
  `Idempotency-Key` header (`idempotency_key()` makes one per logical call; retries reuse the same
  request, hence the same key). Without one, a POST is retried only when the connection was
  never made (nothing was sent). Other 4xx are never retried, nor bodies that cannot be replayed
  (streamed uploads). Backoff is exponential with full jitter; `Retry-After` (seconds or
  HTTP-date) replaces it, and garbage values are ignored. A per-host retry budget (tokens earned
  by a share of successful calls, plus a slow floor) stops a dead provider from receiving a
  multiple of its normal traffic. Discarded responses are closed before the next attempt.
- **Breaker.** One per host (a failing email provider never opens the payment provider's): it
  opens when the failure ratio over a sliding window reaches the threshold with at least
  `breaker_min_calls` calls, fails fast with `CircuitOpen` and no I/O while open, then lets at most
  `breaker_probes` calls through; a failed probe reopens it for twice as long (capped). Its lock is
  held only for bookkeeping, never across I/O, so calls through a closed breaker run concurrently.
  5xx responses, timeouts and connection failures count; 4xx, 429, pool waits, the concurrency
  limit and cancellations do not.
- **Propagation and telemetry.** Each request carries the current `X-Request-ID`, and
  `traceparent` when OpenTelemetry is imported and a span is recording (each attempt then gets a
  client span with `http.request.resend_count`). One warning line per retry and per breaker
  transition, with the URL redacted and no argument reprs. `OutboundRecorder.snapshot()` gives
  per-host counts, latency quantiles and breaker state for `/metrics`.
- **Cancellation.** Cancelling the caller's task cancels the attempt in flight; no further retry
  runs, and cancellation never counts as a failure.

`@resilient(retry_on=(...), timeout_s=..., attempts=..., deadline_s=...)` gives an async callable
(an SMTP send, a payment SDK call) the same deadline, retry budget and breaker.

Errors (network errors httpx raises pass through unchanged; the SDK's own are also
`httpx.TransportError`, so `except httpx.HTTPError` keeps catching everything):

    LaunchReadyError
    └── OutboundError                (also httpx.TransportError)
        ├── DeadlineExceeded         (also TimeoutError) the call's total deadline passed
        ├── AttemptTimeout           (also TimeoutError) one attempt outlasted `timeout_s`
        ├── CircuitOpen              the host's breaker is open; `.retry_in_s`
        ├── BulkheadFull             the host's concurrency limit stayed full for the attempt
        ├── RetryAfterTooLong        `.retry_after_s` exceeds what is left (`.remaining_s`)
        └── ResponseTooLarge         the body passed `max_response_bytes`

Security stance: on a redirect to another origin, credential-like headers (Authorization,
Cookie, anything named like a key, token, secret, signature or session) are stripped before the
hop, and redirects spend neither attempts nor retry budget. Logged URLs go through `redact`.

Limits, candidly: the sync client cannot interrupt a blocked socket, so each network operation is
bounded by a socket timeout of at most what the deadline had left when the attempt began, and the
deadline is checked between body chunks: a dripping body overruns by at most one inter-byte gap.
Breaker and budget state live in process memory, per worker. The concurrency limit is released
when the response headers arrive, not when the body is read.
"""

from __future__ import annotations

import asyncio
import email.utils
import functools
import inspect
import math
import random
import re
import sys
import threading
import time
import uuid
from bisect import bisect_left
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from typing import Any, Final, ParamSpec, TypeVar

import httpx

from launchready_sdk.context import get_request_id
from launchready_sdk.errors import LaunchReadyError, SettingsError
from launchready_sdk.logs import get_logger
from launchready_sdk.redact import redact

P = ParamSpec("P")
T = TypeVar("T")

DEFAULT_TIMEOUT_S: Final = 5.0
DEFAULT_DEADLINE_S: Final = 15.0
DEFAULT_ATTEMPTS: Final = 3
DEFAULT_CONNECT_TIMEOUT_S: Final = 2.0
DEFAULT_MAX_RESPONSE_BYTES: Final = 10 * 1024 * 1024
RETRY_METHODS: Final = frozenset({"GET", "HEAD", "PUT", "DELETE", "OPTIONS"})
KEYED_METHODS: Final = frozenset({"POST", "PATCH"})
RETRY_STATUSES: Final = frozenset({429, 502, 503, 504})
BREAKER_STATUSES: Final = frozenset({500, 502, 503, 504})
MAX_HOSTS: Final = 1024
PREFETCH_MAX_BYTES: Final = 256 * 1024
_RETRY_AFTER_CEILING_S: Final = 365 * 86400.0
_CALL_KEY: Final = "launchready.outbound_call"
_CREDENTIAL_HEADER = re.compile(r"auth|cookie|token|secret|key|signature|session|password", re.I)
_DIGITS = re.compile(r"[0-9]{1,16}")
_LATENCY_BOUNDS_MS: Final = (5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 30000)

_log = get_logger("launchready.outbound")
_sleep_scale = 1.0


# --- errors ------------------------------------------------------------------------------------


class OutboundError(LaunchReadyError, httpx.TransportError):
    """An outbound call was refused or cut by the SDK's policy (not by the network)."""

    def __init__(self, message: str, *, host: str | None = None) -> None:
        super().__init__(message)
        self.host = host


class DeadlineExceeded(OutboundError, TimeoutError):
    """The call's total deadline passed (attempts, backoff and body reading included)."""


class AttemptTimeout(OutboundError, TimeoutError):
    """One attempt outlasted the policy's `timeout_s`."""


class CircuitOpen(OutboundError):
    """The host's breaker is open; no I/O was attempted. `retry_in_s` until the next probe."""

    def __init__(self, host: str, retry_in_s: float) -> None:
        super().__init__(f"circuit open for {host}; next probe in {retry_in_s:.1f} s", host=host)
        self.retry_in_s = retry_in_s


class BulkheadFull(OutboundError):
    """The host's concurrency limit stayed full for the whole attempt."""


class RetryAfterTooLong(OutboundError):
    """The provider asked to wait `retry_after_s`, longer than the `remaining_s` the call has."""

    def __init__(self, retry_after_s: float, remaining_s: float, host: str | None = None) -> None:
        super().__init__(
            f"provider asked to retry after {retry_after_s:.1f} s; "
            f"only {max(remaining_s, 0.0):.1f} s of the deadline is left",
            host=host,
        )
        self.retry_after_s = retry_after_s
        self.remaining_s = remaining_s


class ResponseTooLarge(OutboundError):
    """The response body is larger than the policy's `max_response_bytes`."""

    def __init__(self, limit_bytes: int, host: str | None = None) -> None:
        super().__init__(f"response body exceeds {limit_bytes} bytes", host=host)
        self.limit_bytes = limit_bytes


_FATAL = (DeadlineExceeded, CircuitOpen, BulkheadFull, RetryAfterTooLong, ResponseTooLarge)
_NOT_SENT = (httpx.ConnectError, httpx.ConnectTimeout)
_MAYBE_SENT = (
    AttemptTimeout,
    httpx.ReadError,
    httpx.WriteError,
    httpx.ReadTimeout,
    httpx.WriteTimeout,
    httpx.RemoteProtocolError,
)


# --- policy and validation ---------------------------------------------------------------------


def validate_outbound(
    timeout_s: float,
    deadline_s: float | None,
    attempts: int | None,
    *,
    prefix: str = "outbound_",
) -> None:
    """Raise `SettingsError` for an outbound policy that could hang or hammer a provider."""
    _check_positive(f"{prefix}timeout_s", timeout_s, "5")
    if deadline_s is not None:
        _check_positive(f"{prefix}deadline_s", deadline_s, "15")
        if timeout_s > deadline_s:
            raise SettingsError(
                f"{prefix}timeout_s",
                f"one attempt ({timeout_s} s) cannot outlast the whole call's deadline "
                f"{prefix}deadline_s ({deadline_s} s)",
                f"{prefix}timeout_s=5, {prefix}deadline_s=15",
            )
    if attempts is None:
        if deadline_s is None:
            raise SettingsError(
                f"{prefix}attempts", "unbounded attempts need a deadline", f"{prefix}attempts=3"
            )
        return
    if not isinstance(attempts, int) or isinstance(attempts, bool) or attempts < 1:
        raise SettingsError(
            f"{prefix}attempts", f"expected a whole number ≥ 1, got {attempts!r}", "3"
        )


def _check_positive(name: str, value: object, example: str) -> None:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    if not ok or not math.isfinite(value) or value <= 0:  # type: ignore[arg-type,operator]
        raise SettingsError(
            name, f"expected a positive, finite number of seconds, got {value!r}", example
        )


@dataclass(frozen=True, kw_only=True, slots=True)
class OutboundPolicy:
    """What an outbound call may cost. Defaults follow Settings' `outbound_*` fields.

    Args:
        timeout_s: one attempt, connection to response headers.
        deadline_s: the whole call; None only with a bounded `attempts`.
        attempts: every try, the first included; None means "until the deadline".
        connect_timeout_s: TCP/TLS connect, within the attempt.
        backoff_initial_s / backoff_max_s: full-jitter exponential backoff bounds.
        retry_after_max_s: the longest `Retry-After` honoured.
        retry_budget_ratio: retry tokens earned per successful call.
        retry_budget_burst: tokens a host starts with and can hold.
        retry_budget_per_s: tokens earned per second regardless of traffic.
        breaker_*: failure ratio, window, minimum calls, first break, longest break, probes.
        max_concurrency: in-flight calls per host per client.
        max_response_bytes: body cap (None: no cap).
    """

    timeout_s: float = DEFAULT_TIMEOUT_S
    deadline_s: float | None = DEFAULT_DEADLINE_S
    attempts: int | None = DEFAULT_ATTEMPTS
    connect_timeout_s: float = DEFAULT_CONNECT_TIMEOUT_S
    backoff_initial_s: float = 0.2
    backoff_max_s: float = 5.0
    retry_after_max_s: float = 60.0
    retry_budget_ratio: float = 0.1
    retry_budget_burst: float = 10.0
    retry_budget_per_s: float = 0.5
    breaker_failure_ratio: float = 0.5
    breaker_window_s: float = 30.0
    breaker_min_calls: int = 20
    breaker_break_s: float = 15.0
    breaker_max_break_s: float = 120.0
    breaker_probes: int = 1
    max_concurrency: int = 32
    max_response_bytes: int | None = DEFAULT_MAX_RESPONSE_BYTES
    retry_methods: frozenset[str] = RETRY_METHODS
    retry_statuses: frozenset[int] = RETRY_STATUSES

    def __post_init__(self) -> None:
        validate_outbound(self.timeout_s, self.deadline_s, self.attempts, prefix="")
        for name in ("connect_timeout_s", "backoff_max_s", "breaker_window_s", "breaker_break_s"):
            _check_positive(name, getattr(self, name), str(getattr(OutboundPolicy, name)))
        if not 0 < self.breaker_failure_ratio <= 1:
            raise SettingsError("breaker_failure_ratio", "expected a ratio in (0, 1]", "0.5")
        for name in ("breaker_min_calls", "breaker_probes", "max_concurrency"):
            if getattr(self, name) < 1:
                raise SettingsError(name, "expected a whole number ≥ 1", "1")

    @classmethod
    def from_settings(cls, settings: Any, **overrides: Any) -> OutboundPolicy:
        """A policy from `Settings.outbound_timeout_s`, `_deadline_s` and `_attempts`."""
        values = {
            "timeout_s": settings.outbound_timeout_s,
            "deadline_s": settings.outbound_deadline_s,
            "attempts": settings.outbound_attempts,
        }
        return cls(**{**values, **overrides})


def idempotency_key() -> str:
    """A fresh key for one logical POST/PATCH: send it as `Idempotency-Key`; retries reuse it."""
    return str(uuid.uuid4())


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """Seconds to wait from a `Retry-After` value (delta-seconds or HTTP-date); None if garbage."""
    if not value or len(value) > 64:
        return None
    text = value.strip()
    if _DIGITS.fullmatch(text):
        return min(float(text), _RETRY_AFTER_CEILING_S)
    try:
        when = email.utils.parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if when.tzinfo is None:
        return None
    delta = when.timestamp() - (time.time() if now is None else now)
    return min(max(delta, 0.0), _RETRY_AFTER_CEILING_S)


# --- per-host state: breaker, budget, counters -------------------------------------------------


class CircuitBreaker:
    """Failure-ratio breaker over a bucketed sliding window, with bounded half-open probes."""

    CLOSED, OPEN, HALF_OPEN = "closed", "open", "half_open"
    _BUCKETS = 10

    def __init__(
        self, name: str, policy: OutboundPolicy, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.name = name
        self.state = self.CLOSED
        self._p = policy
        self._clock = clock
        self._lock = threading.Lock()
        self._width = policy.breaker_window_s / self._BUCKETS
        self._ids = [-1] * self._BUCKETS
        self._calls = [0] * self._BUCKETS
        self._fails = [0] * self._BUCKETS
        self._open_until = 0.0
        self._break_s = policy.breaker_break_s
        self._probes = 0
        self._probe_ok = 0

    def before(self) -> bool:
        """Admit a call (True when it is a half-open probe) or raise `CircuitOpen`."""
        if self.state == self.CLOSED:
            return False
        with self._lock:
            now = self._clock()
            if self.state == self.CLOSED:
                return False
            if self.state == self.OPEN:
                if now < self._open_until:
                    raise CircuitOpen(self.name, self._open_until - now)
                self._move(self.HALF_OPEN, {})
                self._probes = self._probe_ok = 0
            if self._probes >= self._p.breaker_probes:
                raise CircuitOpen(self.name, self._break_s)
            self._probes += 1
            return True

    def record(self, probe: bool, failed: bool | None) -> None:
        """The outcome of an admitted call; `failed=None` for one that does not count."""
        if probe:
            self._record_probe(failed)
        elif failed is not None:
            self._record_closed(failed)

    def _record_probe(self, failed: bool | None) -> None:
        with self._lock:
            self._probes -= 1
            if self.state != self.HALF_OPEN or failed is None:
                return
            if failed:
                self._break_s = min(self._break_s * 2, self._p.breaker_max_break_s)
                self._open(self._clock(), {"probe": "failed"})
                return
            self._probe_ok += 1
            if self._probe_ok >= self._p.breaker_probes:
                self._reset_window()
                self._break_s = self._p.breaker_break_s
                self._move(self.CLOSED, {})

    def _record_closed(self, failed: bool) -> None:
        now = self._clock()
        bucket = int(now / self._width)
        i = bucket % self._BUCKETS
        if self._ids[i] != bucket:
            self._ids[i], self._calls[i], self._fails[i] = bucket, 0, 0
        self._calls[i] += 1
        if not failed:
            return
        self._fails[i] += 1
        calls, fails = self._totals(bucket)
        if calls >= self._p.breaker_min_calls and fails >= calls * self._p.breaker_failure_ratio:
            with self._lock:
                if self.state == self.CLOSED:
                    self._open(now, {"calls": calls, "failures": fails})

    def _totals(self, bucket: int) -> tuple[int, int]:
        oldest = bucket - self._BUCKETS
        calls = fails = 0
        for i, b in enumerate(self._ids):
            if b > oldest:
                calls += self._calls[i]
                fails += self._fails[i]
        return calls, fails

    def _open(self, now: float, detail: dict[str, Any]) -> None:
        self._open_until = now + self._break_s
        self._move(self.OPEN, {**detail, "break_s": self._break_s})

    def _reset_window(self) -> None:
        self._ids = [-1] * self._BUCKETS

    def _move(self, state: str, detail: dict[str, Any]) -> None:
        previous, self.state = self.state, state
        _log.warning("outbound.breaker", host=self.name, state=state, previous=previous, **detail)


class RetryBudget:
    """Tokens earned by successful calls (and slowly by time); each retry spends one."""

    def __init__(self, policy: OutboundPolicy, clock: Callable[[], float] = time.monotonic) -> None:
        self._ratio = policy.retry_budget_ratio
        self._burst = policy.retry_budget_burst
        self._per_s = policy.retry_budget_per_s
        self._clock = clock
        self._tokens = policy.retry_budget_burst
        self._at = clock()

    def deposit(self) -> None:
        """A successful call earns `retry_budget_ratio` of a retry."""
        self._tokens = min(self._burst, self._tokens + self._ratio)

    def withdraw(self) -> bool:
        """Spend one retry, if the budget holds one."""
        now = self._clock()
        self._tokens = min(self._burst, self._tokens + (now - self._at) * self._per_s)
        self._at = now
        if self._tokens < 1.0:
            return False
        self._tokens -= 1.0
        return True


class HostState:
    """One host's breaker, retry budget and counters, shared by every client of a recorder."""

    def __init__(self, name: str, policy: OutboundPolicy) -> None:
        self.name = name
        self.policy = policy
        self.breaker = CircuitBreaker(name, policy)
        self.budget = RetryBudget(policy)
        self.calls = 0
        self.errors = 0
        self.attempts = 0
        self.retries = 0
        self.budget_exhausted = 0
        self.rejected = 0
        self.latency_ms_sum = 0.0
        self.latency_buckets = [0] * (len(_LATENCY_BOUNDS_MS) + 1)

    def finished(self, started: float, error: bool) -> None:
        """Count one logical call and its latency (to response headers)."""
        elapsed_ms = (time.monotonic() - started) * 1000.0
        self.calls += 1
        self.latency_ms_sum += elapsed_ms
        self.latency_buckets[bisect_left(_LATENCY_BOUNDS_MS, elapsed_ms)] += 1
        if error:
            self.errors += 1
        else:
            self.budget.deposit()

    def snapshot(self) -> dict[str, Any]:
        """Counts, latency quantiles (bucket upper bounds) and breaker state."""
        return {
            "calls": self.calls,
            "errors": self.errors,
            "attempts": self.attempts,
            "retries": self.retries,
            "budget_exhausted": self.budget_exhausted,
            "rejected": self.rejected,
            "breaker": self.breaker.state,
            "mean_ms": round(self.latency_ms_sum / self.calls, 3) if self.calls else None,
            "p50_ms": self._quantile(0.5),
            "p95_ms": self._quantile(0.95),
        }

    def _quantile(self, q: float) -> float | None:
        if not self.calls:
            return None
        rank, seen = q * self.calls, 0
        for i, count in enumerate(self.latency_buckets):
            seen += count
            if seen >= rank:
                return float(_LATENCY_BOUNDS_MS[i]) if i < len(_LATENCY_BOUNDS_MS) else math.inf
        return math.inf


class OutboundRecorder:
    """Per-host state and counters; share one across clients so a host has one breaker."""

    def __init__(self, max_hosts: int = MAX_HOSTS) -> None:
        self._hosts: dict[str, HostState] = {}
        self._max_hosts = max_hosts

    def host(self, name: str, policy: OutboundPolicy) -> HostState:
        """The state for `name`, created with `policy` on first use."""
        state = self._hosts.get(name)
        if state is None:
            if len(self._hosts) >= self._max_hosts:
                self._hosts.pop(next(iter(self._hosts)))
            state = self._hosts[name] = HostState(name, policy)
        return state

    def snapshot(self) -> dict[str, dict[str, Any]]:
        """`{host: {"calls", "errors", "attempts", "retries", "p50_ms", ...}}`, from memory."""
        return {name: state.snapshot() for name, state in list(self._hosts.items())}


# --- the retry decision, shared by the async and sync transports -------------------------------


class _Call:
    """One logical call: its deadline, the request it began with and that request's origin."""

    __slots__ = ("deadline", "origin", "request")

    def __init__(self, request: httpx.Request, deadline_s: float | None) -> None:
        self.deadline = math.inf if deadline_s is None else time.monotonic() + deadline_s
        self.request = request
        self.origin = _origin(request.url)

    def remaining(self) -> float:
        return self.deadline - time.monotonic()

    def attempt_budget(self, timeout_s: float, host: str | None) -> float:
        """Seconds this attempt may take, or `DeadlineExceeded` when none is left."""
        remaining = self.remaining()
        if remaining <= 0.001:
            raise DeadlineExceeded("outbound deadline exceeded", host=host)
        return min(timeout_s, remaining)


class _Engine:
    """Everything about a call that does not depend on async or sync I/O."""

    def __init__(self, policy: OutboundPolicy, recorder: OutboundRecorder) -> None:
        self.policy = policy
        self.recorder = recorder

    def begin(self, request: httpx.Request) -> tuple[_Call, HostState]:
        """The call this request belongs to (a redirect hop continues its call), and its host."""
        call = request.extensions.get(_CALL_KEY)
        if not isinstance(call, _Call) or call.request is request:
            call = _Call(request, self.policy.deadline_s)
            request.extensions[_CALL_KEY] = call
        elif _origin(request.url) != call.origin:
            _strip_credentials(request.headers)
        request_id = get_request_id()
        if request_id is not None and "x-request-id" not in request.headers:
            request.headers["X-Request-ID"] = request_id
        return call, self.recorder.host(_host_name(request.url), self.policy)

    def set_timeouts(self, request: httpx.Request, budget: float) -> None:
        """httpx's per-operation timeouts, no longer than this attempt's budget."""
        given = request.extensions.get("timeout") or {}
        connect = min(self.policy.connect_timeout_s, budget)
        request.extensions["timeout"] = {
            "connect": _min_timeout(given.get("connect"), connect),
            "read": _min_timeout(given.get("read"), budget),
            "write": _min_timeout(given.get("write"), budget),
            "pool": _min_timeout(given.get("pool"), budget),
        }

    def error_delay(
        self, request: httpx.Request, call: _Call, host: HostState, attempt: int, exc: Exception
    ) -> float:
        """The sleep before the next attempt after `exc`; re-raises when there is none."""
        if isinstance(exc, _FATAL):
            raise exc
        if call.remaining() <= 0.001:
            raise DeadlineExceeded("outbound deadline exceeded", host=host.name) from exc
        sent = not isinstance(exc, _NOT_SENT)
        if sent and not (isinstance(exc, _MAYBE_SENT) and self._idempotent(request)):
            raise exc
        delay = self._next_delay(request, call, host, attempt, None)
        if delay is None:
            raise exc
        self._log_retry(request, host, attempt, type(exc).__name__, delay)
        return delay

    def response_delay(
        self, request: httpx.Request, call: _Call, host: HostState, attempt: int, r: httpx.Response
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
        call: _Call,
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
        self, call: _Call, host: HostState, attempt: int, retry_after: float | None
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
            url=_safe_url(request.url),
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


def _prefetch(response: httpx.Response) -> bool:
    """Whether to read the body inside the attempt: a small, declared length (and not a HEAD's
    or a 304's, which have none)."""
    length = response.headers.get("content-length")
    return length is not None and length.isdigit() and 0 < int(length) <= PREFETCH_MAX_BYTES


async def _prefetched(response: httpx.Response) -> httpx.Response:
    """The same response with its raw body already read (httpx still decodes it and times it)."""
    try:
        raw = b"".join([chunk async for chunk in response.aiter_raw()])
    except BaseException:
        await response.aclose()
        raise
    return httpx.Response(
        response.status_code,
        headers=response.headers.raw,
        stream=httpx.ByteStream(raw),
        extensions=response.extensions,
    )


def _origin(url: httpx.URL) -> tuple[str, str, int | None]:
    return url.scheme, url.host, url.port


def _host_name(url: httpx.URL) -> str:
    port = url.port
    return f"{url.scheme}://{url.host}" if port is None else f"{url.scheme}://{url.host}:{port}"


def _min_timeout(given: object, ours: float) -> float:
    return min(given, ours) if isinstance(given, (int, float)) else ours


def _strip_credentials(headers: httpx.Headers) -> None:
    for name in [n for n in headers if _CREDENTIAL_HEADER.search(n)]:
        del headers[name]


def _safe_url(url: httpx.URL) -> str:
    return str(redact(str(url.copy_with(username=None, password=None))))


def _breaker_failure(exc: BaseException) -> bool | None:
    """Whether an attempt's exception says the upstream is unhealthy (None: does not count)."""
    if isinstance(exc, (httpx.PoolTimeout, OutboundError)) and not isinstance(exc, AttemptTimeout):
        return None
    if isinstance(exc, (AttemptTimeout, httpx.TimeoutException, httpx.NetworkError)):
        return True
    if isinstance(exc, httpx.RemoteProtocolError):
        return True
    return None


# --- tracing (only when OpenTelemetry is already imported and a span is recording) -------------


def _attempt_span(request: httpx.Request, attempt: int) -> AbstractContextManager[Any]:
    trace = sys.modules.get("opentelemetry.trace")
    if trace is None or not trace.get_current_span().is_recording():
        return nullcontext()
    return _TracedAttempt(trace, request, attempt)


class _TracedAttempt:
    """A client span for one attempt, with `traceparent` injected into the request."""

    def __init__(self, trace: Any, request: httpx.Request, attempt: int) -> None:
        attributes: dict[str, Any] = {
            "http.request.method": request.method,
            "server.address": request.url.host,
            "url.full": _safe_url(request.url),
        }
        if attempt > 1:
            attributes["http.request.resend_count"] = attempt - 1
        tracer = trace.get_tracer("launchready_sdk.outbound")
        self._cm = tracer.start_as_current_span(
            request.method, kind=trace.SpanKind.CLIENT, attributes=attributes
        )
        self._request = request

    def __enter__(self) -> Any:
        span = self._cm.__enter__()
        from opentelemetry import propagate

        propagate.inject(self._request.headers)
        return span

    def __exit__(self, *exc: Any) -> Any:
        return self._cm.__exit__(*exc)


# --- response body guards ----------------------------------------------------------------------


class _GuardedAsyncStream(httpx.AsyncByteStream):
    """The body under the call's deadline and size cap."""

    def __init__(
        self, inner: httpx.AsyncByteStream, deadline: float, limit: int | None, host: str
    ) -> None:
        self._inner = inner
        self._deadline = deadline
        self._limit = limit
        self._host = host

    async def __aiter__(self) -> AsyncIterator[bytes]:
        chunks = self._inner.__aiter__()
        seen = 0
        while True:
            remaining = self._deadline - time.monotonic()
            if remaining <= 0:
                raise DeadlineExceeded(
                    "outbound deadline exceeded reading the body", host=self._host
                )
            try:
                async with asyncio.timeout(None if remaining == math.inf else remaining):
                    chunk = await chunks.__anext__()
            except StopAsyncIteration:
                return
            except TimeoutError as exc:
                raise DeadlineExceeded(
                    "outbound deadline exceeded reading the body", host=self._host
                ) from exc
            seen += len(chunk)
            if self._limit is not None and seen > self._limit:
                raise ResponseTooLarge(self._limit, host=self._host)
            yield chunk

    async def aclose(self) -> None:
        await self._inner.aclose()


class _GuardedSyncStream(httpx.SyncByteStream):
    """The body under the deadline (checked between chunks) and the size cap."""

    def __init__(
        self, inner: httpx.SyncByteStream, deadline: float, limit: int | None, host: str
    ) -> None:
        self._inner = inner
        self._deadline = deadline
        self._limit = limit
        self._host = host

    def __iter__(self) -> Iterator[bytes]:
        seen = 0
        for chunk in self._inner:
            if time.monotonic() >= self._deadline:
                raise DeadlineExceeded(
                    "outbound deadline exceeded reading the body", host=self._host
                )
            seen += len(chunk)
            if self._limit is not None and seen > self._limit:
                raise ResponseTooLarge(self._limit, host=self._host)
            yield chunk

    def close(self) -> None:
        self._inner.close()


# --- transports --------------------------------------------------------------------------------


class ResilientTransport(httpx.AsyncBaseTransport):
    """An async httpx transport applying an `OutboundPolicy` around `inner`.

    Args:
        inner: the transport that does the I/O (default `httpx.AsyncHTTPTransport()`).
        policy: deadlines, retries, breaker, concurrency limit and body cap.
        recorder: per-host state and counters (share one across clients).
    """

    def __init__(
        self,
        inner: httpx.AsyncBaseTransport | None = None,
        *,
        policy: OutboundPolicy | None = None,
        recorder: OutboundRecorder | None = None,
    ) -> None:
        self.policy = policy or OutboundPolicy()
        self.recorder = recorder or OutboundRecorder()
        self.inner = inner or httpx.AsyncHTTPTransport()
        self._engine = _Engine(self.policy, self.recorder)
        self._limits: dict[str, asyncio.Semaphore] = {}

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        call, host = self._engine.begin(request)
        started = time.monotonic()
        try:
            response = await self._with_retries(request, call, host)
        except Exception:
            host.finished(started, error=True)
            raise
        host.finished(started, error=response.status_code >= 500)
        try:
            self._engine.check_size(response, host)
        except ResponseTooLarge:
            await response.aclose()
            raise
        if not isinstance(response.stream, httpx.ByteStream):
            response.stream = _GuardedAsyncStream(
                response.stream,  # type: ignore[arg-type]
                call.deadline,
                self.policy.max_response_bytes,
                host.name,
            )
        return response

    async def _with_retries(
        self, request: httpx.Request, call: _Call, host: HostState
    ) -> httpx.Response:
        attempt = 0
        while True:
            attempt += 1
            try:
                response = await self._attempt(request, call, host, attempt)
            except httpx.TransportError as exc:
                delay = self._engine.error_delay(request, call, host, attempt, exc)
            else:
                try:
                    retry = self._engine.response_delay(request, call, host, attempt, response)
                except RetryAfterTooLong:
                    await response.aclose()
                    raise
                if retry is None:
                    return response
                await response.aclose()
                delay = retry
            await asyncio.sleep(delay)

    async def _attempt(
        self, request: httpx.Request, call: _Call, host: HostState, attempt: int
    ) -> httpx.Response:
        budget = call.attempt_budget(self.policy.timeout_s, host.name)
        try:
            probe = host.breaker.before()
        except CircuitOpen:
            host.rejected += 1
            raise
        host.attempts += 1
        try:
            with _attempt_span(request, attempt):
                response = await self._limited(request, host, budget)
        except BaseException as exc:
            host.breaker.record(
                probe, _breaker_failure(exc) if isinstance(exc, Exception) else None
            )
            raise
        host.breaker.record(probe, response.status_code in BREAKER_STATUSES)
        return response

    async def _limited(
        self, request: httpx.Request, host: HostState, budget: float
    ) -> httpx.Response:
        """The concurrency limit and the attempt timeout around the inner transport."""
        limit = self._limits.get(host.name)
        if limit is None:
            limit = self._limits[host.name] = asyncio.Semaphore(self.policy.max_concurrency)
        acquired = False
        timer = asyncio.timeout(budget)
        try:
            async with timer:
                await limit.acquire()
                acquired = True
                self._engine.set_timeouts(request, budget)
                response = await self.inner.handle_async_request(request)
                return await _prefetched(response) if _prefetch(response) else response
        except TimeoutError as exc:
            if not timer.expired():
                raise
            if not acquired:
                raise BulkheadFull(
                    f"concurrency limit full for {host.name}", host=host.name
                ) from exc
            raise AttemptTimeout(f"attempt exceeded {budget:.3f} s", host=host.name) from exc
        finally:
            if acquired:
                limit.release()

    async def aclose(self) -> None:
        await self.inner.aclose()


class ResilientSyncTransport(httpx.BaseTransport):
    """The sync twin of `ResilientTransport` (see the module docstring for its limits)."""

    def __init__(
        self,
        inner: httpx.BaseTransport | None = None,
        *,
        policy: OutboundPolicy | None = None,
        recorder: OutboundRecorder | None = None,
    ) -> None:
        self.policy = policy or OutboundPolicy()
        self.recorder = recorder or OutboundRecorder()
        self.inner = inner or httpx.HTTPTransport()
        self._engine = _Engine(self.policy, self.recorder)
        self._limits: dict[str, threading.BoundedSemaphore] = {}
        self._limits_lock = threading.Lock()

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        call, host = self._engine.begin(request)
        started = time.monotonic()
        try:
            response = self._with_retries(request, call, host)
        except Exception:
            host.finished(started, error=True)
            raise
        host.finished(started, error=response.status_code >= 500)
        try:
            self._engine.check_size(response, host)
        except ResponseTooLarge:
            response.close()
            raise
        response.stream = _GuardedSyncStream(
            response.stream,  # type: ignore[arg-type]
            call.deadline,
            self.policy.max_response_bytes,
            host.name,
        )
        return response

    def _with_retries(self, request: httpx.Request, call: _Call, host: HostState) -> httpx.Response:
        attempt = 0
        while True:
            attempt += 1
            try:
                response = self._attempt(request, call, host, attempt)
            except httpx.TransportError as exc:
                delay = self._engine.error_delay(request, call, host, attempt, exc)
            else:
                try:
                    retry = self._engine.response_delay(request, call, host, attempt, response)
                except RetryAfterTooLong:
                    response.close()
                    raise
                if retry is None:
                    return response
                response.close()
                delay = retry
            time.sleep(delay)

    def _attempt(
        self, request: httpx.Request, call: _Call, host: HostState, attempt: int
    ) -> httpx.Response:
        budget = call.attempt_budget(self.policy.timeout_s, host.name)
        try:
            probe = host.breaker.before()
        except CircuitOpen:
            host.rejected += 1
            raise
        host.attempts += 1
        try:
            with _attempt_span(request, attempt):
                response = self._limited(request, host, budget)
        except BaseException as exc:
            host.breaker.record(
                probe, _breaker_failure(exc) if isinstance(exc, Exception) else None
            )
            raise
        host.breaker.record(probe, response.status_code in BREAKER_STATUSES)
        return response

    def _limited(self, request: httpx.Request, host: HostState, budget: float) -> httpx.Response:
        limit = self._limits.get(host.name)
        if limit is None:
            with self._limits_lock:
                limit = self._limits.setdefault(
                    host.name, threading.BoundedSemaphore(self.policy.max_concurrency)
                )
        if not limit.acquire(timeout=budget):
            raise BulkheadFull(f"concurrency limit full for {host.name}", host=host.name)
        try:
            self._engine.set_timeouts(request, budget)
            return self.inner.handle_request(request)
        finally:
            limit.release()

    def close(self) -> None:
        self.inner.close()


# --- client factories --------------------------------------------------------------------------

_TRANSPORT_KWARGS = ("verify", "cert", "http1", "http2", "limits", "proxy", "trust_env")


def http_client(
    policy: OutboundPolicy | None = None,
    *,
    recorder: OutboundRecorder | None = None,
    transport: httpx.AsyncBaseTransport | None = None,
    **httpx_kwargs: Any,
) -> httpx.AsyncClient:
    """An `httpx.AsyncClient` whose every request goes through `policy`.

    `transport` replaces the network transport under the policy (e.g. `testing.FaultTransport`);
    `verify`, `cert`, `http2`, `limits` and `proxy` configure the default one. Proxies from the
    environment are wrapped with the same policy.
    """
    policy = policy or OutboundPolicy()
    recorder = recorder or OutboundRecorder()
    inner_kwargs = {k: httpx_kwargs[k] for k in _TRANSPORT_KWARGS if k in httpx_kwargs}
    inner_kwargs.pop("trust_env", None)
    httpx_kwargs = {k: v for k, v in httpx_kwargs.items() if k not in _TRANSPORT_KWARGS[:-1]}
    inner = transport or httpx.AsyncHTTPTransport(**inner_kwargs)
    wrap = functools.partial(ResilientTransport, policy=policy, recorder=recorder)
    client = httpx.AsyncClient(transport=wrap(inner), **httpx_kwargs)
    _wrap_mounts(client, wrap)
    return client


def http_client_sync(
    policy: OutboundPolicy | None = None,
    *,
    recorder: OutboundRecorder | None = None,
    transport: httpx.BaseTransport | None = None,
    **httpx_kwargs: Any,
) -> httpx.Client:
    """An `httpx.Client` whose every request goes through `policy` (see `http_client`)."""
    policy = policy or OutboundPolicy()
    recorder = recorder or OutboundRecorder()
    inner_kwargs = {k: httpx_kwargs[k] for k in _TRANSPORT_KWARGS if k in httpx_kwargs}
    inner_kwargs.pop("trust_env", None)
    httpx_kwargs = {k: v for k, v in httpx_kwargs.items() if k not in _TRANSPORT_KWARGS[:-1]}
    inner = transport or httpx.HTTPTransport(**inner_kwargs)
    wrap = functools.partial(ResilientSyncTransport, policy=policy, recorder=recorder)
    client = httpx.Client(transport=wrap(inner), **httpx_kwargs)
    _wrap_mounts(client, wrap)
    return client


def _wrap_mounts(client: httpx.AsyncClient | httpx.Client, wrap: Callable[[Any], Any]) -> None:
    """Put the policy around transports httpx mounted itself (proxies from the environment)."""
    mounts = getattr(client, "_mounts", None)
    if isinstance(mounts, dict):
        for pattern, mounted in list(mounts.items()):
            if mounted is not None and not isinstance(
                mounted, (ResilientTransport, ResilientSyncTransport)
            ):
                mounts[pattern] = wrap(mounted)


# --- @resilient --------------------------------------------------------------------------------


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
    engine = _Engine(policy, OutboundRecorder())
    call = _Call(httpx.Request("POST", "http://resilient.invalid/"), policy.deadline_s)
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
    call: _Call,
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
    engine: _Engine,
    call: _Call,
    host: HostState,
    attempt: int,
    exc: Exception,
    retry_on: tuple[type[BaseException], ...],
) -> float | None:
    if isinstance(exc, _FATAL) or not isinstance(exc, retry_on):
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


def _set_sleep_scale(scale: float) -> float:
    """Multiply every backoff and Retry-After sleep by `scale` (0 in tests); returns the old."""
    global _sleep_scale
    previous, _sleep_scale = _sleep_scale, scale
    return previous
