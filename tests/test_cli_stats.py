"""Percentiles, the measured window, the verdict, and the server's p95 from Prometheus buckets."""

from __future__ import annotations

import io

import pytest
from prometheus_client import CollectorRegistry, Histogram, generate_latest

from launchready_sdk.cli.metrics import (
    delta,
    parse_buckets,
    quantile,
    query_p95,
    route_shape,
    server_p95,
)
from launchready_sdk.cli.progress import Progress
from launchready_sdk.cli.report import Thresholds, build_report, judge_route, render_table
from launchready_sdk.cli.scenario_toml import parse_scenario
from launchready_sdk.cli.stats import Recorder, percentile, summarize


def test_nearest_rank_percentiles() -> None:
    """p50/p95/p99 use the nearest-rank definition on the sorted samples."""
    values = [float(i) for i in range(1, 101)]  # 1..100
    assert percentile(values, 0.5) == 50
    assert percentile(values, 0.95) == 95
    assert percentile(values, 0.99) == 99
    assert percentile(values, 1.0) == 100
    assert percentile([7.0], 0.95) == 7
    assert percentile([], 0.95) is None
    assert percentile([1.0, 2.0], 0.5) == 1  # rank ceil(0.5 * 2) = 1
    assert summarize([0.001, 0.002, 0.003]) == {
        "p50_ms": 2.0,
        "p95_ms": 3.0,
        "p99_ms": 3.0,
        "max_ms": 3.0,
    }


def test_recorder_counts_only_the_measured_window() -> None:
    """Warm-up samples feed the live figures only; errors and statuses are kept per route."""
    rec = Recorder(["GET /"])
    rec.open_window(10.0, 12.0)
    rec.add("GET /", 9.5, 9.6, 200, None)  # warm-up
    rec.add("GET /", 10.0, 10.01, 200, None)
    rec.add("GET /", 11.5, 11.7, 500, "status 500")
    rec.add("GET /", 11.9, 13.0, 0, "timeout")
    report = rec.route_report("GET /")
    assert report["count"] == 3
    assert report["errors"] == 2
    assert report["error_rate"] == pytest.approx(2 / 3, abs=1e-6)
    assert report["statuses"] == {"200": 1, "500": 1, "none": 1}
    assert report["error_kinds"] == {"status 500": 1, "timeout": 1}
    assert report["max_ms"] == pytest.approx(1100.0)
    assert [s["count"] for s in rec.timeline_report()] == [1, 2]
    assert rec.overall_report()["responses"] == 2
    done, errors, _ = rec.take_live()
    assert (done, errors) == (4, 2)


def test_verdict_per_route_and_overall() -> None:
    """A route over its p95 budget or error limit fails with a reason; overrides apply."""
    entry = {
        "count": 100,
        "errors": 2,
        "error_rate": 0.02,
        "p95_ms": 120.0,
        "error_kinds": {"status 500": 2},
    }
    assert judge_route(entry, 500, 0.05) == []
    reasons = judge_route(entry, 100, 0.01)
    assert reasons[0] == "p95 120.0 ms is above 100 ms"
    assert reasons[1].startswith("error rate 2.00% is above 1.00% (2 of 100: 2x status 500)")
    scenario = parse_scenario(
        '[[flow]]\npath = "/a"\n[[flow]]\npath = "/b"\n[routes."GET /b"]\np95_ms = 50\n', "s"
    )
    rec = Recorder(scenario.route_names)
    rec.open_window(0.0, 1.0)
    rec.add("GET /a", 0.1, 0.2, 200, None)  # 100 ms: within the 500 ms default
    rec.add("GET /b", 0.1, 0.2, 200, None)  # 100 ms: over its own 50 ms budget
    report = build_report(
        recorder=rec,
        scenario=scenario,
        thresholds=Thresholds(),
        server_p95=None,
        duration_s=1.0,
        meta={},
    )
    assert report["routes"]["GET /a"]["passed"] is True
    assert report["routes"]["GET /b"]["passed"] is False
    assert report["routes"]["GET /b"]["p95_budget_ms"] == 50
    assert report["passed"] is False
    assert report["failures"] == ["GET /b: p95 100.0 ms is above 50 ms"]
    assert "FAIL  GET /b: p95 100.0 ms is above 50 ms" in render_table(report)


def test_nothing_measured_is_not_a_pass() -> None:
    """A run with no measured request fails; a route without requests is n/a."""
    scenario = parse_scenario('[[flow]]\npath = "/"\n', "s")
    rec = Recorder(scenario.route_names)
    rec.open_window(0.0, 1.0)
    report = build_report(
        recorder=rec,
        scenario=scenario,
        thresholds=Thresholds(),
        server_p95=None,
        duration_s=1.0,
        meta={},
    )
    assert report["routes"]["GET /"]["passed"] is None
    assert report["passed"] is False
    assert report["failures"] == ["no request was measured"]


