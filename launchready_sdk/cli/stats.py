"""What the load generator measured: per-route samples, a per-second timeline, percentiles.

`Recorder.add` is called once per finished request with its start (the scheduled send time
in the open model), its end, and the size and type of its response body. Requests that started
during the warm-up or after the measured window feed only the live figures. Percentiles are
exact over every sample (nearest rank), not estimated: a run keeps about 40 bytes per request
(about 150 MB for an hour at 1,000 requests/s).

The throughput is counted by when requests were actually sent: in the open model a generator
that falls behind sends its arrivals late, so counting them by their scheduled time would
report the requested rate whatever was achieved.
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


DEFAULT_PERCENTILES = (50.0, 95.0, 99.0)


def percentile_key(p: float) -> str:
    """The report key of a percentile: `p95_ms`, `p99_9_ms` (`.` written `_`)."""
    text = f"{p:g}".replace(".", "_")
    return f"p{text}_ms"


def summarize(
    latencies_s: Sequence[float], percentiles: Sequence[float] = DEFAULT_PERCENTILES
) -> dict[str, float | None]:
    """The percentiles (p50/p95/p99 always) and max, in milliseconds, of durations in seconds."""
    ordered = sorted(latencies_s)
    out: dict[str, float | None] = {}
    for p in sorted({*DEFAULT_PERCENTILES, *percentiles}):
        value = percentile(ordered, p / 100)
        out[percentile_key(p)] = None if value is None else round(value * 1000, 3)
    out["max_ms"] = round(ordered[-1] * 1000, 3) if ordered else None
    return out


@dataclass(slots=True)
class Second:
    """The requests that started in one second of the measured window."""

    latencies: array[float] = field(default_factory=lambda: array("d"))
    errors: int = 0


@dataclass(slots=True)
class RouteStats:
    """Every measured request of one route."""

    latencies: array[float] = field(default_factory=lambda: array("d"))
    errors: int = 0
    unsent: int = 0  # arrivals the generator dropped: errors without a latency
    statuses: Counter[str] = field(default_factory=Counter)
    error_kinds: Counter[str] = field(default_factory=Counter)
    sizes: array[int] = field(default_factory=lambda: array("q"))  # response body bytes
    json_responses: int = 0
    second_of: array[int] = field(default_factory=lambda: array("I"))  # per latency
    error_seconds: Counter[int] = field(default_factory=Counter)

    @property
    def count(self) -> int:
        return len(self.latencies) + self.unsent

    @property
    def responses(self) -> int:
        return len(self.latencies) - self.statuses["none"]


class Recorder:
    """Collects samples; `window_start`/`window_end` bound what counts, on the loop clock.

    Args:
        routes: the routes to report even when none of their requests was measured.
        percentiles: the percentiles to report (p50, p95 and p99 always are).
    """

    def __init__(
        self, routes: Sequence[str] = (), percentiles: Sequence[float] = DEFAULT_PERCENTILES
    ) -> None:
        self.routes: dict[str, RouteStats] = {name: RouteStats() for name in routes}
        self.percentiles = tuple(percentiles)
        self.timeline: list[Second] = []
        self.window_start = math.inf
        self.window_end = math.inf
        self.sent_in_window = 0  # requests actually sent inside the window
        self.answered_in_window = 0  # of those, the ones that got a response
        self.live_done = 0
        self.live_errors = 0
        self.live_latencies: list[float] = []
        self.last_error: str | None = None

    def open_window(self, start: float, end: float) -> None:
        """Count requests that start in [start, end)."""
        self.window_start, self.window_end = start, end
        self.timeline = [Second() for _ in range(max(1, math.ceil(end - start)))]

    def add(
        self,
        route: str,
        start: float,
        end: float,
        status: int,
        error: str | None,
        size: int = -1,
        json: bool = False,
        sent_at: float | None = None,
    ) -> None:
        """One finished request; `status` is 0 when no response came, `error` says why not.

        `start` is when it should have been sent (the schedule, in the open model) and
        `sent_at` when it was (default: `start`); `size` is the response body's length (-1:
        none, or a HEAD response) and `json` whether the response said it was JSON.
        """
        latency = end - start
        self.live_done += 1
        self.live_latencies.append(latency)
        if error is not None:
            self.live_errors += 1
            self.last_error = f"{route}: {error}"
        sent = start if sent_at is None else sent_at
        if self.window_start <= sent < self.window_end:
            self.sent_in_window += 1
            if status:
                self.answered_in_window += 1
        if not self.window_start <= start < self.window_end:
            return
        stats = self.routes.get(route)
        if stats is None:
            stats = self.routes[route] = RouteStats()
        stats.latencies.append(latency)
        stats.statuses[str(status) if status else "none"] += 1
        if size >= 0:
            stats.sizes.append(size)
            if json:
                stats.json_responses += 1
        index = min(int(start - self.window_start), len(self.timeline) - 1)
        second = self.timeline[index]
        second.latencies.append(latency)
        stats.second_of.append(index)
        if error is not None:
            stats.errors += 1
            stats.error_kinds[error] += 1
            stats.error_seconds[index] += 1
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
        index = min(int(start - self.window_start), len(self.timeline) - 1)
        self.timeline[index].errors += 1
        stats.error_seconds[index] += 1

    def take_live(self) -> tuple[int, int, list[float]]:
        """(done, errors, latencies) since the last call, for the progress line."""
        out = (self.live_done, self.live_errors, self.live_latencies)
        self.live_done, self.live_errors, self.live_latencies = 0, 0, []
        return out

    def route_report(self, name: str) -> dict[str, Any]:
        """count, errors, error_rate, percentiles and payload sizes of one route."""
        stats = self.routes.get(name) or RouteStats()
        count = stats.count
        sizes = sorted(stats.sizes)
        p95_size = percentile(sizes, 0.95)
        return {
            "count": count,
            "errors": stats.errors,
            "error_rate": round(stats.errors / count, 6) if count else 0.0,
            **summarize(stats.latencies, self.percentiles),
            "statuses": dict(sorted(stats.statuses.items())),
            "error_kinds": dict(stats.error_kinds.most_common()),
            "payload_bytes_p95": None if p95_size is None else int(p95_size),
            "payload_json": bool(sizes) and stats.json_responses * 2 >= len(sizes),
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
            **summarize(latencies, self.percentiles),
        }

    def timeline_report(self) -> list[dict[str, Any]]:
        """Per second of the measured window: t, count, errors, p50_ms, p95_ms."""
        return [_second(t, second) for t, second in enumerate(self.timeline)]

    def route_timelines(self) -> dict[str, list[dict[str, Any]]]:
        """Per route, per second of the measured window: t, count, errors, p50_ms, p95_ms."""
        out = {}
        for name, stats in self.routes.items():
            seconds = [Second() for _ in self.timeline]
            for latency, index in zip(stats.latencies, stats.second_of, strict=True):
                seconds[index].latencies.append(latency)
            for index, errors in stats.error_seconds.items():
                seconds[index].errors = errors
            out[name] = [_second(t, second) for t, second in enumerate(seconds)]
        return out


def _second(t: int, second: Second) -> dict[str, Any]:
    figures = summarize(second.latencies)
    return {
        "t": t,
        "count": len(second.latencies),
        "errors": second.errors,
        "p50_ms": figures["p50_ms"],
        "p95_ms": figures["p95_ms"],
    }
