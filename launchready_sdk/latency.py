"""Per-route latency: log-linear histograms, rolling p50/p95/p99, budgets, fleet merge, /metrics.

`LatencyMiddleware` sits inside the request-context and health layers, outside rate limits and
the cache. It times every request with `time.perf_counter` (monotonic: wall-clock jumps change
no duration) and, after the app returns, records it under the method and the route template
the router left in the scope (`GET /products/{id}`): `scope["route"]`, the path format FastAPI
keeps for included routers, and the prefix mounts added to `root_path`. It never walks the
app's routes and never records a raw path. Unmatched requests share one `<unmatched>` bucket
per method, unknown methods count as `OTHER`, and past `max_routes` templates new ones fall
into `<overflow>`, so memory is bounded whatever clients send. A layer that answers for the
app (a cache hit) can name the route with `scope["launchready.route"]`.

Each (method, route, status class) keeps a ring of per-minute `LogLinearHistogram`s (the
rolling window, 5 minutes by default, plus the minute in progress) and a since-start total.
The histogram has 360 linear bins per decade from 1 µs to 100 s: a percentile is reported as
its bin's midpoint, within 1.25 % of the true value, and the Prometheus bucket bounds
(`DEFAULT_BUCKETS_S`) are bin edges, so `/metrics` bucket counts are exact.

Fleet view: with a `RedisStore`, a background task (`start()`/`stop()`) writes this worker's
histograms for the current and previous minute, and its since-start totals, to Redis every
`flush_interval_s`, and reads everyone's back into the merge `snapshot(fleet=True)` returns.
Each write replaces the worker's own field (HSET), so a timed-out write that did land is never
counted twice, unlike increments. Fleet "since start" covers workers that flushed in the last
hour. A Redis outage only pauses the fleet view; requests never wait on it.

Security stance: labels are route templates, methods from a fixed list and status classes,
never client-controlled text. The recording path catches every exception it could raise and
counts it in `dropped`, so metrics can never fail a request. Limits: a route template is only
as good as what the router leaves in the scope; a mount whose own path has parameters is
templated by matching its path parameter values against the prefix segments.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import os
import socket
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any, Literal

import orjson

from launchready_sdk.errors import StoreUnavailable
from launchready_sdk.logs import get_logger
from launchready_sdk.proxy import PatternTable
from launchready_sdk.routing import SCOPE_ROUTE, route_template
from launchready_sdk.stores import RedisStore
from launchready_sdk.types import ASGIApp, Message, Receive, Scope, Send

_log = get_logger("launchready.latency")

DEFAULT_BUDGET_MS = 500.0
DEFAULT_WINDOW_S = 300
DEFAULT_MAX_ROUTES = 500
DEFAULT_FLUSH_INTERVAL_S = 10.0
DEFAULT_BUDGET_MIN_SAMPLES = 20
DEFAULT_BUDGET_WARN_INTERVAL_S = 300.0
DEFAULT_BUCKETS_S = (
    0.005,
    0.01,
    0.025,
    0.05,
    0.075,
    0.1,
    0.25,
    0.5,
    0.75,
    1.0,
    2.5,
    5.0,
    7.5,
    10.0,
)
UNMATCHED = "<unmatched>"
OVERFLOW = "<overflow>"
KNOWN_METHODS = frozenset(
    {"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE", "CONNECT", "QUERY"}
)
_SLOT_S = 60
_FLEET_STALE_S = 3600.0
_QUANTILES = (0.5, 0.95, 0.99)

# --- the histogram ----------------------------------------------------------------------------

_PER_DECADE = 360  # 40 linear bins per tenth of a decade: the bin width is 2.5 % of its decade
_DECADES = 8  # 1 µs .. 100 s
NBINS = _PER_DECADE * _DECADES
_POW10 = tuple(10.0**k for k in range(_DECADES + 1))
_MAX_US = _POW10[_DECADES]


def bin_index(seconds: float) -> int:
    """The bin of a duration: below 1 µs in the first, above 100 s in the last."""
    us = seconds * 1e6
    if us < 1.0:
        return 0
    if not us < _MAX_US:  # also NaN and infinity
        return NBINS - 1
    k = int(math.log10(us))
    base = _POW10[k]
    return k * _PER_DECADE + min(int((us - base) * 40.0 / base), _PER_DECADE - 1)


def bin_bounds(index: int) -> tuple[float, float]:
    """A bin's [low, high) edges in seconds."""
    k, j = divmod(index, _PER_DECADE)
    base = _POW10[k] / 1e6
    return base * (1 + j / 40), base * (1 + (j + 1) / 40)