def test_histogram_quantile_interpolates_inside_the_bucket() -> None:
    """The p95 lies in the bucket holding the 95th percentile, interpolated linearly."""
    buckets = {0.01: 50.0, 0.1: 90.0, 1.0: 100.0, float("inf"): 100.0}
    estimate, low, high = quantile(buckets, 0.95) or (0, 0, 0)
    assert (low, high) == (0.1, 1.0)
    assert estimate == pytest.approx(0.1 + 0.9 * (95 - 90) / 10)
    assert quantile({0.005: 10.0, float("inf"): 10.0}, 0.95) == pytest.approx((0.00475, 0, 0.005))
    beyond = quantile({0.5: 0.0, float("inf"): 4.0}, 0.95)
    assert beyond == (0.5, 0.5, float("inf"))
    assert quantile({0.5: 0.0, float("inf"): 0.0}, 0.95) is None


def test_server_p95_from_a_scrape_delta() -> None:
    """Buckets are summed over statuses, differenced between scrapes, matched by shape."""
    registry = CollectorRegistry()
    hist = Histogram(
        "launchready_http_request_duration_seconds",
        "d",
        ["method", "route", "status"],
        buckets=(0.005, 0.05, 0.5),
        registry=registry,
    )
    for _ in range(100):
        hist.labels("GET", "/products/{product_id}", "2xx").observe(0.3)  # before the run
    before = parse_buckets(generate_latest(registry).decode())
    for _ in range(95):
        hist.labels("GET", "/products/{product_id}", "2xx").observe(0.001)
    for _ in range(5):
        hist.labels("GET", "/products/{product_id}", "5xx").observe(0.02)
    after = parse_buckets(generate_latest(registry).decode())
    figures = server_p95(delta(before, after))
    shape = route_shape("GET /products/{id}")
    assert shape == "GET /products/{}"
    assert figures[shape]["bucket_ms"] == [0.0, 5.0]
    assert figures[shape]["p95_ms"] == pytest.approx(5.0)


def test_sql_statements_are_judged_against_the_query_budget() -> None:
    """Statement p95s come from the run's delta; one certainly over 100 ms fails the run."""
    registry = CollectorRegistry()
    hist = Histogram(
        "launchready_db_query_duration_seconds",
        "d",
        ["statement"],
        buckets=(0.005, 0.1, 0.25),
        registry=registry,
    )
    fast, slow = "SELECT * FROM products WHERE id = ?", "SELECT * FROM orders"
    before = parse_buckets(generate_latest(registry).decode())
    for _ in range(50):
        hist.labels(fast).observe(0.001)
        hist.labels(slow).observe(0.2)
    figures = query_p95(delta(before, parse_buckets(generate_latest(registry).decode())))
    assert figures[fast]["count"] == 50
    assert figures[fast]["bucket_ms"] == [0.0, 5.0]
    assert figures[slow]["bucket_ms"] == [100.0, 250.0]
    assert server_p95(delta(before, parse_buckets(generate_latest(registry).decode()))) == {}
    scenario = parse_scenario('[[flow]]\npath = "/"\n', "s")
    rec = Recorder(scenario.route_names)
    rec.open_window(0.0, 1.0)
    rec.add("GET /", 0.1, 0.11, 200, None)
    report = build_report(
        recorder=rec,
        scenario=scenario,
        thresholds=Thresholds(),
        server_p95=None,
        duration_s=1.0,
        meta={},
        queries=figures,
    )
    assert list(report["queries"]) == [slow, fast]  # slowest first
    assert report["queries"][fast]["passed"] is True
    assert report["queries"][slow]["passed"] is False
    assert report["passed"] is False
    assert report["failures"] == [f"SQL {slow}: p95 over 100 ms (the server's bucket 100-250 ms)"]
    assert "database: 2 statements" in render_table(report)


def test_progress_writes_plain_lines_when_not_a_terminal() -> None:
    """Without a TTY the progress is a plain line with phase, rate, p95 and errors."""
    stream = io.StringIO()
    rec = Recorder()
    rec.open_window(0.0, 10.0)
    for i in range(10):
        rec.add("GET /", i / 10, i / 10 + 0.004, 200 if i else 0, None if i else "timeout")
    Progress(rec, stream, warmup_s=1.0, duration_s=10.0).draw(elapsed=2.0, span=2.0)
    line = stream.getvalue()
    assert line.endswith("\n")
    assert "\r" not in line
    assert "measuring" in line
    assert "5.0 req/s" in line
    assert "p95 4.0 ms" in line
    assert "errors 1" in line
