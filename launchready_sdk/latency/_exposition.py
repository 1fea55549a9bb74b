"""The figures `/metrics` serves: built from a tracker, merged across workers, rendered as text.

`Figures` is a plain, JSON-able structure (so a worker can hand its own to the worker that
takes a scrape), and `render` writes it in the Prometheus text format (0.0.4) by hand: the
same names, labels and values `prometheus_client` writes for these families, at a fraction
of its cost, since nothing here builds a `Metric` object per sample.

    {"families": {name: {"type": "counter"|"gauge"|"histogram", "help": str,
                         "labels": [label names], "bounds": [bucket bounds, histograms only],
                         "samples": {"\\x1f".join(label values): value}}},
     "windows": {"GET /route": LogLinearHistogram or its wire list},   # rolling window
     "budgets": {"GET /route": budget_ms}}

A histogram sample's value is `[count at or below each bound..., count, sum]`. Merging adds
counters and histograms, adds gauges (as prometheus_client's multiprocess "livesum" does),
merges windows, and keeps budgets (every worker has the same settings). The rolling p95 per
route is computed after the merge, from the merged windows.
"""

from __future__ import annotations

import bisect
import functools
import math
from collections.abc import Iterable
from typing import Any

from launchready_sdk.latency._histogram import NBINS, LogLinearHistogram, bin_index

Figures = dict[str, Any]
SEP = "\x1f"  # between label values in a sample key
P95_FAMILY = "launchready_http_request_duration_p95_seconds"
BUDGET_FAMILY = "launchready_http_request_budget_seconds"


def new_figures() -> Figures:
    return {"families": {}, "windows": {}, "budgets": {}}


def family(
    figures: Figures,
    name: str,
    kind: str,
    help: str,
    labels: Iterable[str] = (),
    bounds: Iterable[float] = (),
) -> dict[str, Any]:
    """The family `name` of `figures`, added when absent."""
    found = figures["families"].get(name)
    if found is None:
        found = {"type": kind, "help": help, "labels": list(labels), "samples": {}}
        if kind == "histogram":
            found["bounds"] = list(bounds)
        figures["families"][name] = found
    return found  # type: ignore[no-any-return]


@functools.lru_cache(maxsize=16)
def _positions(bounds: tuple[float, ...]) -> tuple[int, ...]:
    """For each histogram bin, how many bucket bounds lie at or below its low edge."""
    edges = [bin_index(b * (1 + 1e-9)) for b in bounds]
    return tuple(bisect.bisect_right(edges, i) for i in range(NBINS))


def bucket_values(hists: Iterable[LogLinearHistogram], bounds: tuple[float, ...]) -> list[float]:
    """`[cumulative count at each bound..., count, sum]` of the histograms added together.

    The count is the sum of the bins read (not `count`), so the `+Inf` bucket always equals
    `_count` even when a request is recorded while this runs in another thread.
    """
    positions = _positions(bounds)
    counts = [0] * (len(bounds) + 1)
    total_sum = 0.0
    for h in hists:
        for i, n in list(h.bins.items()):
            counts[positions[i]] += n
        total_sum += h.sum
    out: list[float] = []
    running = 0
    for k in range(len(bounds)):
        running += counts[k]
        out.append(running)
    out.append(running + counts[-1])
    out.append(total_sum)
    return out


def merge(into: Figures, other: Figures) -> Figures:
    """Add `other`'s figures to `into` (see the module doc); returns `into`."""
    for name, theirs in other.get("families", {}).items():
        mine = into["families"].get(name)
        if mine is None:
            into["families"][name] = {**theirs, "samples": dict(theirs["samples"])}
            continue
        if mine["type"] != theirs["type"] or mine.get("bounds") != theirs.get("bounds"):
            continue  # another version of the SDK on one side: keep ours
        samples = mine["samples"]
        for key, value in theirs["samples"].items():
            have = samples.get(key)
            if have is None:
                samples[key] = value
            elif isinstance(have, list):
                samples[key] = [a + b for a, b in zip(have, value, strict=False)]
            else:
                samples[key] = have + value
    windows = into["windows"]
    for route, wire in other.get("windows", {}).items():
        h = wire if isinstance(wire, LogLinearHistogram) else LogLinearHistogram.from_wire(wire)
        have = windows.get(route)
        if have is None:
            windows[route] = h
        else:
            if not isinstance(have, LogLinearHistogram):
                have = windows[route] = LogLinearHistogram.from_wire(have)
            have.merge(h)
    for route, budget in other.get("budgets", {}).items():
        into["budgets"].setdefault(route, budget)
    return into