class LogLinearHistogram:
    """Durations in seconds, counted in at most `NBINS` log-linear bins (relative error ≤ 1.25 %).

    Insert is O(1); histograms merge by adding bins, and `to_wire()`/`from_wire()` give a
    compact JSON-able list. Memory is bounded by `NBINS` entries; a typical route uses a few
    hundred.
    """

    __slots__ = ("bins", "count", "max", "min", "sum")

    def __init__(self) -> None:
        self.bins: dict[int, int] = {}
        self.count = 0
        self.sum = 0.0
        self.min = math.inf
        self.max = 0.0

    def record(self, seconds: float) -> None:
        """Count one duration."""
        us = seconds * 1e6
        if 1.0 <= us < _MAX_US:  # bin_index, inlined: this runs on every request
            k = int(math.log10(us))
            base = _POW10[k]
            i = k * _PER_DECADE + min(int((us - base) * 40.0 / base), _PER_DECADE - 1)
        else:
            i = bin_index(seconds)
        bins = self.bins
        bins[i] = bins.get(i, 0) + 1
        self.count += 1
        self.sum += seconds
        if seconds > self.max:
            self.max = seconds
        if seconds < self.min:
            self.min = seconds

    def merge(self, other: LogLinearHistogram) -> LogLinearHistogram:
        """Add `other`'s counts to this histogram; returns self."""
        bins = self.bins
        for i, n in list(other.bins.items()):
            bins[i] = bins.get(i, 0) + n
        self.count += other.count
        self.sum += other.sum
        self.min = min(self.min, other.min)
        self.max = max(self.max, other.max)
        return self

    def quantile(self, q: float) -> float | None:
        """The nearest-rank `q` quantile (0 < q ≤ 1) in seconds, or None when empty."""
        if self.count == 0:
            return None
        rank = max(1, math.ceil(q * self.count))
        seen = 0
        for i in sorted(self.bins):
            seen += self.bins[i]
            if seen >= rank:
                low, high = bin_bounds(i)
                return min(max((low + high) / 2, self.min), self.max)
        return self.max

    def cumulative(self, bounds: Iterable[float]) -> list[int]:
        """Counts at or below each bound (bounds must be bin edges, in increasing order)."""
        edges = [bin_index(b * (1 + 1e-9)) for b in bounds]
        out = [0] * len(edges)
        for i, n in list(self.bins.items()):
            for k, edge in enumerate(edges):
                if i < edge:
                    out[k] += n
        return out

    def to_wire(self) -> list[float]:
        """`[count, sum, min, max, bin, n, bin, n, ...]`."""
        wire: list[float] = [self.count, self.sum, self.min if self.count else 0.0, self.max]
        for i, n in self.bins.items():
            wire += (i, n)
        return wire

    @classmethod
    def from_wire(cls, wire: list[Any]) -> LogLinearHistogram:
        """The inverse of `to_wire` (bins out of range are dropped)."""
        h = cls()
        h.count, h.sum, h.max = int(wire[0]), float(wire[1]), float(wire[3])
        h.min = float(wire[2]) if h.count else math.inf
        for k in range(4, len(wire) - 1, 2):
            i = int(wire[k])
            if 0 <= i < NBINS:
                h.bins[i] = h.bins.get(i, 0) + int(wire[k + 1])
        return h


def check_buckets(bounds: Iterable[float]) -> tuple[float, ...]:
    """Validate Prometheus bucket bounds: increasing, each one a histogram bin edge."""
    out = tuple(float(b) for b in bounds)
    for b in out:
        low, _ = bin_bounds(bin_index(b * (1 + 1e-9)))
        if not 1e-6 <= b <= 100 or abs(low - b) > b * 1e-9:
            raise ValueError(
                f"bucket {b} s is not a bin edge: use multiples of 0.025 times 10^k (0.1, 0.125)"
            )
    if list(out) != sorted(set(out)):
        raise ValueError("bucket bounds must be strictly increasing")
    return out


# --- rolling windows --------------------------------------------------------------------------


