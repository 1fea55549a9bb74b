"""Per-route latency: histogram accuracy, and what `LaunchReady().wrap()` records and serves.

Request recording is tested through the stack users run (in process and through uvicorn):
route templates, exempt endpoints, 499s and 500s, caps, budgets, the fleet merge, /metrics.
"""

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
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from launchready_sdk import LaunchReady, Settings
from launchready_sdk.latency import LatencyTracker, LogLinearHistogram, RollingHistogram

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


def test_package_exports_what_the_readme_and_dbtiming_use() -> None:
    """`launchready_sdk.latency` exports the tracker, the layer, Settings' defaults, histograms,
    and the label vocabulary the status page shares (known methods, the shared buckets)."""
    import launchready_sdk.latency as latency

    assert latency.__all__ == [
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
    assert all(hasattr(latency, name) for name in latency.__all__)
    settings = Settings()
    assert settings.latency_budget_ms == latency.DEFAULT_BUDGET_MS
    assert settings.latency_window_s == latency.DEFAULT_WINDOW_S
    assert settings.latency_max_routes == latency.DEFAULT_MAX_ROUTES
    assert settings.latency_flush_interval_s == latency.DEFAULT_FLUSH_INTERVAL_S
    assert settings.metrics_cache_s == latency.DEFAULT_METRICS_CACHE_S


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
    """Across 1 µs..100 s, a value alone in its bin is reported within 1.25 % (bin edges too)."""
    edges = [10.0**k * (1 + j / 40) / 1e6 for k in range(8) for j in range(360)]
    rng = random.Random(5)
    spread = [10 ** rng.uniform(-6, 2) for _ in range(5000)]
    for value in [*edges, *spread]:
        h = LogLinearHistogram()
        h.record(value)
        h.min, h.max = 0.0, math.inf  # report the bin's midpoint, not the one value clamped
        got = h.quantile(0.5)
        assert got is not None
        assert abs(got - value) / value <= 0.0125 + 1e-12, value


def test_prometheus_buckets_are_bin_edges() -> None:
    """Default buckets (0.1, 0.5, 2.5 s among them) are bin edges; other bounds are refused."""
    assert {0.1, 0.5, 2.5} <= set(LatencyTracker().buckets_s)
    with pytest.raises(ValueError, match="bin edge"):
        LatencyTracker(buckets_s=[0.333])
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
    ends = LogLinearHistogram()
    ends.record(0.5e-6)  # below 1 µs: the first bin
    ends.record(99.9999)  # just under 100 s: the last bin
    assert set(h.bins) == set(ends.bins)
    assert min(h.bins) == 0


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
    for v in values:
        tracker.observe("GET", "/x", 200, v)
    entry = tracker.snapshot()["GET /x"]
    for q, key in ((0.5, "p50_ms"), (0.95, "p95_ms"), (0.99, "p99_ms")):
        want = exact_quantile(values, q) * 1000
        assert abs(entry[key] - want) / want <= 0.0125, (key, entry[key], want)
    assert entry["count"] == 100
    assert entry["since_start"]["count"] == 100


def test_a_snapshot_without_since_start_gives_the_same_window() -> None:
    """`since_start=False` leaves the since-start figures out and changes nothing else, both
    before and after a route's finished minutes are cached, with a minute in progress."""
    tracker = LatencyTracker()
    rng = random.Random(3)
    now = time.perf_counter()
    for minutes_ago in (3, 2, 1, 0):
        for status in (200, 404, 500):
            for _ in range(20):
                tracker.record(
                    "GET", "/x", status, rng.lognormvariate(-4, 1), now - minutes_ago * 60
                )
    for extra in range(2):  # the second pass reads the cached finished minutes
        full = tracker.snapshot()
        lean = tracker.snapshot(since_start=False)
        assert set(lean) == set(full) == {"GET /x"}
        assert "since_start" not in lean["GET /x"]
        assert {k: v for k, v in full["GET /x"].items() if k != "since_start"} == lean["GET /x"]
        assert full["GET /x"]["since_start"]["count"] == 240 + extra
        tracker.observe("GET", "/x", 200, 0.01)


def test_budget_breach_warns_once_and_shows_in_snapshot() -> None:
    """A p95 over budget is flagged in the snapshot and logged once, naming route, p95, budget."""
    tracker = LatencyTracker(budget_ms=100, budgets={"/fast": 5}, budget_min_samples=3)
    for _ in range(10):
        tracker.observe("GET", "/fast", 200, 0.050)
        tracker.observe("GET", "/slow-ok", 200, 0.050)
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


# --- LaunchReady().wrap(), in process ---------------------------------------------------------


def _sdk(**settings: Any) -> LaunchReady:
    return LaunchReady(Settings(configure_logging=False, **settings))


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

    lr = _sdk(access_log=False)
    app = lr.wrap(build())
    rng = random.Random(3)
    for i in range(10_000):
        junk = "/" + "/".join(f"{rng.getrandbits(40):x}" for _ in range(rng.randint(1, 4)))
        await _call(app, f"{junk}/{i}", method=rng.choice(["GET", "POST", "XYZ", f"M{i}"]))
    assert len(lr.latency.series) <= 4
    assert {k.split(" ", 1)[1] for k in lr.latency.snapshot()} == {"<unmatched>"}
    assert sum(e["count"] for e in lr.latency.snapshot().values()) == 10_000


async def test_cardinality_cap_sends_new_routes_to_overflow() -> None:
    """Past latency_max_routes, new templates share the overflow bucket; unknown methods: OTHER."""

    async def ok(request: Request) -> PlainTextResponse:
        return PlainTextResponse("ok")

    lr = _sdk(access_log=False, latency_max_routes=3)
    app = lr.wrap(Starlette(routes=[Route(f"/r{i}", ok) for i in range(50)]))
    for i in range(50):
        assert (await _call(app, f"/r{i}"))[0]["status"] == 200
    assert (await _call(app, "/r0", method="BREW"))[0]["status"] == 405
    keys = set(lr.latency.snapshot())
    assert keys == {"GET /r0", "GET /r1", "GET /r2", "GET <overflow>", "OTHER <overflow>"}
    assert lr.latency.snapshot()["GET <overflow>"]["count"] == 47


async def test_exempt_endpoints_are_not_recorded(asgi_client: Any) -> None:
    """Health, readiness and metrics (with or without a trailing slash) never reach the figures."""

    async def ok(request: Request) -> PlainTextResponse:
        return PlainTextResponse("ok")

    lr = _sdk(health_path="/livez", metrics_path="/prom")
    client = asgi_client(lr.wrap(Starlette(routes=[Route("/{path:path}", ok)])))
    for path in ("/livez", "/livez/", "/readyz", "/readyz/", "/prom", "/prom/", "/healthz"):
        assert (await client.get(path)).status_code == 200
    assert list(lr.latency.snapshot()) == ["GET /{path:path}"]
    assert lr.latency.snapshot()["GET /{path:path}"]["count"] == 1


async def test_named_route_from_an_sdk_layer_wins(asgi_client: Any) -> None:
    """A layer answering for the app (a cache hit) names the route it answered for."""
    from tests.apps.latency_app import build

    lr = _sdk(cache_routes={"/products/{product_id}": 30})
    client = asgi_client(lr.wrap(build()))
    miss, hit = await client.get("/products/9"), await client.get("/products/9")
    assert (miss.headers["x-cache"], hit.headers["x-cache"]) == ("MISS", "HIT")
    assert list(lr.latency.snapshot()) == ["GET /products/{product_id}"]
    assert lr.latency.snapshot()["GET /products/{product_id}"]["count"] == 2


async def test_collectors_export_and_a_failing_one_is_skipped(asgi_client: Any) -> None:
    """Registered counters and histograms reach /metrics; a raising collector is skipped."""
    lr = _sdk()
    hosts = LogLinearHistogram()
    hosts.record(0.2)

    def broken() -> int:
        raise RuntimeError("collector bug")

    lr.latency.add_collector("shop_refunds", lambda: 3, help="refunds issued")
    lr.latency.add_collector(
        "shop_coupon_checks", lambda: [({"result": "hit"}, 5), ({"result": "miss"}, 2)]
    )
    lr.latency.add_collector(
        "shop_tax_api_duration_seconds",
        lambda: [({"host": "tax.example"}, hosts)],
        kind="histogram",
    )
    lr.latency.add_collector("shop_broken", broken)
    reply = await asgi_client(lr.wrap(Starlette())).get("/metrics")
    samples = metric_samples(reply.text)
    assert samples["shop_refunds_total"][0].value == 3
    checks = {s.labels["result"]: s.value for s in samples["shop_coupon_checks_total"]}
    assert checks == {"hit": 5, "miss": 2}
    buckets = {s.labels["le"]: s.value for s in samples["shop_tax_api_duration_seconds_bucket"]}
    assert buckets["0.1"] == 0
    assert buckets["0.25"] == 1
    assert "shop_broken_total" not in samples
    assert samples["launchready_ratelimit_refused_total"][0].value == 0


def _x_app() -> Starlette:
    async def x(request: Request) -> PlainTextResponse:
        return PlainTextResponse("x")

    return Starlette(routes=[Route("/x", x)])


async def test_redis_outage_pauses_the_fleet_view_only(
    private_redis: Any, asgi_client: Any
) -> None:
    """With Redis killed, requests are served and a flush/merge round returns quietly."""
    lr = _sdk(
        redis_url=private_redis.url,
        redis_prefix="lat-outage",
        redis_timeout_s=0.2,
        redis_cooldown_s=5,
    )
    client = asgi_client(lr.wrap(_x_app()))
    assert (await client.get("/x")).status_code == 200
    await lr.latency.tick()
    private_redis.kill()
    assert (await client.get("/x")).status_code == 200
    started = time.monotonic()
    await lr.latency.tick()
    await lr.latency.stop()
    assert time.monotonic() - started < 2
    assert lr.latency.snapshot()["GET /x"]["count"] == 2
    await lr.shutdown()


async def test_background_task_flushes_on_its_own(
    redis_url: str, redis_prefix: str, asgi_client: Any
) -> None:
    """Start-up runs the flush/merge loop; shutdown stops it and flushes one last time."""

    def worker(flush_s: float) -> LaunchReady:
        return _sdk(
            redis_url=redis_url,
            redis_prefix=redis_prefix,
            redis_timeout_s=0.5,
            latency_flush_interval_s=flush_s,
        )

    serving, watching = worker(60.0), worker(0.05)
    client = asgi_client(serving.wrap(_x_app()))
    watching.wrap(_x_app())
    await serving.startup()
    await watching.startup()
    await client.get("/x")
    await serving.shutdown()  # its loop would flush in a minute: only the last flush sends it
    deadline = time.monotonic() + 2
    while watching.latency.snapshot(fleet=True).get("GET /x", {}).get("count") != 1:
        assert time.monotonic() < deadline
        await asyncio.sleep(0.02)
    await watching.shutdown()
    assert watching.latency.snapshot(fleet=True)["GET /x"]["count"] == 1
    assert "GET /x" not in watching.latency.snapshot()


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
        for _ in range(20):  # the requests a route needs before its budget is judged
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
    """A client leaving mid-stream is recorded once, not as an error; the server carries on."""
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


def test_client_gone_before_the_response_is_499(serve: Any) -> None:
    """A client that leaves before any response is recorded as 499: a 4xx, not an error."""
    server = serve(APP)
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
        sock.sendall(b"GET /star/poll HTTP/1.1\r\nHost: x\r\n\r\n")
    deadline = time.monotonic() + 5
    while "GET /star/poll" not in (routes := _snapshot(server)["routes"]):
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert routes["GET /star/poll"]["count"] == 1
    assert routes["GET /star/poll"]["errors"] == 0
    metrics = metric_samples(httpx.get(f"{server.url}/metrics", timeout=5).text)
    poll = [
        s.labels["status"]
        for s in metrics["launchready_http_requests_total"]
        if s.labels["route"] == "/star/poll"
    ]
    assert poll == ["4xx"]


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
