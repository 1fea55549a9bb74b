"""Where each route's time goes: SQL, outbound calls per host, a blocked event loop, bytes sent.

While a request runs, the SDK adds up on its context what it already sees: every SQL statement
(`dbtiming`, SQLAlchemy and Django alike) and every outbound call through `lr.http_client()`
(per host). After the response, `Breakdown.record` charges those, the time the event loop was
blocked while the request ran (from `LoopMonitor`), and the response's size, to the request's
route template. Nothing is sampled: these are a few context-variable additions per request.

On `/metrics`, per `method` and `route` (the same labels as the latency histograms):

    launchready_http_request_sql_seconds            histogram  SQL time per request (requests
                                                               that ran SQL)
    launchready_http_request_sql_statements_total   counter    statements
    launchready_http_request_outbound_seconds       histogram  time in calls to `host`, per
                                                               request that called it
    launchready_http_request_loop_blocked_seconds_total  counter  loop blocked while in flight
    launchready_http_response_bytes_total           counter    response body bytes
    launchready_loop_stalls_total                   counter    stalls over the threshold, by
                                                               the route that was running
    launchready_loop_blocked_seconds_total          counter    every block, whoever ran

`launchready bench` reads them before and after a run: what the server spent per request in
SQL, in calls to each host, with the loop blocked, and the rest (the app's own code and waits).
`snapshot()` gives the same since start-up, per request, for the status page.

Security stance: labels are route templates, methods from a fixed list and outbound host
names (scheme, host, port: never a path or query), at most `max_hosts` per route and 64 in
all; further hosts share `<other>`.

Limits, candidly: SQL and outbound time are wall-clock time inside the statement or the call,
so two concurrent calls in one request count twice (the sum can exceed the request's time).
Work a request starts in a background task is charged to it only until its response is
recorded. Outbound time is measured to the response headers.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

from launchready_sdk.context import RequestContext
from launchready_sdk.latency import (
    KNOWN_METHODS,
    OVERFLOW,
    UNMATCHED,
    LatencyTracker,
    LogLinearHistogram,
)
from launchready_sdk.loopmonitor import BLOCK_FLOOR_S, LoopMonitor

__all__ = ["DEFAULT_MAX_HOSTS", "Breakdown", "RouteFigures"]

DEFAULT_MAX_HOSTS = 8
MAX_HOSTS_IN_ALL = 64
OTHER_HOST = "<other>"

Labels = dict[str, str]


class RouteFigures:
    """What one route's requests spent, since start-up."""

    __slots__ = ("blocked_s", "bytes", "outbound", "requests", "sql", "statements")

    def __init__(self) -> None:
        self.requests = 0
        self.bytes = 0
        self.statements = 0
        self.sql = LogLinearHistogram()  # per request that ran SQL
        self.outbound: dict[str, LogLinearHistogram] = {}  # host -> per request that called it
        self.blocked_s = 0.0


