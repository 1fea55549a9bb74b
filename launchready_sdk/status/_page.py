"""The status page and its login form: server-rendered HTML, one inline stylesheet, inline SVG.

No script, no external asset, no inline `style` attribute: the stylesheet is allowed by its
SHA-256 in the page's own Content-Security-Policy (sent as a header, and repeated in a `<meta>`
so a saved copy keeps it). Every value from the app or a client is escaped.
"""

from __future__ import annotations

import base64
import hashlib
import html
from collections.abc import Callable, Iterable, Mapping
from typing import Any

OK_COLOR = "#1a7f37"
OVER_COLOR = "#cf222e"
LINE_COLOR = "#0969da"
_CHART_W, _CHART_H = 132, 30

STYLE = (
    "*{box-sizing:border-box}"
    "body{font:14px/1.45 system-ui,-apple-system,Segoe UI,sans-serif;margin:0;color:#1f2328;"
    "background:#f6f8fa}"
    "header{background:#fff;border-bottom:1px solid #d0d7de;padding:14px 24px}"
    "h1{font-size:20px;margin:0 0 4px}h2{font-size:16px;margin:0 0 8px}"
    "main{padding:16px 24px;max-width:1400px}"
    "section{background:#fff;border:1px solid #d0d7de;border-radius:6px;padding:12px 16px;"
    "margin:0 0 16px;overflow-x:auto}"
    "table{border-collapse:collapse;width:100%}"
    "th,td{text-align:left;padding:4px 8px;border-bottom:1px solid #eaeef2;white-space:nowrap;"
    "vertical-align:top}"
    "td.num,th.num{text-align:right;font-variant-numeric:tabular-nums}"
    "tr.over td{background:#ffebe9}tr.few td{color:#8c959f}"
    ".badge{display:inline-block;padding:1px 8px;border-radius:10px;font-size:12px;"
    "font-weight:600;color:#fff}"
    f".ok{{background:{OK_COLOR}}}.bad{{background:{OVER_COLOR}}}.warn{{background:#9a6700}}"
    ".muted{color:#656d76}.tiles{display:flex;gap:12px;flex-wrap:wrap;margin:0 0 16px}"
    ".tile{background:#fff;border:1px solid #d0d7de;border-radius:6px;padding:8px 14px;"
    f"min-width:150px}}.tile b{{display:block;font-size:20px}}.alarm b{{color:{OVER_COLOR}}}"
    "code{font:12px ui-monospace,SFMono-Regular,Menlo,monospace}"
    "pre{font:12px/1.4 ui-monospace,SFMono-Regular,Menlo,monospace;background:#f6f8fa;"
    "padding:8px;white-space:pre-wrap;word-break:break-all;max-width:1200px}"
    "details summary{cursor:pointer}.msg{white-space:normal;max-width:520px;"
    "word-break:break-word}"
    f"svg .p95{{fill:none;stroke:{LINE_COLOR};stroke-width:1.5}}"
    f"svg .budget{{stroke:{OVER_COLOR};stroke-width:1;stroke-dasharray:3 2}}"
    f"svg .hot{{fill:{OVER_COLOR}}}svg .dot{{fill:{LINE_COLOR}}}"
    "form{display:flex;gap:8px;margin:12px 0}input{font:inherit;padding:6px 8px;"
    "border:1px solid #d0d7de;border-radius:6px}input[type=password]{width:28em}"
    "button{font:inherit;padding:6px 14px;border-radius:6px;border:1px solid #1f883d;"
    "background:#1f883d;color:#fff;cursor:pointer}"
    ".out{float:right}.out button{background:#fff;color:#1f2328;border-color:#d0d7de}"
)
_STYLE_HASH = base64.b64encode(hashlib.sha256(STYLE.encode()).digest()).decode()
_POLICY = (
    f"default-src 'none'; style-src 'sha256-{_STYLE_HASH}'; img-src 'none'; "
    "form-action 'self'; base-uri 'none'"
)
CSP = _POLICY + "; frame-ancestors 'none'"
_e = html.escape