class RollingHistogram:
    """One key's histogram for the minute in progress, the previous minutes and since start."""

    __slots__ = ("current", "minute", "ring", "total")

    def __init__(self, window_slots: int, minute: int) -> None:
        self.current = LogLinearHistogram()
        self.minute = minute
        self.ring: deque[tuple[int, LogLinearHistogram]] = deque(maxlen=window_slots)
        self.total = LogLinearHistogram()

    def record(self, seconds: float, minute: int) -> None:
        """Count one duration in `minute` (a minute number; earlier ones count as the current)."""
        if minute > self.minute:
            self.rotate(minute)
        self.current.record(seconds)

    def rotate(self, minute: int) -> None:
        if self.current.count:
            self.ring.append((self.minute, self.current))
            self.total.merge(self.current)
            self.current = LogLinearHistogram()
        self.minute = minute

    def window(self, minute: int, slots: int) -> LogLinearHistogram:
        """The merge of the minutes in (minute - slots, minute]."""
        out = LogLinearHistogram()
        if self.minute > minute - slots - 1:
            out.merge(self.current)
        for m, h in list(self.ring):
            if m > minute - slots - 1:
                out.merge(h)
        return out

    def since_start(self) -> LogLinearHistogram:
        return LogLinearHistogram().merge(self.total).merge(self.current)

    def minute_hist(self, minute: int) -> LogLinearHistogram | None:
        if self.minute == minute:
            return self.current
        for m, h in list(self.ring):
            if m == minute:
                return h
        return None


# --- the tracker ------------------------------------------------------------------------------

SeriesKey = tuple[str, str, int]  # method, route template, status class (2 for 2xx)
Sample = tuple[Mapping[str, str], Any]
CollectorKind = Literal["counter", "gauge", "histogram"]


