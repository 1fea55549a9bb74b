"""The event-loop monitor: blocks charged to the requests in flight, stalls logged once."""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from launchready_sdk import LaunchReady, Settings
from launchready_sdk.loopmonitor import LoopMonitor

APP = "tests.apps.loop_app:app"


def samples(text: str, name: str) -> dict[tuple[tuple[str, str], ...], float]:
    out = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name:
                out[tuple(sorted(sample.labels.items()))] = sample.value
    return out


async def test_a_block_is_charged_only_where_it_overlaps() -> None:
    """`blocked_during` counts the part of a block inside the window, nothing before it."""
    monitor = LoopMonitor(stall_ms=1000)
    monitor.start()
    try:
        await asyncio.sleep(0.05)
        before = time.perf_counter()
        time.sleep(0.2)  # noqa: ASYNC251 (the block under test)
        await asyncio.sleep(0.05)
        after = time.perf_counter()
        assert 0.17 <= monitor.blocked_during(before, after) <= 0.25
        assert monitor.blocked_during(before - 1.0, before) == 0.0
        assert monitor.blocked_s >= 0.17
        assert monitor.stalls == 0  # under the 1 s threshold: a block, not a stall
    finally:
        monitor.stop()


async def test_a_block_in_progress_counts_up_to_now() -> None:
    """A request that ends inside a block (the tick overdue) is charged up to its end."""
    monitor = LoopMonitor(stall_ms=1000)
    monitor.start()
    try:
        await asyncio.sleep(0.05)
        start = time.perf_counter()
        time.sleep(0.15)  # noqa: ASYNC251 (the block under test)
        assert monitor.blocked_during(start, time.perf_counter()) >= 0.12
    finally:
        monitor.stop()


async def test_stop_ends_the_watchdog_thread() -> None:
    """After `stop()` no monitor thread is left and the tick is cancelled."""
    monitor = LoopMonitor()
    monitor.start()
    monitor.start()  # idempotent: one thread
    names = [t.name for t in threading.enumerate()]
    assert names.count("launchready-loop-monitor") == 1
    monitor.stop()
    assert "launchready-loop-monitor" not in [t.name for t in threading.enumerate()]
    assert not monitor.running


def test_an_empty_setting_means_no_monitor() -> None:
    """`loop_stall_ms=None` builds no monitor and exports no loop families."""
    lr = LaunchReady(Settings(loop_stall_ms=None, configure_logging=False))
    assert lr.loop_monitor is None
    assert "launchready_loop_stalls" not in lr.latency.collectors


def test_bad_arguments_are_refused() -> None:
    """A zero threshold or interval is a ValueError."""
    with pytest.raises(ValueError, match="positive"):
        LoopMonitor(stall_ms=0)


def test_a_stall_is_logged_once_with_the_route_and_the_line(serve: Any) -> None:
    """Under uvicorn, a `time.sleep` in a handler: one `loop.stall` line naming the route that
    ran, the app's own line and the requests in flight; a request waiting meanwhile is charged
    the block, and /metrics counts the stall against the blocking route."""
    server = serve(APP)
    with httpx.Client(base_url=server.url, timeout=10) as client:
        client.get("/fast")
        done: list[int] = []
        waiter = threading.Thread(
            target=lambda: done.append(client.get("/wait", params={"s": "0.2"}).status_code)
        )
        waiter.start()
        time.sleep(0.05)
        assert client.get("/block").status_code == 200
        waiter.join(10)
        assert done == [200]
        time.sleep(0.1)
        metrics = client.get("/metrics").text
    stalls = [line for line in server.log_lines() if line.get("event") == "loop.stall"]
    assert len(stalls) == 1, stalls
    stall = stalls[0]
    assert stall["running"] == "GET /block"
    assert "GET /wait" in stall["in_flight"]
    assert stall["blocked_ms"] >= 250
    assert "tests/apps/loop_app.py" in stall["blocked_at"]
    assert stall["blocked_at"].endswith("in block")
    assert stall["request_id"] is None  # logged by the loop, not inside a request
    count = samples(metrics, "launchready_loop_stalls_total")
    assert count == {(("method", "GET"), ("route", "/block")): 1.0}
    blocked = samples(metrics, "launchready_http_request_loop_blocked_seconds_total")
    assert blocked[(("method", "GET"), ("route", "/block"))] >= 0.25
    assert blocked[(("method", "GET"), ("route", "/wait"))] >= 0.15  # it waited for /block
    assert blocked.get((("method", "GET"), ("route", "/fast")), 0.0) < 0.05


def test_the_watchdog_ends_with_its_loop() -> None:
    """A monitor whose loop closed without `stop()` (a test client, a script) leaves no thread."""

    async def serve_once() -> None:
        LoopMonitor().start()

    asyncio.run(serve_once())
    deadline = time.monotonic() + 2
    while "launchready-loop-monitor" in [t.name for t in threading.enumerate()]:
        assert time.monotonic() < deadline, "the watchdog outlived its loop"
        time.sleep(0.02)


def test_start_without_a_running_loop_does_nothing() -> None:
    """Outside an event loop (WSGI), `start()` leaves the monitor off."""
    monitor = LoopMonitor()
    monitor.start()
    assert not monitor.running
