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

Also exported: `idempotency_key()`; `parse_retry_after(value)`, the reading of `Retry-After`
the retries use (delta-seconds or HTTP-date, None for garbage); `validate_outbound` and the
`DEFAULT_TIMEOUT_S`, `DEFAULT_DEADLINE_S` and `DEFAULT_ATTEMPTS`, for Settings; and
`set_sleep_scale(scale)`, which multiplies every backoff and Retry-After sleep of the process
(`launchready_sdk.testing.no_retry_sleeps()` sets 0 for a block). `OutboundPolicy.backoff_s(n)`
is the full-jitter backoff after attempt `n`.

Inside the package each concern is one internal module: `_policy` (the policy, its defaults
and validation, the header values it reads), `_retry` (the retry loop, written once: `Retrying`,
iterated with `for` by the sync transport and with `async for` by the async one and by
`@resilient`), `_exchange` (what both transports do to an httpx request and response around that
loop), `_transports`, `_clients`, `_resilient`, `_breaker`, `_budget`, `_recorder`,
`_bodies` (prefetch and the body guards), `_tracing`, `_urls` and `_errors`.

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

from launchready_sdk.outbound._clients import http_client, http_client_sync
from launchready_sdk.outbound._errors import (
    AttemptTimeout,
    BulkheadFull,
    CircuitOpen,
    DeadlineExceeded,
    OutboundError,
    ResponseTooLarge,
    RetryAfterTooLong,
)
from launchready_sdk.outbound._policy import (
    DEFAULT_ATTEMPTS,
    DEFAULT_DEADLINE_S,
    DEFAULT_TIMEOUT_S,
    OutboundPolicy,
    idempotency_key,
    parse_retry_after,
    validate_outbound,
)
from launchready_sdk.outbound._recorder import OutboundRecorder
from launchready_sdk.outbound._resilient import resilient
from launchready_sdk.outbound._retry import set_sleep_scale

__all__ = [
    "DEFAULT_ATTEMPTS",
    "DEFAULT_DEADLINE_S",
    "DEFAULT_TIMEOUT_S",
    "AttemptTimeout",
    "BulkheadFull",
    "CircuitOpen",
    "DeadlineExceeded",
    "OutboundError",
    "OutboundPolicy",
    "OutboundRecorder",
    "ResponseTooLarge",
    "RetryAfterTooLong",
    "http_client",
    "http_client_sync",
    "idempotency_key",
    "parse_retry_after",
    "resilient",
    "set_sleep_scale",
    "validate_outbound",
]
