"""`lr.background()`: jobs after the response, with the request id, bounded, drained."""

from __future__ import annotations

import asyncio
import io
import sys
import threading
import time
from typing import Any

import httpx

from launchready_sdk import LaunchReady, Settings
from launchready_sdk.background import BackgroundJobs
from launchready_sdk.context import get_request_id
from launchready_sdk.logs import get_logger
from tests.conftest import LogCapture

CARD = "4111 1111 1111 1111"


def make(log: LogCapture, jobs: BackgroundJobs | None = None) -> LaunchReady:
    lr = LaunchReady(Settings(), log_stream=log)
    if jobs is not None:
        lr.jobs = jobs
    return lr


class Sent:
    """Outermost ASGI layer: notes when the last body chunk has passed towards the client."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.done = threading.Event()

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        async def noting(message: Any) -> None:
            await send(message)
            if message["type"] == "http.response.body" and not message.get("more_body"):
                self.done.set()

        await self.app(scope, receive, noting)


async def wait_until(condition: Any, timeout_s: float = 5.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.01)


def app_submitting(lr: LaunchReady, *jobs: Any) -> Any:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                await send({"type": message["type"] + ".complete"})
                if message["type"] == "lifespan.shutdown":
                    return
        for fn in jobs:
            lr.background(fn)
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})

    return app


async def test_jobs_run_after_the_response_with_its_request_id(log_stream: LogCapture) -> None:
    """Sync and async jobs start only once the response has been sent, and their log lines
    carry the request's id."""
    lr = make(log_stream)
    seen: list[tuple[str, bool, str | None, str]] = []
    outer: Sent

    def sync_job() -> None:
        seen.append(
            ("sync", outer.done.is_set(), get_request_id(), threading.current_thread().name)
        )
        get_logger("shop").info("receipt.sent")

    async def async_job() -> None:
        seen.append(("async", outer.done.is_set(), get_request_id(), "loop"))

    outer = Sent(lr.wrap(app_submitting(lr, sync_job, async_job)))
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=outer), base_url="http://t"
    ) as client:
        response = await client.get("/order")
    await wait_until(lambda: len(seen) == 2)
    rid = response.headers["x-request-id"]
    assert sorted(seen)[0][:3] == ("async", True, rid)
    assert sorted(seen)[1][:3] == ("sync", True, rid)
    assert sorted(seen)[1][3].startswith("launchready-job")
    [line] = [r for r in log_stream.records() if r.get("event") == "receipt.sent"]
    assert line["request_id"] == rid
    await wait_until(lambda: lr.jobs.completed == 2)


async def test_a_failing_job_is_logged_redacted_and_never_reaches_the_response(
    log_stream: LogCapture,
) -> None:
    """A job that raises leaves the response alone; its traceback is logged, redacted."""
    lr = make(log_stream)

    def charge() -> None:
        raise RuntimeError(f"card {CARD} declined")

    app = lr.wrap(app_submitting(lr, charge))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as c:
        response = await c.get("/")
    await wait_until(lambda: lr.jobs.failed == 1)
    assert response.status_code == 200
    [line] = [r for r in log_stream.records() if r.get("event") == "background.failed"]
    assert line["request_id"] == response.headers["x-request-id"]
    assert line["job"].endswith("charge")
    assert CARD not in str(log_stream.getvalue())
    assert "RuntimeError" in str(line)


async def test_a_hanging_job_is_cancelled_and_a_stuck_thread_reported(
    log_stream: LogCapture,
) -> None:
    """An async job past its timeout is cancelled; a sync one (threads cannot be stopped) is
    reported and keeps its slot until it returns; responses are unaffected meanwhile."""
    lr = make(log_stream, BackgroundJobs(timeout_s=0.2))
    release = threading.Event()

    async def forever() -> None:
        await asyncio.sleep(3600)

    def stuck() -> None:
        release.wait(5)

    app = lr.wrap(app_submitting(lr, forever, stuck))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as c:
        started = time.monotonic()
        answers = [(await c.get("/")).status_code for _ in range(3)]
        assert time.monotonic() - started < 2
    await wait_until(lambda: any(r.get("event") == "background.slow" for r in log_stream.records()))
    events = [r.get("event") for r in log_stream.records()]
    assert answers == [200, 200, 200]
    assert "background.timed_out" in events
    release.set()
    await wait_until(lambda: lr.jobs.running == 0)


