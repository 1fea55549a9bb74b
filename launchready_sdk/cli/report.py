"""The verdict against the launch bar, the JSON report and the terminal table.

A route passes when its p95 is within its budget and its error rate within its limit (the
command-line thresholds unless the scenario's `[routes."..."]` overrides them). When the app
runs the SDK, each route also gets `breakdown_ms` (its server time split into SQL, outbound
calls, a blocked event loop and the rest; see `servertime.py`), and the report gets `notes`,
one sentence per bottleneck (`notes.py`). A route with
no measured request is shown as `n/a` and judged on nothing. The run passes when every
measured route passes and at least one request was measured. When the app exports its SQL
timings, a statement whose p95 is certainly over `db_p95_ms` (its p95 bucket starts at or
above it) fails the run too: the launch bar asks core queries to stay under 100 ms.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import orjson

from launchready_sdk.cli.metrics import route_shape
from launchready_sdk.cli.notes import DEFAULT_PAYLOAD_LIMIT_BYTES, notes
from launchready_sdk.cli.scenario import Scenario
from launchready_sdk.cli.servertime import breakdown_ms
from launchready_sdk.cli.stats import Recorder, percentile_key

SCHEMA_VERSION = 1


@dataclasses.dataclass(frozen=True, slots=True)
class Thresholds:
    p95_ms: float = 500.0
    max_error_rate: float = 0.01
    db_p95_ms: float = 100.0


def judge_route(entry: Mapping[str, Any], p95_budget_ms: float, max_error_rate: float) -> list[str]:
    """Why a route misses its bar (an empty list when it passes)."""
    failures: list[str] = []
    if entry["count"] == 0:
        return failures
    if entry["p95_ms"] is not None and entry["p95_ms"] > p95_budget_ms:
        failures.append(f"p95 {entry['p95_ms']:.1f} ms is above {p95_budget_ms:g} ms")
    if entry["error_rate"] > max_error_rate:
        kinds = ", ".join(f"{n}x {kind}" for kind, n in list(entry["error_kinds"].items())[:3])
        failures.append(
            f"error rate {entry['error_rate']:.2%} is above {max_error_rate:.2%} "
            f"({entry['errors']} of {entry['count']}: {kinds})"
        )
    return failures


def build_report(
    *,
    recorder: Recorder,
    scenario: Scenario,
    thresholds: Thresholds,
    server_p95: Mapping[str, Mapping[str, Any]] | None,
    duration_s: float,
    meta: Mapping[str, Any],
    queries: Mapping[str, Mapping[str, Any]] | None = None,
    servertime: Mapping[str, Mapping[str, Any]] | None = None,
    breakdown_note: str | None = None,
    payload_limit_bytes: int = DEFAULT_PAYLOAD_LIMIT_BYTES,
    stall_ms: float | None = None,
) -> dict[str, Any]:
    """The whole report as a JSON-able dict (see the README for the schema).

    `servertime` is the server's breakdown per route shape (None: unavailable, and
    `breakdown_note` says why).
    """
    names = list(dict.fromkeys([*scenario.route_names, *recorder.routes]))
    routes: dict[str, Any] = {}
    failures: list[str] = []
    for name in names:
        entry = recorder.route_report(name)
        budget = scenario.routes.get(name)
        p95_budget = budget.p95_ms if budget and budget.p95_ms is not None else thresholds.p95_ms
        max_rate = (
            budget.max_error_rate
            if budget and budget.max_error_rate is not None
            else thresholds.max_error_rate
        )
        reasons = judge_route(entry, p95_budget, max_rate)
        failures.extend(f"{name}: {reason}" for reason in reasons)
        server = (server_p95 or {}).get(route_shape(name), {})
        entry["server_p95_ms"] = server.get("p95_ms")
        entry["server_p95_bucket_ms"] = server.get("bucket_ms")
        figures = (servertime or {}).get(route_shape(name))
        if figures is not None:
            entry["breakdown_ms"] = breakdown_ms(figures)
            entry["breakdown_detail"] = dict(figures)
        entry["p95_budget_ms"] = p95_budget
        entry["max_error_rate"] = max_rate
        entry["passed"] = None if entry["count"] == 0 else not reasons
        entry["failures"] = reasons
        routes[name] = entry
    judged_queries = judge_queries(queries or {}, thresholds.db_p95_ms)
    failures.extend(
        f"SQL {_short(fp)}: p95 over {thresholds.db_p95_ms:g} ms (the server's bucket "
        f"{bucket_text(q['bucket_ms'])} ms)"
        for fp, q in judged_queries.items()
        if not q["passed"]
    )
    overall = recorder.overall_report()
    # Throughput counts answered requests, by when they were actually sent: errors without a
    # response did not load the server, and an open-model arrival sent late was not sent on
    # time.
    answered = recorder.answered_in_window
    overall["throughput_rps"] = round(answered / duration_s, 3) if duration_s else 0.0
    if overall["count"] == 0:
        failures.append("no request was measured")
    overall["passed"] = not failures
    return {
        "version": SCHEMA_VERSION,
        "passed": overall["passed"],
        **meta,
        "thresholds": dataclasses.asdict(thresholds),
        "routes": routes,
        "queries": judged_queries,
        "overall": overall,
        "throughput_rps": overall["throughput_rps"],
        "percentiles": [percentile_key(p) for p in recorder.percentiles],
        "breakdown": servertime is not None,
        "payload_limit_bytes": payload_limit_bytes,
        "failures": failures,
        "notes": notes(
            routes,
            judged_queries,
            stall_ms=stall_ms,
            payload_limit_bytes=payload_limit_bytes,
            breakdown_note=breakdown_note,
        ),
        "timeline": recorder.timeline_report(),
        "route_timelines": recorder.route_timelines(),
    }


def judge_queries(
    queries: Mapping[str, Mapping[str, Any]], budget_ms: float
) -> dict[str, dict[str, Any]]:
    """The statements, slowest p95 first, each with `passed`: False only when its p95 bucket
    starts at or above the budget (the buckets cannot say more)."""
    out: dict[str, dict[str, Any]] = {}
    for fp, q in sorted(queries.items(), key=lambda kv: -kv[1]["p95_ms"]):
        low = q["bucket_ms"][0] if q.get("bucket_ms") else 0.0
        out[fp] = {**q, "budget_ms": budget_ms, "passed": low < budget_ms}
    return out


def _short(statement: str, limit: int = 70) -> str:
    return statement if len(statement) <= limit else statement[: limit - 1] + "…"


def write_json(report: Mapping[str, Any], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(orjson.dumps(report, option=orjson.OPT_INDENT_2) + b"\n")


# --- the terminal table -----------------------------------------------------------------------

DEFAULT_PERCENTILE_KEYS = ("p50_ms", "p95_ms", "p99_ms")
_RESULT = {True: "PASS", False: "FAIL", None: "n/a"}


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


def bucket_text(bucket: Sequence[float | None] | None) -> str:
    """Where the server's p95 lies: `<=5` or `50-75` (ms), as coarse as its buckets."""
    if not bucket:
        return "-"
    low, high = bucket
    if high is None:
        return f">{low:g}"
    return f"<={high:g}" if not low else f"{low:g}-{high:g}"