class Breakdown:
    """Per-route SQL, outbound, loop-blocked and response-size figures.

    Args:
        monitor: the event-loop monitor whose blocks are charged to requests (None: none).
        max_routes: distinct (method, route) pairs before new ones share `<overflow>`.
        max_hosts: outbound hosts per route before further ones share `<other>`.
    """

    def __init__(
        self,
        *,
        monitor: LoopMonitor | None = None,
        max_routes: int = 500,
        max_hosts: int = DEFAULT_MAX_HOSTS,
    ) -> None:
        self.monitor = monitor
        self.max_routes = max_routes
        self.max_hosts = max_hosts
        self.routes: dict[tuple[str, str], RouteFigures] = {}  # the labels we export
        self.dropped = 0
        self._lookup: dict[tuple[str, str | None], RouteFigures] = {}
        self._hosts: set[str] = set()

    def record(self, ctx: RequestContext, sent: int, duration_s: float) -> None:
        """Charge one finished request to its route (never raises; failures are `dropped`)."""
        try:
            figures = self._lookup.get((ctx.method, ctx.route))
            if figures is None:
                figures = self._figures(ctx.method, ctx.route)
            figures.requests += 1
            figures.bytes += sent
            if ctx.sql_count:
                figures.statements += ctx.sql_count
                figures.sql.record(ctx.sql_s)
            if ctx.outbound is not None:
                self._outbound(figures, ctx.outbound)
            monitor = self.monitor
            if monitor is not None:
                end = time.perf_counter()
                start = end - duration_s
                if monitor.last_end > start or end - monitor.due >= BLOCK_FLOOR_S:
                    figures.blocked_s += monitor.blocked_during(start, end)
        except Exception:
            self.dropped += 1

    def _figures(self, method: str, route: str | None) -> RouteFigures:
        known = method in KNOWN_METHODS
        key = (method if known else "OTHER", route or UNMATCHED)
        figures = self.routes.get(key)
        if figures is None:
            if len(self.routes) >= self.max_routes and key[1] not in (UNMATCHED, OVERFLOW):
                key = (key[0], OVERFLOW)
                figures = self.routes.get(key)
            if figures is None:
                figures = self.routes[key] = RouteFigures()
        if known and key[1] != OVERFLOW:  # never remember a client's spelling of a method
            self._lookup[(method, route)] = figures
        return figures

    def _outbound(self, figures: RouteFigures, spent: dict[str, float]) -> None:
        hosts = figures.outbound
        for host, seconds in spent.items():
            h = hosts.get(host)
            if h is None:
                name = host
                if len(hosts) >= self.max_hosts or (
                    host not in self._hosts and len(self._hosts) >= MAX_HOSTS_IN_ALL
                ):
                    name = OTHER_HOST
                else:
                    self._hosts.add(host)
                h = hosts.get(name)
                if h is None:
                    h = hosts[name] = LogLinearHistogram()
            h.record(seconds)

    # --- reading ------------------------------------------------------------------------------

    def snapshot(self) -> dict[str, dict[str, Any]]:
        """Since start-up, per route: requests and, per request, SQL ms and statements,
        outbound ms per host, loop-blocked ms and response bytes."""
        out: dict[str, dict[str, Any]] = {}
        for (method, route), f in sorted(self.routes.items()):
            n = f.requests or 1
            out[f"{method} {route}"] = {
                "requests": f.requests,
                "sql_ms": round(f.sql.sum * 1000 / n, 3),
                "sql_statements": round(f.statements / n, 3),
                "outbound_ms": {h: round(x.sum * 1000 / n, 3) for h, x in f.outbound.items()},
                "loop_blocked_ms": round(f.blocked_s * 1000 / n, 3),
                "response_bytes": round(f.bytes / n, 1),
            }
        return out

    def export(self, tracker: LatencyTracker) -> None:
        """Show these figures on `tracker`'s /metrics."""
        add = tracker.add_collector
        add(
            "launchready_http_request_sql_seconds", self._sql, kind="histogram",
            help="SQL time per request, by route (requests that ran SQL)",
        )  # fmt: skip
        add(
            "launchready_http_request_sql_statements", self._counter("statements"),
            help="SQL statements run by requests, by route",
        )  # fmt: skip
        add(
            "launchready_http_request_outbound_seconds", self._outbound_samples,
            kind="histogram", help="Time in outbound calls per request, by route and host",
        )  # fmt: skip
        add(
            "launchready_http_request_loop_blocked_seconds", self._counter("blocked_s"),
            help="Time the event loop was blocked while requests of the route were in flight",
        )  # fmt: skip
        add(
            "launchready_http_response_bytes", self._counter("bytes"),
            help="Response body bytes sent, by route",
        )  # fmt: skip
        if self.monitor is not None:
            monitor = self.monitor
            add(
                "launchready_loop_stalls", self._stalls,
                help="Event-loop stalls over the threshold, by the route that was running",
            )  # fmt: skip
            add(
                "launchready_loop_blocked_seconds", lambda: monitor.blocked_s,
                help="Time the event loop was blocked (late by 5 ms or more)",
            )  # fmt: skip

    def _labels(self) -> Iterator[tuple[Labels, RouteFigures]]:
        for (method, route), f in list(self.routes.items()):
            yield {"method": method, "route": route}, f

    def _sql(self) -> list[tuple[Labels, LogLinearHistogram]]:
        return [(labels, f.sql) for labels, f in self._labels() if f.sql.count]

    def _counter(self, attribute: str) -> Any:
        def samples() -> list[tuple[Labels, float]]:
            return [(labels, getattr(f, attribute)) for labels, f in self._labels()]

        return samples

    def _outbound_samples(self) -> list[tuple[Labels, LogLinearHistogram]]:
        return [
            ({**labels, "host": host}, h)
            for labels, f in self._labels()
            for host, h in list(f.outbound.items())
        ]

    def _stalls(self) -> list[tuple[Labels, int]]:
        stalls = self.monitor.stalls_by_route if self.monitor is not None else {}
        return [({"method": m, "route": r}, n) for (m, r), n in list(stalls.items())]
