"""One plain sentence per bottleneck: the performance notes of a bench report.

Each failing route, and the slowest route overall, gets one sentence naming where its server
time went (the largest part of its breakdown: calls to one host, SQL, a blocked event loop, or
the app's own code), with the one change most likely to help. Whatever the verdict, a route
whose requests run many SQL statements (an N+1), a route that stalled the event loop, and a
route answering large JSON bodies each get theirs. Without the SDK's figures a note says so
and keeps to what the client measured.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

N_PLUS_ONE_STATEMENTS = 20  # the SDK's own N+1 warning threshold
DEFAULT_PAYLOAD_LIMIT_BYTES = 100 * 1024


def ms(value: float) -> str:
    """`540 ms`, `3.2 ms`, `0.4 ms`."""
    return f"{value:.0f} ms" if value >= 10 else f"{value:.1f} ms"


def size(n: float) -> str:
    """`512 KB`, `1.5 MB`."""
    if n >= 1024 * 1024:
        return f"{n / 1024 / 1024:.1f} MB"
    return f"{n / 1024:.0f} KB"


def host_name(host: str) -> str:
    """`https://payments.example` -> `payments.example` (the scheme says little here)."""
    return host.split("://", 1)[-1]


def notes(
    routes: Mapping[str, Mapping[str, Any]],
    queries: Mapping[str, Mapping[str, Any]],
    *,
    stall_ms: float | None = None,
    payload_limit_bytes: int = DEFAULT_PAYLOAD_LIMIT_BYTES,
    breakdown_note: str | None = None,
) -> list[str]:
    """The sentences for a report's routes (as `build_report` leaves them) and statements.

    `breakdown_note` is said once, in place of a breakdown, when the server gave none.
    """
    out: list[str] = []
    noted: set[str] = set()
    for name, entry in routes.items():
        detail = entry.get("breakdown_detail")
        if detail:
            for sentence in (_n_plus_one(name, detail, queries), _stall(name, detail, stall_ms)):
                if sentence:
                    out.append(sentence)
                    noted.add(name)
    measured = {n: e for n, e in routes.items() if e.get("count") and e.get("p95_ms") is not None}
    slowest = max(measured, key=lambda n: measured[n]["p95_ms"], default=None)
    for name, entry in measured.items():
        if name in noted or (entry.get("passed") is not False and name != slowest):
            continue
        out.append(_where(name, entry, routes, breakdown_note))
    for name, entry in routes.items():
        p95_size = entry.get("payload_bytes_p95")
        if entry.get("payload_json") and p95_size is not None and p95_size > payload_limit_bytes:
            out.append(
                f"{name}: responses of p95 {size(p95_size)} of JSON, over the "
                f"{size(payload_limit_bytes)} limit; paginate the list, drop fields the "
                "client does not use, or compress it"
            )
    return out


def _n_plus_one(
    name: str, detail: Mapping[str, Any], queries: Mapping[str, Mapping[str, Any]]
) -> str | None:
    statements = detail["sql_statements"]
    if statements < N_PLUS_ONE_STATEMENTS:
        return None
    text = f"{name}: {statements:.0f} SQL statements per request (N+1)"
    if queries:
        fp, q = max(queries.items(), key=lambda kv: kv[1].get("count", 0))
        shown = fp if len(fp) <= 80 else fp[:79] + "\u2026"
        text += f"; p95 of the statement {ms(q['p95_ms'])} ({shown})"
    text += f", {ms(detail['sql_ms'])} of SQL per request; load the rows in one query (a join "
    return text + "or IN) instead of one per item"


def _stall(name: str, detail: Mapping[str, Any], stall_ms: float | None) -> str | None:
    stalls = detail.get("stalls", 0)
    if not stalls:
        return None
    over = f" over {stall_ms:g} ms" if stall_ms else ""
    return (
        f"{name}: blocked the event loop while it ran ({stalls} stall{'s' if stalls != 1 else ''}"
        f"{over}, {ms(detail['loop_blocked_ms'])} blocked per request), holding up every "
        "request in flight; a sync call (time.sleep, a sync client or driver, heavy CPU) runs "
        "on the loop: await it in a thread (asyncio.to_thread) or use an async library"
    )


def _where(
    name: str,
    entry: Mapping[str, Any],
    routes: Mapping[str, Mapping[str, Any]],
    breakdown_note: str | None,
) -> str:
    p95 = entry["p95_ms"]
    head = f"{name}: p95 {ms(p95)}"
    errors_only = [f for f in entry.get("failures", []) if f.startswith("error rate")]
    if errors_only and len(errors_only) == len(entry["failures"]):
        kinds = ", ".join(f"{n}x {k}" for k, n in list(entry["error_kinds"].items())[:3])
        return (
            f"{name}: error rate {entry['error_rate']:.1%} ({kinds}); the app's log has each "
            "failed request under its request id"
        )
    detail = entry.get("breakdown_detail")
    if not detail:
        reason = breakdown_note or "the app exports no breakdown"
        return f"{head}; where the server's time goes is unknown ({reason})"
    parts = [("sql", detail["sql_ms"]), ("blocked", detail["loop_blocked_ms"])]
    parts.append(("other", detail["other_ms"]))
    parts += [(f"host:{h}", x["ms"]) for h, x in detail["outbound"].items()]
    kind, spent = max(parts, key=lambda kv: kv[1])
    if kind.startswith("host:"):
        host = kind[5:]
        p95_host = detail["outbound"][host]["p95_ms"]
        extra = f" (p95 {ms(p95_host)})" if p95_host is not None else ""
        return (
            f"{head}, of which {ms(spent)} in calls to {host_name(host)}{extra}; set a shorter "
            "outbound deadline or move the call off the request path"
        )
    if kind == "sql":
        return (
            f"{head}, of which {ms(spent)} in SQL ({detail['sql_statements']:g} statements per "
            "request); find the slow statement in the SQL list, index it or cache its result"
        )
    if kind == "blocked":
        culprits = [n for n, e in routes.items() if (e.get("breakdown_detail") or {}).get("stalls")]
        by = f" by {', '.join(culprits)}" if culprits else ""
        return (
            f"{head}, of which {ms(spent)} waiting on an event loop blocked{by}; unblock the "
            "loop (the app's `loop.stall` log lines name the code)"
        )
    return (
        f"{head}, of which {ms(spent)} in the app's own code and waits (not SQL, outbound "
        "calls or a blocked loop); profile the handler (py-spy, pyinstrument)"
    )
