"""The per-host circuit breaker, and which attempt outcomes count against it."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import httpx

from launchready_sdk.logs import get_logger
from launchready_sdk.outbound._errors import AttemptTimeout, CircuitOpen, OutboundError
from launchready_sdk.outbound._policy import OutboundPolicy

_log = get_logger("launchready.outbound")


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


def breaker_failure(exc: BaseException) -> bool | None:
    """Whether an attempt's exception says the upstream is unhealthy (None: does not count)."""
    if isinstance(exc, (httpx.PoolTimeout, OutboundError)) and not isinstance(exc, AttemptTimeout):
        return None
    if isinstance(exc, (AttemptTimeout, httpx.TimeoutException, httpx.NetworkError)):
        return True
    if isinstance(exc, httpx.RemoteProtocolError):
        return True
    return None
