"""Prometheus: the tracker's metric families and the registered collectors, built when scraped.

`PrometheusCollector` reads the tracker through `Figures`, the few attributes it needs, so
this module does not import the tracker that imports it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import Any, Literal, Protocol

from launchready_sdk.latency._histogram import DEFAULT_BUCKETS_S, LogLinearHistogram
from launchready_sdk.latency._window import RollingHistogram, SeriesKey
from launchready_sdk.logs import get_logger

_log = get_logger("launchready.latency")


Sample = tuple[Mapping[str, str], Any]
CollectorKind = Literal["counter", "gauge", "histogram"]


class Collector:
    """Another module's figures for /metrics: `fn()` is called at scrape time."""

    __slots__ = ("fn", "help", "kind", "name")

    def __init__(self, name: str, fn: Callable[[], Any], kind: CollectorKind, help: str) -> None:
        self.name, self.fn, self.kind, self.help = name, fn, kind, help


class Figures(Protocol):
    """What `PrometheusCollector` reads from a `LatencyTracker`."""

    series: dict[SeriesKey, RollingHistogram]
    buckets_s: tuple[float, ...]
    dropped: int
    collectors: dict[str, Collector]

    def snapshot(self) -> dict[str, dict[str, Any]]: ...


_STATUS = {1: "1xx", 2: "2xx", 3: "3xx", 4: "4xx", 5: "5xx"}


class PrometheusCollector:
    """Builds the metric families from the tracker when scraped; nothing runs per request."""

    def __init__(self, tracker: Figures) -> None:
        self.tracker = tracker

    def describe(self) -> list[Any]:
        return []

    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import (
            CounterMetricFamily,
            GaugeMetricFamily,
            HistogramMetricFamily,
        )

        t = self.tracker
        labels = ["method", "route", "status"]
        duration = HistogramMetricFamily(
            "launchready_http_request_duration_seconds", "HTTP request duration", labels=labels
        )
        requests = CounterMetricFamily(
            "launchready_http_requests", "HTTP requests served", labels=labels
        )
        errors = CounterMetricFamily(
            "launchready_http_request_errors", "5xx responses and unhandled exceptions",
            labels=["method", "route"],
        )  # fmt: skip
        error_counts: dict[tuple[str, str], int] = {}
        for (method, route, klass), series in list(t.series.items()):
            h = series.since_start()
            values = [method, route, _STATUS.get(klass, "other")]
            duration.add_metric(values, _buckets(h, t.buckets_s), h.sum)
            requests.add_metric(values, h.count)
            if klass >= 5:
                error_counts[(method, route)] = error_counts.get((method, route), 0) + h.count
        for (method, route), n in sorted(error_counts.items()):
            errors.add_metric([method, route], n)
        yield from (duration, requests, errors)
        yield from self._rolling(GaugeMetricFamily)
        dropped = CounterMetricFamily("launchready_latency_dropped", "Recordings that failed")
        dropped.add_metric([], t.dropped)
        yield dropped
        for collector in list(t.collectors.values()):
            family = _collect_one(collector)
            if family is not None:
                yield family

    def _rolling(self, gauge: Any) -> Iterator[Any]:
        p95 = gauge(
            "launchready_http_request_duration_p95_seconds",
            "Rolling-window p95 per route", labels=["method", "route"],
        )  # fmt: skip
        budget = gauge(
            "launchready_http_request_budget_seconds", "p95 budget per route",
            labels=["method", "route"],
        )  # fmt: skip
        for name, entry in self.tracker.snapshot().items():
            method, route = name.split(" ", 1)
            if entry["p95_ms"] is not None:
                p95.add_metric([method, route], entry["p95_ms"] / 1000)
            budget.add_metric([method, route], entry["budget_ms"] / 1000)
        yield from (p95, budget)


def _buckets(h: LogLinearHistogram, bounds: tuple[float, ...]) -> list[tuple[str, float]]:
    counts = h.cumulative(bounds)
    out: list[tuple[str, float]] = [(_le(b), n) for b, n in zip(bounds, counts, strict=True)]
    return [*out, ("+Inf", h.count)]


def _le(bound: float) -> str:
    return repr(float(bound))


def _collect_one(collector: Collector) -> Any:
    """One registered collector as a metric family; None when its callable fails."""
    from prometheus_client.core import (
        CounterMetricFamily,
        GaugeMetricFamily,
        HistogramMetricFamily,
    )

    try:
        raw = collector.fn()
        samples: list[Sample] = [({}, raw)] if isinstance(raw, int | float) else list(raw)
        names = sorted({k for labels, _ in samples for k in labels})
        kinds = {"counter": CounterMetricFamily, "gauge": GaugeMetricFamily}
        if collector.kind == "histogram":
            family: Any = HistogramMetricFamily(collector.name, collector.help, labels=names)
            for labels, h in samples:
                values = [str(labels.get(n, "")) for n in names]
                family.add_metric(values, _buckets(h, DEFAULT_BUCKETS_S), h.sum)
            return family
        family = kinds[collector.kind](collector.name, collector.help, labels=names)
        for labels, value in samples:
            family.add_metric([str(labels.get(n, "")) for n in names], float(value))
        return family
    except Exception:
        _log.debug("latency.collector_failed", collector=collector.name, exc_info=True)
        return None