def to_json(figures: Figures) -> Figures:
    """A copy whose window histograms are wire lists (for `orjson.dumps`)."""
    windows = {
        route: h.to_wire() if isinstance(h, LogLinearHistogram) else h
        for route, h in figures["windows"].items()
    }
    return {**figures, "windows": windows}


def render(figures: Figures) -> bytes:
    """The Prometheus text exposition of `figures`."""
    lines: list[str] = []
    families = figures["families"]
    rolling = _rolling(figures)
    order = list(families)
    if rolling:
        # The rolling gauges go where prometheus_client put them: after the error counter.
        at = order.index("launchready_http_request_errors") + 1 if (
            "launchready_http_request_errors" in order
        ) else len(order)  # fmt: skip
        order[at:at] = list(rolling)
        families = {**families, **rolling}
    for name in order:
        _render_family(lines, name, families[name])
    lines.append("")
    return "\n".join(lines).encode()


def _rolling(figures: Figures) -> dict[str, dict[str, Any]]:
    windows, budgets = figures["windows"], figures["budgets"]
    if not windows and not budgets:
        return {}
    p95: dict[str, Any] = {"type": "gauge", "help": "Rolling-window p95 per route",
                           "labels": ["method", "route"], "samples": {}}  # fmt: skip
    budget: dict[str, Any] = {"type": "gauge", "help": "p95 budget per route",
                              "labels": ["method", "route"], "samples": {}}  # fmt: skip
    for route in sorted(set(windows) | set(budgets)):
        key = route.replace(" ", SEP, 1)
        h = windows.get(route)
        if h is not None and not isinstance(h, LogLinearHistogram):
            h = LogLinearHistogram.from_wire(h)
        q = h.quantile(0.95) if h is not None else None
        if q is not None:
            p95["samples"][key] = round(q, 6)
        if route in budgets:
            budget["samples"][key] = budgets[route] / 1000
    return {P95_FAMILY: p95, BUDGET_FAMILY: budget}


def _render_family(lines: list[str], name: str, fam: dict[str, Any]) -> None:
    kind = fam["type"]
    shown = name + "_total" if kind == "counter" and not name.endswith("_total") else name
    lines.append(f"# HELP {shown} {_escape_help(fam['help'])}")
    lines.append(f"# TYPE {shown} {kind}")
    names = fam["labels"]
    if kind != "histogram":
        for key, value in fam["samples"].items():
            lines.append(f"{shown}{_labels(names, key)} {_number(value)}")
        return
    heads = [f'{name}_bucket{{le="{_le(b)}"' for b in fam["bounds"]]
    heads.append(f'{name}_bucket{{le="+Inf"')
    add = lines.append
    for key, value in fam["samples"].items():
        values = key.split(SEP) if names else []
        inner = ",".join(f'{n}="{_escape(v)}"' for n, v in zip(names, values, strict=False))
        tail = ("," + inner + "} ") if inner else "} "
        for head, count in zip(heads, value, strict=False):
            add(head + tail + (f"{count}.0" if type(count) is int else _number(count)))
        suffix = "{" + inner + "}" if inner else ""
        add(f"{name}_count{suffix} {_number(value[-2])}")
        add(f"{name}_sum{suffix} {_number(value[-1])}")


def _labels(names: list[str], key: str) -> str:
    if not names:
        return ""
    values = key.split(SEP)
    return "{" + ",".join(f'{n}="{_escape(v)}"' for n, v in zip(names, values, strict=False)) + "}"


def _escape(value: str) -> str:
    if "\\" in value or '"' in value or "\n" in value:
        return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')
    return value


def _escape_help(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\n", "\\n")


def _le(bound: float) -> str:
    return repr(float(bound))


def _number(value: float) -> str:
    if isinstance(value, int):
        return f"{value}.0"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if math.isnan(value):
        return "NaN"
    return repr(float(value))
