"""Per-route latency: histogram accuracy, templates through uvicorn, budgets, fleet, /metrics."""

from __future__ import annotations

import asyncio
import math
import random
import socket
import time
from typing import Any

import httpx
import pytest
import structlog
from prometheus_client.parser import text_string_to_metric_families

from launchready_sdk.latency import (
    DEFAULT_BUCKETS_S,
    NBINS,
    OVERFLOW,
    LatencyMiddleware,
    LatencyTracker,
    LogLinearHistogram,
    RollingHistogram,
    bin_bounds,
    bin_index,
    check_buckets,
)
from launchready_sdk.store import RedisStore

APP = "tests.apps.latency_app:app"


def exact_quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[max(1, math.ceil(q * len(ordered))) - 1]


def metric_samples(text: str) -> dict[str, list[Any]]:
    out: dict[str, list[Any]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out.setdefault(sample.name, []).append(sample)
    return out


# --- the histogram ----------------------------------------------------------------------------


def test_percentiles_agree_with_exact_within_two_percent() -> None:
    """p50/p95/p99 of 50 000 log-normal samples are within 2 % of the exact nearest-rank values."""
    rng = random.Random(7)
    values = [rng.lognormvariate(math.log(0.03), 1.2) for _ in range(50_000)]
    h = LogLinearHistogram()
    for v in values:
        h.record(v)
    for q in (0.5, 0.95, 0.99, 0.999):
        got, want = h.quantile(q), exact_quantile(values, q)
        assert got is not None
        assert abs(got - want) / want <= 0.02, (q, got, want)


def test_every_bin_is_within_the_relative_error() -> None:
    """Each bin's midpoint is within 1.25 % of any value the bin holds, across the whole range."""
    for i in range(0, NBINS, 7):
        low, high = bin_bounds(i)
        mid = (low + high) / 2
        assert (mid - low) / low <= 0.0125 + 1e-12
        assert bin_index(low * (1 + 1e-9)) == i


def test_prometheus_buckets_are_bin_edges() -> None:
    """Default buckets (0.1, 0.5, 2.5 s among them) are bin edges; other bounds are refused."""
    assert {0.1, 0.5, 2.5} <= set(check_buckets(DEFAULT_BUCKETS_S))
    with pytest.raises(ValueError, match="bin edge"):
        check_buckets([0.333])
    h = LogLinearHistogram()
    for v in (0.0999, 0.1001, 0.4999, 0.5001, 2.4, 2.6):
        h.record(v)
    assert h.cumulative((0.1, 0.5, 2.5)) == [1, 3, 5]


def test_merge_and_wire_round_trip() -> None:
    """Merging two histograms equals recording everything in one; the wire form round-trips."""
    rng = random.Random(1)
    a, b, both = LogLinearHistogram(), LogLinearHistogram(), LogLinearHistogram()
    for _ in range(1000):
        v = rng.uniform(0.0001, 3)
        (a if rng.random() < 0.5 else b).record(v)
        both.record(v)
    merged = LogLinearHistogram().merge(a).merge(b)
    assert merged.bins == both.bins
    assert merged.count == both.count
    copy = LogLinearHistogram.from_wire(merged.to_wire())
    assert copy.bins == merged.bins
    assert copy.quantile(0.95) == merged.quantile(0.95)


def test_extreme_values_stay_in_range() -> None:
    """Zero, negative, sub-microsecond and hour-long durations land in the end bins."""
    h = LogLinearHistogram()
    for v in (0.0, -1.0, 1e-9, 3600.0, math.inf):
        h.record(v)
    assert set(h.bins) <= {0, NBINS - 1}


def test_rolling_window_forgets_old_minutes() -> None:
    """Minutes older than the window leave the rolling figures but stay in since-start."""
    r = RollingHistogram(5, minute=100)
    r.record(0.010, 100)
    r.record(0.020, 103)
    r.record(0.030, 107)
    assert r.window(107, 5).count == 2
    assert r.since_start().count == 3
    r.record(0.040, 106)  # a clock that went back counts in the current minute
    assert r.minute_hist(107) is not None
    assert r.minute_hist(107).count == 2


# --- the tracker ------------------------------------------------------------------------------


def test_known_delays_give_known_percentiles() -> None:
    """Synthetic delays of 10, 20, ..., 1000 ms give p50/p95/p99 within the histogram's error."""
    tracker = LatencyTracker()
    values = [ms / 1000 for ms in range(10, 1001, 10)]
    now = time.perf_counter()
    for v in values:
        tracker.record("GET", "/x", 200, v, now)
    entry = tracker.snapshot()["GET /x"]
    for q, key in ((0.5, "p50_ms"), (0.95, "p95_ms"), (0.99, "p99_ms")):
        want = exact_quantile(values, q) * 1000
        assert abs(entry[key] - want) / want <= 0.0125, (key, entry[key], want)
    assert entry["count"] == 100
    assert entry["since_start"]["count"] == 100


def test_cardinality_cap_sends_new_routes_to_overflow() -> None:
    """Past max_routes, new templates share the overflow bucket; unknown methods become OTHER."""
    tracker = LatencyTracker(max_routes=3)
    now = time.perf_counter()
    for i in range(50):
        tracker.record("GET", f"/r{i}", 200, 0.001, now)
    tracker.record("BREW", "/r0", 200, 0.001, now)
    keys = set(tracker.snapshot())
    assert keys == {"GET /r0", "GET /r1", "GET /r2", f"GET {OVERFLOW}", f"OTHER {OVERFLOW}"}
    assert tracker.snapshot()[f"GET {OVERFLOW}"]["count"] == 47


def test_budget_breach_warns_once_and_shows_in_snapshot() -> None:
    """A p95 over budget is flagged in the snapshot and logged once, naming route, p95, budget."""
    tracker = LatencyTracker(budget_ms=100, budgets={"/fast": 5}, budget_min_samples=3)
    now = time.perf_counter()
    for _ in range(10):
        tracker.record("GET", "/fast", 200, 0.050, now)
        tracker.record("GET", "/slow-ok", 200, 0.050, now)
    with structlog.testing.capture_logs() as logs:
        snap = tracker.snapshot()
        tracker.snapshot()
    assert snap["GET /fast"]["over_budget"]
    assert snap["GET /fast"]["budget_ms"] == 5
    assert not snap["GET /slow-ok"]["over_budget"]
    warnings = [r for r in logs if r["event"] == "latency.over_budget"]
    assert len(warnings) == 1
    assert warnings[0]["route"] == "GET /fast"
    assert warnings[0]["budget_ms"] == 5
    assert 49 < warnings[0]["p95_ms"] < 51


def test_budget_patterns_and_method_keys() -> None:
    """Budgets are found by `METHOD /template`, by `/template` and by a `*` pattern."""
    tracker = LatencyTracker(
        budget_ms=500, budgets={"POST /orders": 900, "/orders": 300, "/admin/*": 2000}
    )
    assert tracker.budget_for("POST", "/orders") == 900
    assert tracker.budget_for("GET", "/orders") == 300
    assert tracker.budget_for("GET", "/admin/users/{id}") == 2000
    assert tracker.budget_for("GET", "/other") == 500


async def _call(app: Any, path: str, method: str = "GET") -> list[dict[str, Any]]:
    scope = {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": method,
        "scheme": "http", "path": path, "raw_path": path.encode(), "query_string": b"",
        "root_path": "", "headers": [], "client": ("127.0.0.1", 1), "server": ("t", 80),
    }  # fmt: skip
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: Any) -> None:
        sent.append(message)

    await app(scope, receive, send)
    return sent


