"""Per-route accounting: SQL time and statements, outbound time per host, response bytes."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from fastapi import FastAPI
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy.ext.asyncio import create_async_engine

from launchready_sdk import LaunchReady, Settings
from launchready_sdk.breakdown import OTHER_HOST, Breakdown
from launchready_sdk.context import RequestContext


def families(text: str) -> dict[str, list[Any]]:
    out: dict[str, list[Any]] = {}
    for family in text_string_to_metric_families(text):
        out.setdefault(family.name, []).extend(family.samples)
    return out


def value(found: dict[str, list[Any]], name: str, **labels: str) -> float:
    for family in found.values():
        for sample in family:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                return float(sample.value)
    raise AssertionError(f"no {name} {labels}")


async def test_sql_outbound_and_bytes_reach_the_route(asgi_client: Any, serve: Any) -> None:
    """A route running 6 statements and one calling a real provider twice: /metrics carries
    per route the SQL time and count, the time per host, and the bytes sent."""
    provider = serve("examples.providers.app:app", ready="/healthz")
    lr = LaunchReady(Settings(service_name="bd", rate_limits={}, configure_logging=False))
    engine = create_async_engine("sqlite+aiosqlite://")
    lr.instrument_sqlalchemy(engine)
    api = FastAPI()

    @api.get("/items")
    async def items() -> dict[str, Any]:
        async with engine.connect() as conn:
            rows = [(await conn.execute(sa.text(f"SELECT {i}"))).scalar() for i in range(6)]
        return {"rows": rows}

    @api.get("/call")
    async def call() -> dict[str, int]:
        async with lr.http_client(base_url=provider.url) as client:
            first = await client.get("/payments/charges")
            second = await client.get("/healthz")
        return {"status": first.status_code + second.status_code}

    client = asgi_client(lr.wrap(api))
    for _ in range(3):
        assert (await client.get("/items")).status_code == 200
    assert (await client.get("/call")).status_code == 200
    found = families((await client.get("/metrics")).text)
    route = {"method": "GET", "route": "/items"}
    assert value(found, "launchready_http_request_sql_statements_total", **route) == 18
    assert value(found, "launchready_http_request_sql_seconds_count", **route) == 3
    assert value(found, "launchready_http_request_sql_seconds_sum", **route) > 0
    host = provider.url  # scheme, host and port: never a path
    labels = {"method": "GET", "route": "/call", "host": host}
    assert value(found, "launchready_http_request_outbound_seconds_count", **labels) == 1
    assert value(found, "launchready_http_request_outbound_seconds_sum", **labels) > 0
    sent = value(found, "launchready_http_response_bytes_total", **route)
    assert sent == 3 * len(b'{"rows":[0,1,2,3,4,5]}')
    snapshot = lr.breakdown.snapshot()["GET /items"]
    assert snapshot["requests"] == 3
    assert snapshot["sql_statements"] == 6
    assert lr.breakdown.snapshot()["GET /call"]["outbound_ms"][host] > 0
    # the SDK's own endpoints are not charged
    assert not any(k.startswith("GET /metrics") for k in lr.breakdown.snapshot())
    await engine.dispose()


def context(method: str, route: str | None, **spent: Any) -> RequestContext:
    ctx = RequestContext("id", method, "/x", None)
    ctx.route = route
    for host, seconds in spent.get("outbound", {}).items():
        ctx.add_outbound(host, seconds)
    return ctx


def test_hosts_routes_and_methods_are_bounded() -> None:
    """Hosts past the per-route cap share `<other>`; unknown methods are `OTHER`; routes past
    the cap share `<overflow>`; unmatched requests `<unmatched>`."""
    breakdown = Breakdown(max_routes=2, max_hosts=2)
    hosts = {f"https://h{i}.example": 0.01 for i in range(5)}
    breakdown.record(context("GET", "/a", outbound=hosts), 10, 0.1)
    assert set(breakdown.routes[("GET", "/a")].outbound) == {
        "https://h0.example",
        "https://h1.example",
        OTHER_HOST,
    }
    assert breakdown.routes[("GET", "/a")].outbound[OTHER_HOST].count == 3
    breakdown.record(context("BREW", "/a"), 1, 0.1)
    breakdown.record(context("GET", None), 1, 0.1)
    breakdown.record(context("GET", "/b"), 1, 0.1)
    breakdown.record(context("GET", "/c"), 1, 0.1)
    assert set(breakdown.routes) == {
        ("GET", "/a"),
        ("OTHER", "/a"),
        ("GET", "<unmatched>"),
        ("GET", "<overflow>"),
    }
    assert breakdown.dropped == 0


def test_a_failure_is_counted_never_raised() -> None:
    """Whatever goes wrong while charging a request is counted in `dropped`."""
    breakdown = Breakdown()
    breakdown.record(None, 1, 0.1)  # type: ignore[arg-type]
    assert breakdown.dropped == 1


def test_outbound_time_adds_up_per_host() -> None:
    """Two calls to one host in one request add up; another host is kept apart."""
    ctx = RequestContext("id", "GET", "/x", None)
    ctx.add_outbound("https://pay.example", 0.25)
    ctx.add_outbound("https://pay.example", 0.125)
    ctx.add_outbound("https://mail.example", 0.0625)
    assert ctx.outbound == {"https://pay.example": 0.375, "https://mail.example": 0.0625}
