"""The per-host retry budget: retries are paid for by successful calls."""

from __future__ import annotations

import time
from collections.abc import Callable

from launchready_sdk.outbound._policy import OutboundPolicy


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
