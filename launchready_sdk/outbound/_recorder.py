"""Per-host state (breaker, retry budget, counters) and the recorder that holds it for
`/metrics`."""

from __future__ import annotations

import math
import time
from bisect import bisect_left
from typing import Any, Final

from launchready_sdk.context import current
from launchready_sdk.outbound._breaker import CircuitBreaker
from launchready_sdk.outbound._budget import RetryBudget
from launchready_sdk.outbound._policy import OutboundPolicy

MAX_HOSTS: Final = 1024
_LATENCY_BOUNDS_MS: Final = (5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 30000)


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
        """Count one logical call and its latency (to response headers), also against the
        request being served, if any (its time per host, for `launchready_sdk.breakdown`)."""
        elapsed_s = time.monotonic() - started
        ctx = current()
        if ctx is not None:
            ctx.add_outbound(self.name, elapsed_s)
        elapsed_ms = elapsed_s * 1000.0
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