class _Collector:
    __slots__ = ("fn", "help", "kind", "name")

    def __init__(self, name: str, fn: Callable[[], Any], kind: CollectorKind, help: str) -> None:
        self.name, self.fn, self.kind, self.help = name, fn, kind, help


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
        self.collectors: dict[str, _Collector] = {}
        self.worker_id = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"
        self._wall_offset = time.time() - time.perf_counter()
        self._budget_warned: dict[tuple[str, str], float] = {}
        self._fleet: dict[str, dict[str, Any]] | None = None
        self._task: asyncio.Task[None] | None = None

    def minute(self, perf_now: float | None = None) -> int:
        """The wall-clock minute number of a `perf_counter` reading (immune to clock jumps)."""
        now = time.perf_counter() if perf_now is None else perf_now
        return int((now + self._wall_offset) // _SLOT_S)

    def record(
        self, method: str, route: str | None, status: int, seconds: float, now: float
    ) -> None:
        """Record one request: `now` is the `perf_counter` reading at its end."""
        series = self.series.get((method, route or UNMATCHED, status // 100))
        if series is None:
            series = self._new_series((method, route or UNMATCHED, status // 100), now)
        minute = int((now + self._wall_offset) // _SLOT_S)
        if minute > series.minute:  # `series.record`, inlined: this runs on every request
            series.rotate(minute)
        series.current.record(seconds)

    def _new_series(self, key: SeriesKey, now: float) -> RollingHistogram:
        method, route, klass = key
        if method not in KNOWN_METHODS:  # never stored under the client's spelling
            method = "OTHER"
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

    def snapshot(self, *, fleet: bool = False) -> dict[str, dict[str, Any]]:
        """`{"GET /products/{id}": {"count", "errors", "p50_ms", "p95_ms", "p99_ms", ...}}`.

        Top-level figures cover the rolling window; `since_start` covers the process's life.
        `fleet=True` returns the latest merge of every worker sharing the Redis (this
        process's own figures until the first merge, or without Redis).
        """
        if fleet and self._fleet is not None:
            return self._fleet
        minute = self.minute()
        grouped = self._grouped(
            (
                (k, s.window(minute, self.slots), s.since_start())
                for k, s in list(self.series.items())
            )
        )
        out = self._describe(grouped)
        self._warn_over_budget(out)
        return out

    def _grouped(
        self, items: Iterable[tuple[SeriesKey, LogLinearHistogram, LogLinearHistogram]]
    ) -> dict[tuple[str, str], list[Any]]:
        """Merge status classes: (method, route) -> [window, since start, window 5xx, total 5xx]."""
        grouped: dict[tuple[str, str], list[Any]] = {}
        for (method, route, klass), window, total in items:
            g = grouped.setdefault(
                (method, route), [LogLinearHistogram(), LogLinearHistogram(), 0, 0]
            )
            g[0].merge(window)
            g[1].merge(total)
            if klass >= 5:
                g[2] += window.count
                g[3] += total.count
        return grouped

    def _describe(self, grouped: dict[tuple[str, str], list[Any]]) -> dict[str, dict[str, Any]]:
        out: dict[str, dict[str, Any]] = {}
        for (method, route), (window, total, w_errors, t_errors) in sorted(grouped.items()):
            budget = self.budget_for(method, route)
            entry = describe_histogram(window, w_errors)
            p95 = entry["p95_ms"]
            entry["budget_ms"] = budget
            entry["over_budget"] = bool(
                p95 is not None and p95 > budget and window.count >= self.budget_min_samples
            )
            entry["window_s"] = self.slots * _SLOT_S
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
        self.collectors[name] = _Collector(name, fn, kind, help or name)

    def prometheus_collector(self) -> Any:
        """A `prometheus_client` collector of these figures (imports prometheus_client)."""
        return _PrometheusCollector(self)

    # --- the fleet ---

    async def start(self) -> None:
        """Start the background flush/merge/budget task (call at lifespan start-up)."""
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        """Stop the task and flush a last time (call at shutdown, before Redis closes)."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        with contextlib.suppress(Exception):
            await self.flush()

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.flush_interval_s)
            try:
                await self.tick()
            except Exception:
                _log.debug("latency.tick_failed", exc_info=True)

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
            self._grouped((k, window.get(k, empty), total.get(k, empty)) for k in keys)
        )


def describe_histogram(h: LogLinearHistogram, errors: int) -> dict[str, Any]:
    """Count, errors, error rate, p50/p95/p99 and max (ms) of a histogram."""
    p50, p95, p99 = (h.quantile(q) for q in _QUANTILES)
    return {
        "count": h.count,
        "errors": errors,
        "error_rate": round(errors / h.count, 6) if h.count else 0.0,
        "p50_ms": _ms(p50),
        "p95_ms": _ms(p95),
        "p99_ms": _ms(p99),
        "max_ms": _ms(h.max) if h.count else None,
    }


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1000, 3)


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


# --- middleware -------------------------------------------------------------------------------


class LatencyMiddleware:
    """Times each request and records it under its route template (see the module doc).

    Args:
        app: the ASGI app to wrap.
        tracker: where the figures go.
        exempt_paths: paths never recorded (health, readiness, metrics), exact match.
        metrics_path: also answer `GET|HEAD` here with the Prometheus text (one layer
            instead of a separate `MetricsEndpoint`); None: do not serve metrics.
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        tracker: LatencyTracker,
        exempt_paths: Iterable[str] = (),
        metrics_path: str | None = None,
    ) -> None:
        self.app = app
        self.tracker = tracker
        paths = [*exempt_paths, *([metrics_path] if metrics_path else [])]
        self.exempt = frozenset(p for path in paths for p in (path, path.rstrip("/") + "/"))
        self.metrics = (
            MetricsEndpoint(app, tracker=tracker, path=metrics_path) if metrics_path else None
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in self.exempt:
            await (self.metrics or self.app)(scope, receive, send)
            return
        start = time.perf_counter()
        root_path = scope.get("root_path", "")
        status = 0
        disconnected = False

        async def timed_send(message: Message) -> None:
            nonlocal status, disconnected
            if message["type"] == "http.response.start":
                status = message["status"]
            try:
                await send(message)
            except OSError:
                disconnected = True
                raise

        try:
            await self.app(scope, receive, timed_send)
        except BaseException as exc:
            # A client that went away is not a server error: 499, as nginx logs it.
            gone = disconnected or isinstance(exc, asyncio.CancelledError)
            status = 499 if gone else 500
            raise
        finally:
            self._record(scope, root_path, status, start)

    def _record(self, scope: Scope, root_path: str, status: int, start: float) -> None:
        now = time.perf_counter()
        try:
            route = route_template(scope, root_path, status)
            if route is not None:  # the outer layers (access log) read it from here
                scope[SCOPE_ROUTE] = route
            self.tracker.record(scope["method"], route, status, now - start, now)
        except Exception:
            self.tracker.dropped += 1


class MetricsEndpoint:
    """Answers `GET|HEAD <path>` with the Prometheus text of a tracker; the rest passes through.

    Args:
        app: the ASGI app to wrap.
        tracker: the figures to expose.
        path: where (default `/metrics`).
        include_default_registry: also expose `prometheus_client`'s global registry (the
            app's own metrics and the process collectors).
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        tracker: LatencyTracker,
        path: str = "/metrics",
        include_default_registry: bool = True,
    ) -> None:
        self.app = app
        self.tracker = tracker
        self.paths = frozenset((path, path.rstrip("/") + "/"))
        self.include_default_registry = include_default_registry
        self._registry: Any = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] != "http"
            or scope["path"] not in self.paths
            or scope["method"] not in ("GET", "HEAD")
        ):
            await self.app(scope, receive, send)
            return
        body, content_type = self.render()
        headers = [
            (b"content-type", content_type.encode()),
            (b"content-length", str(len(body)).encode()),
            (b"cache-control", b"no-store"),
        ]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        head = scope["method"] == "HEAD"
        await send({"type": "http.response.body", "body": b"" if head else body})

    def render(self) -> tuple[bytes, str]:
        """The exposition text and its content type."""
        from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, generate_latest
        from prometheus_client.registry import CollectorRegistry

        if self._registry is None:
            self._registry = CollectorRegistry(auto_describe=False)
            self._registry.register(self.tracker.prometheus_collector())
        body = generate_latest(self._registry)
        if self.include_default_registry:
            body += generate_latest(REGISTRY)
        return body, CONTENT_TYPE_LATEST


# --- Prometheus -------------------------------------------------------------------------------

_STATUS = {1: "1xx", 2: "2xx", 3: "3xx", 4: "4xx", 5: "5xx"}


class _PrometheusCollector:
    """Builds the metric families from the tracker when scraped; nothing runs per request."""

    def __init__(self, tracker: LatencyTracker) -> None:
        self.tracker = tracker

    def describe(self) -> list[Any]:
        return []

    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import (
            CounterMetricFamily,
            GaugeMetricFamily,
            HistogramMetricFamily,
        )

        t = self.tracker
        labels = ["method", "route", "status"]
        duration = HistogramMetricFamily(
            "launchready_http_request_duration_seconds", "HTTP request duration", labels=labels
        )
        requests = CounterMetricFamily(
            "launchready_http_requests", "HTTP requests served", labels=labels
        )
        errors = CounterMetricFamily(
            "launchready_http_request_errors", "5xx responses and unhandled exceptions",
            labels=["method", "route"],
        )  # fmt: skip
        error_counts: dict[tuple[str, str], int] = {}
        for (method, route, klass), series in list(t.series.items()):
            h = series.since_start()
            values = [method, route, _STATUS.get(klass, "other")]
            duration.add_metric(values, _buckets(h, t.buckets_s), h.sum)
            requests.add_metric(values, h.count)
            if klass >= 5:
                error_counts[(method, route)] = error_counts.get((method, route), 0) + h.count
        for (method, route), n in sorted(error_counts.items()):
            errors.add_metric([method, route], n)
        yield from (duration, requests, errors)
        yield from self._rolling(GaugeMetricFamily)
        dropped = CounterMetricFamily("launchready_latency_dropped", "Recordings that failed")
        dropped.add_metric([], t.dropped)
        yield dropped
        for collector in list(t.collectors.values()):
            family = _collect_one(collector)
            if family is not None:
                yield family

    def _rolling(self, gauge: Any) -> Iterator[Any]:
        p95 = gauge(
            "launchready_http_request_duration_p95_seconds",
            "Rolling-window p95 per route", labels=["method", "route"],
        )  # fmt: skip
        budget = gauge(
            "launchready_http_request_budget_seconds", "p95 budget per route",
            labels=["method", "route"],
        )  # fmt: skip
        for name, entry in self.tracker.snapshot().items():
            method, route = name.split(" ", 1)
            if entry["p95_ms"] is not None:
                p95.add_metric([method, route], entry["p95_ms"] / 1000)
            budget.add_metric([method, route], entry["budget_ms"] / 1000)
        yield from (p95, budget)


def _buckets(h: LogLinearHistogram, bounds: tuple[float, ...]) -> list[tuple[str, float]]:
    counts = h.cumulative(bounds)
    out: list[tuple[str, float]] = [(_le(b), n) for b, n in zip(bounds, counts, strict=True)]
    return [*out, ("+Inf", h.count)]


def _le(bound: float) -> str:
    return repr(float(bound))


def _collect_one(collector: _Collector) -> Any:
    """One registered collector as a metric family; None when its callable fails."""
    from prometheus_client.core import (
        CounterMetricFamily,
        GaugeMetricFamily,
        HistogramMetricFamily,
    )

    try:
        raw = collector.fn()
        samples: list[Sample] = [({}, raw)] if isinstance(raw, int | float) else list(raw)
        names = sorted({k for labels, _ in samples for k in labels})
        kinds = {"counter": CounterMetricFamily, "gauge": GaugeMetricFamily}
        if collector.kind == "histogram":
            family: Any = HistogramMetricFamily(collector.name, collector.help, labels=names)
            for labels, h in samples:
                values = [str(labels.get(n, "")) for n in names]
                family.add_metric(values, _buckets(h, DEFAULT_BUCKETS_S), h.sum)
            return family
        family = kinds[collector.kind](collector.name, collector.help, labels=names)
        for labels, value in samples:
            family.add_metric([str(labels.get(n, "")) for n in names], float(value))
        return family
    except Exception:
        _log.debug("latency.collector_failed", collector=collector.name, exc_info=True)
        return None