def _head(title: str, refresh: bool) -> str:
    meta = '<meta http-equiv="refresh" content="30">' if refresh else ""
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f'<meta http-equiv="Content-Security-Policy" content="{_e(_POLICY)}">'
        f'<meta name="robots" content="noindex, nofollow">{meta}'
        f"<title>{_e(title)}</title><style>{STYLE}</style></head>"
    )


def render_login(action: str, *, problem: str | None = None) -> bytes:
    """The sign-in form: the token is posted once and exchanged for a session cookie. It names
    nothing about the app (a visitor without the token learns only that a page is here)."""
    note = f'<p><span class="badge bad">{_e(problem)}</span></p>' if problem else ""
    body = (
        f"{_head('Status: sign in', refresh=False)}<body><header><h1>Status</h1></header>"
        "<main><section><h2>Sign in</h2>"
        "<p>Enter the status token (<code>status_token</code>). It is sent once, never kept in "
        "the browser: a signed session cookie that expires in 15 minutes is set instead.</p>"
        f'{note}<form method="post" action="{_e(action)}">'
        '<input type="password" name="token" autocomplete="off" required aria-label="token">'
        "<button type=submit>Sign in</button></form>"
        "<p class=muted>For scripts: <code>curl -H 'Authorization: Bearer $TOKEN' "
        "…/status.json</code></p></section></main></body></html>"
    )
    return body.encode()


def render_page(view: Mapping[str, Any], *, logout: str | None = None) -> bytes:
    """The status page of a view (the same data as `status.json`)."""
    service = str(view.get("service") or "app")
    parts = [_head(f"{service}: status", refresh=True), "<body>", _header(view, logout)]
    parts.append("<main>")
    parts.append(_safe(_tiles, view))
    for section in (_health, _routes, _errors, _slow, _cache, _limits, _outbound):
        parts.append(_safe(section, view))
    parts.append("</main></body></html>")
    return "".join(parts).encode("utf-8", "replace")


def _safe(render: Callable[[Mapping[str, Any]], str], view: Mapping[str, Any]) -> str:
    """One section; if it fails, a note in its place and the rest of the page still renders."""
    try:
        return render(view)
    except Exception as exc:
        name = render.__name__.strip("_")
        return (
            f"<section><h2>{_e(name)}</h2><p class=muted>This section could not be shown "
            f"({_e(type(exc).__name__)}).</p></section>"
        )


def _header(view: Mapping[str, Any], logout: str | None) -> str:
    scope = view.get("scope")
    redis = str(view.get("redis"))
    if scope == "fleet":
        where = f"fleet view: {int(view.get('workers') or 0)} workers sharing Redis"
    else:
        where = "this worker only"
    redis_badge = {"up": "ok", "down": "bad"}.get(redis, "warn")
    redis_text = {"up": "Redis up", "down": "Redis is down", "none": "no Redis"}.get(redis, redis)
    out = (
        f'<form class="out" method="post" action="{_e(logout)}"><button type=submit>'
        "Sign out</button></form>"
        if logout
        else ""
    )
    return (
        f"<header>{out}<h1>{_e(str(view.get('service')))}: status</h1>"
        f'<span class="badge {redis_badge}">{_e(redis_text)}</span> '
        f"<span class=muted>{_e(where)} · generated {_e(str(view.get('generated_at')))} · "
        f"window {int(view.get('window_s') or 0) // 60} min · up "
        f"{_duration(float(view.get('uptime_s') or 0))} · launchready-sdk "
        f"{_e(str(view.get('version')))}</span></header>"
    )


