"""Slow routes: the SDK's own `/metrics` says which routes are over their p95 budget.

An app running launchready exports `launchready_http_request_duration_p95_seconds` (the rolling
window's p95 per route) and `launchready_http_request_budget_seconds` (its budget). A route over
budget is "soon"; at twice its budget or more it is a blocker (the launch bar is p95 under
500 ms on the core flows, and twice that breaks a demo).

Limits, candidly: the figures are what the answering worker saw in its window, from real
traffic: a route nobody called recently has no p95. An app without the SDK, or whose
`/metrics` is not reachable from here, is reported as not checked.
"""

from __future__ import annotations

from launchready_sdk.cli.audit._http import Fetcher, FetchError, origin
from launchready_sdk.cli.audit._model import Options, PartResult

P95 = "launchready_http_request_duration_p95_seconds"
BUDGET = "launchready_http_request_budget_seconds"


def parse(text: str) -> dict[str, tuple[float | None, float | None]]:
    """`"GET /route"` -> (p95 s, budget s) from the Prometheus text."""
    from prometheus_client.parser import text_string_to_metric_families

    routes: dict[str, tuple[float | None, float | None]] = {}
    for family in text_string_to_metric_families(text):
        if family.name not in (P95, BUDGET):
            continue
        for sample in family.samples:
            key = f"{sample.labels.get('method', '')} {sample.labels.get('route', '')}"
            p95, budget = routes.get(key, (None, None))
            if family.name == P95:
                p95 = sample.value
            else:
                budget = sample.value
            routes[key] = (p95, budget)
    return routes


def run(options: Options, deadline: float) -> PartResult:
    """The slow-route check of `--url`'s `/metrics`."""
    result = PartResult()
    opened = Fetcher.for_part(options, result)
    if opened is None:
        return result
    fetcher = opened[1]
    url = origin(opened[0]) + options.metrics_path
    try:
        reply = fetcher.fetch("GET", url, read_body=True)
    except FetchError as exc:
        result.skipped.append(f"{url}: {exc}")
        return result
    finally:
        fetcher.close()
    if reply.status != 200 or P95.encode() not in reply.body:
        result.skipped.append(
            f"{url} answered {reply.status} without the SDK's p95 figures (an app without "
            "launchready, or /metrics not reachable from here)"
        )
        return result
    try:
        routes = parse(reply.body.decode("utf-8", "replace"))
    except ValueError as exc:
        result.skipped.append(f"{url}: unreadable metrics ({exc})")
        return result
    checked = 0
    for route, (p95, budget) in sorted(routes.items()):
        if p95 is None or budget is None or budget <= 0:
            continue
        checked += 1
        if p95 > budget:
            ratio = p95 / budget
            result.add(
                "slow-route",
                "blocker" if ratio >= 2 else "soon",
                f"{route} p95 is {p95 * 1000:.0f} ms, over its {budget * 1000:.0f} ms budget "
                f"({ratio:.1f}x)",
                f"{url} ({route})",
                "Find where the time goes (launchready bench --json gives breakdown_ms: SQL, "
                "outbound, event-loop stalls), then cache the route, fix the query or move the "
                "work off the request.",
            )
    result.notes.append(f"{checked} routes with a p95 on {url}")
    return result
