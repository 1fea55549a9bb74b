"""SQLAlchemy timing: fingerprints, budgets, slow-query and N+1 warnings, SQLite and PostgreSQL."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
import sqlalchemy as sa
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy.ext.asyncio import create_async_engine

from launchready_sdk import LaunchReady, Settings
from launchready_sdk.dbtiming import QueryStats, fingerprint, instrument_sqlalchemy
from launchready_sdk.latency import LatencyTracker, MetricsEndpoint

POSTGRES_URL = "postgresql+asyncpg://postgres@127.0.0.1:5432/test"


def test_exports_and_the_defaults_settings_take() -> None:
    """dbtiming exports its API and the defaults of `db_query_budget_ms` and the N+1 threshold."""
    from launchready_sdk import dbtiming

    assert dbtiming.__all__ == [
        "DEFAULT_N_PLUS_ONE_THRESHOLD",
        "DEFAULT_QUERY_BUDGET_MS",
        "QueryStats",
        "export_query_stats",
        "fingerprint",
        "instrument_sqlalchemy",
    ]
    settings = Settings()
    assert settings.db_query_budget_ms == dbtiming.DEFAULT_QUERY_BUDGET_MS == 100
    assert settings.db_n_plus_one_threshold == dbtiming.DEFAULT_N_PLUS_ONE_THRESHOLD == 20


def test_fingerprints_strip_literals_and_unify_placeholders() -> None:
    """Literals, placeholder styles and list lengths never make two fingerprints of one query."""
    same = [
        "SELECT * FROM items WHERE id = 5 AND name = 'it''s'",
        "select  *  from items where id = 123 and name = 'x' -- trailing comment",
        "SELECT * FROM items WHERE id = $1 AND name = $2",
        "SELECT * FROM items WHERE id = %(id)s AND name = %s",
        "SELECT * FROM items WHERE id = :id_1 AND name = ?",
    ]
    assert len({fingerprint(s).lower() for s in same}) == 1
    assert fingerprint("SELECT a FROM t2 WHERE x IN (1, 2, 3)") == fingerprint(
        "SELECT a FROM t2 WHERE x IN ($1, $2)"
    )
    assert fingerprint("INSERT INTO t (a) VALUES (?), (?), (?)") == "INSERT INTO t (a) VALUES (?+)"
    assert fingerprint("SELECT col2::text FROM tab3") == "SELECT col2::text FROM tab3"


def test_sync_sqlite_statements_and_slow_log(log_stream: Any) -> None:
    """A sync engine's statements are recorded by fingerprint; slow ones are logged once each."""
    LaunchReady(Settings(service_name="db"), log_stream=log_stream)
    engine = sa.create_engine("sqlite://")
    stats = instrument_sqlalchemy(engine, slow_ms=0)
    assert instrument_sqlalchemy(engine) is stats
    with engine.begin() as conn:
        conn.exec_driver_sql("CREATE TABLE t (id INTEGER, name TEXT)")
        for i in range(30):
            conn.exec_driver_sql(f"INSERT INTO t VALUES ({i}, 'n{i}')")
        conn.execute(sa.text("SELECT * FROM t WHERE id = :id"), {"id": 3})
    snap = stats.snapshot()
    entry = snap["INSERT INTO t VALUES (?+)"]
    assert entry["count"] == 30
    assert entry["budget_ms"] == 100
    assert entry["p95_ms"] is not None
    assert not entry["over_budget"]
    slow = [r for r in log_stream.records() if r["event"] == "db.slow_query"]
    assert {r["statement"] for r in slow} == set(snap)
    assert all("'n" not in r["statement"] for r in slow)
    engine.dispose()


def test_failed_statement_is_counted_and_still_raises() -> None:
    """A statement that fails is recorded as an error and its exception reaches the caller."""
    engine = sa.create_engine("sqlite://")
    stats = instrument_sqlalchemy(engine)
    with engine.connect() as conn, pytest.raises(sa.exc.OperationalError):
        conn.exec_driver_sql("SELECT * FROM missing_table WHERE id = 1")
    assert (
        stats.snapshot()["SELECT * FROM missing_table WHERE id = ?"]["since_start"]["errors"] == 1
    )
    engine.dispose()