def _tiles(view: Mapping[str, Any]) -> str:
    routes = view.get("routes") or {}
    count = sum(int(r.get("count") or 0) for r in routes.values())
    errors = sum(int(r.get("errors") or 0) for r in routes.values())
    over = sum(1 for r in routes.values() if r.get("over_budget"))
    health = view.get("health") or {}
    failing = [name for name, h in health.items() if not h.get("ok")]
    rate = f"{errors / count:.2%}" if count else "-"
    tiles = [
        ("Requests in the window", f"{count:,}"),
        ("Server errors (5xx)", rate),
        ("Routes over budget", f"{over} of {len(routes)}"),
        ("Readiness", "failing: " + ", ".join(failing) if failing else "all checks pass"),
        ("Error groups", str(len(view.get("errors") or ()))),
    ]
    alarming = {"Server errors (5xx)": errors > 0, "Routes over budget": over > 0,
                "Readiness": bool(failing)}  # fmt: skip
    cells = "".join(
        f'<div class="tile{" alarm" if alarming.get(k) else ""}"><span class=muted>{_e(k)}</span>'
        f"<b>{_e(v)}</b></div>"
        for k, v in tiles
    )

    return f"<div class=tiles>{cells}</div>"


def _routes(view: Mapping[str, Any]) -> str:
    routes: Mapping[str, Mapping[str, Any]] = view.get("routes") or {}

    def rank(item: tuple[str, Mapping[str, Any]]) -> tuple[int, float, int]:
        r = item[1]
        ratio = float(r.get("p95_ms") or 0) / float(r.get("budget_ms") or 1)
        return (0 if r.get("over_budget") else 1, -ratio, -int(r.get("count") or 0))

    rows = []
    for name, r in sorted(routes.items(), key=rank):
        css = "over" if r.get("over_budget") else ("few" if r.get("few_samples") else "")
        count = int(r.get("count") or 0)
        over_n = int(r.get("over_budget_count") or 0)
        mark = (
            '<span class="badge bad">OVER BUDGET</span>'
            if r.get("over_budget")
            else ('<span class="muted">few samples</span>' if r.get("few_samples") else "ok")
        )
        rows.append(
            f'<tr class="{css}"><td><code>{_e(name)}</code></td><td class=num>{count:,}</td>'
            f"<td class=num>{_pct(r.get('error_rate'))}</td>"
            f"<td class=num>{int(r.get('client_errors') or 0):,}</td>"
            f"<td class=num>{_ms(r.get('p50_ms'))}</td><td class=num>{_ms(r.get('p95_ms'))}</td>"
            f"<td class=num>{_ms(r.get('p99_ms'))}</td><td class=num>{_ms(r.get('budget_ms'))}</td>"
            f"<td>{mark}</td><td class=num>{over_n:,}"
            f"{f' ({over_n / count:.1%})' if count else ''}</td>"
            f"<td>{_chart(r.get('p95_per_minute_ms') or (), r.get('budget_ms'))}</td></tr>"
        )
    if not rows:
        rows.append("<tr><td colspan=11 class=muted>No requests yet.</td></tr>")
    head = (
        "<tr><th>route</th><th class=num>requests</th><th class=num>5xx rate</th>"
        "<th class=num>4xx</th><th class=num>p50</th><th class=num>p95</th><th class=num>p99</th>"
        "<th class=num>budget</th><th>p95 vs budget</th><th class=num>requests over budget</th>"
        "<th>p95 per minute</th></tr>"
    )
    note = (
        "<p class=muted>Figures cover the rolling window. A route is judged once it has 20 "
        "requests in it; use the measured p95s to set <code>latency_budgets</code> and alert "
        "thresholds. The chart is this worker's p95 per minute against the dashed budget.</p>"
    )
    return f"<section><h2>Routes</h2>{note}<table>{head}{''.join(rows)}</table></section>"