def _percentile_keys(report: Mapping[str, Any]) -> Sequence[str]:
    return report.get("percentiles") or DEFAULT_PERCENTILE_KEYS


def table_head(report: Mapping[str, Any]) -> list[str]:
    """The column names of the per-route table: the report's percentiles among them."""
    shown = [key.removesuffix("_ms").replace("_", ".") for key in _percentile_keys(report)]
    head = ["route", "count", "errors", "err rate", *shown, "max"]
    return [*head, "server p95", "budget", "result"]


TABLE_HEAD = tuple(table_head({}))


def _row(
    report: Mapping[str, Any], name: str, entry: Mapping[str, Any], budget: str, result: str
) -> list[str]:
    return [
        name,
        str(entry["count"]),
        str(entry["errors"]),
        f"{entry['error_rate']:.2%}",
        *(_ms(entry.get(key)) for key in _percentile_keys(report)),
        _ms(entry["max_ms"]),
        bucket_text(entry.get("server_p95_bucket_ms")),
        budget,
        result,
    ]


def table_rows(report: Mapping[str, Any]) -> list[list[str]]:
    """One row of cells per route, then the overall row (see `table_head`)."""
    rows = [
        _row(report, name, e, f"{e['p95_budget_ms']:g}", _RESULT[e["passed"]])
        for name, e in report["routes"].items()
    ]
    overall = report["overall"]
    rows.append(_row(report, "overall", overall, "", _RESULT[overall["passed"]]))
    return rows


BREAKDOWN_HEAD = (
    "route",
    "server",
    "SQL",
    "statements",
    "outbound",
    "loop blocked",
    "other",
    "payload p95",
)


