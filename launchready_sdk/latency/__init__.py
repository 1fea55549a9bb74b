"""Per-route latency: log-linear histograms, rolling p50/p95/p99, budgets, fleet merge, /metrics.

`LaunchReady` records every request except those of its own endpoints (health, readiness,
metrics) from its request-context layer, which already has the request's duration (taken with
`time.perf_counter`, monotonic: wall-clock jumps change no duration), status and route
template: after the response it calls `LatencyTracker.observe`. `MetricsEndpoint` is the layer
that serves the figures as Prometheus text. Where both sit in the stack is written once, in
the docstring of `launchready_sdk.app`.

A request is recorded under its method and the route template the router left in the scope
(`GET /products/{id}`, read by `launchready_sdk.routing.route_template`): `scope["route"]`, the
path format FastAPI keeps for included routers, and the prefix mounts added to `root_path`; a
layer that answers for the app (a cache hit) names the route with `scope["launchready.route"]`.
No raw path is ever recorded. Unmatched requests share one `<unmatched>` bucket per method,
unknown methods count as `OTHER`, and past `max_routes` templates new ones fall into
`<overflow>`, so memory is bounded whatever clients send. A request whose client went away
before any response started counts as 499, not as a server error; an exception that escaped
the app before the response started counts as the 500 the client got.

Each (method, route, status class) keeps a ring of per-minute `LogLinearHistogram`s (the
rolling window, 5 minutes by default, plus the minute in progress) and a since-start total.
The histogram has 360 linear bins per decade from 1 µs to 100 s: a percentile is reported as
its bin's midpoint, within 1.25 % of the true value, and the Prometheus bucket bounds are
bin edges, so `/metrics` bucket counts are exact.

Fleet view: with a `RedisStore`, a background task (`start()`/`stop()`) writes this worker's
histograms for the current and previous minute, and its since-start totals, to Redis every
`flush_interval_s`, and reads everyone's back into the merge `snapshot(fleet=True)` returns.
Each write replaces the worker's own field (HSET), so a timed-out write that did land is never
counted twice, unlike increments. Fleet "since start" covers workers that flushed in the last
hour. A Redis outage only pauses the fleet view; requests never wait on it.

Modules: `_histogram` (the log-linear histogram, its bucket bounds and figures), `_window`
(one series' per-minute ring), `_tracker` (`LatencyTracker`: series, budgets, snapshots, the
fleet flush and merge), `_prometheus` (the metric families, built when scraped) and
`_endpoint` (`MetricsEndpoint`). Besides what the README documents, the package exports
`LogLinearHistogram`, `RollingHistogram` and `describe_histogram`: `dbtiming` keeps its
statement figures in them, and `add_collector(kind="histogram")` takes `LogLinearHistogram`s.

Security stance: labels are route templates, methods from a fixed list and status classes,
never client-controlled text. `observe` catches every exception recording could raise and
counts it in `dropped`, so metrics can never fail a request.

Limits, candidly: a route template is only as good as what the router leaves in the scope; a
mount whose own path has parameters is templated by matching its path parameter values against
the prefix segments. A response that fails or loses its client midway is recorded under the
status already sent, as the access log has it.
"""

from __future__ import annotations

from launchready_sdk.latency._endpoint import DEFAULT_CACHE_S as DEFAULT_METRICS_CACHE_S
from launchready_sdk.latency._endpoint import MetricsEndpoint
from launchready_sdk.latency._histogram import LogLinearHistogram, describe_histogram
from launchready_sdk.latency._tracker import (
    DEFAULT_BUDGET_MIN_SAMPLES,
    DEFAULT_BUDGET_MS,
    DEFAULT_FLUSH_INTERVAL_S,
    DEFAULT_MAX_ROUTES,
    DEFAULT_WINDOW_S,
    KNOWN_METHODS,
    OVERFLOW,
    UNMATCHED,
    LatencyTracker,
)
from launchready_sdk.latency._window import RollingHistogram
from launchready_sdk.latency._workers import WorkerShare

__all__ = [
    "DEFAULT_BUDGET_MIN_SAMPLES",
    "DEFAULT_BUDGET_MS",
    "DEFAULT_FLUSH_INTERVAL_S",
    "DEFAULT_MAX_ROUTES",
    "DEFAULT_METRICS_CACHE_S",
    "DEFAULT_WINDOW_S",
    "KNOWN_METHODS",
    "OVERFLOW",
    "UNMATCHED",
    "LatencyTracker",
    "LogLinearHistogram",
    "MetricsEndpoint",
    "RollingHistogram",
    "WorkerShare",
    "describe_histogram",
]
