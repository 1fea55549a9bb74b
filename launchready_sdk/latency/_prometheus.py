"""The tracker's metric families and the registered collectors, built when scraped.

`build_figures` reads the tracker through `Tracked`, the few attributes it needs, so this
module does not import the tracker that imports it. `PrometheusCollector` offers the same
figures to a `prometheus_client` registry of the app's own.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import Any, Literal, Protocol

from launchready_sdk.latency._exposition import (
    SEP,
    Figures,
    bucket_values,
    family,
    new_figures,
    render,
)
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


class Tracked(Protocol):
    """What `build_figures` reads from a `LatencyTracker`."""

    series: dict[SeriesKey, RollingHistogram]
    buckets_s: tuple[float, ...]
    dropped: int
    collectors: dict[str, Collector]
    slots: int

    def minute(self, perf_now: float | None = None) -> int: ...

    def budget_for(self, method: str, route: str) -> float: ...


STATUS_LABELS = {0: "other", 1: "1xx", 2: "2xx", 3: "3xx", 4: "4xx", 5: "5xx"}


def build_figures(t: Tracked) -> Figures:
    """This worker's figures: request histograms and counters by method, route and status
    class, the rolling windows and budgets per route, and every registered collector."""
    figures = new_figures()
    bounds = t.buckets_s
    labels = ["method", "route", "status"]
    duration = family(figures, "launchready_http_request_duration_seconds", "histogram",
                      "HTTP request duration", labels, bounds)["samples"]  # fmt: skip
    requests = family(figures, "launchready_http_requests", "counter",
                      "HTTP requests served", labels)["samples"]  # fmt: skip
    help_errors = "5xx responses and unhandled exceptions"
    errors = family(figures, "launchready_http_request_errors", "counter", help_errors,
                    ["method", "route"])["samples"]  # fmt: skip
    windows: dict[str, LogLinearHistogram] = figures["windows"]
    minute = t.minute()
    for (method, route, klass), series in list(t.series.items()):
        key = SEP.join((method, route, STATUS_LABELS.get(klass, "other")))
        value = bucket_values((series.total, series.current), bounds)
        duration[key] = value
        requests[key] = value[-2]
        if klass >= 5:
            pair = method + SEP + route
            errors[pair] = errors.get(pair, 0) + value[-2]
        name = f"{method} {route}"
        window = windows.get(name)
        if window is None:
            window = windows[name] = LogLinearHistogram()
            figures["budgets"][name] = t.budget_for(method, route)
        # The window's minutes merged straight into the route's histogram (no copy per series).
        if series.minute > minute - t.slots - 1:
            window.merge(series.current)
        for m, h in list(series.ring):
            if m > minute - t.slots - 1:
                window.merge(h)
    for name in [n for n, h in windows.items() if not h.count]:
        del windows[name]
    family(figures, "launchready_http_request_errors", "counter", "")["samples"] = dict(
        sorted(errors.items())
    )
    dropped = family(figures, "launchready_latency_dropped", "counter", "Recordings that failed")
    dropped["samples"][""] = t.dropped
    for collector in list(t.collectors.values()):
        _collect_one(figures, collector)
    return figures


class PrometheusCollector:
    """The same figures for a `prometheus_client` registry of your own (built when scraped)."""

    def __init__(self, tracker: Tracked) -> None:
        self.tracker = tracker

    def describe(self) -> list[Any]:
        return []

    def collect(self) -> Iterator[Any]:
        from prometheus_client.parser import text_string_to_metric_families

        text = render(build_figures(self.tracker)).decode()
        yield from text_string_to_metric_families(text)


def _collect_one(figures: Figures, collector: Collector) -> None:
    """One registered collector into `figures`; nothing when its callable fails."""
    try:
        raw = collector.fn()
        samples: list[Sample] = [({}, raw)] if isinstance(raw, int | float) else list(raw)
        names = sorted({k for labels, _ in samples for k in labels})
        out: dict[str, Any] = {}
        for labels, value in samples:
            key = SEP.join(str(labels.get(n, "")) for n in names)
            if collector.kind == "histogram":
                out[key] = bucket_values((value,), DEFAULT_BUCKETS_S)
            else:
                out[key] = out.get(key, 0) + float(value)
    except Exception:
        _log.debug("latency.collector_failed", collector=collector.name, exc_info=True)
        return
    bounds = DEFAULT_BUCKETS_S if collector.kind == "histogram" else ()
    family(figures, collector.name, collector.kind, collector.help, names, bounds)[
        "samples"
    ].update(out)