async def test_ten_thousand_junk_paths_stay_in_one_bucket() -> None:
    """10 000 distinct junk paths and methods leave a handful of series and bounded memory."""
    from tests.apps.latency_app import build

    tracker = LatencyTracker()
    app = LatencyMiddleware(build(), tracker=tracker)
    rng = random.Random(3)
    for i in range(10_000):
        junk = "/" + "/".join(f"{rng.getrandbits(40):x}" for _ in range(rng.randint(1, 4)))
        await _call(app, f"{junk}/{i}", method=rng.choice(["GET", "POST", "XYZ", f"M{i}"]))
    assert len(tracker.series) <= 4
    assert {k.split(" ", 1)[1] for k in tracker.snapshot()} == {"<unmatched>"}
    assert sum(e["count"] for e in tracker.snapshot().values()) == 10_000


async def test_named_route_from_an_sdk_layer_wins() -> None:
    """A layer answering for the app (a cache hit) names the route in the scope."""

    async def cache_hit(scope: Any, receive: Any, send: Any) -> None:
        scope["launchready.route"] = "/products/{id}"
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"{}"})

    tracker = LatencyTracker()
    await _call(LatencyMiddleware(cache_hit, tracker=tracker), "/products/9")
    assert list(tracker.snapshot()) == ["GET /products/{id}"]


async def _no_app(scope: Any, receive: Any, send: Any) -> None:
    raise AssertionError("not reached")


