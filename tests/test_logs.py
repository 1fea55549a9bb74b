"""Structured logs: JSON lines, request IDs on every line, redaction, stdlib and server loggers."""

from __future__ import annotations

import json
import logging
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from launchready_sdk import LaunchReady, Settings, get_logger
from launchready_sdk.logs import configure_logging

log = get_logger("tests.logs")


async def _order(request: Request) -> JSONResponse:
    log.info("order.created", order_id="ord_123", amount_cents=4200, card="4242424242424242")
    logging.getLogger("tests.stdlib").warning("charging %s", "sk_live_" + "a" * 24)
    return JSONResponse({"ok": True})


def make(log_stream: Any, **settings: Any) -> Any:
    lr = LaunchReady(Settings(**settings), log_stream=log_stream)
    return lr.wrap(Starlette(routes=[Route("/orders", _order, methods=["POST"])]))


async def test_every_line_of_a_request_carries_its_id(log_stream: Any) -> None:
    """structlog lines, stdlib lines and the access line all carry the response's request ID."""
    app = make(log_stream)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as c:
        response = await c.post("/orders")
    rid = response.headers["x-request-id"]
    records = log_stream.records()
    by_event = {r["event"]: r for r in records}
    assert by_event["order.created"]["request_id"] == rid
    assert by_event["request"]["request_id"] == rid
    stdlib = [r for r in records if r.get("logger") == "tests.stdlib"]
    assert stdlib
    assert stdlib[0]["request_id"] == rid


async def test_lines_have_the_standard_fields(log_stream: Any) -> None:
    """Each line has timestamp (UTC ISO 8601), level, logger and event."""
    app = make(log_stream)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as c:
        await c.post("/orders")
    for record in log_stream.records():
        assert record["timestamp"].endswith("Z")
        assert "T" in record["timestamp"]
        assert record["level"] in {"debug", "info", "warning", "error", "critical"}
        assert record["logger"]
        assert record["event"]


async def test_secrets_never_reach_the_output(log_stream: Any) -> None:
    """Card numbers and API keys in structlog and stdlib lines are redacted."""
    app = make(log_stream)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as c:
        await c.post("/orders")
    text = log_stream.getvalue()
    assert "4242424242424242" not in text
    assert "sk_live_" + "a" * 24 not in text
    assert "ord_123" in text
    assert "4200" in text


async def test_access_line_fields(log_stream: Any) -> None:
    """The access line has method, route, path, status, duration_ms, bytes and client_ip."""
    app = make(log_stream)
    transport = httpx.ASGITransport(app=app, client=("198.51.100.4", 1234))
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
        response = await c.post("/orders?token=abc123secret&page=2")
    access = [r for r in log_stream.records() if r["event"] == "request"][-1]
    assert access["logger"] == "launchready.access"
    assert access["method"] == "POST"
    assert access["route"] == "/orders"
    assert access["path"].startswith("/orders")
    assert access["status"] == 200
    assert access["bytes"] == len(response.content)
    assert access["client_ip"] == "198.51.100.4"
    assert isinstance(access["duration_ms"], float)
    assert "abc123secret" not in log_stream.getvalue()


async def test_access_paths_are_redacted_every_time_and_long_ones_never_kept(
    log_stream: Any,
) -> None:
    """A repeated secret-bearing path is redacted each time; paths over 256 chars are not kept."""
    from launchready_sdk.logs import AccessLogger

    app = make(log_stream)
    secret_path = "/orders?token=abc123secret"
    long_path = "/orders?q=" + "x" * 5000
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as c:
        for _ in range(3):
            await c.post(secret_path)
            await c.post(long_path)
    paths = [r["path"] for r in log_stream.records() if r["event"] == "request"]
    assert len(paths) == 6
    assert "abc123secret" not in log_stream.getvalue()
    assert len({p for p in paths if p.startswith("/orders?token")}) == 1
    loggers = [a for a in _find(app, AccessLogger)]
    assert loggers
    assert all(len(k) <= 256 for a in loggers for k in a.remembered_paths)