def breakdown_rows(report: Mapping[str, Any]) -> list[list[str]]:
    """Per route: the server's mean time per request split into its parts (ms), and the p95
    response size; empty cells where the app gave no breakdown."""
    rows = []
    for name, e in report["routes"].items():
        d = e.get("breakdown_detail")
        payload = e.get("payload_bytes_p95")
        size = "-" if payload is None else _bytes(payload)
        if d is None:
            rows.append([name, "-", "-", "-", "-", "-", "-", size])
            continue
        rows.append(
            [
                name,
                _ms(d["server_ms"]),
                _ms(d["sql_ms"]),
                f"{d['sql_statements']:g}",
                _ms(d["outbound_ms"]),
                _ms(d["loop_blocked_ms"]),
                _ms(d["other_ms"]),
                size,
            ]
        )
    return rows


def _bytes(n: float) -> str:
    if n >= 1024 * 1024:
        return f"{n / 1024 / 1024:.1f} MB"
    return f"{n / 1024:.1f} KB" if n >= 1024 else f"{n:.0f} B"


def _align(rows: Sequence[Sequence[str]], rule_after: Sequence[int]) -> list[str]:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = []
    for i, row in enumerate(rows):
        cells = [row[0].ljust(widths[0])]
        cells += [c.rjust(w) for c, w in zip(row[1:], widths[1:], strict=True)]
        lines.append("  ".join(cells).rstrip())
        if i in rule_after:
            lines.append("-" * len(lines[-1]))
    return lines


def render_table(report: Mapping[str, Any]) -> str:
    """The per-route table, where the server's time goes, the notes, warnings and the verdict,
    for a terminal."""
    rows = [table_head(report), *table_rows(report)]
    lines = _align(rows, (0, len(rows) - 2))
    lines.append("times in ms; server p95: the /metrics bucket holding the app's own p95")
    lines.extend(_breakdown(report))
    lines.extend(_queries(report))
    notes = report.get("notes") or []
    if notes:
        lines.append("notes:")
        lines.extend(f"  - {note}" for note in notes)
    lines.extend(_footer(report))
    return "\n".join(lines)


def _breakdown(report: Mapping[str, Any]) -> list[str]:
    if not report.get("routes"):
        return []
    lines = ["", "where the server's time goes (mean ms per request over the run):"]
    lines += _align([list(BREAKDOWN_HEAD), *breakdown_rows(report)], (0,))
    for name, e in report["routes"].items():
        for host, h in ((e.get("breakdown_detail") or {}).get("outbound") or {}).items():
            p95 = "" if h["p95_ms"] is None else f", p95 {h['p95_ms']:.1f}"
            lines.append(
                f"  {name} -> {host}: {h['ms']:.1f} ms per request ({h['calls']} calls{p95})"
            )
    if not report.get("breakdown", True):
        lines.append("  (the breakdown is unavailable: see the warnings)")
    return lines


def _queries(report: Mapping[str, Any], shown: int = 5) -> Sequence[str]:
    """The slowest SQL statements the server timed, when it exports them."""
    queries = report.get("queries") or {}
    if not queries:
        return []
    budget = next(iter(queries.values()))["budget_ms"]
    out = [f"database: {len(queries)} statements; the slowest by the server's p95 bucket (ms):"]
    for fp, q in list(queries.items())[:shown]:
        verdict = "PASS" if q["passed"] else "FAIL"
        out.append(f"  {bucket_text(q['bucket_ms']):>8}  {q['count']:>6}x  {verdict}  {_short(fp)}")
    out.append(f"  (budget: p95 under {budget:g} ms per statement)")
    return out


def _footer(report: Mapping[str, Any]) -> Sequence[str]:
    out = []
    generator = report.get("generator") or {}
    requested = generator.get("requested_rps")
    achieved = generator.get("achieved_rps")
    throughput = f"throughput {report['throughput_rps']:.1f} req/s answered"
    if requested:
        throughput += f" (requested {requested:g}"
        throughput += f", sent {achieved:.1f})" if achieved is not None else ")"
    out.append(throughput)
    for warning in report.get("warnings", []):
        out.append(f"WARNING: {warning}")
    for failure in report["failures"]:
        out.append(f"FAIL  {failure}")
    if generator.get("internal_errors"):
        out.append("NO VERDICT: the bench itself failed on some requests (exit status 3)")
    elif report["passed"]:
        out.append("PASS: every route is within its p95 budget and error-rate limit")
        if report.get("queries"):
            out[-1] += ", every SQL statement within its p95 budget"
    else:
        out.append(f"FAIL: {len(report['failures'])} miss(es) against the launch bar")
    return out


def write_text(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
