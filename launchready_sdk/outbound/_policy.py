"""What an outbound call may cost: `OutboundPolicy`, its defaults and validation, and the
header values a policy reads (`Idempotency-Key`, `Retry-After`)."""

from __future__ import annotations

import email.utils
import math
import random
import re
import time
import uuid
from dataclasses import dataclass
from typing import Any, Final

from launchready_sdk.errors import SettingsError

DEFAULT_TIMEOUT_S: Final = 5.0
DEFAULT_DEADLINE_S: Final = 15.0
DEFAULT_ATTEMPTS: Final = 3
DEFAULT_CONNECT_TIMEOUT_S: Final = 2.0
DEFAULT_MAX_RESPONSE_BYTES: Final = 10 * 1024 * 1024
RETRY_METHODS: Final = frozenset({"GET", "HEAD", "PUT", "DELETE", "OPTIONS"})
KEYED_METHODS: Final = frozenset({"POST", "PATCH"})
RETRY_STATUSES: Final = frozenset({429, 502, 503, 504})
BREAKER_STATUSES: Final = frozenset({500, 502, 503, 504})
_RETRY_AFTER_CEILING_S: Final = 365 * 86400.0
_DIGITS = re.compile(r"[0-9]{1,16}")


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

    def backoff_s(self, attempt: int) -> float:
        """The sleep after failed attempt number `attempt` (1 for the first): full jitter, uniform
        between 0 and `backoff_initial_s` doubled per attempt, capped at `backoff_max_s`."""
        cap = min(self.backoff_max_s, self.backoff_initial_s * 2 ** (attempt - 1))
        return random.uniform(0.0, cap)

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
