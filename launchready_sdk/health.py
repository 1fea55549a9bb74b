"""`/healthz` (liveness) and `/readyz` (readiness) for uptime monitors and orchestrators.

`HealthMiddleware` answers both paths before any rate limit, cache, redirect or latency layer
sees them, for GET and HEAD. Liveness does no I/O: a 200 proves the event loop answers.
Readiness runs every registered check concurrently, each under its own timeout and all within
one deadline (`timeout_s`, at most 2 s, below a monitor's), caches the verdict for about a
second and coalesces a burst of probes into one run. It answers 200 or 503 with a JSON body
naming each check's status and duration; a failure is described by its exception type only,
never its message (which may hold a DSN). Once shutdown begins, readiness answers 503
(draining) while liveness stays 200.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping
from typing import Any

import orjson

from launchready_sdk.context import request_method, route_path
from launchready_sdk.logs import get_logger
from launchready_sdk.types import ASGIApp, HealthCheck, Receive, Scope, Send

DEFAULT_CACHE_S = 1.0
DEFAULT_TIMEOUT_S = 1.0
MAX_TIMEOUT_S = 2.0  # below an uptime monitor's own timeout
DEFAULT_HEALTH_PATH = "/healthz"
DEFAULT_READY_PATH = "/readyz"
_log = get_logger("launchready.health")
_JSON_HEADERS = [(b"content-type", b"application/json"), (b"cache-control", b"no-store")]


class Readiness:
    """Registered dependency checks, run concurrently with timeouts; results cached briefly."""

    def __init__(self, *, timeout_s: float, cache_s: float = DEFAULT_CACHE_S) -> None:
        self.timeout_s = timeout_s
        self.cache_s = cache_s
        self.draining = False
        self._checks: dict[str, HealthCheck] = {}
        self._verdict: tuple[bool, dict[str, Any]] | None = None
        self._verdict_at = 0.0
        self._running: asyncio.Future[tuple[bool, dict[str, Any]]] | None = None

    def add(self, name: str, check: HealthCheck) -> None:
        """Register `check` (an async callable that raises on failure) under `name`."""
        if not name or not callable(check):
            raise ValueError("a health check needs a name and an async callable")
        self._checks[name] = check
        self._verdict = None

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(self._checks)

    def last(self) -> tuple[tuple[bool, dict[str, Any]] | None, float]:
        """The latest verdict (None before the first run) and its age in seconds."""
        verdict = self._verdict
        return verdict, time.monotonic() - self._verdict_at if verdict is not None else 0.0

    async def check(self) -> tuple[bool, dict[str, Any]]:
        """(ready, body). Concurrent callers share one run; a verdict is reused for `cache_s`."""
        if self.draining:
            return False, {"status": "fail", "draining": True, "checks": {}}
        if self._verdict is not None and time.monotonic() - self._verdict_at < self.cache_s:
            return self._verdict
        running = self._running
        if running is not None and running.get_loop() is not asyncio.get_running_loop():
            return await self._run_all()  # another loop's run (a WSGI worker's other thread)
        if running is None:
            running = self._running = asyncio.ensure_future(self._run_all())
            running.add_done_callback(self._finished)
        return await asyncio.shield(running)

    def _finished(self, future: asyncio.Future[tuple[bool, dict[str, Any]]]) -> None:
        self._running = None
        if not future.cancelled() and future.exception() is None:
            self._verdict, self._verdict_at = future.result(), time.monotonic()

    async def _run_all(self) -> tuple[bool, dict[str, Any]]:
        names = list(self._checks)
        results = await asyncio.gather(*(self._run_one(self._checks[n]) for n in names))
        checks = dict(zip(names, results, strict=True))
        ready = all(result["status"] == "pass" for result in checks.values())
        if not ready:
            failed = {name: r.get("error") for name, r in checks.items() if r["status"] != "pass"}
            _log.warning("readiness.failed", failed=failed)
        return ready, {"status": "pass" if ready else "fail", "checks": checks}

    async def _run_one(self, check: HealthCheck) -> dict[str, Any]:
        start = time.perf_counter()
        error: str | None = None
        try:
            async with asyncio.timeout(self.timeout_s):
                await check()
        except TimeoutError:
            error = "timeout"
        except Exception as exc:
            error = type(exc).__name__
        duration_ms = round((time.perf_counter() - start) * 1000.0, 2)
        if error is None:
            return {"status": "pass", "duration_ms": duration_ms}
        return {"status": "fail", "duration_ms": duration_ms, "error": error}


class HealthMiddleware:
    """Answers liveness and readiness paths; every other request goes to `app` untouched.

    Args:
        app: the ASGI app to wrap.
        readiness: the checks `/readyz` runs (None: always ready unless draining).
        health_path: the liveness path.
        ready_path: the readiness path.
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        readiness: Readiness | None = None,
        health_path: str = DEFAULT_HEALTH_PATH,
        ready_path: str = DEFAULT_READY_PATH,
    ) -> None:
        self.app = app
        self.readiness = readiness or Readiness(timeout_s=DEFAULT_TIMEOUT_S)
        self._routes: Mapping[str, str] = {
            health_path: "live",
            health_path + "/": "live",
            ready_path: "ready",
            ready_path + "/": "ready",
        }

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = self._routes.get(route_path(scope)) if scope["type"] == "http" else None
        if kind is None:
            if scope["type"] == "lifespan":
                await self.app(scope, self._watch_shutdown(receive), send)
            else:
                await self.app(scope, receive, send)
            return
        method = request_method(scope)
        if method not in ("GET", "HEAD"):
            await _respond(send, 405, {"status": "fail", "error": "method not allowed"}, method)
            return
        if kind == "live":
            await _respond(send, 200, {"status": "pass"}, method)
            return
        ready, body = await self.readiness.check()
        await _respond(send, 200 if ready else 503, body, method)

    def _watch_shutdown(self, receive: Receive) -> Receive:
        async def watched() -> Any:
            message = await receive()
            if message["type"] == "lifespan.shutdown":
                self.readiness.draining = True
            return message

        return watched


async def _respond(send: Send, status: int, body: Mapping[str, Any], method: str) -> None:
    payload = orjson.dumps(body)
    headers = [*_JSON_HEADERS, (b"content-length", str(len(payload)).encode())]
    if status == 405:
        headers.append((b"allow", b"GET, HEAD"))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": b"" if method == "HEAD" else payload})
