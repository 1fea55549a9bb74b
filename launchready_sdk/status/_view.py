"""The status data: figures the SDK already keeps, shaped as the page and `status.json` show them.

Every function here reads; none records. The heavier reads (a fresh latency snapshot, the
per-minute chart points) run in a worker thread, so a page view never stalls the event loop.
"""

from __future__ import annotations

import datetime
import time
from collections.abc import Iterable, Mapping
from typing import Any

from launchready_sdk.latency import LatencyTracker, LogLinearHistogram

CHART_POINTS_MAX = 16


def iso(epoch_s: float | None) -> str | None:
    """ISO-8601 in UTC with its offset, to the millisecond."""
    if epoch_s is None:
        return None
    moment = datetime.datetime.fromtimestamp(float(epoch_s), datetime.UTC)
    return moment.isoformat(timespec="milliseconds")


def route_entries(
    snapshot: Mapping[str, Mapping[str, Any]],
    charts: Mapping[str, list[float | None]],
    min_samples: int,
) -> dict[str, dict[str, Any]]:
    """The `routes` object: the contract's figures per route, plus 4xx, requests over budget,
    whether the sample is too small to judge, and the per-minute p95 points of the chart."""
    out: dict[str, dict[str, Any]] = {}
    for route, entry in snapshot.items():
        count = int(entry.get("count") or 0)
        errors = int(entry.get("errors") or 0)
        out[route] = {
            "count": count,
            "errors": errors,
            "error_rate": round(errors / count, 6) if count else 0.0,
            "p50_ms": entry.get("p50_ms"),
            "p95_ms": entry.get("p95_ms"),
            "p99_ms": entry.get("p99_ms"),
            "budget_ms": entry.get("budget_ms"),
            "over_budget": bool(entry.get("over_budget")),
            "client_errors": int(entry.get("client_errors") or 0),
            "over_budget_count": int(entry.get("over_budget_count") or 0),
            "few_samples": count < min_samples,
            "p95_per_minute_ms": list(charts.get(route, ())),
        }
    return out


class MinuteCharts:
    """Per-minute p95 of each route on this worker, for the page's small charts.

    A finished minute never changes, so its p95 is computed once and remembered; only the
    minute in progress is computed on each read.
    """

    def __init__(self, tracker: LatencyTracker) -> None:
        self.tracker = tracker
        self._done: dict[tuple[str, str, int], float | None] = {}
        self._first = -1

    def points(self) -> dict[str, list[float | None]]:
        tracker = self.tracker
        now = tracker.minute()
        first = now - min(tracker.slots, CHART_POINTS_MAX - 1)
        if self._first != first:  # a new minute: forget the ones that left the chart
            self._first = first
            self._done = {k: v for k, v in self._done.items() if k[2] >= first}
        done = self._done
        merged: dict[tuple[str, str], dict[int, LogLinearHistogram]] = {}
        for (method, route, _klass), series in list(tracker.series.items()):
            per = merged.setdefault((method, route), {})
            for minute, hist in [*list(series.ring), (series.minute, series.current)]:
                if first <= minute <= now and hist.count and (method, route, minute) not in done:
                    per.setdefault(minute, LogLinearHistogram()).merge(hist)
        out: dict[str, list[float | None]] = {}
        for (method, route), per in merged.items():
            points: list[float | None] = []
            for minute in range(first, now + 1):
                key = (method, route, minute)
                if key in done:
                    points.append(done[key])
                    continue
                q = per[minute].quantile(0.95) if minute in per else None
                value = None if q is None else round(q * 1000.0, 3)
                if minute < now:
                    done[key] = value
                points.append(value)
            out[f"{method} {route}"] = points
        return out


def health_entries(verdict: tuple[bool, dict[str, Any]] | None, age_s: float) -> dict[str, Any]:
    """The `health` object: each readiness check's result and how old it is."""
    if verdict is None:
        return {}
    checked_at = iso(time.time() - age_s)
    out: dict[str, Any] = {}
    for name, result in (verdict[1].get("checks") or {}).items():
        entry: dict[str, Any] = {
            "ok": result.get("status") == "pass",
            "duration_ms": result.get("duration_ms"),
            "age_s": round(age_s, 1),
            "checked_at": checked_at,
        }
        if result.get("error"):
            entry["error"] = result["error"]
        out[str(name)] = entry
    return out


def cache_entries(stats: Iterable[Mapping[str, Mapping[str, int]]]) -> dict[str, dict[str, Any]]:
    """Cache results per route pattern summed over workers, with the hit ratio
    HIT / (HIT + MISS + STALE); BYPASS (requests the cache may not serve) is shown apart."""
    totals: dict[str, dict[str, int]] = {}
    for worker in stats:
        for pattern, counts in worker.items():
            into = totals.setdefault(str(pattern), {"HIT": 0, "MISS": 0, "STALE": 0, "BYPASS": 0})
            for result, n in counts.items():
                if result in into:
                    into[result] += int(n)
    out: dict[str, dict[str, Any]] = {}
    for pattern, c in sorted(totals.items()):
        served = c["HIT"] + c["MISS"] + c["STALE"]
        out[pattern] = {
            "hit": c["HIT"],
            "miss": c["MISS"],
            "stale": c["STALE"],
            "bypass": c["BYPASS"],
            "hit_ratio": round(c["HIT"] / served, 4) if served else None,
        }
    return out


def refusal_entries(workers: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    """Rate-limit refusals (429s) in total and per rule, summed over workers."""
    total = 0
    by_rule: dict[str, int] = {}
    for worker in workers:
        total += int(worker.get("refused") or 0)
        for rule, n in (worker.get("refused_by") or {}).items():
            by_rule[str(rule)] = by_rule.get(str(rule), 0) + int(n)
    return {"refused": total, "by_rule": dict(sorted(by_rule.items()))}


def outbound_entries(workers: Iterable[Mapping[str, Mapping[str, Any]]]) -> dict[str, Any]:
    """Outbound calls and errors per host, and on how many workers its breaker is open."""
    out: dict[str, dict[str, Any]] = {}
    for worker in workers:
        for host, figures in worker.items():
            into = out.setdefault(
                str(host), {"calls": 0, "errors": 0, "breaker": "closed", "open_on": 0}
            )
            into["calls"] += int(figures.get("calls") or 0)
            into["errors"] += int(figures.get("errors") or 0)
            if figures.get("breaker", "closed") != "closed":
                into["open_on"] += 1
                into["breaker"] = str(figures.get("breaker"))
    return dict(sorted(out.items()))
