"""Database query timing: per-statement p95, slow-query log, N+1 warning.

This module holds the engine-neutral part (`fingerprint`, `QueryStats`) and the SQLAlchemy
hook; `launchready_sdk.django` feeds the same `QueryStats` from Django's
`connection.execute_wrapper`.

`instrument_sqlalchemy(engine)` (sync `Engine` or `AsyncEngine`) listens to the engine's
`before_cursor_execute`/`after_cursor_execute`/`handle_error` events, so every statement the
driver runs is timed with `time.perf_counter` and recorded under its fingerprint: the SQL with
string and number literals replaced by `?`, placeholders unified (`$3`, `%s`, `:name` → `?`),
`IN (...)` lists collapsed, whitespace squeezed and a long plain column list cut to its first
column (`SELECT "t"."id", ... FROM "t" WHERE ...`), so an ORM's statements stay distinct.
Figures (rolling window and since start, the same log-linear histograms as request latency)
are checked against a query budget (100 ms by default, the launch bar's "core DB queries p95
< 100 ms").

Per request (while `RequestContextMiddleware` serves it) the statement count and total time are
added up on the request's context (for `launchready_sdk.breakdown`, which exports them per route)
and to its access-log fields as `db_queries` and `db_ms`, and the first statement
past `n_plus_one_threshold` logs one `db.n_plus_one_suspected` warning naming it. A statement
slower than `slow_ms` logs `db.slow_query` (at most once per fingerprint per
`slow_log_interval_s`); the request ID comes with every line.

Security stance: fingerprints carry no literal values, and bound parameters are never read;
log lines still pass through the redactor. Limits: literals inlined by the app in odd forms
(dollar-quoted strings, hex blobs) may survive in a fingerprint; at most `max_statements`
fingerprints are kept, the rest share `<other>`. Queries outside a request are timed but not
counted per request. Sync engines record from worker threads under a lock.
"""

from __future__ import annotations

import functools
import re
import threading
import time
from collections.abc import Iterator
from typing import Any

from launchready_sdk.context import current
from launchready_sdk.latency import (
    DEFAULT_WINDOW_S,
    LatencyTracker,
    LogLinearHistogram,
    RollingHistogram,
    describe_histogram,
)
from launchready_sdk.logs import get_logger

__all__ = [
    "DEFAULT_N_PLUS_ONE_THRESHOLD",
    "DEFAULT_QUERY_BUDGET_MS",
    "QueryStats",
    "export_query_stats",
    "fingerprint",
    "instrument_sqlalchemy",
]

_log = get_logger("launchready.db")

DEFAULT_QUERY_BUDGET_MS = 100.0
DEFAULT_N_PLUS_ONE_THRESHOLD = 20
DEFAULT_MAX_STATEMENTS = 500
OTHER_STATEMENTS = "<other>"
_FINGERPRINT_MAX = 300
_SLOT_S = 60

_COMMENT = re.compile(r"--[^\n]*|/\*.*?\*/", re.DOTALL)
_STRING = re.compile(r"'(?:[^']|'')*'")
_PLACEHOLDER = re.compile(r"\$\d+|%\(\w+\)s|%s|(?<![:\w]):\w+|\?")
_NUMBER = re.compile(r"(?<![\w.])-?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?(?![\w.])")
_IN_LIST = re.compile(r"\(\s*\?(?:\s*,\s*\?)*\s*\)")
_VALUES_ROWS = re.compile(r"(\(\?\+\))(?:\s*,\s*\(\?\+\))+")
_SPACE = re.compile(r"\s+")
# A long plain column list (ORMs name every column, quoted and table-qualified) would push the
# FROM and WHERE clauses past the length cap, merging different queries into one fingerprint.
_SELECT_LIST = re.compile(r"(SELECT (?:DISTINCT )?)([^()]+?)( FROM )", re.IGNORECASE)
_SELECT_LIST_MAX = 80


@functools.lru_cache(maxsize=4096)
def fingerprint(statement: str) -> str:
    """The statement with literals and placeholders replaced by `?` and lists collapsed."""
    text = _COMMENT.sub(" ", statement)
    text = _STRING.sub("?", text)
    text = _PLACEHOLDER.sub("?", text)
    text = _NUMBER.sub("?", text)
    text = _IN_LIST.sub("(?+)", text)
    text = _VALUES_ROWS.sub(r"\1", text)
    text = _SPACE.sub(" ", text).strip()
    if len(text) > _SELECT_LIST_MAX:
        text = _SELECT_LIST.sub(_shorten_columns, text)
    return text[:_FINGERPRINT_MAX]


