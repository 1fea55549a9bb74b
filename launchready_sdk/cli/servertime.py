"""Where the server's time went: the SDK's per-route breakdown, read from two `/metrics` scrapes.

An app on the SDK exports, per route template, the time its requests spent in SQL (and how
many statements they ran), in outbound calls per host, and with the event loop blocked (see
`launchready_sdk.breakdown`). The bench scrapes `/metrics` when the measured window opens and
after the run; the differences, divided by the requests the server counted, are the mean per
request over the run. What the named parts do not cover is `other`: the app's own code, its
waits, the framework.

A scrape is one of: the SDK's metrics (with or without the breakdown families, which older
SDKs lack), a foreign `/metrics` (another exporter: the bench measures from the client and says
the breakdown is unavailable), or nothing usable (a 404, an HTML page, text that does not
parse). The SDK's counters never go down, even summed over the workers behind the port
(`launchready_workers` of them); when one did between the scrapes, or the single process's
start time changed (it restarted), the server-side figures are left out and the report says
why, rather than subtracting one process's counts from another's.
"""

from __future__ import annotations

import asyncio
import dataclasses
import math
from collections.abc import Iterable, Mapping
from typing import Any

from launchready_sdk.cli.client import ClientError, Pool
from launchready_sdk.cli.metrics import (
    METRIC,
    SETTLE_S,
    SETTLE_TRIES,
    Buckets,
    parse_buckets,
    quantile,
    route_shape,
)

PREFIX = "launchready_"
REQUESTS = "launchready_http_requests_total"
DURATION_SUM = "launchready_http_request_duration_seconds_sum"
SQL_SUM = "launchready_http_request_sql_seconds_sum"
STATEMENTS = "launchready_http_request_sql_statements_total"
OUTBOUND = "launchready_http_request_outbound_seconds"
BLOCKED = "launchready_http_request_loop_blocked_seconds_total"
STALLS = "launchready_loop_stalls_total"
WORKERS = "launchready_workers"
START_TIME = "process_start_time_seconds"  # prometheus_client's process collector
BREAKDOWN_MARK = "launchready_http_response_bytes_total"  # exported by every SDK with a breakdown
_MONOTONIC = ("_total", "_count", "_sum", "_bucket")

Labels = tuple[tuple[str, str], ...]
Samples = dict[tuple[str, Labels], float]


@dataclasses.dataclass(slots=True)
class Scrape:
    """One reading of `/metrics`: the duration buckets and every `launchready_*` sample."""

    buckets: Buckets
    samples: Samples
    breakdown: bool  # the SDK's per-route breakdown families are there
    started: float | None = None  # process_start_time_seconds, when exported
    # the workers the SDK's figures add up (`launchready_workers`): with several, the
    # process start time is whichever worker answered, so only counters can show a restart
    workers: int = 1


def parse(text: str) -> Scrape:
    """Read the SDK's samples from Prometheus text (raises on text that does not parse)."""
    from prometheus_client.parser import text_string_to_metric_families

    samples: Samples = {}
    started = None
    for family in text_string_to_metric_families(text):
        if family.name == START_TIME and family.samples:
            started = family.samples[0].value
        if not family.name.startswith(PREFIX):
            continue
        for sample in family.samples:
            if not math.isfinite(sample.value) or sample.value < 0:
                continue  # not a count: the server's figure is unusable
            labels = tuple(sorted(sample.labels.items()))
            samples[(sample.name, labels)] = sample.value
    breakdown = any(name == BREAKDOWN_MARK for name, _ in samples)
    workers = int(samples.get((WORKERS, ()), 1))
    return Scrape(parse_buckets(text), samples, breakdown, started, workers)


async def scrape(pool: Pool, path: str) -> Scrape | str:
    """The app's figures now, or why there are none (a sentence)."""
    try:
        response = await pool.request("GET", path)
    except ClientError as exc:
        return f"{path} could not be read ({exc})"
    if response.status != 200:
        return f"{path} answered {response.status}"
    if METRIC.encode() not in response.body:
        return f"{path} has no launchready-sdk metrics (a foreign or missing exporter)"
    try:
        return parse(response.body.decode("utf-8", "replace"))
    except Exception:  # whatever a server sends as metrics, it is not the bench's fault
        return f"{path} is not Prometheus text the bench can read"


async def settled(pool: Pool, path: str, settle_s: float = SETTLE_S) -> Scrape | str:
    """The figures once every worker's last requests are in them: scrapes `settle_s` apart
    until two agree on the duration buckets (or `SETTLE_TRIES` were taken)."""
    last = await scrape(pool, path)
    for _ in range(SETTLE_TRIES - 1):
        if isinstance(last, str):
            return last
        await asyncio.sleep(settle_s)
        now = await scrape(pool, path)
        if isinstance(now, Scrape) and now.buckets == last.buckets:
            return now
        last = now
    return last


