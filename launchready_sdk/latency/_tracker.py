"""`LatencyTracker`: per-route series, budgets, snapshots, collectors and the fleet flush/merge."""

from __future__ import annotations

import contextlib
import os
import socket
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any

import orjson

from launchready_sdk.errors import StoreUnavailable
from launchready_sdk.latency._exposition import Figures
from launchready_sdk.latency._histogram import (
    DEFAULT_BUCKETS_S,
    LogLinearHistogram,
    check_buckets,
    describe_histogram,
)
from launchready_sdk.latency._prometheus import (
    Collector,
    CollectorKind,
    PrometheusCollector,
    build_figures,
)
from launchready_sdk.latency._window import RollingHistogram, SeriesKey
from launchready_sdk.latency._workers import PUBLISH_INTERVAL_S, WorkerShare
from launchready_sdk.logs import get_logger
from launchready_sdk.patterns import PatternTable
from launchready_sdk.periodic import Periodic
from launchready_sdk.store import RedisStore

_log = get_logger("launchready.latency")


DEFAULT_BUDGET_MS = 500.0
DEFAULT_WINDOW_S = 300
DEFAULT_MAX_ROUTES = 500
DEFAULT_FLUSH_INTERVAL_S = 10.0
DEFAULT_BUDGET_MIN_SAMPLES = 20
DEFAULT_BUDGET_WARN_INTERVAL_S = 300.0
UNMATCHED = "<unmatched>"
OVERFLOW = "<overflow>"
KNOWN_METHODS = frozenset(
    {"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE", "CONNECT", "QUERY"}
)
_SLOT_S = 60
_FLEET_STALE_S = 3600.0  # a worker that has not flushed for an hour leaves "since start"


