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

from launchready_sdk.latency.endpoint import (
    MetricsEndpoint,
)
from launchready_sdk.latency.histogram import (
    DEFAULT_BUCKETS_S,
    NBINS,
    LogLinearHistogram,
    bin_bounds,
    bin_index,
    check_buckets,
    describe_histogram,
)
from launchready_sdk.latency.prometheus import (
    CollectorKind,
    Sample,
)
from launchready_sdk.latency.tracker import (
    DEFAULT_BUDGET_MIN_SAMPLES,
    DEFAULT_BUDGET_MS,
    DEFAULT_BUDGET_WARN_INTERVAL_S,
    DEFAULT_FLUSH_INTERVAL_S,
    DEFAULT_MAX_ROUTES,
    DEFAULT_WINDOW_S,
    KNOWN_METHODS,
    OVERFLOW,
    UNMATCHED,
    LatencyTracker,
)
from launchready_sdk.latency.window import (
    RollingHistogram,
    SeriesKey,
)

__all__ = [
    "DEFAULT_BUCKETS_S",
    "DEFAULT_BUDGET_MIN_SAMPLES",
    "DEFAULT_BUDGET_MS",
    "DEFAULT_BUDGET_WARN_INTERVAL_S",
    "DEFAULT_FLUSH_INTERVAL_S",
    "DEFAULT_MAX_ROUTES",
    "DEFAULT_WINDOW_S",
    "KNOWN_METHODS",
    "NBINS",
    "OVERFLOW",
    "UNMATCHED",
    "CollectorKind",
    "LatencyTracker",
    "LogLinearHistogram",
    "MetricsEndpoint",
    "RollingHistogram",
    "Sample",
    "SeriesKey",
    "bin_bounds",
    "bin_index",
    "check_buckets",
    "describe_histogram",
]
