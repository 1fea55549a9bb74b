"""Liveness and readiness: no I/O, timeouts, deadline, caching, coalescing, draining."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import httpx
from starlette.applications import Starlette
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from launchready_sdk.health import HealthMiddleware, Readiness


def make_app(readiness: Readiness) -> HealthMiddleware:
    async def home(request: Any) -> PlainTextResponse:
        return PlainTextResponse("home")

    return HealthMiddleware(Starlette(routes=[Route("/", home)]), readiness=readiness)


def client_for(app: Any) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://10.1.2.3:8000"
    )


async def test_liveness_answers_get_and_head_without_checks() -> None:
    """/healthz answers 200 to GET and HEAD and never runs a dependency check."""
    calls = 0

    async def check() -> None:
        nonlocal calls
        calls += 1

    readiness = Readiness(timeout_s=1.0)
    readiness.add("db", check)
    async with client_for(make_app(readiness)) as client:
        get = await client.get("/healthz")
        head = await client.head("/healthz")
        slash = await client.get("/healthz/")
    assert (get.status_code, head.status_code, slash.status_code) == (200, 200, 200)
    assert get.json() == {"status": "pass"}
    assert head.content == b""
    assert get.headers["cache-control"] == "no-store"
    assert calls == 0


async def test_other_methods_get_405() -> None:
    """POST to a health path is 405 with an Allow header, not passed to the app."""
    async with client_for(make_app(Readiness(timeout_s=1.0))) as client:
        response = await client.post("/readyz")
    assert response.status_code == 405
    assert response.headers["allow"] == "GET, HEAD"


async def test_other_paths_reach_the_app() -> None:
    """Requests for any other path go to the wrapped app."""
    async with client_for(make_app(Readiness(timeout_s=1.0))) as client:
        response = await client.get("/")
    assert response.text == "home"


async def test_readiness_passes_with_healthy_checks() -> None:
    """/readyz is 200 with each check's status and duration when all pass."""
    readiness = Readiness(timeout_s=1.0)

    async def ok() -> None:
        await asyncio.sleep(0)

    readiness.add("db", ok)
    readiness.add("queue", ok)
    async with client_for(make_app(readiness)) as client:
        response = await client.get("/readyz")
    body = response.json()
    assert response.status_code == 200
    assert body["status"] == "pass"
    assert set(body["checks"]) == {"db", "queue"}
    assert all(c["status"] == "pass" and c["duration_ms"] >= 0 for c in body["checks"].values())


async def test_hanging_check_fails_within_the_deadline() -> None:
    """A check that hangs forever makes /readyz 503 within its timeout, naming the check."""
    readiness = Readiness(timeout_s=0.3)

    async def hang() -> None:
        await asyncio.Event().wait()

    async def ok() -> None:
        return None

    readiness.add("payment-db", hang)
    readiness.add("cache", ok)
    started = time.monotonic()
    async with client_for(make_app(readiness)) as client:
        response = await client.get("/readyz")
    elapsed = time.monotonic() - started
    assert response.status_code == 503
    assert response.json()["checks"]["payment-db"] == {
        "status": "fail",
        "duration_ms": response.json()["checks"]["payment-db"]["duration_ms"],
        "error": "timeout",
    }
    assert response.json()["checks"]["cache"]["status"] == "pass"
    assert elapsed < 2.0


async def test_failure_body_never_contains_the_exception_message() -> None:
    """A failing check is described by its exception type, never its message (DSNs, passwords)."""
    readiness = Readiness(timeout_s=1.0)

    async def broken() -> None:
        raise ConnectionError("postgresql://admin:hunter2@db.internal:5432/shop refused")

    readiness.add("db", broken)
    async with client_for(make_app(readiness)) as client:
        response = await client.get("/readyz")
    assert response.status_code == 503
    assert "hunter2" not in response.text
    assert "postgresql" not in response.text
    assert response.json()["checks"]["db"]["error"] == "ConnectionError"
    assert "Traceback" not in response.text


async def test_burst_of_probes_runs_each_check_once() -> None:
    """100 concurrent readiness calls share one run of each check."""
    calls = 0

    async def slow() -> None:
        nonlocal calls
        calls += 1
        await asyncio.sleep(0.05)

    readiness = Readiness(timeout_s=1.0)
    readiness.add("db", slow)
    async with client_for(make_app(readiness)) as client:
        responses = await asyncio.gather(*(client.get("/readyz") for _ in range(100)))
    assert {r.status_code for r in responses} == {200}
    assert calls == 1


async def test_verdict_is_cached_briefly_then_refreshed() -> None:
    """A verdict is reused within cache_s and recomputed after it."""
    calls = 0

    async def check() -> None:
        nonlocal calls
        calls += 1

    readiness = Readiness(timeout_s=1.0, cache_s=0.1)
    readiness.add("db", check)
    await readiness.check()
    await readiness.check()
    assert calls == 1
    await asyncio.sleep(0.15)
    await readiness.check()
    assert calls == 2


async def test_shutdown_turns_readiness_to_draining_but_liveness_stays() -> None:
    """After lifespan shutdown begins, /readyz is 503 (draining) and /healthz still 200."""
    readiness = Readiness(timeout_s=1.0)
    app = make_app(readiness)
    messages = [{"type": "lifespan.startup"}, {"type": "lifespan.shutdown"}]
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return messages.pop(0)

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    await app({"type": "lifespan", "asgi": {"version": "3.0"}, "state": {}}, receive, send)
    assert [m["type"] for m in sent] == ["lifespan.startup.complete", "lifespan.shutdown.complete"]
    async with client_for(app) as client:
        ready = await client.get("/readyz")
        live = await client.get("/healthz")
    assert ready.status_code == 503
    assert ready.json()["draining"] is True
    assert live.status_code == 200