async def test_a_flood_is_bounded_and_dropped_jobs_are_counted(log_stream: LogCapture) -> None:
    """Past `max_queued`, jobs are dropped (False), counted on /metrics and warned about once;
    the ones kept all run."""
    lr = make(log_stream)
    lr.jobs = BackgroundJobs(concurrency=1, max_queued=5)
    ran: list[int] = []
    accepted: list[bool] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        if scope["path"] == "/flood":
            accepted.extend(lr.background(ran.append, i) for i in range(100))
            assert lr.jobs.queued == 5
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})

    wrapped = lr.wrap(app)
    transport = httpx.ASGITransport(app=wrapped)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
        await c.get("/flood")
        await wait_until(lambda: len(ran) == 5)
        metrics = (await c.get("/metrics")).text
    assert accepted.count(True) == 5
    assert lr.jobs.dropped == 95
    assert lr.jobs.queued == 0
    assert "launchready_background_dropped_total 95.0" in metrics
    drops = [r for r in log_stream.records() if r.get("event") == "background.dropped"]
    assert len(drops) == 1


async def test_shutdown_drains_running_jobs(log_stream: LogCapture) -> None:
    """At lifespan shutdown, running jobs finish before the app reports it is done; one that
    outlasts the drain is cancelled; later jobs are refused."""
    lr = make(log_stream, BackgroundJobs(drain_timeout_s=0.5))
    finished: list[str] = []

    async def short() -> None:
        await asyncio.sleep(0.2)
        finished.append("short")

    async def long() -> None:
        await asyncio.sleep(30)
        finished.append("long")

    app = lr.wrap(app_submitting(lr, short, long))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as c:
        await c.get("/")
    messages: asyncio.Queue[dict[str, str]] = asyncio.Queue()
    for kind in ("lifespan.startup", "lifespan.shutdown"):
        await messages.put({"type": kind})
    sent: list[str] = []

    async def send(message: Any) -> None:
        sent.append(message["type"])

    await app({"type": "lifespan", "asgi": {"version": "3.0"}, "state": {}}, messages.get, send)
    assert sent[-1] == "lifespan.shutdown.complete"
    assert finished == ["short"]
    assert lr.background(print) is False
    events = [r.get("event") for r in log_stream.records()]
    assert "background.abandoned" in events


def test_under_wsgi_jobs_run_after_the_server_closes_the_response(
    log_stream: LogCapture,
) -> None:
    """Under WSGI a job starts when the server closes the response, with the request id."""
    lr = make(log_stream)
    seen: list[tuple[str | None, bool]] = []
    closed = threading.Event()
    ran = threading.Event()

    def job() -> None:
        seen.append((get_request_id(), closed.is_set()))
        ran.set()

    def view(environ: Any, start_response: Any) -> list[bytes]:
        lr.background(job)
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"ok"]

    app = lr.wrap_wsgi(view)
    headers: dict[str, str] = {}
    environ = {
        "REQUEST_METHOD": "GET",
        "PATH_INFO": "/",
        "SERVER_NAME": "t",
        "SERVER_PORT": "80",
        "REMOTE_ADDR": "203.0.113.5",
        "wsgi.input": io.BytesIO(),
        "wsgi.errors": sys.stderr,
        "wsgi.url_scheme": "http",
    }
    result = app(environ, lambda status, h, e=None: headers.update(h))
    assert b"".join(result) == b"ok"
    assert not ran.wait(0.2)  # not before the server is done with the response
    closed.set()
    result.close()
    assert ran.wait(5)
    assert seen == [(headers["x-request-id"], True)]
    app.background.stop()


def test_outside_a_request_a_job_runs_at_once() -> None:
    """From a script or a management command (no request, no loop) a job runs at once."""
    jobs = BackgroundJobs()
    done = threading.Event()
    assert jobs.submit(done.set)
    assert done.wait(5)
    assert asyncio.run(jobs.drain()) == 0
