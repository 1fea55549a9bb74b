"""Redis store and breaker against a real Redis that tests kill, pause and restart."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from launchready_sdk.errors import StoreUnavailable
from launchready_sdk.store import BoundedLRU, Breaker, RedisStore


def make_store(url: str, prefix: str = "lrtest", **kwargs: Any) -> RedisStore:
    return RedisStore(
        url,
        timeout_s=kwargs.get("timeout_s", 0.05),
        cooldown_s=kwargs.get("cooldown_s", 0.3),
        prefix=prefix,
    )


async def test_run_executes_commands_on_shared_redis(redis_url: str, redis_prefix: str) -> None:
    """Commands go through and keys are namespaced by the store's prefix."""
    store = make_store(redis_url, redis_prefix)
    key = store.key("hello")
    assert key == f"{redis_prefix}:hello"
    await store.execute("SET", key, b"world", "EX", 30)
    assert await store.execute("GET", key) == b"world"
    await store.ping()
    await store.aclose()


async def test_killed_redis_fails_fast_once_breaker_opens(private_redis: Any) -> None:
    """After Redis dies, the first call fails within the timeout and the next ones without I/O."""
    store = make_store(private_redis.url)
    await store.ping()
    private_redis.kill()
    with pytest.raises(StoreUnavailable):
        await store.ping()
    assert not store.available
    started = time.perf_counter()
    for _ in range(1000):
        with pytest.raises(StoreUnavailable):
            await store.ping()
    assert time.perf_counter() - started < 1.0  # 1000 calls, no network wait
    await store.aclose()


async def test_paused_redis_costs_at_most_the_timeout(private_redis: Any) -> None:
    """A SIGSTOPped Redis makes one call wait about the command timeout, then none."""
    store = make_store(private_redis.url, timeout_s=0.05)
    await store.ping()
    private_redis.pause()
    try:
        started = time.perf_counter()
        with pytest.raises(StoreUnavailable):
            await store.ping()
        first = time.perf_counter() - started
        started = time.perf_counter()
        with pytest.raises(StoreUnavailable):
            await store.ping()
        second = time.perf_counter() - started
    finally:
        private_redis.cont()
    assert first < 1.0
    assert second < 0.01
    await store.aclose()


async def test_breaker_recovers_after_redis_returns(private_redis: Any) -> None:
    """When Redis comes back, the first call after the cool-down probes and closes the breaker."""
    store = make_store(private_redis.url, cooldown_s=0.2)
    await store.ping()
    private_redis.pause()
    with pytest.raises(StoreUnavailable):
        await store.ping()
    private_redis.cont()
    with pytest.raises(StoreUnavailable):
        await store.ping()  # still cooling down: no I/O
    await asyncio.sleep(0.25)
    await store.ping()
    assert store.available
    await store.aclose()


async def test_outage_logs_one_warning_and_one_recovery(
    private_redis: Any, log_stream: Any
) -> None:
    """An outage with many failing calls logs a single warning and a single recovery line."""
    from launchready_sdk.logs import configure_logging
    from launchready_sdk.settings import Settings

    configure_logging(Settings(), stream=log_stream)
    store = make_store(private_redis.url, cooldown_s=0.1)
    await store.ping()
    private_redis.pause()
    for _ in range(50):
        with pytest.raises(StoreUnavailable):
            await store.ping()
    private_redis.cont()
    await asyncio.sleep(0.15)
    await store.ping()
    events = [r["event"] for r in log_stream.records()]
    assert events.count("store.unavailable") == 1
    assert events.count("store.recovered") == 1
    await store.aclose()


async def test_refused_connection_is_unavailable_not_an_exception(tmp_path: Any) -> None:
    """A Redis URL nobody listens on yields StoreUnavailable, never a raw connection error."""
    from tests.conftest import free_port

    store = make_store(f"redis://127.0.0.1:{free_port()}/0")
    with pytest.raises(StoreUnavailable):
        await store.ping()
    await store.aclose()


def test_breaker_half_open_lets_one_probe_per_cooldown() -> None:
    """While open, one call per cool-down is let through; the rest fail fast."""
    now = [0.0]
    breaker = Breaker("x", cooldown_s=1.0, clock=lambda: now[0])
    breaker.failure(OSError())
    assert not breaker.allow()
    now[0] = 1.0
    assert breaker.allow()
    assert not breaker.allow()  # the probe is in flight
    now[0] = 2.1
    assert breaker.allow()  # a probe that never ended does not wedge the breaker
    breaker.success()
    assert breaker.allow()
    assert breaker.state == Breaker.CLOSED


def test_bounded_lru_never_exceeds_its_cap() -> None:
    """A million distinct keys keep the LRU at its cap, evicting the oldest."""
    lru: BoundedLRU[int, int] = BoundedLRU(1000)
    for i in range(1_000_000):
        lru.set(i, i)
    assert len(lru) == 1000
    assert lru.get(0) is None
    assert lru.get(999_999) == 999_999
    assert lru.evictions == 999_000
