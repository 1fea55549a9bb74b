"""The bench's CI reports and notes on synthetic runs: JUnit XML, CSV, percentiles, sentences."""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any

import pytest
import xmlschema
from junitparser import Error, Failure, JUnitXml, Skipped

from launchready_sdk.cli import main
from launchready_sdk.cli.cireports import RUN_CASE, render_csv, render_junit
from launchready_sdk.cli.notes import notes
from launchready_sdk.cli.report import Thresholds, build_report, render_table
from launchready_sdk.cli.scenario_toml import parse_scenario
from launchready_sdk.cli.stats import Recorder, percentile_key

JUNIT_XSD = Path(__file__).parent / "data" / "junit.xsd"
SCENARIO = '[[flow]]\npath = "/ok"\n[[flow]]\npath = "/slow"\n[[flow]]\npath = "/never"\n'


def report(**meta: Any) -> dict[str, Any]:
    scenario = parse_scenario(SCENARIO, "s.toml")
    rec = Recorder(scenario.route_names, (50, 90, 99.9))
    rec.open_window(0.0, 3.0)
    for i in range(30):
        t = i / 10
        rec.add("GET /ok", t, t + 0.004, 200, None, size=120, json=True)
        rec.add("GET /slow", t, t + 0.7, 200 if i % 10 else 500, None if i % 10 else "status 500")
    return build_report(
        recorder=rec,
        scenario=scenario,
        thresholds=Thresholds(),
        server_p95=None,
        duration_s=3.0,
        meta={"scenario": "synthetic", "target": "http://127.0.0.1:1", "started_at":
              "2026-12-07T08:00:00+00:00", "load": {"duration_s": 3.0}, **meta},
    )  # fmt: skip


def test_percentile_keys_write_the_dot_as_an_underscore() -> None:
    """`--percentiles 50,90,99.9` reports p50_ms, p90_ms, p99_9_ms (and p95/p99 always)."""
    assert percentile_key(99.9) == "p99_9_ms"
    assert percentile_key(50) == "p50_ms"
    entry = report()["routes"]["GET /ok"]
    assert {"p50_ms", "p90_ms", "p95_ms", "p99_ms", "p99_9_ms"} <= set(entry)
    table = render_table(report())
    assert "p99.9" in table.splitlines()[0]


def test_junit_is_schema_valid_with_failures_and_skips(tmp_path: Path) -> None:
    """One test case per route: a failure for the missed bar, a skip for the route never
    measured, the run's own case; valid against the JUnit schema and read by junitparser."""
    path = tmp_path / "r.xml"
    path.write_text(render_junit(report()))
    xmlschema.XMLSchema(JUNIT_XSD).validate(path)
    suite = next(iter(JUnitXml.fromfile(str(path))))
    cases = {case.name: case for case in suite}
    assert set(cases) == {"GET /ok", "GET /slow", "GET /never", RUN_CASE}
    assert cases["GET /ok"].result == []
    (failure,) = cases["GET /slow"].result
    assert isinstance(failure, Failure)
    assert "p95 700.0 ms is above 500 ms" in failure.message
    assert "error rate" in failure.message
    assert isinstance(cases["GET /never"].result[0], Skipped)
    assert (suite.failures, suite.skipped, suite.tests) == (1, 1, 4)


def test_a_run_the_bench_could_not_judge_is_a_junit_error(tmp_path: Path) -> None:
    """Internal errors of the bench (exit 3) are an <error>, not a <failure>."""
    r = report(generator={"internal_errors": 2})
    r["failures"].append("2 requests failed inside the bench")
    path = tmp_path / "r.xml"
    path.write_text(render_junit(r))
    xmlschema.XMLSchema(JUNIT_XSD).validate(path)
    suite = next(iter(JUnitXml.fromfile(str(path))))
    run = next(case for case in suite if case.name == RUN_CASE)
    assert isinstance(run.result[0], Error)


