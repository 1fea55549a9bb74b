"""`launchready bench` says where the time goes: injected causes in both bundled shops, the CI
reports, and servers whose figures are missing, foreign or go backwards."""

from __future__ import annotations

import csv
import io
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
import xmlschema
from junitparser import Failure, JUnitXml
from prometheus_client import CollectorRegistry, Counter, generate_latest

from launchready_sdk.cli.servertime import parse, went_backwards
from tests.apps.causes import N_PLUS_ONE_PRODUCTS
from tests.conftest import ROOT, free_port

SHOPS = {
    "fastapi": "tests.apps.fastapi_shop_causes:app",
    "django": "tests.apps.django_shop_causes.asgi:application",
}
JUNIT_XSD = ROOT / "tests" / "data" / "junit.xsd"
PROVIDER_LATENCY_MS = 300

CAUSES = """\
name = "injected causes"

[vars]
email = "c-{run}-{vu}@example.com"

[[setup]]
method = "POST"
path = "/signup"
json = { email = "{email}", password = "long-password-1", name = "C" }
expect = 201
capture = { token = "token" }

[[flow]]
weight = 4
path = "/"

[[flow]]
weight = 2
path = "/causes/n1"

# Weights high enough that a 5 s run draws every cause (with 1 in 10, the 500 KB route went
# undrawn in about one run in fifty); the seed makes the mix repeatable.
[[flow]]
weight = 2
path = "/causes/block"

[[flow]]
weight = 3
path = "/causes/big"

[[flow]]
name = "checkout"
weight = 2

[[flow.step]]
route = "POST /cart/items"
method = "POST"
path = "/cart/items"
headers = { Authorization = "Bearer {token}" }
json = { product_id = "{rand:1:240}", quantity = 1 }
expect = 201

[[flow.step]]
route = "POST /checkout"
method = "POST"
path = "/checkout"
headers = { Authorization = "Bearer {token}", Idempotency-Key = "{uuid}" }
expect = 201
"""


