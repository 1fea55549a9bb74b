"""The server's own view: per-route p95 from the app's `/metrics` histogram.

The SDK exposes `launchready_http_request_duration_seconds` (labels `method`, `route`,
`status`) as a cumulative Prometheus histogram since start-up. The bench scrapes it when the
measured window opens and after the run; the difference of the bucket counts is what the
server timed for exactly this run, and its p95 is interpolated inside the bucket holding the
95th percentile, as Prometheus' `histogram_quantile` does. With the SDK's default buckets
(5, 10, 25, 50, 75, 100, 250, 500 ms, ...) this is coarse: it says which bucket, not the
millisecond. Requests other clients sent in the same window are counted too.

The SQL statements the app timed (`launchready_db_query_duration_seconds`, labelled by
fingerprint, from `lr.instrument_sqlalchemy` or the Django integration) are read the same way,
for the launch bar's "core queries p95 < 100 ms".

Several workers behind the port (`uvicorn --workers`, gunicorn): the SDK's `/metrics` answers
for all of them, from figures each worker publishes about once a second and from a text
reused for a second. So after the run the bench scrapes again until two scrapes
`SETTLE_S` apart agree (`servertime.settled`, at most `SETTLE_TRIES` of them): the last
requests of every worker are then counted, whichever worker takes the scrape.

The metrics come from the server: text that does not parse, or counts that are not finite,
leave the run without server-side figures (a warning), never a failure of the bench.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from typing import Any

METRIC = "launchready_http_request_duration_seconds"
DB_METRIC = "launchready_db_query_duration_seconds"
SQL = "SQL "  # the key prefix of statements, beside "GET /route" keys

SETTLE_S = 1.2  # longer than a worker's publishing interval and the reuse of the text
SETTLE_TRIES = 4
# route key ("GET /products/{product_id}", or "SQL <fingerprint>") -> upper bound -> cumulative
Buckets = dict[str, dict[float, float]]


def parse_buckets(text: str) -> Buckets:
    """The duration histograms' buckets per route (summed over status classes) and statement."""
    from prometheus_client.parser import text_string_to_metric_families

    out: Buckets = {}
    for family in text_string_to_metric_families(text):
        if family.name not in (METRIC, DB_METRIC):
            continue
        for sample in family.samples:
            if not sample.name.endswith("_bucket"):
                continue
            labels = sample.labels
            if family.name == DB_METRIC:
                key = SQL + labels.get("statement", "")
            else:
                key = f"{labels.get('method', '')} {labels.get('route', '')}"
            bound = float(labels["le"])
            if math.isnan(bound) or not math.isfinite(sample.value) or sample.value < 0:
                continue  # not a count a histogram can hold: the server's figure is unusable
            route = out.setdefault(key, {})
            route[bound] = route.get(bound, 0.0) + sample.value
    return out


def quantile(buckets: Mapping[float, float], q: float) -> tuple[float, float, float] | None:
    """(estimate, bucket low, bucket high) in seconds of the `q` quantile; None when empty.

    The estimate interpolates linearly inside the bucket, as `histogram_quantile` does; past
    the last finite bucket it is that bucket's bound and the high edge is infinity.
    """
    bounds = sorted(buckets)
    if not bounds:
        return None
    total = buckets[bounds[-1]]
    if total <= 0:
        return None
    rank = q * total
    lower, below = 0.0, 0.0
    for bound in bounds:
        count = buckets[bound]
        if count >= rank and count > below:
            if math.isinf(bound):
                return lower, lower, bound
            estimate = lower + (bound - lower) * (rank - below) / (count - below)
            return estimate, lower, bound
        lower, below = bound, count
    return lower, lower, math.inf


def delta(before: Buckets, after: Buckets) -> Buckets:
    """What was counted between two scrapes (a route absent before started at zero)."""
    out: Buckets = {}
    for key, buckets in after.items():
        old = before.get(key, {})
        out[key] = {b: max(0.0, n - old.get(b, 0.0)) for b, n in buckets.items()}
    return out


def route_shape(key: str) -> str:
    """`GET /products/{product_id}` and `GET /products/{id}` compare equal by shape."""
    return re.sub(r"\{[^}]*\}", "{}", key.strip())


def server_p95(buckets: Buckets) -> dict[str, dict[str, Any]]:
    """Per route shape: `p95_ms` (interpolated) and `bucket_ms` [low, high] it lies in."""
    out: dict[str, dict[str, Any]] = {}
    for key, route in buckets.items():
        if key.startswith(SQL):
            continue
        found = quantile(route, 0.95)
        if found is not None:
            estimate, low, high = found
            out[route_shape(key)] = {
                "p95_ms": round(estimate * 1000, 3),
                "bucket_ms": [round(low * 1000, 3), None if math.isinf(high) else high * 1000],
            }
    return out


def query_p95(buckets: Buckets) -> dict[str, dict[str, Any]]:
    """Per SQL fingerprint run during the window: `count`, `p95_ms` and its `bucket_ms`."""
    out: dict[str, dict[str, Any]] = {}
    for key, statement in buckets.items():
        if not key.startswith(SQL) or not statement:
            continue
        found = quantile(statement, 0.95)
        if found is None:
            continue
        estimate, low, high = found
        out[key[len(SQL) :]] = {
            "count": int(statement[max(statement)]),
            "p95_ms": round(estimate * 1000, 3),
            "bucket_ms": [round(low * 1000, 3), None if math.isinf(high) else high * 1000],
        }
    return out
