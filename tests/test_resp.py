"""The pipelining Redis client against real Redis servers."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from launchready_sdk.store import RedisReplyError, RespClient, encode_command, parse_redis_url


def test_encoding_of_mixed_arguments() -> None:
    """Commands are RESP arrays of bulk strings; ints and floats are written as text."""
    assert encode_command(("SET", b"k", 5, 1.5)) == (
        b"*4\r\n$3\r\nSET\r\n$1\r\nk\r\n$1\r\n5\r\n$3\r\n1.5\r\n"
    )


def test_url_parsing() -> None:
    """Host, port, password, user, database, TLS and unix sockets come from the URL."""
    t = parse_redis_url("redis://user:p%40ss@cache.internal:6380/3")
    assert (t["host"], t["port"], t["unix"], t["ssl"]) == ("cache.internal", 6380, None, None)
    assert t["setup"] == [("AUTH", "user", "p@ss"), ("SELECT", 3)]
    assert parse_redis_url("rediss://h")["ssl"] is not None
    assert parse_redis_url("unix:///run/redis.sock?db=2")["unix"] == "/run/redis.sock"
    assert parse_redis_url("redis://127.0.0.1:6379/0")["setup"] == []


async def test_concurrent_commands_get_their_own_replies(redis_url: str, redis_prefix: str) -> None:
    """2000 concurrent commands on one pipelined connection each get their own reply."""
    client = RespClient(redis_url, timeout_s=2.0)
    keys = [f"{redis_prefix}:k{i}" for i in range(2000)]
    await asyncio.gather(*(client.execute("SET", k, f"v{i}", "EX", 60) for i, k in enumerate(keys)))
    values = await asyncio.gather(*(client.execute("GET", k) for k in keys))
    assert values == [f"v{i}".encode() for i in range(2000)]
    await client.aclose()


async def test_error_reply_is_raised(redis_url: str, redis_prefix: str) -> None:
    """An error reply raises RedisReplyError and the connection stays usable."""
    client = RespClient(redis_url, timeout_s=2.0)
    key = f"{redis_prefix}:list"
    await client.execute("RPUSH", key, "x")
    with pytest.raises(RedisReplyError, match="WRONGTYPE"):
        await client.execute("INCR", key)
    assert await client.execute("LLEN", key) == 1
    await client.execute("DEL", key)
    await client.aclose()


async def test_timeout_then_commands_work_again(private_redis: Any) -> None:
    """A reply that takes too long raises TimeoutError; after resume, commands work again."""
    client = RespClient(private_redis.url, timeout_s=0.1)
    await client.execute("SET", "a", "1")
    private_redis.pause()
    started = time.perf_counter()
    try:
        with pytest.raises(TimeoutError):
            await client.execute("GET", "a")
    finally:
        private_redis.cont()
    assert time.perf_counter() - started < 1.0
    assert await client.execute("GET", "a") == b"1"
    await client.aclose()


async def test_late_replies_never_shift_onto_other_commands(private_redis: Any) -> None:
    """Commands that time out while Redis is paused never hand their replies to later ones."""
    client = RespClient(private_redis.url, timeout_s=0.05)
    for i in range(20):
        await client.execute("SET", f"k{i}", f"v{i}")
    private_redis.pause()
    try:
        results = await asyncio.gather(
            *(client.execute("GET", f"k{i}") for i in range(20)), return_exceptions=True
        )
    finally:
        private_redis.cont()
    assert all(isinstance(r, TimeoutError) for r in results)
    for i in range(20):
        assert await client.execute("GET", f"k{i}") == f"v{i}".encode()
    await client.aclose()


async def test_restart_reconnects(private_redis: Any) -> None:
    """After the server dies commands fail with ConnectionError; after a restart they work."""
    client = RespClient(private_redis.url, timeout_s=0.5)
    assert await client.execute("PING") == b"PONG"
    private_redis.kill()
    with pytest.raises(ConnectionError):
        await client.execute("PING")
    private_redis.start()
    assert await client.execute("PING") == b"PONG"
    await client.aclose()


async def test_refused_connection_is_a_connection_error() -> None:
    """Nobody listening: ConnectionError quickly, no hang."""
    from tests.conftest import free_port

    client = RespClient(f"redis://127.0.0.1:{free_port()}/0", timeout_s=0.5)
    with pytest.raises(ConnectionError):
        await client.execute("PING")


async def test_database_selection(redis_url: str, redis_prefix: str) -> None:
    """A URL naming database 1 writes there, not to database 0."""
    base = redis_url.rsplit("/", 1)[0]
    db1 = RespClient(base + "/1", timeout_s=2.0)
    db0 = RespClient(base + "/0", timeout_s=2.0)
    key = f"{redis_prefix}:db"
    await db1.execute("SET", key, "one", "EX", 60)
    assert await db0.execute("GET", key) is None
    assert await db1.execute("GET", key) == b"one"
    await db1.execute("DEL", key)
    await db0.aclose()
    await db1.aclose()


def test_each_event_loop_keeps_its_own_connection(redis_url: str, redis_prefix: str) -> None:
    """Threads with loops of their own share one client: each loop keeps one connection of
    its own across commands, and a store's breaker and boundary serve them all."""
    import threading

    from launchready_sdk.store import RedisStore

    store = RedisStore(redis_url, timeout_s=2.0, prefix=redis_prefix)
    ids: dict[int, list[int]] = {}
    counts: list[int] = []
    together = threading.Barrier(3, timeout=30)

    async def work(n: int) -> None:
        ids[n] = [await store.execute("CLIENT", "ID") for _ in range(5)]
        await asyncio.to_thread(together.wait)  # three loops alive at once, as gthread's are
        counts.append(store.client.connections)
        await asyncio.to_thread(together.wait)
        await store.aclose()

    threads = [threading.Thread(target=asyncio.run, args=(work(n),)) for n in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert all(len(set(found)) == 1 for found in ids.values()), ids
    assert len({found[0] for found in ids.values()}) == 3
    assert counts == [3, 3, 3]

    async def after() -> int:
        await store.ping()
        connections = store.client.connections
        await store.aclose()
        return connections

    assert asyncio.run(after()) == 1
    assert store.available


async def test_slow_reply_fails_only_its_own_command(private_redis: Any) -> None:
    """A reply later than the timeout fails that command; the connection and the commands
    sent after the pause are untouched."""
    client = RespClient(private_redis.url, timeout_s=0.05)
    await client.execute("SET", "a", "1")
    first = client._links[asyncio.get_running_loop()].protocol
    private_redis.pause()
    try:
        with pytest.raises(TimeoutError):
            await client.execute("GET", "a")
    finally:
        private_redis.cont()
    assert await client.execute("GET", "a") == b"1"
    # Same connection: nothing else in flight failed.
    assert client._links[asyncio.get_running_loop()].protocol is first
    await client.aclose()


async def test_a_stalled_connection_is_given_up(private_redis: Any) -> None:
    """A connection owing replies that answers nothing for stall_s is replaced."""
    client = RespClient(private_redis.url, timeout_s=0.05, stall_s=0.2)
    await client.execute("SET", "a", "1")
    first = client._links[asyncio.get_running_loop()].protocol
    private_redis.pause()
    try:
        for _ in range(6):  # timeouts, then the connection is given up
            with pytest.raises((TimeoutError, ConnectionError)):
                await client.execute("GET", "a")
    finally:
        private_redis.cont()
    assert first is not None
    assert first.closed
    assert await client.execute("GET", "a") == b"1"
    await client.aclose()


async def test_connect_timeout_is_separate_from_command_timeout() -> None:
    """A server that accepts but never answers AUTH fails the connect after connect_timeout_s,
    not after the (shorter) command timeout."""
    import socket

    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    port = listener.getsockname()[1]
    try:
        client = RespClient(
            f"redis://:pw@127.0.0.1:{port}/0", timeout_s=0.01, connect_timeout_s=0.3
        )
        started = time.perf_counter()
        with pytest.raises(TimeoutError):
            await client.execute("PING")
        waited = time.perf_counter() - started
    finally:
        listener.close()
    assert 0.25 < waited < 2.0


async def test_reconnects_back_off_with_jitter() -> None:
    """After a refused connect, commands fail at once without I/O until a jittered delay."""
    from tests.conftest import free_port

    client = RespClient(f"redis://127.0.0.1:{free_port()}/0", timeout_s=0.5)
    with pytest.raises(ConnectionError):
        await client.execute("PING")
    delay = client._next_connect_at - time.monotonic()
    assert 0 < delay <= 0.2
    with pytest.raises(ConnectionError, match="reconnecting after a delay"):
        await client.execute("PING")


async def test_acl_user_authenticates(private_redis: Any) -> None:
    """An ACL user and a password with URL-special characters (percent-encoded) log in."""
    admin = RespClient(private_redis.url, timeout_s=2.0)
    await admin.execute("ACL", "SETUSER", "shop", "on", ">p@ss:w/rd#1", "~*", "+@all")
    client = RespClient(
        f"redis://shop:p%40ss%3Aw%2Frd%231@127.0.0.1:{private_redis.port}/0", timeout_s=2.0
    )
    assert await client.execute("ACL", "WHOAMI") == b"shop"
    wrong = RespClient(f"redis://shop:nope@127.0.0.1:{private_redis.port}/0", timeout_s=2.0)
    with pytest.raises(RedisReplyError, match="WRONGPASS"):
        await wrong.execute("PING")
    await admin.aclose()
    await client.aclose()
