"""The request id travels into Celery tasks: a real worker (solo pool) on a private Redis
broker runs tasks sent from a request and from outside one."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from celery import Celery

from launchready_sdk import LaunchReady, Settings
from launchready_sdk.celery import HEADER, propagate_request_ids
from tests.conftest import ROOT, LogCapture, PrivateRedis


@pytest.fixture
def worker(private_redis: PrivateRedis, tmp_path: Path) -> Iterator[Path]:
    """`celery worker` for tests/apps/celery_app.py; yields the file its output goes to."""
    log = tmp_path / "worker.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "tests.apps.celery_app", "worker",
             "--pool", "solo", "--concurrency", "1", "--without-gossip", "--without-mingle",
             "--without-heartbeat", "-Q", "lrtest", "--loglevel", "INFO"],
            env={**os.environ, "PYTHONPATH": str(ROOT), "CELERY_BROKER_URL": private_redis.url},
            cwd=ROOT, stdout=out, stderr=subprocess.STDOUT,
        )  # fmt: skip
        try:
            yield log
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def lines(log: Path, event: str, timeout_s: float = 30.0) -> list[dict[str, Any]]:
    deadline = time.monotonic() + timeout_s
    while True:
        found = []
        for raw in log.read_text(errors="replace").splitlines():
            try:
                record = json.loads(raw)
            except ValueError:
                continue
            if isinstance(record, dict) and record.get("event") == event:
                found.append(record)
        if found or time.monotonic() > deadline:
            return found
        time.sleep(0.1)


def test_a_task_sent_from_a_request_logs_with_its_request_id(
    worker: Path, private_redis: PrivateRedis, log_stream: LogCapture
) -> None:
    """A task sent while a request is served logs, in the worker, with that request's id
    (structlog and stdlib lines alike); one sent outside a request gets an id of its own."""
    producer = Celery("producer", broker=private_redis.url)
    producer.conf.update(task_default_queue="lrtest", broker_connection_retry_on_startup=True)
    propagate_request_ids(keep_logging=False)
    lr = LaunchReady(Settings(), log_stream=log_stream)

    async def app(scope: Any, receive: Any, send: Any) -> None:
        producer.send_task("lrtest.charge", args=["ord_1"])
        await send({"type": "http.response.start", "status": 202, "headers": []})
        await send({"type": "http.response.body", "body": b"queued"})

    async def checkout() -> httpx.Response:
        transport = httpx.ASGITransport(app=lr.wrap(app))
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            return await client.post("/checkout")

    rid = asyncio.run(checkout()).headers["x-request-id"]
    producer.send_task("lrtest.charge", args=["ord_2"])  # no request here
    deadline = time.monotonic() + 30
    while len(charged := lines(worker, "task.charged")) < 2 and time.monotonic() < deadline:
        time.sleep(0.1)
    by_order = {line["order_id"]: line for line in charged}
    assert set(by_order) == {"ord_1", "ord_2"}, worker.read_text()[-2000:]
    assert by_order["ord_1"]["request_id"] == rid
    assert by_order["ord_2"]["request_id"] not in (None, rid)
    stdlib = [r for r in lines(worker, "task.stdlib_too") if r["request_id"] == rid]
    assert stdlib
    assert stdlib[0]["logger"] == "tasks.stdlib"
    producer.close()


def test_a_forged_header_is_replaced() -> None:
    """An id in a message that is not shaped like a request id is never used as one."""
    from launchready_sdk.celery import _postrun, _prerun
    from launchready_sdk.context import get_request_id

    class Request:
        pass

    class Task:
        name = "t"
        request = Request()

    setattr(Task.request, HEADER, "bad id\nwith newline")
    _prerun(task=Task)
    inside = get_request_id()
    _postrun(task=Task)
    assert inside is not None
    assert "\n" not in inside
    assert get_request_id() is None