def went_backwards(before: Scrape, after: Scrape, shown: int = 2) -> list[str]:
    """Why the second scrape is not the first one's process moving forward: another process
    start time, or series that went down (or vanished), described; empty when none."""
    one_process = before.workers <= 1 and after.workers <= 1
    if one_process and before.started and after.started and before.started != after.started:
        return [
            f"{START_TIME} {before.started:.0f} -> {after.started:.0f}: another process "
            "answered the second scrape"
        ]
    found = []
    for (name, labels), old in before.samples.items():
        if not name.endswith(_MONOTONIC):
            continue
        new = after.samples.get((name, labels))
        if new is None or new < old - 1e-9:
            found.append((name, labels, old, new))
    out = []
    for name, labels, old, new in found[:shown]:
        where = ", ".join(f"{k}={v}" for k, v in labels if k != "le")
        out.append(f"{name}{{{where}}} {old:g} -> {'gone' if new is None else f'{new:g}'}")
    if len(found) > shown:
        out.append(f"and {len(found) - shown} more")
    return out


def _route_of(labels: Labels) -> str | None:
    d = dict(labels)
    if "method" not in d or "route" not in d:
        return None
    return route_shape(f"{d['method']} {d['route']}")


def _deltas(before: Scrape, after: Scrape, name: str) -> Iterable[tuple[Labels, float]]:
    for (n, labels), value in after.samples.items():
        if n == name:
            yield labels, value - before.samples.get((n, labels), 0.0)


def breakdown(before: Scrape, after: Scrape) -> dict[str, dict[str, Any]]:
    """Per route shape, what the server spent per request during the run (means, in ms).

    `{"requests", "server_ms", "sql_ms", "sql_statements", "outbound_ms", "outbound":
    {host: {"ms", "p95_ms", "calls"}}, "loop_blocked_ms", "other_ms", "stalls"}`; only routes
    the server counted requests for.
    """
    totals: dict[str, dict[str, Any]] = {}

    def add(route: str | None, key: str, amount: float) -> None:
        if route is not None:
            entry = totals.setdefault(route, {"outbound": {}})
            entry[key] = entry.get(key, 0.0) + amount

    for labels, n in _deltas(before, after, REQUESTS):
        add(_route_of(labels), "requests", n)
    for name, key in (
        (DURATION_SUM, "server_s"),
        (SQL_SUM, "sql_s"),
        (STATEMENTS, "statements"),
        (BLOCKED, "blocked_s"),
        (STALLS, "stalls"),
    ):
        for labels, amount in _deltas(before, after, name):
            add(_route_of(labels), key, amount)
    hosts: dict[tuple[str, str], dict[str, Any]] = {}
    for suffix in ("_sum", "_count", "_bucket"):
        for labels, amount in _deltas(before, after, OUTBOUND + suffix):
            route, d = _route_of(labels), dict(labels)
            if route is None or "host" not in d:
                continue
            h = hosts.setdefault((route, d["host"]), {"sum": 0.0, "count": 0.0, "buckets": {}})
            if suffix == "_bucket":
                bound = float(d["le"])
                h["buckets"][bound] = h["buckets"].get(bound, 0.0) + amount
            else:
                h[suffix[1:]] += amount
    out: dict[str, dict[str, Any]] = {}
    for route, t in totals.items():
        n = t.get("requests", 0.0)
        if n <= 0:
            continue
        per = 1000.0 / n
        outbound = {}
        for (r, host), h in sorted(hosts.items()):
            if r != route or h["count"] <= 0:
                continue
            found = quantile(h["buckets"], 0.95)
            outbound[host] = {
                "ms": round(h["sum"] * per, 3),
                "p95_ms": None if found is None else round(found[0] * 1000, 3),
                "calls": int(h["count"]),
            }
        server = t.get("server_s", 0.0) * per
        sql = t.get("sql_s", 0.0) * per
        out_ms = sum(h["ms"] for h in outbound.values())
        blocked = t.get("blocked_s", 0.0) * per
        out[route] = {
            "requests": int(n),
            "server_ms": round(server, 3),
            "sql_ms": round(sql, 3),
            "sql_statements": round(t.get("statements", 0.0) / n, 2),
            "outbound_ms": round(out_ms, 3),
            "outbound": outbound,
            "loop_blocked_ms": round(blocked, 3),
            "other_ms": round(max(0.0, server - sql - out_ms - blocked), 3),
            "stalls": int(t.get("stalls", 0.0)),
        }
    return out


def breakdown_ms(figures: Mapping[str, Any]) -> dict[str, float]:
    """The report's `breakdown_ms` of one route's figures."""
    return {
        "sql": figures["sql_ms"],
        "outbound": figures["outbound_ms"],
        "loop_blocked": figures["loop_blocked_ms"],
        "other": figures["other_ms"],
    }