def _chart(points: Iterable[float | None], budget: Any) -> str:
    values = list(points)
    known = [v for v in values if v is not None]
    if not known:
        return "<span class=muted>-</span>"
    limit = float(budget or 0)
    top = max(max(known), limit * 1.25, 0.001)
    step = _CHART_W / max(len(values) - 1, 1)

    def y(v: float) -> float:
        return round(_CHART_H - 2 - (v / top) * (_CHART_H - 4), 1)

    path: list[str] = []
    dots: list[str] = []
    for i, v in enumerate(values):
        if v is None:
            continue
        x = round(i * step, 1)
        path.append(f"{'M' if not path else 'L'}{x} {y(v)}")
        css = "hot" if limit and v > limit else "dot"
        dots.append(f'<circle class="{css}" cx="{x}" cy="{y(v)}" r="2"/>')
    budget_line = (
        f'<line class="budget" x1="0" x2="{_CHART_W}" y1="{y(limit)}" y2="{y(limit)}"/>'
        if limit
        else ""
    )
    label = f"p95 per minute, highest {max(known):g} ms"
    return (
        f'<svg width="{_CHART_W}" height="{_CHART_H}" viewBox="0 0 {_CHART_W} {_CHART_H}" '
        f'role="img" aria-label="{_e(label)}">{budget_line}'
        f'<path class="p95" d="{" ".join(path)}"/>{"".join(dots)}</svg>'
    )


def _errors(view: Mapping[str, Any]) -> str:
    rows = []
    for err in view.get("errors") or ():
        rows.append(
            f"<tr><td><code>{_e(str(err.get('type')))}</code>"
            f"<div class=msg>{_e(_cut(str(err.get('message'))))}</div>"
            f"<details><summary>traceback</summary><pre>{_e(str(err.get('traceback')))}</pre>"
            f"</details></td><td class=num>{int(err.get('count') or 0):,}</td>"
            f"<td>{_e(str(err.get('route')))}</td><td><code>{_e(str(err.get('request_id')))}"
            f"</code></td><td>{_e(str(err.get('first_seen')))}</td>"
            f"<td>{_e(str(err.get('last_seen')))}</td></tr>"
        )
    if not rows:
        rows.append("<tr><td colspan=6 class=muted>No unhandled exceptions.</td></tr>")
    dropped = int(view.get("errors_dropped") or 0)
    more = (
        f"<p class=muted>{dropped} older groups were dropped (bounded memory).</p>"
        if dropped
        else ""
    )
    return (
        "<section><h2>Errors</h2><p class=muted>Unhandled exceptions grouped by type and the "
        "app's innermost frames; messages and source lines redacted, local variables never "
        "kept. Search the logs for the request id to see that request end to end.</p>"
        "<table><tr><th>error</th><th class=num>count</th><th>route</th>"
        f"<th>last request id</th><th>first seen</th><th>last seen</th></tr>{''.join(rows)}"
        f"</table>{more}</section>"
    )


def _slow(view: Mapping[str, Any]) -> str:
    rows = [
        f"<tr><td>{_e(str(s.get('at')))}</td><td>{_e(str(s.get('method')))}</td>"
        f"<td><code>{_e(str(s.get('route')))}</code></td><td class=num>{int(s.get('status') or 0)}"
        f"</td><td class=num>{_ms(s.get('duration_ms'))}</td><td class=num>"
        f"{_ms(s.get('budget_ms'))}</td><td><code>{_e(str(s.get('request_id')))}</code></td></tr>"
        for s in view.get("slow_requests") or ()
    ]
    if not rows:
        rows.append("<tr><td colspan=7 class=muted>No request went over its budget.</td></tr>")
    return (
        "<section><h2>Slowest recent requests (over their route's budget)</h2><table><tr>"
        "<th>at</th><th>method</th><th>route</th><th class=num>status</th>"
        "<th class=num>duration</th><th class=num>budget</th><th>request id</th></tr>"
        f"{''.join(rows)}</table></section>"
    )


