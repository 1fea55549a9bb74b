"""launchready_sdk.testing: the no-sleep switch and the fault-injection transport."""

from __future__ import annotations

import asyncio
import time

import httpx
import pytest

from launchready_sdk.outbound import (
    AttemptTimeout,
    DeadlineExceeded,
    OutboundPolicy,
    RetryAfterTooLong,
    http_client,
    http_client_sync,
    set_sleep_scale,
)
from launchready_sdk.testing import FaultTransport, no_retry_sleeps, set_retry_sleeps


def policy(**overrides: float) -> OutboundPolicy:
    values = {"timeout_s": 0.2, "deadline_s": 30.0, "backoff_initial_s": 5.0, "backoff_max_s": 5.0}
    return OutboundPolicy(**{**values, **overrides})  # type: ignore[arg-type]


async def test_no_retry_sleeps_makes_retries_immediate() -> None:
    """Within no_retry_sleeps, three attempts with 5 s backoffs take no time."""
    faults = FaultTransport(status=503)
    start = time.monotonic()
    with no_retry_sleeps():
        async with http_client(policy(), transport=faults) as c:
            r = await c.get("http://provider.test/x")
    assert r.status_code == 503
    assert faults.calls == 3
    assert time.monotonic() - start < 1.0


async def test_no_retry_sleeps_keeps_retry_after_checks() -> None:
    """The switch removes waits but a Retry-After past the deadline still raises."""
    faults = FaultTransport(status=429, headers={"Retry-After": "3600"})
    with no_retry_sleeps():
        async with http_client(policy(), transport=faults) as c:
            with pytest.raises(RetryAfterTooLong):
                await c.get("http://provider.test/x")


def sleep_scale() -> float:
    """The current retry sleep scale, read through the public hook (set to itself)."""
    current = set_sleep_scale(1.0)
    set_sleep_scale(current)
    return current


def test_switch_is_restored() -> None:
    """no_retry_sleeps restores the previous setting; set_retry_sleeps flips it for the process."""
    with no_retry_sleeps():
        assert sleep_scale() == 0.0
    assert sleep_scale() == 1.0
    set_retry_sleeps(False)
    try:
        assert sleep_scale() == 0.0
    finally:
        set_retry_sleeps(True)
    assert sleep_scale() == 1.0


async def test_fault_hang_is_cut_by_the_policy() -> None:
    """An injected hang is cut by the attempt timeout; a POST is not retried."""
    faults = FaultTransport(hang=True)
    async with http_client(policy(), transport=faults) as c:
        with pytest.raises((AttemptTimeout, httpx.ReadTimeout)):
            await c.post("http://provider.test/charge", json={})
    assert faults.calls == 1


async def test_fault_drip_is_cut_by_the_deadline() -> None:
    """An injected drip is cut by the total deadline."""
    faults = FaultTransport(drip_s=0.05)
    start = time.monotonic()
    async with http_client(policy(deadline_s=0.4), transport=faults) as c:
        with pytest.raises(DeadlineExceeded):
            await c.get("http://provider.test/feed")
    assert time.monotonic() - start < 1.5


async def test_fault_reset_retries_idempotent_requests() -> None:
    """An injected reset is retried for GET and not for POST."""
    faults = FaultTransport(reset=True)
    with no_retry_sleeps():
        async with http_client(policy(), transport=faults) as c:
            with pytest.raises(httpx.ReadError):
                await c.get("http://provider.test/x")
            with pytest.raises(httpx.ReadError):
                await c.post("http://provider.test/x")
    assert faults.calls == 4


async def test_fault_latency_and_rate() -> None:
    """With rate 0.5 and a seed about half of requests are faulted, the rest forwarded."""
    inner = FaultTransport()
    faults = FaultTransport(inner, status=418, rate=0.5, seed=1)
    async with http_client(policy(), transport=faults) as c:
        statuses = [(await c.get("http://provider.test/x")).status_code for _ in range(40)]
    assert 10 <= statuses.count(418) <= 30
    assert statuses.count(418) + statuses.count(200) == 40
    assert inner.calls == statuses.count(200)


async def test_fault_latency_delays() -> None:
    """Injected latency delays the response by about that much."""
    faults = FaultTransport(FaultTransport(), latency_s=0.1)
    async with http_client(policy(), transport=faults) as c:
        start = time.monotonic()
        r = await c.get("http://provider.test/x")
    assert r.status_code == 200
    assert time.monotonic() - start >= 0.09


def test_fault_transport_sync() -> None:
    """The same transport serves the sync client: hang, 503 retries, drip."""
    with no_retry_sleeps():
        with http_client_sync(policy(), transport=FaultTransport(status=503)) as c:
            assert c.get("http://provider.test/x").status_code == 503
        c = http_client_sync(policy(deadline_s=0.3), transport=FaultTransport(drip_s=0.05))
        with c, pytest.raises(DeadlineExceeded):
            c.get("http://provider.test/x")
        c = http_client_sync(policy(timeout_s=0.1), transport=FaultTransport(hang=True))
        with c, pytest.raises(httpx.ReadTimeout):
            c.post("http://provider.test/x")


async def test_cancelled_fault_hang_does_not_linger() -> None:
    """Cancelling a call into an injected hang ends it at once."""
    async with http_client(policy(timeout_s=10.0), transport=FaultTransport(hang=True)) as c:
        task = asyncio.create_task(c.get("http://provider.test/x"))
        await asyncio.sleep(0.05)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