def bench(*args: str | Path, env: dict[str, str] | None = None) -> Any:
    return subprocess.run(
        [sys.executable, "-m", "launchready_sdk.cli", "bench", "--quiet", *map(str, args)],
        cwd=ROOT,
        env={**{k: v for k, v in os.environ.items() if not k.startswith("SHOP_")}, **(env or {})},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def note_about(report: dict[str, Any], route: str) -> list[str]:
    return [n for n in report["notes"] if n.startswith(f"{route}: ")]


@pytest.mark.slow
@pytest.mark.parametrize("shop", sorted(SHOPS))
def test_the_bench_names_each_injected_cause(shop: str, tmp_path: Path, serve: Any) -> None:
    """A provider made slow through its control endpoint, an N+1 route, a route that blocks
    the loop with time.sleep and a 500 KB JSON route: the notes name the host, the statement
    count, the stall and the route, and the payload; the JUnit XML is schema-valid, the CSV
    parses."""
    provider = serve("examples.providers.app:app", ready="/healthz")
    control = httpx.post(f"{provider.url}/_control", json={"latency_ms": PROVIDER_LATENCY_MS})
    assert control.json()["latency_ms"] == PROVIDER_LATENCY_MS
    scenario = tmp_path / "causes.toml"
    scenario.write_text(CAUSES)
    out = {k: tmp_path / f"r.{k}" for k in ("json", "xml", "csv", "html")}
    result = bench(
        "--app", SHOPS[shop], "--scenario", scenario, "--rate", "8", "--users", "10",
        "--duration", "5", "--warmup", "1", "--p95-ms", "280", "--seed", "11",
        "--json", out["json"], "--junit", out["xml"], "--csv", out["csv"], "--html", out["html"],
        env={"SHOP_DEV_MODE": "1", "SHOP_DATA_DIR": str(tmp_path), "PAYMENT_URL": provider.url},
    )  # fmt: skip
    assert result.returncode == 1, result.stdout + result.stderr
    report = json.loads(out["json"].read_text())
    assert report["breakdown"] is True
    host = provider.url.split("://", 1)[1]

    checkout = report["routes"]["POST /checkout"]
    assert checkout["passed"] is False
    assert checkout["breakdown_detail"]["outbound"][provider.url]["ms"] >= PROVIDER_LATENCY_MS
    assert checkout["breakdown_ms"]["outbound"] >= PROVIDER_LATENCY_MS
    (sentence,) = note_about(report, "POST /checkout")
    assert f"in calls to {host}" in sentence
    assert "set a shorter outbound deadline" in sentence

    n1 = report["routes"]["GET /causes/n1"]
    assert n1["breakdown_detail"]["sql_statements"] == N_PLUS_ONE_PRODUCTS + 1
    (sentence,) = note_about(report, "GET /causes/n1")
    assert f"{N_PLUS_ONE_PRODUCTS + 1} SQL statements per request (N+1)" in sentence
    assert "p95 of the statement" in sentence

    block = report["routes"]["GET /causes/block"]
    assert block["breakdown_detail"]["stalls"] >= 1
    assert block["breakdown_ms"]["loop_blocked"] >= 150
    (sentence,) = note_about(report, "GET /causes/block")
    assert "blocked the event loop while it ran" in sentence

    big = report["routes"]["GET /causes/big"]
    assert big["count"] > 0, big
    assert big["payload_bytes_p95"] > 400_000
    assert any(
        n.startswith("GET /causes/big: responses of p95") and "of JSON, over the 100 KB" in n
        for n in report["notes"]
    )
    for entry in report["routes"].values():
        if entry["count"]:
            assert set(entry["breakdown_ms"]) == {"sql", "outbound", "loop_blocked", "other"}
    assert "where the server's time goes" in result.stdout
    assert "notes:" in result.stdout

    xmlschema.XMLSchema(JUNIT_XSD).validate(out["xml"])
    suite = next(iter(JUnitXml.fromfile(str(out["xml"]))))
    cases = {case.name: case for case in suite}
    assert set(report["routes"]) < set(cases)
    assert any(isinstance(r, Failure) for r in cases["POST /checkout"].result)
    assert suite.failures >= 1

    rows = list(csv.DictReader(io.StringIO(out["csv"].read_text())))
    assert {r["route"] for r in rows} == {*report["routes"], "overall"}
    overall = [r for r in rows if r["route"] == "overall"]
    assert [int(r["second"]) for r in overall] == list(range(5))
    assert sum(int(r["requests_per_s"]) for r in overall) == report["overall"]["count"]
    assert "breakdown-chart" in out["html"].read_text()


def test_an_app_without_the_sdk_is_measured_from_the_client(tmp_path: Path) -> None:
    """A foreign /metrics: client figures and payload sizes, no breakdown, and a warning and
    note that say so."""
    out = tmp_path / "r.json"
    scenario = tmp_path / "s.toml"
    scenario.write_text('forwarded_for = false\n[[flow]]\npath = "/"\n')
    result = bench(
        "--app", "tests.apps.foreign_metrics:app", "--scenario", scenario, "--rate", "20",
        "--duration", "1.5", "--warmup", "0.5", "--json", out,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    report = json.loads(out.read_text())
    route = report["routes"]["GET /"]
    assert "breakdown_ms" not in route
    assert route["payload_bytes_p95"] == len(json.dumps({"rows": list(range(50))}).replace(" ", ""))
    assert report["breakdown"] is False
    assert report["server"]["metrics"] is False
    (warning,) = [w for w in report["warnings"] if "no breakdown" in w]
    assert "/metrics has no launchready-sdk metrics" in warning
    (sentence,) = report["notes"]  # the slowest route, with what is known
    assert sentence.startswith("GET /: p95 ")
    assert "where the server's time goes is unknown" in sentence


def serve_on(port: int, log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as output:
        process = subprocess.Popen(
            [sys.executable, "-m", "uvicorn", "tests.apps.loop_app:app", "--port", str(port)],
            cwd=ROOT,
            env={**os.environ, "LAUNCHREADY_TRUSTED_PROXIES": "127.0.0.1/32"},
            stdout=output,
            stderr=subprocess.STDOUT,
        )
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=0.5).status_code == 200:
                return process
        except httpx.HTTPError:
            time.sleep(0.05)
    process.kill()
    process.wait()
    raise RuntimeError(log.read_text())


def test_metrics_that_go_backwards_are_reported_not_subtracted(tmp_path: Path) -> None:
    """The server restarted mid-run: the bench says the metrics went backwards and leaves
    the server-side figures out."""
    port = free_port()
    log = tmp_path / "server.log"
    first = serve_on(port, log)
    scenario = tmp_path / "s.toml"
    scenario.write_text('[[flow]]\npath = "/fast"\n')
    out = tmp_path / "r.json"
    args = [
        sys.executable, "-m", "launchready_sdk.cli", "bench", "--quiet",
        "--url", f"http://127.0.0.1:{port}", "--scenario", str(scenario),
        "--rate", "40", "--duration", "6", "--warmup", "1", "--timeout", "2", "--json", str(out),
    ]  # fmt: skip
    second = None
    bench_process = subprocess.Popen(args, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        time.sleep(2.5)  # the first scrape (after the 1 s warm-up) has been taken
        first.send_signal(signal.SIGINT)
        first.wait(10)
        second = serve_on(port, log)
        bench_process.communicate(timeout=60)
    finally:
        for process in (first, second, bench_process):
            if process is not None and process.poll() is None:
                process.kill()
                process.wait()
    report = json.loads(out.read_text())
    found = [w for w in report["warnings"] if "went backwards" in w]
    assert len(found) == 1, report["warnings"]
    warning = found[0]
    assert " -> " in warning  # what changed, before and after
    assert "left out rather than subtracted" in warning
    assert report["server"]["metrics"] is False
    assert report["routes"]["GET /fast"]["server_p95_ms"] is None
    assert "breakdown_ms" not in report["routes"]["GET /fast"]


def test_went_backwards_names_the_series() -> None:
    """A counter lower in the second scrape, or gone from it, is named with both values."""
    registry = CollectorRegistry()
    requests = Counter("launchready_http_requests", "r", ["method", "route"], registry=registry)
    requests.labels("GET", "/a").inc(5)
    before = parse(generate_latest(registry).decode())
    assert went_backwards(before, before) == []
    fresh = CollectorRegistry()
    Counter("launchready_http_requests", "r", ["method", "route"], registry=fresh).labels(
        "GET", "/a"
    ).inc(2)
    after = parse(generate_latest(fresh).decode())
    found = went_backwards(before, after)
    assert found[0] == "launchready_http_requests_total{method=GET, route=/a} 5 -> 2"


def test_a_start_time_change_counts_only_for_one_process() -> None:
    """One process whose start time changed restarted; an instance of several workers answers
    each scrape from whichever worker, so there only counters that went down count."""
    text = (
        "# TYPE process_start_time_seconds gauge\nprocess_start_time_seconds {started}\n"
        "# TYPE launchready_workers gauge\nlaunchready_workers {workers}\n"
        "# TYPE launchready_http_requests counter\n"
        'launchready_http_requests_total{{method="GET",route="/a"}} {count}\n'
    )
    one = [parse(text.format(started=s, workers=1, count=c)) for s, c in ((100, 5), (200, 9))]
    assert one[0].workers == 1
    assert went_backwards(one[0], one[1])
    many = [parse(text.format(started=s, workers=4, count=c)) for s, c in ((100, 5), (200, 9))]
    assert many[0].workers == 4
    assert went_backwards(many[0], many[1]) == []
    dropped = parse(text.format(started=300, workers=4, count=3))
    assert went_backwards(many[1], dropped)