def _find(app: Any, kind: type) -> list[Any]:
    """Objects of `kind` reachable from the stack's layers (through closures)."""
    found, seen, todo = [], set(), [app]
    while todo:
        obj = todo.pop()
        if id(obj) in seen:
            continue
        seen.add(id(obj))
        if isinstance(obj, kind):
            found.append(obj)
            continue
        for attr in ("app", "layers", "_access_log", "middleware_stack"):
            if hasattr(obj, attr):
                todo.append(getattr(obj, attr))
        for cell in getattr(obj, "__closure__", None) or ():
            todo.append(cell.cell_contents)
    return found


async def test_health_checks_are_not_access_logged_at_info(log_stream: Any) -> None:
    """Liveness and readiness probes do not write info access lines."""
    app = make(log_stream)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as c:
        for _ in range(5):
            await c.get("/healthz")
            await c.get("/readyz")
    assert not [r for r in log_stream.records() if r["event"] == "request"]


async def test_unhandled_exception_is_one_structured_redacted_line(log_stream: Any) -> None:
    """An escaping exception is logged as a structured traceback, message redacted, no locals."""

    async def boom(request: Request) -> JSONResponse:
        password = "hunter2-local-var"  # noqa: F841
        raise RuntimeError("db password=hunter2-in-message failed")

    lr = LaunchReady(Settings(), log_stream=log_stream)
    app = lr.wrap(Starlette(routes=[Route("/boom", boom)]))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as c:
        response = await c.get("/boom")
    assert response.status_code == 500
    text = log_stream.getvalue()
    assert "hunter2" not in text
    errors = [r for r in log_stream.records() if r["event"] == "request.unhandled_exception"]
    assert len(errors) == 1
    assert errors[0]["request_id"] == response.headers["x-request-id"]
    assert isinstance(errors[0]["exception"], list)
    assert errors[0]["exception"][0]["exc_type"] == "RuntimeError"


@pytest.mark.parametrize(
    "hostile",
    ["x" * 10_000, "\x1b[31mred", "a\r\nb", 'quo"te', "back\\slash", "\udcff"],
)
def test_hostile_values_keep_each_line_valid_json(log_stream: Any, hostile: str) -> None:
    """Control characters, CRLF, quotes and lone surrogates never break a JSON line."""
    configure_logging(Settings(), stream=log_stream)
    get_logger("t").info("hostile", value=hostile)
    lines = log_stream.getvalue().splitlines()
    assert len(lines) == 1
    assert json.loads(lines[0])["event"] == "hostile"


def test_console_format_is_readable(log_stream: Any) -> None:
    """log_format=console writes key=value lines, still redacted."""
    configure_logging(Settings(log_format="console"), stream=log_stream)
    get_logger("t").info("hello", api_key="abcdef123456")
    text = log_stream.getvalue()
    assert "hello" in text
    assert "abcdef123456" not in text


def test_log_level_filters_lines(log_stream: Any) -> None:
    """Lines below log_level are dropped for structlog and stdlib alike."""
    configure_logging(Settings(log_level="WARNING"), stream=log_stream)
    get_logger("t").info("quiet")
    logging.getLogger("x").info("quiet too")
    get_logger("t").warning("loud")
    assert [r["event"] for r in log_stream.records()] == ["loud"]


def test_server_loggers_are_adopted(log_stream: Any) -> None:
    """uvicorn's and Django's loggers write through the SDK pipeline, not their own handlers."""
    uvicorn_error = logging.getLogger("uvicorn.error")
    uvicorn_error.addHandler(logging.StreamHandler())
    uvicorn_error.propagate = False
    configure_logging(Settings(), stream=log_stream)
    uvicorn_error.info("Started server process")
    logging.getLogger("django.request").error("Internal Server Error: /x password=abc")
    records = log_stream.records()
    assert [r["logger"] for r in records] == ["uvicorn.error", "django.request"]
    assert "password=abc" not in log_stream.getvalue()


def test_user_bound_contextvars_appear(log_stream: Any) -> None:
    """Fields bound with structlog.contextvars show up in lines."""
    import structlog

    configure_logging(Settings(), stream=log_stream)
    with structlog.contextvars.bound_contextvars(tenant="acme"):
        get_logger("t").info("scoped")
    assert log_stream.records()[0]["tenant"] == "acme"


def test_get_logger_defaults_to_caller_module(log_stream: Any) -> None:
    """get_logger() without a name uses the calling module's name."""
    configure_logging(Settings(), stream=log_stream)
    get_logger().info("named")
    assert log_stream.records()[0]["logger"] == __name__