def _shorten_columns(match: re.Match[str]) -> str:
    columns = match.group(2)
    if len(columns) <= _SELECT_LIST_MAX:
        return match.group(0)
    return f"{match.group(1)}{columns[: columns.find(',') + 1 or None]} ...{match.group(3)}"


class QueryStats:
    """Per-fingerprint query latency, with the query budget.

    Args:
        budget_ms: the p95 each statement should stay under.
        slow_ms: a single statement at or over this logs `db.slow_query`.
        n_plus_one_threshold: statements per request before the N+1 warning.
        hide_parameters: keep statement parameters (emails, password hashes, tokens) out of
            the engine's error messages, and so out of logged tracebacks, as SQLAlchemy's
            `create_engine(hide_parameters=True)` does. Pass False to leave the engine as it is.
        window_s: the rolling window.
        max_statements: fingerprints kept before new ones share `<other>`.
        slow_log_interval_s: at most one slow-query line per fingerprint per interval.
        request_fields: add `db_queries`/`db_ms` to the request's access-log fields.
    """

    def __init__(
        self,
        *,
        budget_ms: float = DEFAULT_QUERY_BUDGET_MS,
        slow_ms: float | None = None,
        n_plus_one_threshold: int = DEFAULT_N_PLUS_ONE_THRESHOLD,
        window_s: int = DEFAULT_WINDOW_S,
        max_statements: int = DEFAULT_MAX_STATEMENTS,
        slow_log_interval_s: float = 1.0,
        request_fields: bool = True,
    ) -> None:
        if budget_ms <= 0 or n_plus_one_threshold < 1 or max_statements < 1:
            raise ValueError("budget_ms > 0, n_plus_one_threshold ≥ 1, max_statements ≥ 1")
        self.budget_ms = float(budget_ms)
        self.slow_s = (slow_ms if slow_ms is not None else budget_ms) / 1000
        self.n_plus_one_threshold = n_plus_one_threshold
        self.slots = max(1, window_s // _SLOT_S)
        self.max_statements = max_statements
        self.slow_log_interval_s = slow_log_interval_s
        self.request_fields = request_fields
        self.statements: dict[str, RollingHistogram] = {}
        self.errors: dict[str, int] = {}
        self.dropped = 0
        self._lock = threading.Lock()
        self._slow_logged: dict[str, float] = {}

    def record(self, statement: str, seconds: float, *, failed: bool = False) -> None:
        """Record one statement's duration (never raises)."""
        try:
            self._record(fingerprint(statement), seconds, failed)
        except Exception:
            self.dropped += 1

    def _record(self, fp: str, seconds: float, failed: bool) -> None:
        minute = int(time.time() // _SLOT_S)
        with self._lock:
            series = self.statements.get(fp)
            if series is None:
                if len(self.statements) >= self.max_statements:
                    fp = OTHER_STATEMENTS
                series = self.statements.setdefault(fp, RollingHistogram(self.slots, minute))
            series.record(seconds, minute)
            if failed:
                self.errors[fp] = self.errors.get(fp, 0) + 1
        if seconds >= self.slow_s:
            self._log_slow(fp, seconds)
        self._count_for_request(fp, seconds)

    def _log_slow(self, fp: str, seconds: float) -> None:
        now = time.monotonic()
        last = self._slow_logged.get(fp)
        if last is not None and now - last < self.slow_log_interval_s:
            return
        if len(self._slow_logged) > self.max_statements:
            self._slow_logged.clear()
        self._slow_logged[fp] = now
        _log.warning(
            "db.slow_query",
            statement=fp,
            duration_ms=round(seconds * 1000, 3),
            slow_ms=round(self.slow_s * 1000, 3),
        )

    def _count_for_request(self, fp: str, seconds: float) -> None:
        ctx = current()
        if ctx is None:
            return
        count = ctx.sql_count = ctx.sql_count + 1
        ctx.sql_s += seconds
        if self.request_fields:
            fields = ctx.fields
            fields["db_queries"] = count
            fields["db_ms"] = round(ctx.sql_s * 1000, 3)
        if count == self.n_plus_one_threshold + 1:
            _log.warning(
                "db.n_plus_one_suspected",
                method=ctx.method,
                path=ctx.path,
                queries=count,
                threshold=self.n_plus_one_threshold,
                statement=fp,
            )

    def snapshot(self) -> dict[str, dict[str, Any]]:
        """`{fingerprint: {"count", "p50_ms", "p95_ms", "p99_ms", "budget_ms", ...}}`."""
        minute = int(time.time() // _SLOT_S)
        out: dict[str, dict[str, Any]] = {}
        with self._lock:
            items = [
                (fp, s.window(minute, self.slots), s.since_start())
                for fp, s in self.statements.items()
            ]
            errors = dict(self.errors)
        for fp, window, total in sorted(items):
            entry = describe_histogram(window, 0)
            del entry["errors"], entry["error_rate"]
            p95 = entry["p95_ms"]
            entry["budget_ms"] = self.budget_ms
            entry["over_budget"] = p95 is not None and p95 > self.budget_ms
            entry["since_start"] = describe_histogram(total, errors.get(fp, 0))
            out[fp] = entry
        return out

    def histograms(self) -> Iterator[tuple[dict[str, str], LogLinearHistogram]]:
        """Since-start histograms labelled by statement (for a /metrics collector)."""
        with self._lock:
            items = [(fp, s.since_start()) for fp, s in self.statements.items()]
        for fp, h in items:
            yield {"statement": fp}, h


def instrument_sqlalchemy(
    engine: Any,
    *,
    stats: QueryStats | None = None,
    tracker: LatencyTracker | None = None,
    budget_ms: float = DEFAULT_QUERY_BUDGET_MS,
    slow_ms: float | None = None,
    n_plus_one_threshold: int = DEFAULT_N_PLUS_ONE_THRESHOLD,
    hide_parameters: bool = True,
) -> QueryStats:
    """Time every statement `engine` runs; returns the `QueryStats` that holds the figures.

    Args:
        engine: a SQLAlchemy `Engine` or `AsyncEngine`.
        stats: record into these stats (shared across engines); default: new ones.
        tracker: also export the figures on that tracker's /metrics.
        budget_ms: the query p95 budget (default 100 ms).
        slow_ms: log single statements at or over this (default: the budget).
        n_plus_one_threshold: statements per request before the N+1 warning.
        hide_parameters: keep statement parameters (emails, password hashes, tokens) out of
            the engine's error messages, and so out of logged tracebacks, as SQLAlchemy's
            `create_engine(hide_parameters=True)` does. Pass False to leave the engine as it is.

    Instrumenting the same engine twice returns the first `QueryStats`.
    """
    from sqlalchemy import event

    sync_engine = getattr(engine, "sync_engine", engine)
    if hide_parameters:
        sync_engine.hide_parameters = True
    existing = getattr(sync_engine, "_launchready_stats", None)
    if isinstance(existing, QueryStats):
        return existing
    if stats is None:
        stats = QueryStats(
            budget_ms=budget_ms, slow_ms=slow_ms, n_plus_one_threshold=n_plus_one_threshold
        )
    _listen(event, sync_engine, stats)
    sync_engine._launchready_stats = stats
    if tracker is not None:
        export_query_stats(stats, tracker)
    return stats


def export_query_stats(stats: QueryStats, tracker: LatencyTracker) -> None:
    """Show `stats` on `tracker`'s /metrics (calling it again replaces the earlier export)."""
    tracker.add_collector(
        "launchready_db_query_duration_seconds",
        stats.histograms,
        kind="histogram",
        help="SQL statement duration by fingerprint",
    )


def _listen(event: Any, sync_engine: Any, stats: QueryStats) -> None:
    def before(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        conn.info.setdefault("launchready_starts", []).append(time.perf_counter())

    def after(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        starts = conn.info.get("launchready_starts")
        if starts:
            stats.record(statement, time.perf_counter() - starts.pop())

    def failed(exception_context: Any) -> None:
        conn = exception_context.connection
        starts = conn.info.get("launchready_starts") if conn is not None else None
        if starts:
            elapsed = time.perf_counter() - starts.pop()
            stats.record(exception_context.statement or "", elapsed, failed=True)

    event.listen(sync_engine, "before_cursor_execute", before)
    event.listen(sync_engine, "after_cursor_execute", after)
    event.listen(sync_engine, "handle_error", failed)
