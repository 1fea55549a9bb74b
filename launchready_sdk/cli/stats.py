"""What the load generator measured: per-route samples, a per-second timeline, percentiles.

`Recorder.add` is called once per finished request with its start (the scheduled send time
in the open model) and end on the event loop's clock. Requests that started during the
warm-up or after the measured window feed only the live figures. Percentiles are exact over
every sample (nearest rank), not estimated: a run keeps two 8-byte floats per request (about
60 MB for an hour at 1,000 requests/s).
"""

from __future__ import annotations

import math
from array import array
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any


def percentile(ordered: Sequence[float], q: float) -> float | None:
    """The nearest-rank `q` quantile (0 < q <= 1) of ascending `ordered`; None when empty."""
    if not ordered:
        return None
    rank = max(1, math.ceil(q * len(ordered) - 1e-9))
    return ordered[min(rank, len(ordered)) - 1]


def summarize(latencies_s: Sequence[float]) -> dict[str, float | None]:
    """p50/p95/p99/max in milliseconds of a list of durations in seconds."""
    ordered = sorted(latencies_s)
    out: dict[str, float | None] = {}
    for key, q in (("p50_ms", 0.5), ("p95_ms", 0.95), ("p99_ms", 0.99)):
        value = percentile(ordered, q)
        out[key] = None if value is None else round(value * 1000, 3)
    out["max_ms"] = round(ordered[-1] * 1000, 3) if ordered else None
    return out


@dataclass(slots=True)
class RouteStats:
    """Every measured request of one route."""

    latencies: array[float] = field(default_factory=lambda: array("d"))
    errors: int = 0
    unsent: int = 0  # arrivals the generator dropped: errors without a latency
    statuses: Counter[str] = field(default_factory=Counter)
    error_kinds: Counter[str] = field(default_factory=Counter)

    @property
    def count(self) -> int:
        return len(self.latencies) + self.unsent

    @property
    def responses(self) -> int:
        return len(self.latencies) - self.statuses["none"]


@dataclass(slots=True)
class Second:
    """The requests that started in one second of the measured window."""

    latencies: array[float] = field(default_factory=lambda: array("d"))
    errors: int = 0


class Recorder:
    """Collects samples; `window_start`/`window_end` bound what counts, on the loop clock."""

    def __init__(self, routes: Sequence[str] = ()) -> None:
        self.routes: dict[str, RouteStats] = {name: RouteStats() for name in routes}
        self.timeline: list[Second] = []
        self.window_start = math.inf
        self.window_end = math.inf
        self.live_done = 0
        self.live_errors = 0
        self.live_latencies: list[float] = []
        self.last_error: str | None = None

    def open_window(self, start: float, end: float) -> None:
        """Count requests that start in [start, end)."""
        self.window_start, self.window_end = start, end
        self.timeline = [Second() for _ in range(max(1, math.ceil(end - start)))]

    def add(self, route: str, start: float, end: float, status: int, error: str | None) -> None:
        """One finished request; `status` is 0 when no response came, `error` says why not."""
        latency = end - start
        self.live_done += 1
        self.live_latencies.append(latency)
        if error is not None:
            self.live_errors += 1
            self.last_error = f"{route}: {error}"
        if not self.window_start <= start < self.window_end:
            return
        stats = self.routes.get(route)
        if stats is None:
            stats = self.routes[route] = RouteStats()
        stats.latencies.append(latency)
        stats.statuses[str(status) if status else "none"] += 1
        second = self.timeline[min(int(start - self.window_start), len(self.timeline) - 1)]
        second.latencies.append(latency)
        if error is not None:
            stats.errors += 1
            stats.error_kinds[error] += 1
            second.errors += 1

    def add_unsent(self, route: str, start: float) -> None:
        """An arrival that was never sent: an error with no latency."""
        self.live_errors += 1
        if not self.window_start <= start < self.window_end:
            return
        stats = self.routes.setdefault(route, RouteStats())
        stats.unsent += 1
        stats.errors += 1
        stats.error_kinds["not sent"] += 1
        self.timeline[min(int(start - self.window_start), len(self.timeline) - 1)].errors += 1

    def take_live(self) -> tuple[int, int, list[float]]:
        """(done, errors, latencies) since the last call, for the progress line."""
        out = (self.live_done, self.live_errors, self.live_latencies)
        self.live_done, self.live_errors, self.live_latencies = 0, 0, []
        return out

    def route_report(self, name: str) -> dict[str, Any]:
        """count, errors, error_rate and percentiles of one route."""
        stats = self.routes.get(name) or RouteStats()
        count = stats.count
        return {
            "count": count,
            "errors": stats.errors,
            "error_rate": round(stats.errors / count, 6) if count else 0.0,
            **summarize(stats.latencies),
            "statuses": dict(sorted(stats.statuses.items())),
            "error_kinds": dict(stats.error_kinds.most_common()),
        }

    def overall_report(self) -> dict[str, Any]:
        """The same figures over every route, and how many requests got a response."""
        latencies = [x for s in self.routes.values() for x in s.latencies]
        errors = sum(s.errors for s in self.routes.values())
        count = sum(s.count for s in self.routes.values())
        return {
            "count": count,
            "responses": sum(s.responses for s in self.routes.values()),
            "errors": errors,
            "error_rate": round(errors / count, 6) if count else 0.0,
            **summarize(latencies),
        }

    def timeline_report(self) -> list[dict[str, Any]]:
        """Per second of the measured window: t, count, errors, p50_ms, p95_ms."""
        out = []
        for t, second in enumerate(self.timeline):
            figures = summarize(second.latencies)
            out.append(
                {
                    "t": t,
                    "count": len(second.latencies),
                    "errors": second.errors,
                    "p50_ms": figures["p50_ms"],
                    "p95_ms": figures["p95_ms"],
                }
            )
        return out