def test_the_csv_has_a_row_per_route_per_second() -> None:
    """Every route and `overall`, each second of the window, requests, p95 and errors."""
    rows = list(csv.DictReader(io.StringIO(render_csv(report()))))
    assert list(rows[0]) == ["second", "route", "requests_per_s", "p50_ms", "p95_ms", "errors"]
    slow = [r for r in rows if r["route"] == "GET /slow"]
    assert [int(r["second"]) for r in slow] == [0, 1, 2]
    assert [int(r["requests_per_s"]) for r in slow] == [10, 10, 10]
    assert [int(r["errors"]) for r in slow] == [1, 1, 1]
    assert float(slow[0]["p95_ms"]) == pytest.approx(700, rel=0.01)
    never = [r for r in rows if r["route"] == "GET /never"]
    assert [r["p95_ms"] for r in never] == ["", "", ""]
    assert sum(int(r["requests_per_s"]) for r in rows if r["route"] == "overall") == 60


def detail(**parts: Any) -> dict[str, Any]:
    base = {"requests": 10, "server_ms": 0.0, "sql_ms": 0.0, "sql_statements": 1.0,
            "outbound_ms": 0.0, "outbound": {}, "loop_blocked_ms": 0.0, "other_ms": 0.0,
            "stalls": 0}  # fmt: skip
    return {**base, **parts}


def route(p95: float, passed: bool, **parts: Any) -> dict[str, Any]:
    failures = [] if passed else [f"p95 {p95:.1f} ms is above 500 ms"]
    return {"count": 10, "p95_ms": p95, "passed": passed, "failures": failures,
            "error_kinds": {}, "error_rate": 0.0, "breakdown_detail": detail(**parts)}  # fmt: skip


def test_each_failing_route_and_the_slowest_get_one_sentence() -> None:
    """The largest part names the cause: a host, SQL, a blocked loop or the app's own code."""
    host = {"https://payments.example": {"ms": 540.0, "p95_ms": 510.0, "calls": 10}}
    routes = {
        "POST /checkout": route(620, False, outbound=host, outbound_ms=540.0, other_ms=80.0),
        "GET /report": route(700, False, sql_ms=650.0, sql_statements=3.0),
        "GET /x": route(900, False, loop_blocked_ms=800.0),
        "GET /block": route(300, True, loop_blocked_ms=290.0, stalls=4),
        "GET /cpu": route(450, True, other_ms=440.0),
        "GET /fast": route(3, True, other_ms=2.0),
    }
    said = notes(routes, {})
    assert said[0].startswith("GET /block: blocked the event loop while it ran (4 stalls")
    assert (
        "POST /checkout: p95 620 ms, of which 540 ms in calls to payments.example (p95 510 ms); "
        "set a shorter outbound deadline or move the call off the request path" in said
    )
    assert any(s.startswith("GET /report: p95 700 ms, of which 650 ms in SQL") for s in said)
    assert any(
        s.startswith("GET /x: p95 900 ms, of which 800 ms waiting on an event loop blocked by "
                     "GET /block")
        for s in said
    )  # fmt: skip
    assert not any(s.startswith(("GET /cpu", "GET /fast")) for s in said)  # passing, not slowest


def test_an_n_plus_one_names_its_statement() -> None:
    """41 statements per request: the N+1 sentence with the most frequent statement's p95."""
    routes = {"GET /products": route(40, True, sql_statements=41.0, sql_ms=30.0)}
    queries = {
        "SELECT * FROM reviews WHERE product_id = ?": {"count": 4100, "p95_ms": 3.0},
        "SELECT * FROM products": {"count": 100, "p95_ms": 9.0},
    }
    (sentence,) = notes(routes, queries)
    assert sentence.startswith(
        "GET /products: 41 SQL statements per request (N+1); p95 of the statement 3.0 ms "
        "(SELECT * FROM reviews WHERE product_id = ?)"
    )


def test_bad_percentiles_are_usage_errors(capsys: pytest.CaptureFixture[str]) -> None:
    """`--percentiles 50,100` and `--percentiles x` exit 2 before anything runs."""
    for bad in ("50,100", "x", "0"):
        with pytest.raises(SystemExit) as exited:
            main(["bench", "--url", "http://127.0.0.1:1", "--percentiles", bad])
        assert exited.value.code == 2
    assert "is not a percentile" in capsys.readouterr().err
