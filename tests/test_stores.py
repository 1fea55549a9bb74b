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


async def fail_until_open(store: RedisStore, limit_s: float = 3.0) -> int:
    """Call PING until the breaker opens; how many calls failed."""
    failed = 0
    deadline = time.monotonic() + limit_s
    while store.available and time.monotonic() < deadline:
        with pytest.raises(StoreUnavailable):
            await store.ping()
        failed += 1
        await asyncio.sleep(0.01)
    return failed


async def test_killed_redis_fails_fast_once_breaker_opens(private_redis: Any) -> None:
    """After Redis dies, calls fail at once and within a second the breaker opens: no I/O."""
    store = make_store(private_redis.url)
    await store.ping()
    private_redis.kill()
    started = time.perf_counter()
    assert await fail_until_open(store) >= 3
    assert not store.available
    assert time.perf_counter() - started < 2.0
    started = time.perf_counter()
    for _ in range(1000):
        with pytest.raises(StoreUnavailable):
            await store.ping()
    assert time.perf_counter() - started < 1.0  # 1000 calls, no network wait
    await store.aclose()


async def test_paused_redis_costs_at_most_the_timeout(private_redis: Any) -> None:
    """A SIGSTOPped Redis makes each call wait about the command timeout until the breaker
    opens, then none."""
    store = make_store(private_redis.url, timeout_s=0.05)
    await store.ping()
    private_redis.pause()
    try:
        started = time.perf_counter()
        with pytest.raises(StoreUnavailable):
            await store.ping()
        first = time.perf_counter() - started
        await fail_until_open(store)
        started = time.perf_counter()
        with pytest.raises(StoreUnavailable):
            await store.ping()
        after = time.perf_counter() - started
    finally:
        private_redis.cont()
    assert first < 1.0
    assert after < 0.01
    await store.aclose()


async def test_one_late_reply_does_not_open_the_breaker(private_redis: Any) -> None:
    """A 200 ms pause fails the commands it delays, not the connection: the breaker stays
    closed and the next command works on the same connection."""
    store = make_store(private_redis.url, timeout_s=0.05)
    await store.execute("SET", "k", "v")
    private_redis.pause()
    try:
        results = await asyncio.gather(
            *(store.execute("GET", "k") for _ in range(50)), return_exceptions=True
        )
        await asyncio.sleep(0.15)
    finally:
        private_redis.cont()
    assert all(isinstance(r, StoreUnavailable) for r in results)
    assert store.available
    assert await store.execute("GET", "k") == b"v"
    assert store.breaker.opened == 0
    await store.aclose()


async def test_breaker_recovers_after_redis_returns(private_redis: Any) -> None:
    """When Redis comes back, the first call after the cool-down probes and closes the breaker."""
    store = make_store(private_redis.url, cooldown_s=0.2)
    await store.ping()
    private_redis.pause()
    try:
        await fail_until_open(store)
    finally:
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
    try:
        await fail_until_open(store)
        for _ in range(50):
            with pytest.raises(StoreUnavailable):
                await store.ping()
    finally:
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
    breaker = Breaker("x", cooldown_s=1.0, clock=lambda: now[0], outage_s=0.5)
    for t in (0.0, 0.3, 0.6):
        now[0] = t
        breaker.failure(OSError())
    assert not breaker.allow()
    now[0] = 1.7
    assert breaker.allow()
    assert not breaker.allow()  # the probe is in flight
    now[0] = 2.8
    assert breaker.allow()  # a probe that never ended does not wedge the breaker
    breaker.success()
    assert breaker.allow()
    assert breaker.state == Breaker.CLOSED


def test_breaker_opens_on_failures_in_a_row_over_the_outage_time() -> None:
    """Failures within the outage time keep it closed; failures going on past it open it."""
    now = [100.0]
    breaker = Breaker("x", cooldown_s=1.0, clock=lambda: now[0], outage_s=0.5)
    for _ in range(40):  # a burst of timeouts in 200 ms: one blip
        now[0] += 0.005
        breaker.failure(TimeoutError())
    assert breaker.state == Breaker.CLOSED
    breaker.success()
    now[0] += 0.1
    for _ in range(5):
        now[0] += 0.2
        breaker.failure(TimeoutError())
    assert breaker.state == Breaker.OPEN


def test_breaker_opens_on_a_failure_ratio() -> None:
    """Half the calls failing for three seconds opens it, even with successes in between."""
    now = [100.0]
    breaker = Breaker("x", cooldown_s=1.0, clock=lambda: now[0])
    for _ in range(150):
        now[0] += 0.01
        breaker.success()
        breaker.failure(OSError())
    assert breaker.state == Breaker.CLOSED  # 1.5 s of flapping
    for _ in range(150):
        now[0] += 0.01
        if breaker.allow():
            breaker.success()
        breaker.failure(OSError())
    assert breaker.state == Breaker.OPEN
    assert breaker.opened == 1


def test_breaker_stays_closed_on_scattered_failures() -> None:
    """One failure in twenty over minutes never opens it."""
    now = [100.0]
    breaker = Breaker("x", cooldown_s=1.0, clock=lambda: now[0])
    for i in range(2000):
        now[0] += 0.05
        if i % 20 == 0:
            breaker.failure(TimeoutError())
        else:
            breaker.success()
    assert breaker.state == Breaker.CLOSED
    assert breaker.opened == 0


def test_bounded_lru_never_exceeds_its_cap() -> None:
    """A million distinct keys keep the LRU at its cap, evicting the oldest."""
    lru: BoundedLRU[int, int] = BoundedLRU(1000)
    for i in range(1_000_000):
        lru.set(i, i)
    assert len(lru) == 1000
    assert lru.get(0) is None
    assert lru.get(999_999) == 999_999
    assert lru.evictions == 999_000