async def test_collectors_export_and_a_failing_one_is_skipped() -> None:
    """Registered counters and histograms reach /metrics; a raising collector is skipped."""
    tracker = LatencyTracker()
    hosts = LogLinearHistogram()
    hosts.record(0.2)

    def broken() -> int:
        raise RuntimeError("collector bug")

    tracker.add_collector("launchready_ratelimit_refused", lambda: 3, help="429s sent")
    tracker.add_collector(
        "launchready_cache_responses",
        lambda: [({"result": "hit"}, 5), ({"result": "miss"}, 2)],
    )
    tracker.add_collector(
        "launchready_outbound_duration_seconds",
        lambda: [({"host": "api.stripe.com"}, hosts)],
        kind="histogram",
    )
    tracker.add_collector("launchready_broken", broken)
    endpoint = LatencyMiddleware(_no_app, tracker=tracker, metrics_path="/metrics")
    sent = await _call(endpoint, "/metrics")
    samples = metric_samples(sent[1]["body"].decode())
    assert samples["launchready_ratelimit_refused_total"][0].value == 3
    cache = {s.labels["result"]: s.value for s in samples["launchready_cache_responses_total"]}
    assert cache == {"hit": 5, "miss": 2}
    buckets = {
        s.labels["le"]: s.value for s in samples["launchready_outbound_duration_seconds_bucket"]
    }
    assert buckets["0.1"] == 0
    assert buckets["0.25"] == 1
    assert "launchready_broken_total" not in samples


async def test_redis_outage_pauses_the_fleet_view_only(private_redis: Any) -> None:
    """With Redis killed, a flush/merge round returns quietly and local figures keep working."""
    store = RedisStore(private_redis.url, timeout_s=0.2, cooldown_s=5, prefix="lat-outage")
    tracker = LatencyTracker(store=store)
    tracker.record("GET", "/x", 200, 0.01, time.perf_counter())
    await tracker.tick()
    private_redis.kill()
    tracker.record("GET", "/x", 200, 0.01, time.perf_counter())
    started = time.monotonic()
    await tracker.tick()
    await tracker.stop()
    assert time.monotonic() - started < 2
    assert tracker.snapshot()["GET /x"]["count"] == 2
    await store.aclose()


# --- through uvicorn --------------------------------------------------------------------------


def _snapshot(server: Any, fleet: bool = False) -> dict[str, Any]:
    reply = httpx.get(f"{server.url}/_snapshot", params={"fleet": fleet}, timeout=5)
    return reply.json()  # type: ignore[no-any-return]


def test_templates_for_plain_included_and_mounted_routes(serve: Any) -> None:
    """Plain, included, nested and mounted routes are recorded by template, never raw path."""
    server = serve(APP)
    paths = [
        "/products/1", "/products/2", "/api/v1/orders/a1", "/api/v1/nested/deep/7",
        "/star/items/5", "/sub/things/x", "/users/42/items/9", "/nope/123", "/star/nope",
        "/healthz", "/metrics",
    ]  # fmt: skip
    with httpx.Client(base_url=server.url, timeout=5) as client:
        for path in paths:
            client.get(path)
    routes = _snapshot(server)["routes"]
    assert set(routes) == {
        "GET /products/{product_id}",
        "GET /api/v1/orders/{order_id}",
        "GET /api/v1/nested/deep/{x}",
        "GET /star/items/{id}",
        "GET /sub/things/{thing_id}",
        "GET /users/{user_id}/items/{id}",
        "GET <unmatched>",
    }
    assert routes["GET /products/{product_id}"]["count"] == 2
    assert routes["GET <unmatched>"]["count"] == 2


def test_errors_count_5xx_and_exceptions(serve: Any) -> None:
    """A route that raises is a 500 and an error; a 503 is an error; the server stays up."""
    server = serve(APP)
    with httpx.Client(base_url=server.url, timeout=5) as client:
        assert client.get("/boom").status_code == 500
        assert client.get("/fail").status_code == 503
        assert client.get("/products/1").status_code == 200
    routes = _snapshot(server)["routes"]
    assert routes["GET /boom"]["errors"] == 1
    assert routes["GET /boom"]["error_rate"] == 1.0
    assert routes["GET /fail"]["errors"] == 1
    assert routes["GET /products/{product_id}"]["errors"] == 0


def test_sleeping_route_percentiles_and_budget_warning(serve: Any) -> None:
    """A route sleeping 60 ms reports p50 ≥ 60 ms, breaches its 50 ms budget, and warns once."""
    server = serve(APP)
    with httpx.Client(base_url=server.url, timeout=5) as client:
        for _ in range(8):
            client.get("/sleep/60")
        client.post("/_tick")
        client.post("/_tick")
    entry = _snapshot(server)["routes"]["GET /sleep/{ms}"]
    assert 60 <= entry["p50_ms"] < 200
    assert entry["over_budget"]
    assert entry["budget_ms"] == 50
    assert server.raw_log().count("latency.over_budget") == 1