@pytest.mark.parametrize("hide", [True, False])
def test_parameters_stay_out_of_error_messages(hide: bool) -> None:
    """A failing statement's message (and so a logged traceback) holds no parameter values."""
    engine = sa.create_engine("sqlite://")
    instrument_sqlalchemy(engine, hide_parameters=hide)
    secret = "scrypt$16384$8$1$c2FsdHNhbHRzYWx0$aGFzaGhhc2hoYXNoaGFzaA"
    with engine.connect() as conn:
        conn.exec_driver_sql("CREATE TABLE users (email TEXT UNIQUE, password_hash TEXT)")
        conn.exec_driver_sql("INSERT INTO users VALUES ('a@example.com', 'x')")
        with pytest.raises(sa.exc.IntegrityError) as raised:
            conn.exec_driver_sql("INSERT INTO users VALUES (?, ?)", ("a@example.com", secret))
    assert (secret in str(raised.value)) is not hide
    engine.dispose()


def _n_plus_one_app(engine: Any, table: str, queries: int) -> Any:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        async with engine.connect() as conn:
            for i in range(queries):
                await conn.execute(sa.text(f"SELECT name FROM {table} WHERE id = :id"), {"id": i})
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})

    return app


async def _check_n_plus_one(url: str, log_stream: Any, asgi_client: Any, create: str) -> None:
    table = f"lr_items_{uuid.uuid4().hex[:10]}"
    engine = create_async_engine(url)
    try:
        async with engine.begin() as conn:
            await conn.exec_driver_sql(create.format(table=table))
        stats = instrument_sqlalchemy(engine, n_plus_one_threshold=10)
        lr = LaunchReady(Settings(service_name="db"), log_stream=log_stream)
        client = asgi_client(lr.wrap(_n_plus_one_app(engine, table, 25)))
        first = await client.get("/orders")
        await client.get("/orders")
        calm = asgi_client(lr.wrap(_n_plus_one_app(engine, table, 5)))
        await calm.get("/cart")
    finally:
        async with engine.begin() as conn:
            await conn.exec_driver_sql(f"DROP TABLE IF EXISTS {table}")
        await engine.dispose()
    records = log_stream.records()
    warnings = [r for r in records if r["event"] == "db.n_plus_one_suspected"]
    assert len(warnings) == 2
    assert warnings[0]["request_id"] == first.headers["x-request-id"]
    assert warnings[0]["queries"] == 11
    assert warnings[0]["statement"] == f"SELECT name FROM {table} WHERE id = ?"
    access = [r for r in records if r["event"] == "request"]
    assert [r["db_queries"] for r in access] == [25, 25, 5]
    assert stats.snapshot()[f"SELECT name FROM {table} WHERE id = ?"]["count"] == 55


async def test_n_plus_one_warning_on_sqlite(log_stream: Any, asgi_client: Any) -> None:
    """A request running 25 statements on async SQLite warns once; 5 statements do not."""
    await _check_n_plus_one(
        "sqlite+aiosqlite://", log_stream, asgi_client, "CREATE TABLE {table} (id INT, name TEXT)"
    )


async def test_n_plus_one_warning_on_postgres(log_stream: Any, asgi_client: Any) -> None:
    """The same on PostgreSQL through asyncpg ($n placeholders), with a unique, dropped table."""
    await _check_n_plus_one(
        POSTGRES_URL, log_stream, asgi_client, "CREATE TABLE {table} (id INT, name TEXT)"
    )


async def test_query_figures_reach_metrics(asgi_client: Any) -> None:
    """With a tracker, statement histograms appear on /metrics by fingerprint."""
    tracker = LatencyTracker()
    engine = sa.create_engine("sqlite://")
    instrument_sqlalchemy(engine, tracker=tracker, stats=QueryStats(budget_ms=50))
    with engine.connect() as conn:
        conn.exec_driver_sql("SELECT 1")

    async def app(scope: Any, receive: Any, send: Any) -> None:
        raise AssertionError("not reached")

    reply = await asgi_client(MetricsEndpoint(app, tracker=tracker)).get("/metrics")
    families = {f.name: f for f in text_string_to_metric_families(reply.text)}
    samples = families["launchready_db_query_duration_seconds"].samples
    assert {s.labels["statement"] for s in samples} == {"SELECT ?"}
    engine.dispose()
