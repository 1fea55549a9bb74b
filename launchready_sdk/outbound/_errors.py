"""The outbound exception hierarchy (drawn in the package docstring) and its groupings."""

from __future__ import annotations

import httpx

from launchready_sdk.errors import LaunchReadyError


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


FATAL = (DeadlineExceeded, CircuitOpen, BulkheadFull, RetryAfterTooLong, ResponseTooLarge)
NOT_SENT = (httpx.ConnectError, httpx.ConnectTimeout)
MAYBE_SENT = (
    AttemptTimeout,
    httpx.ReadError,
    httpx.WriteError,
    httpx.ReadTimeout,
    httpx.WriteTimeout,
    httpx.RemoteProtocolError,
)