def test_recorder_that_raises_does_not_fail_requests(serve: Any) -> None:
    """With a recorder that raises, every request is still served and the failure is counted."""
    server = serve(APP, {"LATENCY_BROKEN": "1"})
    with httpx.Client(base_url=server.url, timeout=5) as client:
        assert [client.get("/products/1").status_code for _ in range(3)] == [200] * 3
        assert client.get("/boom").status_code == 500
        metrics = metric_samples(client.get("/metrics").text)
    assert _snapshot(server)["dropped"] == 4
    assert metrics["launchready_latency_dropped_total"][0].value == 4


def test_client_disconnect_mid_response(serve: Any) -> None:
    """A client leaving mid-stream is recorded as 499 (not an error) and the server carries on."""
    server = serve(APP)
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
        sock.sendall(b"GET /stream HTTP/1.1\r\nHost: x\r\n\r\n")
        assert sock.recv(65536)
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        routes = _snapshot(server)["routes"]
        if "GET /stream" in routes:
            break
        time.sleep(0.05)
    assert routes["GET /stream"]["count"] == 1
    assert routes["GET /stream"]["errors"] == 0
    assert httpx.get(f"{server.url}/products/3", timeout=5).status_code == 200


def test_metrics_endpoint_parses_with_prometheus_parser(serve: Any) -> None:
    """/metrics parses: templated labels, status classes, 0.1/0.5/2.5 s buckets."""
    server = serve(APP)
    with httpx.Client(base_url=server.url, timeout=5) as client:
        for i in range(3):
            client.get(f"/products/{i}")
        client.get("/fail")
        reply = client.get("/metrics")
    assert reply.headers["content-type"].startswith("text/plain")
    samples = metric_samples(reply.text)
    buckets = samples["launchready_http_request_duration_seconds_bucket"]
    product = [b for b in buckets if b.labels["route"] == "/products/{product_id}"]
    assert {"0.1", "0.5", "2.5", "+Inf"} <= {b.labels["le"] for b in product}
    assert all(b.labels["status"] == "2xx" for b in product)
    assert [b.value for b in product if b.labels["le"] == "+Inf"] == [3]
    errors = samples["launchready_http_request_errors_total"]
    assert [(e.labels["route"], e.value) for e in errors] == [("/fail", 1)]
    routes = {s.labels["route"] for s in samples["launchready_http_requests_total"]}
    assert "/metrics" not in routes
    assert all(r != "/products/0" for r in routes)


def test_fleet_merge_across_two_processes(serve: Any, redis_url: str, redis_prefix: str) -> None:
    """Two uvicorn processes sharing Redis each see the merged count in snapshot(fleet=True)."""
    env = {"LATENCY_REDIS_URL": redis_url, "LATENCY_PREFIX": redis_prefix, "LATENCY_FLUSH_S": "30"}
    a, b = serve(APP, env), serve(APP, env)
    with httpx.Client(timeout=5) as client:
        for _ in range(5):
            client.get(f"{a.url}/products/1")
        for _ in range(7):
            client.get(f"{b.url}/products/2")
        client.get(f"{b.url}/boom")
        for server in (a, b, a, b):
            client.post(f"{server.url}/_tick")
    for server in (a, b):
        fleet = _snapshot(server, fleet=True)["routes"]
        assert fleet["GET /products/{product_id}"]["count"] == 12
        assert fleet["GET /products/{product_id}"]["since_start"]["count"] == 12
        assert fleet["GET /boom"]["errors"] == 1
    assert _snapshot(a)["routes"]["GET /products/{product_id}"]["count"] == 5


async def test_background_task_flushes_on_its_own(redis_url: str, redis_prefix: str) -> None:
    """start() runs the flush/merge loop; stop() ends it and flushes once more."""
    store = RedisStore(redis_url, timeout_s=0.5, cooldown_s=1, prefix=redis_prefix)
    tracker = LatencyTracker(store=store, flush_interval_s=0.05)
    await tracker.start()
    tracker.record("GET", "/x", 200, 0.01, time.perf_counter())
    deadline = time.monotonic() + 2
    while "GET /x" not in tracker.snapshot(fleet=True) or tracker._fleet is None:
        assert time.monotonic() < deadline
        await asyncio.sleep(0.02)
    await tracker.stop()
    assert tracker.snapshot(fleet=True)["GET /x"]["count"] == 1
    await store.aclose()