class LatencyTracker:
    """Per-route latency figures, budgets and the fleet merge.

    Args:
        budget_ms: the p95 every route should stay under.
        budgets: per-route budgets; keys are `"GET /products/{id}"` or a pattern matched
            against the template (`"/admin/*"`), values in ms.
        window_s: the rolling window (whole minutes).
        max_routes: distinct (method, route) pairs before new ones go to `<overflow>`.
        store: Redis for the fleet view (None: this process only).
        flush_interval_s: how often the background task flushes and merges.
        budget_min_samples: requests a route needs in the window before its budget is judged.
        budget_warn_interval_s: at most one budget warning per route per interval.
        buckets_s: Prometheus bucket bounds (bin edges; see `check_buckets`).
    """

    def __init__(
        self,
        *,
        budget_ms: float = DEFAULT_BUDGET_MS,
        budgets: Mapping[str, float] | None = None,
        window_s: int = DEFAULT_WINDOW_S,
        max_routes: int = DEFAULT_MAX_ROUTES,
        store: RedisStore | None = None,
        flush_interval_s: float = DEFAULT_FLUSH_INTERVAL_S,
        budget_min_samples: int = DEFAULT_BUDGET_MIN_SAMPLES,
        budget_warn_interval_s: float = DEFAULT_BUDGET_WARN_INTERVAL_S,
        buckets_s: Iterable[float] = DEFAULT_BUCKETS_S,
    ) -> None:
        if window_s < _SLOT_S or budget_ms <= 0 or max_routes < 1:
            raise ValueError("window_s must be ≥ 60, budget_ms > 0 and max_routes ≥ 1")
        self.budget_ms = float(budget_ms)
        self._exact_budgets, self._pattern_budgets = _split_budgets(budgets or {})
        self.slots = max(1, int(window_s // _SLOT_S))
        self.max_routes = max_routes
        self.store = store
        self.flush_interval_s = flush_interval_s
        self.budget_min_samples = budget_min_samples
        self.budget_warn_interval_s = budget_warn_interval_s
        self.buckets_s = check_buckets(buckets_s)
        self.series: dict[SeriesKey, RollingHistogram] = {}
        self.routes: set[tuple[str, str]] = set()
        self.dropped = 0
        self.collectors: dict[str, Collector] = {}
        self.worker_id = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"
        self._wall_offset = time.time() - time.perf_counter()
        self._budget_warned: dict[tuple[str, str], float] = {}
        self._fleet: dict[str, dict[str, Any]] | None = None
        # (method, route) -> (stamp, past window, past total, [w5xx, t5xx, w4xx]): see
        # `_local_groups`.
        self._route_past: dict[
            tuple[str, str], tuple[Any, LogLinearHistogram, LogLinearHistogram, list[int]]
        ] = {}
        self._periodic = Periodic("launchready.latency", flush_interval_s, self.tick, self.flush)
        self.share: WorkerShare | None = None  # the other workers behind the port (/metrics)
        # Told how many workers serve the port (this one included) when that number changes.
        self.on_workers: list[Callable[[int], None]] = []
        self._workers_seen = 1
        self._publisher = Periodic(
            "launchready.latency.publish", PUBLISH_INTERVAL_S, self._publish, self._unpublish
        )

    def minute(self, perf_now: float | None = None) -> int:
        """The wall-clock minute number of a `perf_counter` reading (immune to clock jumps)."""
        now = time.perf_counter() if perf_now is None else perf_now
        return int((now + self._wall_offset) // _SLOT_S)

    def observe(self, method: str, route: str | None, status: int, seconds: float) -> None:
        """Record one finished request; never raises (a failure is counted in `dropped`).

        `LaunchReady`'s request-context layer calls this after every response except those of
        its own endpoints (health, readiness, metrics).

        Args:
            method: the request method (one outside the standard methods is kept as `OTHER`).
            route: the route template; None when no route matched (`<unmatched>`).
            status: the response status; 0 when none was started because the client went
                away, recorded as 499 (as nginx logs it), which is not a server error.
            seconds: the request's duration.
        """
        try:
            self.record(method, route, status or 499, seconds, time.perf_counter())
        except Exception:
            self.dropped += 1

    def record(
        self, method: str, route: str | None, status: int, seconds: float, now: float
    ) -> None:
        """Record one request: `now` is the `perf_counter` reading at its end (may raise)."""
        series = self.series.get((method, route or UNMATCHED, status // 100))
        if series is None:
            series = self._new_series((method, route or UNMATCHED, status // 100), now)
        minute = int((now + self._wall_offset) // _SLOT_S)
        if minute > series.minute:  # `series.record`, inlined: this runs on every request
            series.rotate(minute)
        series.current.record(seconds)

    def _new_series(self, key: SeriesKey, now: float) -> RollingHistogram:
        method, route, klass = key
        if method not in KNOWN_METHODS or not 1 <= klass <= 5:
            # Never stored under the client's spelling, nor a status class outside 1xx-5xx:
            # labels are bounded by construction (11 methods, 6 classes, max_routes routes).
            method = method if method in KNOWN_METHODS else "OTHER"
            klass = klass if 1 <= klass <= 5 else 0
            key = (method, route, klass)
            if key in self.series:
                return self.series[key]
        if (method, route) not in self.routes:
            if len(self.routes) >= self.max_routes and route not in (UNMATCHED, OVERFLOW):
                key = (method, OVERFLOW, klass)
                if key in self.series:
                    return self.series[key]
            self.routes.add((key[0], key[1]))
        series = RollingHistogram(self.slots, self.minute(now))
        self.series[key] = series
        return series

    def budget_for(self, method: str, route: str) -> float:
        """The p95 budget in ms of a route."""
        exact = self._exact_budgets.get(f"{method} {route}")
        if exact is None:
            exact = self._exact_budgets.get(route)
        if exact is not None:
            return exact
        found = self._pattern_budgets.match(route) if self._pattern_budgets else None
        return float(found[1]) if found is not None else self.budget_ms

    # --- reading ---

    def snapshot(
        self, *, fleet: bool = False, since_start: bool = True
    ) -> dict[str, dict[str, Any]]:
        """`{"GET /products/{id}": {"count", "errors", "p50_ms", "p95_ms", "p99_ms", ...}}`.

        Top-level figures cover the rolling window; `since_start` covers the process's life
        (`since_start=False` leaves it out, and the work it takes: about half a snapshot's).
        `fleet=True` returns the latest merge of every worker sharing the Redis (this
        process's own figures until the first merge, or without Redis).
        """
        if fleet and self._fleet is not None:
            return self._fleet
        out = self._describe(self._local_groups(self.minute(), since_start))
        self._warn_over_budget(out)
        return out

    def _local_groups(
        self, minute: int, since_start: bool = True
    ) -> dict[tuple[str, str], list[Any]]:
        """This process's series grouped by route, as `_grouped` returns them (without the
        since-start totals, None in their place, when `since_start` is false).

        A route's finished minutes (its window's past and its since-start total, across status
        classes) are merged once and kept until one of its series turns a minute; each call
        then only adds the minutes in progress.
        """
        oldest = minute - self.slots
        members: dict[tuple[str, str], list[tuple[int, RollingHistogram]]] = {}
        for (method, route, klass), series in list(self.series.items()):
            members.setdefault((method, route), []).append((klass, series))
        grouped: dict[tuple[str, str], list[Any]] = {}
        cache = self._route_past
        for key, classes in members.items():
            stamp = (oldest, tuple((klass, s.version) for klass, s in classes))
            past = cache.get(key)
            if past is None or past[0] != stamp:
                window, whole, counts = LogLinearHistogram(), LogLinearHistogram(), [0, 0, 0]
                for klass, s in classes:
                    _add(window, whole, counts, klass, s.past(oldest), s.total)
                past = cache[key] = (stamp, window, whole, counts)
            window, counts = past[1].copy(), list(past[3])
            total = past[2].copy() if since_start else None
            for klass, s in classes:
                current = s.current
                if current.count:
                    recent = current if s.minute >= oldest else _EMPTY
                    _add(window, total, counts, klass, recent, current)
            grouped[key] = [window, total, *counts]
        if len(cache) > 2 * len(members) + 64:  # routes that left the tracker
            for gone in [k for k in cache if k not in members]:
                del cache[gone]
        return grouped

    def _grouped(
        self,
        items: Iterable[
            tuple[SeriesKey, Sequence[LogLinearHistogram], Sequence[LogLinearHistogram]]
        ],
    ) -> dict[tuple[str, str], list[Any]]:
        """Merge status classes: (method, route) -> [window, since start, window 5xx, total 5xx,
        window 4xx]; each series gives the parts its window and its total merge from."""
        grouped: dict[tuple[str, str], list[Any]] = {}
        for (method, route, klass), window_parts, total_parts in items:
            g = grouped.get((method, route))
            if g is None:
                g = grouped[(method, route)] = [LogLinearHistogram(), LogLinearHistogram(), 0, 0, 0]
            window, total = g[0], g[1]
            before_w, before_t = window.count, total.count
            for part in window_parts:
                window.merge(part)
            for part in total_parts:
                total.merge(part)
            if klass >= 5:
                g[2] += window.count - before_w
                g[3] += total.count - before_t
            elif klass == 4:
                g[4] += window.count - before_w
        return grouped

    def _describe(self, grouped: dict[tuple[str, str], list[Any]]) -> dict[str, dict[str, Any]]:
        out: dict[str, dict[str, Any]] = {}
        for (method, route), (window, total, w_errors, t_errors, w_4xx) in sorted(grouped.items()):
            budget = self.budget_for(method, route)
            entry = describe_histogram(window, w_errors)
            p95 = entry["p95_ms"]
            entry["budget_ms"] = budget
            entry["client_errors"] = w_4xx  # 4xx in the window (`errors` are the 5xx)
            entry["over_budget_count"] = window.count_above(budget / 1000.0)
            entry["over_budget"] = bool(
                p95 is not None and p95 > budget and window.count >= self.budget_min_samples
            )
            entry["window_s"] = self.slots * _SLOT_S
            if total is not None:
                entry["since_start"] = describe_histogram(total, t_errors)
            out[f"{method} {route}"] = entry
        return out

    def _warn_over_budget(self, snapshot: Mapping[str, Mapping[str, Any]]) -> None:
        now = time.monotonic()
        for route, entry in snapshot.items():
            if not entry["over_budget"]:
                continue
            key = tuple(route.split(" ", 1))
            last = self._budget_warned.get(key)  # type: ignore[arg-type]
            if last is not None and now - last < self.budget_warn_interval_s:
                continue
            self._budget_warned[key] = now  # type: ignore[index]
            _log.warning(
                "latency.over_budget",
                route=route,
                p95_ms=entry["p95_ms"],
                budget_ms=entry["budget_ms"],
                count=entry["count"],
                window_s=entry["window_s"],
            )

    # --- exporting to other signals ---

    def add_collector(
        self, name: str, fn: Callable[[], Any], *, kind: CollectorKind = "counter", help: str = ""
    ) -> None:
        """Export another module's figures on /metrics, read when scraped.

        `fn()` returns a number, or an iterable of `(labels, value)` pairs; for
        `kind="histogram"` values are `LogLinearHistogram`s in seconds. Errors at scrape
        time drop that metric from the page, never the page.
        """
        if kind not in ("counter", "gauge", "histogram"):
            raise ValueError(f"unknown collector kind {kind!r}")
        self.collectors[name] = Collector(name, fn, kind, help or name)

    def prometheus_collector(self) -> Any:
        """A `prometheus_client` collector of these figures (imports prometheus_client)."""
        return PrometheusCollector(self)

    def figures(self) -> Figures:
        """This worker's figures for /metrics (see `latency._exposition`)."""
        return build_figures(self)

    # --- the fleet ---

    async def start(self) -> None:
        """Start the background flush/merge/budget task, and the publishing of this worker's
        figures for its siblings' /metrics (call at lifespan start-up)."""
        await self._periodic.start()
        if self.share is not None:
            await self._publisher.start()

    async def stop(self) -> None:
        """Stop the tasks and flush a last time (call at shutdown, before Redis closes)."""
        if self._publisher.running:
            await self._publisher.stop()
        await self._periodic.stop()

    def total_requests(self) -> int:
        """Requests recorded since start (every series, every status class)."""
        return sum(s.total.count + s.current.count for s in list(self.series.values()))

    async def _publish(self) -> None:
        share = self.share
        if share is None:
            return
        share.publish(self.figures, self.total_requests() + self.dropped)
        if self.on_workers:
            workers = 1 + share.live_siblings()
            if workers != self._workers_seen:
                self._workers_seen = workers
                for tell in list(self.on_workers):  # a hook may remove itself
                    tell(workers)

    async def _unpublish(self) -> None:
        """At shutdown: a worker of an explicit metrics directory leaves its last figures;
        otherwise its file goes."""
        share = self.share
        if share is None:
            return
        if share.explicit:
            share.publish(self.figures, self.total_requests(), force=True)
        else:
            share.remove()

    async def tick(self) -> None:
        """One round of the background task: budgets, flush, fleet merge."""
        self.snapshot()
        if self.store is not None:
            await self.flush()
            await self.refresh_fleet()

    async def flush(self) -> None:
        """Write this worker's current and previous minute and its totals to Redis."""
        store = self.store
        if store is None:
            return
        minute = self.minute()
        items = list(self.series.items())
        wall = time.time()
        try:
            for m in (minute - 1, minute):
                blob = [[*k, h.to_wire()] for k, s in items if (h := s.minute_hist(m)) and h.count]
                if blob:
                    key = store.key("latency", "m", str(m))
                    await store.execute("HSET", key, self.worker_id, orjson.dumps(blob))
                    await store.execute("EXPIRE", key, (self.slots + 3) * _SLOT_S)
            totals = [[*k, s.since_start().to_wire()] for k, s in items]
            data = orjson.dumps({"t": wall, "s": totals})
            await store.execute("HSET", store.key("latency", "total"), self.worker_id, data)
        except StoreUnavailable:
            return

    async def refresh_fleet(self) -> None:
        """Read every worker's figures from Redis and keep the merge for `snapshot(fleet=True)`."""
        store = self.store
        if store is None:
            return
        minute = self.minute()
        window: dict[SeriesKey, LogLinearHistogram] = {}
        total: dict[SeriesKey, LogLinearHistogram] = {}
        try:
            for m in range(minute - self.slots, minute + 1):
                reply = await store.execute("HGETALL", store.key("latency", "m", str(m)))
                for _, blob in _pairs(reply):
                    _merge_blob(window, orjson.loads(blob))
            reply = await store.execute("HGETALL", store.key("latency", "total"))
        except StoreUnavailable:
            return
        stale = [w for w, blob in _pairs(reply) if not _merge_totals(total, blob)]
        if stale:
            with contextlib.suppress(StoreUnavailable):
                await store.execute("HDEL", store.key("latency", "total"), *stale)
        empty = LogLinearHistogram()
        keys = set(window) | set(total)
        self._fleet = self._describe(
            self._grouped((k, (window.get(k, empty),), (total.get(k, empty),)) for k in keys)
        )


def _split_budgets(budgets: Mapping[str, float]) -> tuple[dict[str, float], PatternTable[float]]:
    exact: dict[str, float] = {}
    patterns: dict[str, float] = {}
    for key, value in budgets.items():
        if float(value) <= 0:
            raise ValueError(f"latency budget for {key!r} must be positive")
        text = key.strip()
        if "*" in text:
            patterns[text] = float(value)
        else:
            exact[text] = float(value)
    return exact, PatternTable(patterns)


# --- reading the fleet back from Redis: hash replies, workers' wire blobs, stale totals ---


def _pairs(reply: Any) -> Iterator[tuple[bytes, bytes]]:
    items = list(reply or [])
    for k in range(0, len(items) - 1, 2):
        yield items[k], items[k + 1]


def _merge_blob(into: dict[SeriesKey, LogLinearHistogram], blob: Any) -> None:
    for method, route, klass, wire in blob:
        key = (str(method), str(route), int(klass))
        h = into.get(key)
        if h is None:
            into[key] = LogLinearHistogram.from_wire(wire)
        else:
            h.merge(LogLinearHistogram.from_wire(wire))


def _merge_totals(into: dict[SeriesKey, LogLinearHistogram], raw: bytes) -> bool:
    """Merge one worker's totals; False when it has not flushed for an hour (stale)."""
    data = orjson.loads(raw)
    if time.time() - float(data.get("t", 0)) > _FLEET_STALE_S:
        return False
    _merge_blob(into, data.get("s", []))
    return True


_EMPTY = LogLinearHistogram()
_RoutePast = tuple[Any, LogLinearHistogram, LogLinearHistogram, list[int]]


def _add(
    window: LogLinearHistogram,
    total: LogLinearHistogram | None,
    counts: list[int],
    klass: int,
    recent: LogLinearHistogram,
    since_start: LogLinearHistogram,
) -> None:
    """Merge one status class's figures into a route's: counts are [window 5xx, total 5xx,
    window 4xx] (the total is left alone when there is none)."""
    window.merge(recent)
    if total is not None:
        total.merge(since_start)
    if klass >= 5:
        counts[0] += recent.count
        counts[1] += since_start.count
    elif klass == 4:
        counts[2] += recent.count
