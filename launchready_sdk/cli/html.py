"""The HTML report: one self-contained file, inline CSS and SVG, no script, no network.

Two charts: p50 and p95 latency per second of the measured window (with the p95 budget as a
dashed line when it fits the scale), and per-route p95 as bars against each route's budget
(green within, red over; a dot marks the server's own p95). Every piece of text that came
from a scenario, an app or a URL is escaped.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from html import escape
from typing import Any

from launchready_sdk.cli.report import (
    BREAKDOWN_HEAD,
    breakdown_rows,
    bucket_text,
    table_head,
    table_rows,
)

PASS_COLOR = "#2e7d32"
FAIL_COLOR = "#c62828"
P50_COLOR = "#1565c0"
P95_COLOR = "#ef6c00"
BUDGET_COLOR = "#616161"
PART_COLORS = {
    "SQL": "#6a1b9a",
    "outbound": "#00838f",
    "loop blocked": "#c62828",
    "other": "#9e9e9e",
}

_CSS = f"""
body {{ font: 14px/1.4 system-ui, sans-serif; margin: 24px; max-width: 940px;
       color: #212121; background: #fff; }}
h1 {{ font-size: 20px; margin: 0 0 4px; }}
.verdict {{ font-weight: 700; padding: 2px 8px; border-radius: 4px; color: #fff; }}
.pass {{ background: {PASS_COLOR}; }} .fail {{ background: {FAIL_COLOR}; }}
.muted {{ color: #616161; }}
table {{ border-collapse: collapse; margin: 12px 0; }}
th, td {{ padding: 4px 10px; border-bottom: 1px solid #e0e0e0; text-align: right; }}
th:first-child, td:first-child {{ text-align: left; }}
svg {{ display: block; margin: 8px 0 24px; }}
svg text {{ font: 12px system-ui, sans-serif; fill: #424242; }}
.grid {{ stroke: #eeeeee; stroke-width: 1; }}
.axis {{ stroke: #9e9e9e; stroke-width: 1; }}
path.p50 {{ fill: none; stroke: {P50_COLOR}; stroke-width: 3; }}
path.p95 {{ fill: none; stroke: {P95_COLOR}; stroke-width: 3; }}
line.budget {{ stroke: {BUDGET_COLOR}; stroke-width: 2; stroke-dasharray: 6 4; }}
rect.bar.pass {{ fill: {PASS_COLOR}; }} rect.bar.fail {{ fill: {FAIL_COLOR}; }}
rect.bar.none {{ fill: #bdbdbd; }}
rect.server {{ fill: #212121; fill-opacity: 0.55; }}
.warning {{ color: {FAIL_COLOR}; }}
ul.notes li {{ margin: 4px 0; }}
"""


def _e(value: Any) -> str:
    return escape(str(value), quote=True)


def nice_ceiling(value: float) -> float:
    """The smallest 1, 2, 2.5 or 5 times a power of ten that is >= value (>= 1)."""
    value = max(value, 1.0)
    base = 10.0 ** math.floor(math.log10(value))
    for step in (1, 2, 2.5, 5, 10):
        if step * base >= value:
            return step * base
    return 10 * base  # pragma: no cover


def latency_chart(
    timeline: Sequence[Mapping[str, Any]], budget_ms: float, width: int = 860, height: int = 300
) -> str:
    """SVG of p50/p95 per second; the budget line when it is within twice the data's range."""
    left, right, top, bottom = 60, 20, 20, 40
    plot_w, plot_h = width - left - right, height - top - bottom
    values = [p[k] for p in timeline for k in ("p50_ms", "p95_ms") if p.get(k) is not None]
    peak = max(values, default=1.0)
    show_budget = budget_ms <= peak * 2
    y_max = nice_ceiling(max(peak, budget_ms if show_budget else 0.0) * 1.1)
    n = max(len(timeline), 2)

    def x(i: float) -> float:
        return left + plot_w * i / (n - 1)

    def y(ms: float) -> float:
        return top + plot_h * (1 - min(ms, y_max) / y_max)

    parts = [
        f'<svg id="latency-chart" width="{width}" height="{height}" role="img" '
        'xmlns="http://www.w3.org/2000/svg" aria-label="latency over time">'
    ]
    for k in range(6):
        ms = y_max * k / 5
        parts.append(
            f'<line class="grid" x1="{left}" x2="{width - right}" '
            f'y1="{y(ms):.1f}" y2="{y(ms):.1f}"/>'
        )
        parts.append(f'<text x="{left - 6}" y="{y(ms) + 4:.1f}" text-anchor="end">{ms:g}</text>')
    step = max(1, math.ceil(n / 10))
    for i in range(0, len(timeline), step):
        parts.append(
            f'<text x="{x(i):.1f}" y="{height - bottom + 16}" text-anchor="middle">{i}s</text>'
        )
    parts.append(f'<line class="axis" x1="{left}" x2="{left}" y1="{top}" y2="{top + plot_h}"/>')
    parts.append(
        f'<line class="axis" x1="{left}" x2="{width - right}" '
        f'y1="{top + plot_h}" y2="{top + plot_h}"/>'
    )
    for key, label in (("p50_ms", "p50"), ("p95_ms", "p95")):
        d = _path(
            [(x(i), y(p[key])) if p.get(key) is not None else None for i, p in enumerate(timeline)]
        )
        if d:
            parts.append(f'<path class="{label}" d="{d}"/>')
    if show_budget:
        parts.append(
            f'<line class="budget" x1="{left}" x2="{width - right}" '
            f'y1="{y(budget_ms):.1f}" y2="{y(budget_ms):.1f}"/>'
        )
    parts.append(f'<text x="{left}" y="{top - 6}">ms</text>')
    parts.append("</svg>")
    return "".join(parts)


def _path(points: Sequence[tuple[float, float] | None]) -> str:
    """An SVG path through the points; a None breaks the line. A lone point gets a tick."""
    out: list[str] = []
    pen_down = False
    for point in points:
        if point is None:
            pen_down = False
            continue
        out.append(f"{'L' if pen_down else 'M'}{point[0]:.1f},{point[1]:.1f}")
        pen_down = True
    if len(out) == 1:
        out.append("h1")
    return " ".join(out)


def log_range(values: Sequence[float]) -> tuple[float, float]:
    """Powers of ten around the positive `values`: the span of a log-scale axis."""
    positive = [v for v in values if v > 0] or [1.0]
    low = 10.0 ** math.floor(math.log10(min(positive)))
    high = 10.0 ** math.ceil(math.log10(max(positive) * 1.0001))
    return low, max(high, low * 10)


def budget_chart(routes: Mapping[str, Mapping[str, Any]], width: int = 860) -> str:
    """SVG bars of p95 per route on a log scale, each with its budget and the server's bucket."""
    left, right, row, top, axis = 240, 90, 34, 10, 22
    height = top + row * max(len(routes), 1) + axis
    plot_w = width - left - right
    values = [e["p95_ms"] or 0.0 for e in routes.values()]
    values += [e["p95_budget_ms"] for e in routes.values()]
    values += [(e.get("server_p95_bucket_ms") or [0, 0])[1] or 0.0 for e in routes.values()]
    low, high = log_range(values)
    span = math.log10(high / low)

    def x(ms: float) -> float:
        return left + plot_w * math.log10(min(max(ms, low), high) / low) / span

    parts = [
        f'<svg id="budget-chart" width="{width}" height="{height}" role="img" '
        'xmlns="http://www.w3.org/2000/svg" aria-label="p95 per route against budget">'
    ]
    bottom = top + row * max(len(routes), 1)
    for k in range(round(span) + 1):
        tick = low * 10**k
        parts.append(
            f'<line class="grid" x1="{x(tick):.1f}" x2="{x(tick):.1f}" y1="{top}" y2="{bottom}"/>'
        )
        parts.append(
            f'<text x="{x(tick):.1f}" y="{bottom + 16}" text-anchor="middle">{tick:g} ms</text>'
        )
    for i, (name, entry) in enumerate(routes.items()):
        parts.append(_bar(name, entry, x, top + i * row, left, width - right))
    parts.append("</svg>")
    return "".join(parts)


def _bar(
    name: str,
    entry: Mapping[str, Any],
    x: Callable[[float], float],
    y0: float,
    left: float,
    right: float,
) -> str:
    state = {True: "pass", False: "fail", None: "none"}[entry["passed"]]
    p95 = entry["p95_ms"]
    label = name if len(name) <= 34 else name[:33] + "\u2026"
    parts = [f'<text x="{left - 8}" y="{y0 + 20}" text-anchor="end">{_e(label)}</text>']
    if p95 is not None:
        parts.append(
            f'<rect class="bar {state}" x="{left}" y="{y0 + 6}" '
            f'width="{max(x(p95) - left, 2):.1f}" height="20"><title>'
            f"{_e(name)}: p95 {p95:.1f} ms</title></rect>"
        )
    budget = x(entry["p95_budget_ms"])
    parts.append(
        f'<line class="budget" x1="{budget:.1f}" x2="{budget:.1f}" y1="{y0 + 2}" y2="{y0 + 30}"/>'
    )
    bucket = entry.get("server_p95_bucket_ms")
    if bucket:
        lo, hi = x(bucket[0] or 0.0), x(bucket[1] if bucket[1] is not None else float("inf"))
        parts.append(
            f'<rect class="server" x="{lo:.1f}" y="{y0 + 13}" width="{max(hi - lo, 2):.1f}" '
            f'height="6"><title>server p95: {_e(bucket_text(bucket))} ms</title></rect>'
        )
    text = "no requests" if p95 is None else f"{p95:.1f} ms"
    parts.append(f'<text x="{right + 8}" y="{y0 + 20}">{_e(text)}</text>')
    return "".join(parts)


def _table(report: Mapping[str, Any]) -> str:
    rows = ["<tr>" + "".join(f"<th>{_e(h)}</th>" for h in table_head(report)) + "</tr>"]
    for cells in table_rows(report):
        rows.append("<tr>" + "".join(f"<td>{_e(c)}</td>" for c in cells) + "</tr>")
    return "<table>" + "".join(rows) + "</table>"


def _queries(report: Mapping[str, Any]) -> list[str]:
    queries = report.get("queries") or {}
    if not queries:
        return []
    head = ("statement", "count", "server p95 (ms)", "budget", "result")
    rows = ["<tr>" + "".join(f"<th>{_e(h)}</th>" for h in head) + "</tr>"]
    for fp, q in queries.items():
        cells = (
            fp,
            q["count"],
            bucket_text(q["bucket_ms"]),
            f"{q['budget_ms']:g}",
            "PASS" if q["passed"] else "FAIL",
        )
        rows.append("<tr>" + "".join(f"<td>{_e(c)}</td>" for c in cells) + "</tr>")
    return [
        "<h2>SQL statements</h2>",
        '<p class="muted">As the app timed them (by fingerprint, from /metrics), slowest '
        "first; a statement fails when its p95 bucket starts at or above the budget.</p>",
        "<table>" + "".join(rows) + "</table>",
    ]


def breakdown_chart(routes: Mapping[str, Mapping[str, Any]], width: int = 860) -> str:
    """SVG: per route, one bar of the server's mean time per request, split into SQL, calls
    to each outbound host, loop blocked and the rest (linear scale, shared by all bars)."""
    left, right, row, top, axis = 240, 90, 30, 10, 22
    shown = {n: e["breakdown_detail"] for n, e in routes.items() if e.get("breakdown_detail")}
    height = top + row * max(len(shown), 1) + axis
    plot_w = width - left - right
    peak = max((d["sql_ms"] + d["outbound_ms"] + d["loop_blocked_ms"] + d["other_ms"]
                for d in shown.values()), default=1.0)  # fmt: skip
    scale = nice_ceiling(peak)
    parts = [
        f'<svg id="breakdown-chart" width="{width}" height="{height}" role="img" '
        'xmlns="http://www.w3.org/2000/svg" aria-label="server time per route by part">'
    ]
    bottom = top + row * max(len(shown), 1)
    for k in range(6):
        x = left + plot_w * k / 5
        parts.append(f'<line class="grid" x1="{x:.1f}" x2="{x:.1f}" y1="{top}" y2="{bottom}"/>')
        parts.append(
            f'<text x="{x:.1f}" y="{bottom + 16}" text-anchor="middle">{scale * k / 5:g} ms</text>'
        )
    for i, (name, d) in enumerate(shown.items()):
        y0 = top + i * row
        label = name if len(name) <= 34 else name[:33] + "\u2026"
        parts.append(f'<text x="{left - 8}" y="{y0 + 19}" text-anchor="end">{_e(label)}</text>')
        segments = [("SQL", "SQL", d["sql_ms"])]
        segments += [("outbound", f"calls to {h}", x["ms"]) for h, x in d["outbound"].items()]
        segments += [("loop blocked", "loop blocked", d["loop_blocked_ms"])]
        segments += [("other", "the app's own code and waits", d["other_ms"])]
        x = float(left)
        for kind, title, spent in segments:
            w = plot_w * spent / scale
            if w <= 0:
                continue
            parts.append(
                f'<rect x="{x:.1f}" y="{y0 + 5}" width="{w:.1f}" height="20" '
                f'fill="{PART_COLORS[kind]}" stroke="#fff" stroke-width="1">'
                f"<title>{_e(name)}: {_e(title)} {spent:.1f} ms</title></rect>"
            )
            x += w
        total = sum(spent for _, _, spent in segments)
        parts.append(f'<text x="{width - right + 8}" y="{y0 + 19}">{total:.1f} ms</text>')
    parts.append("</svg>")
    return "".join(parts)


def _breakdown_section(report: Mapping[str, Any]) -> list[str]:
    head = "".join(f"<th>{_e(h)}</th>" for h in BREAKDOWN_HEAD)
    rows = [f"<tr>{head}</tr>"]
    for cells in breakdown_rows(report):
        rows.append("<tr>" + "".join(f"<td>{_e(c)}</td>" for c in cells) + "</tr>")
    legend = " ".join(
        f'<span style="color:{color}">&#9632; {_e(kind)}</span>'
        for kind, color in PART_COLORS.items()
    )
    out = ["<h2>Where the server&#39;s time goes</h2>"]
    if not report.get("breakdown", True):
        out.append(
            '<p class="warning">The breakdown is unavailable: the app does not export the '
            "SDK&#39;s figures (see the warnings); the times above are the client&#39;s.</p>"
        )
    else:
        out += [
            f'<p class="muted">{legend}: the server&#39;s mean time per request over the run, '
            "from the SDK&#39;s figures on /metrics; outbound calls split by host.</p>",
            breakdown_chart(report["routes"]),
        ]
    out.append("<table>" + "".join(rows) + "</table>")
    notes = report.get("notes") or []
    if notes:
        out.append("<h2>Notes</h2>")
        out.append('<ul class="notes">' + "".join(f"<li>{_e(n)}</li>" for n in notes) + "</ul>")
    return out


def _summary(report: Mapping[str, Any]) -> str:
    thresholds = report["thresholds"]
    load = report.get("load", {})
    return (
        f"{report.get('scenario', '')} against {report.get('target', '')}, "
        f"{load.get('description', '')}. Bar: p95 within {thresholds['p95_ms']:g} ms, "
        f"error rate within {thresholds['max_error_rate']:.2%}. "
        f"Started {report.get('started_at', '')}."
    )


def render_html(report: Mapping[str, Any]) -> str:
    """The report as one HTML document."""
    verdict = "PASS" if report["passed"] else "FAIL"
    state = verdict.lower()
    if (report.get("generator") or {}).get("internal_errors"):
        verdict = "NO VERDICT"  # the bench failed on its own account (exit status 3)
    budget_ms = float(report["thresholds"]["p95_ms"])
    lines = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>launchready bench: {verdict}</title>",
        f"<style>{_CSS}</style></head><body>",
        f'<h1>launchready bench <span class="verdict {state}">{verdict}</span></h1>',
        f'<p class="muted">{_e(_summary(report))}</p>',
    ]
    for warning in report.get("warnings", []):
        lines.append(f'<p class="warning">Warning: {_e(warning)}</p>')
    for failure in report.get("failures", []):
        lines.append(f'<p class="warning">FAIL: {_e(failure)}</p>')
    legend = (
        f'<span style="color:{P50_COLOR}">&#9632; p50</span> '
        f'<span style="color:{P95_COLOR}">&#9632; p95</span>'
    )
    lines += [
        "<h2>Latency over time</h2>",
        f'<p class="muted">{legend} per second of the measured window, in ms; dashed: the p95 '
        f"budget ({budget_ms:g} ms) when it fits the scale.</p>",
        latency_chart(report["timeline"], budget_ms),
        "<h2>p95 per route against its budget</h2>",
        '<p class="muted">Bars: the client&#39;s p95 (green within budget, red over). Dashed: '
        "the route&#39;s budget. Dark band: the histogram bucket holding the server&#39;s own p95 "
        "(from /metrics). Log scale.</p>",
        budget_chart(report["routes"]),
        "<h2>Routes</h2>",
        _table(report),
        f'<p class="muted">Throughput {_e(report["throughput_rps"])} req/s.</p>',
        *_breakdown_section(report),
        *_queries(report),
        "</body></html>",
    ]
    return "\n".join(lines) + "\n"