def _health(view: Mapping[str, Any]) -> str:
    rows = []
    for name, h in (view.get("health") or {}).items():
        badge = (
            '<span class="badge ok">pass</span>'
            if h.get("ok")
            else '<span class="badge bad">fail</span>'
        )
        rows.append(
            f"<tr><td>{_e(str(name))}</td><td>{badge}</td><td class=num>"
            f"{_ms(h.get('duration_ms'))}</td><td>{_e(str(h.get('error') or ''))}</td>"
            f"<td>{_e(_duration(float(h.get('age_s') or 0)))} ago</td></tr>"
        )
    if not rows:
        rows.append("<tr><td colspan=5 class=muted>No readiness checks have run yet.</td></tr>")
    return (
        "<section><h2>Readiness (as this worker sees it)</h2><table><tr><th>check</th>"
        "<th>result</th><th class=num>took</th><th>error</th><th>checked</th></tr>"
        f"{''.join(rows)}</table></section>"
    )


def _cache(view: Mapping[str, Any]) -> str:
    rows = [
        f"<tr><td><code>{_e(p)}</code></td><td class=num>{_pct(c.get('hit_ratio'))}</td>"
        f"<td class=num>{c.get('hit', 0):,}</td><td class=num>{c.get('miss', 0):,}</td>"
        f"<td class=num>{c.get('stale', 0):,}</td><td class=num>{c.get('bypass', 0):,}</td></tr>"
        for p, c in (view.get("cache") or {}).items()
    ]
    if not rows:
        rows.append("<tr><td colspan=6 class=muted>No cache routes.</td></tr>")
    return (
        "<section><h2>Read cache</h2><p class=muted>Hit ratio = HIT / (HIT + MISS + STALE); "
        "BYPASS counts requests the cache may not serve (credentials, private).</p><table><tr>"
        "<th>route</th><th class=num>hit ratio</th><th class=num>hit</th><th class=num>miss</th>"
        f"<th class=num>stale</th><th class=num>bypass</th></tr>{''.join(rows)}</table></section>"
    )


def _limits(view: Mapping[str, Any]) -> str:
    limits = view.get("rate_limits") or {}
    rows = [
        f"<tr><td><code>{_e(rule)}</code></td><td class=num>{int(n):,}</td></tr>"
        for rule, n in (limits.get("by_rule") or {}).items()
    ]
    return (
        f"<section><h2>Rate limits</h2><p>{int(limits.get('refused') or 0):,} requests refused "
        "with 429.</p>"
        + (
            f"<table><tr><th>rule</th><th class=num>refused</th></tr>{''.join(rows)}</table>"
            if rows
            else ""
        )
        + "</section>"
    )


def _outbound(view: Mapping[str, Any]) -> str:
    rows = []
    for host, o in (view.get("outbound") or {}).items():
        breaker = str(o.get("breaker"))
        badge = "ok" if breaker == "closed" else "bad"
        rows.append(
            f"<tr><td><code>{_e(host)}</code></td><td class=num>{int(o.get('calls') or 0):,}</td>"
            f'<td class=num>{int(o.get("errors") or 0):,}</td><td><span class="badge {badge}">'
            f"{_e(breaker)}</span></td></tr>"
        )
    if not rows:
        rows.append("<tr><td colspan=4 class=muted>No outbound calls.</td></tr>")
    return (
        "<section><h2>Outbound hosts and breakers</h2><table><tr><th>host</th>"
        "<th class=num>calls</th><th class=num>errors</th><th>breaker</th></tr>"
        f"{''.join(rows)}</table></section>"
    )


def _cut(text: str, limit: int = 240) -> str:
    return text if len(text) <= limit else text[:limit] + " … (in full in the traceback)"


def _ms(value: Any) -> str:
    if value is None:
        return "-"
    v = float(value)
    return f"{v:,.0f} ms" if v >= 100 else f"{v:.1f} ms"


def _pct(value: Any) -> str:
    return "-" if value is None else f"{float(value):.1%}"


def _duration(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.0f} s"
    if seconds < 3600:
        return f"{seconds / 60:.0f} min"
    if seconds < 86400:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} d"
