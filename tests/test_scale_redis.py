"""Managed and highly available Redis: TLS, Sentinel failover, a cluster, a paused server.

Each test starts its own redis-server processes (tests/redisfleet.py) and stops them.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from launchready_sdk import Settings
from launchready_sdk.errors import StoreUnavailable
from launchready_sdk.store import RedisStore, key_slot
from tests.apps.scale_app import build
from tests.redisfleet import Cluster, RedisProcess, SentinelSet, TLSRedis

pytestmark = pytest.mark.slow


def settings(url: str, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "redis_url": url,
        "redis_prefix": f"scale{uuid.uuid4().hex[:6]}",
        "rate_limits": {"POST /login": "20/hour"},  # no refill during a test
        "cache_routes": {"/products": 30},
        "idempotent_routes": ("/checkout",),
        "access_log": False,
        "log_level": "WARNING",
    }
    values.update(overrides)
    return Settings(**values)


def client(app: Any, ip: str = "198.51.100.7") -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=app, client=(ip, 50000))
    return httpx.AsyncClient(transport=transport, base_url="http://shop.test")


async def login_budget(app: Any, tries: int = 25, ip: str | None = None) -> list[int]:
    """Statuses of `tries` logins from one fresh address."""
    ip = ip or f"203.0.113.{uuid.uuid4().int % 250 + 1}"
    async with client(app, ip) as c:
        return [(await c.post("/login")).status_code for _ in range(tries)]


@pytest.fixture
def tls_redis(tmp_path: Path) -> Iterator[TLSRedis]:
    """A TLS-only redis-server with a trustme CA."""
    server = TLSRedis(tmp_path).start()
    yield server
    server.stop()


async def test_tls_verified_wrong_ca_refused_and_insecure_accepted(
    tls_redis: TLSRedis, log_stream: Any
) -> None:
    """rediss:// with the right CA works; a wrong CA is refused and /readyz says redis fails
    (limits fall back, no 5xx); ssl_cert_reqs=none connects without verifying."""
    good = tls_redis.url(f"ssl_ca_certs={tls_redis.ca_path}")
    lr, app = build(settings(good), log_stream=log_stream)
    async with client(app) as c:
        assert (await c.get("/readyz")).status_code == 200
    assert (await login_budget(app)).count(200) == 20
    await lr.shutdown()

    wrong = tls_redis.url(f"ssl_ca_certs={tls_redis.wrong_ca_path}")
    lr, app = build(settings(wrong), log_stream=log_stream)
    async with client(app) as c:
        ready = await c.get("/readyz")
        assert ready.status_code == 503
        assert ready.json()["checks"]["redis"]["status"] == "fail"
        assert (await c.post("/login")).status_code == 200  # fail open, in memory
    events = [r for r in log_stream.records() if r["event"] == "store.connect_failed"]
    assert events
    assert "CERTIFICATE_VERIFY_FAILED" in events[-1]["detail"]
    await lr.shutdown()

    insecure = tls_redis.url("ssl_cert_reqs=none")
    lr, app = build(settings(insecure), log_stream=log_stream)
    async with client(app) as c:
        assert (await c.get("/readyz")).status_code == 200
    assert (await login_budget(app)).count(200) == 20
    await lr.shutdown()


async def test_plain_client_against_tls_port_fails_cleanly(tls_redis: TLSRedis) -> None:
    """redis:// against a TLS port: StoreUnavailable within the connect timeout, no hang."""
    store = RedisStore(f"redis://127.0.0.1:{tls_redis.port}/0", connect_timeout_s=0.5)
    started = time.perf_counter()
    with pytest.raises(StoreUnavailable):
        await store.ping()
    assert time.perf_counter() - started < 2.0
    await store.aclose()


@pytest.fixture
def sentinels(tmp_path: Path) -> Iterator[SentinelSet]:
    """A master, a replica and a sentinel."""
    fleet = SentinelSet(tmp_path).start()
    yield fleet
    fleet.stop()


async def test_sentinel_failover_during_traffic(sentinels: SentinelSet, log_stream: Any) -> None:
    """Traffic through a Sentinel-found master sees no 5xx across a failover, and afterwards
    the limits are kept on the new master again."""
    lr, app = build(
        settings(sentinels.url(), idempotency_fail="proceed", redis_cooldown_s=0.3),
        log_stream=log_stream,
    )
    assert lr.redis is not None
    assert (await login_budget(app)).count(200) == 20
    statuses: list[int] = []
    raised: list[str] = []
    stop = asyncio.Event()

    async def traffic(n: int) -> None:
        async with client(app, f"192.0.2.{n}") as c:
            while not stop.is_set():
                for method, path in (("POST", "/login"), ("GET", "/products")):
                    try:
                        statuses.append((await c.request(method, path)).status_code)
                    except Exception as exc:  # an exception out of the app: a 500
                        raised.append(f"{method} {path}: {exc!r}")
                await asyncio.sleep(0.005)

    tasks = [asyncio.create_task(traffic(n)) for n in range(1, 5)]
    await asyncio.sleep(0.3)
    new_port = await asyncio.to_thread(sentinels.failover)
    await asyncio.sleep(1.0)
    stop.set()
    await asyncio.gather(*tasks)
    assert statuses
    assert not raised
    assert not [s for s in statuses if s >= 500]
    # The limits hold again, on the new master (the breaker may need its cool-down first).
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            await lr.redis.ping()
            break
        except StoreUnavailable:
            await asyncio.sleep(0.2)
    assert lr.redis.sentinel.current == ("127.0.0.1", new_port)
    assert (await login_budget(app)).count(200) == 20
    await lr.shutdown()


async def test_sentinel_naming_no_master_fails_cleanly(sentinels: SentinelSet) -> None:
    """A service name no sentinel knows: StoreUnavailable quickly, never a hang."""
    url = f"redis+sentinel://127.0.0.1:{sentinels.sentinel_port}/nosuchmaster/0"
    store = RedisStore(url, connect_timeout_s=1.0)
    started = time.perf_counter()
    with pytest.raises(StoreUnavailable):
        await store.ping()
    assert time.perf_counter() - started < 3.0
    await store.aclose()


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    """A three-node cluster (no replicas)."""
    nodes = Cluster(tmp_path, full_coverage=False).start()
    yield nodes
    nodes.stop()


async def test_cluster_limits_cache_idempotency_once_and_fleet(
    cluster: Cluster, log_stream: Any
) -> None:
    """On a three-node cluster every feature works with no CROSSSLOT and no outage."""
    lr, app = build(settings(cluster.url()), log_stream=log_stream)
    assert lr.redis is not None
    # Limits: exact budgets for several identities (their keys spread over the nodes).
    for n in range(6):
        assert (await login_budget(app, ip=f"198.51.100.{n + 10}")).count(200) == 20
    async with client(app) as c:
        # Cache: MISS, HIT, invalidation reaching the entry.
        first = await c.get("/products")
        second = await c.get("/products")
        assert (first.headers["x-cache"], second.headers["x-cache"]) == ("MISS", "HIT")
        await lr.cache.invalidate("/products")
        assert (await c.get("/products")).headers["x-cache"] == "MISS"
        # Idempotency: one order for a key sent twice.
        headers = {"idempotency-key": "order-1"}
        one = await c.post("/checkout", json={"cart": 1}, headers=headers)
        two = await c.post("/checkout", json={"cart": 1}, headers=headers)
        assert one.status_code == 201
        assert two.headers.get("idempotent-replayed") == "true"
        assert one.json() == two.json()
    assert await lr.idempotency.once("evt_1") is True
    assert await lr.idempotency.once("evt_1") is False
    # Fleet merge: this worker's figures flushed and read back.
    await lr.latency.flush()
    await lr.latency.refresh_fleet()
    fleet = lr.latency.snapshot(fleet=True)
    assert fleet["POST /login"]["count"] >= 120
    events = [r["event"] for r in log_stream.records()]
    assert "store.unavailable" not in events
    assert lr.redis.breaker.opened == 0
    await lr.shutdown()


async def test_cluster_follows_moved_and_ask(cluster: Cluster) -> None:
    """A stale slot table is corrected by MOVED; a migrating slot is followed with ASKING."""
    store = RedisStore(cluster.url(), timeout_s=1.0, prefix="t")
    await store.execute("SET", "moved-key", "v")
    client = store.client
    wrong = next(n for n in cluster.nodes if n.port != cluster.node_for("moved-key").port)
    slot = key_slot(b"moved-key")
    client.slots[slot] = ("127.0.0.1", wrong.port)  # type: ignore[union-attr]
    assert await store.execute("GET", "moved-key") == b"v"
    assert client.slots[slot] == ("127.0.0.1", cluster.node_for("moved-key").port)  # type: ignore[union-attr]

    key = "ask-key"
    source = cluster.node_for(key)
    target = next(n for n in cluster.nodes if n.port != source.port)
    slot = key_slot(key.encode())
    source_id = source.client().execute_command("CLUSTER", "MYID").decode()
    target_id = target.client().execute_command("CLUSTER", "MYID").decode()
    target.client().execute_command("CLUSTER", "SETSLOT", slot, "IMPORTING", source_id)
    source.client().execute_command("CLUSTER", "SETSLOT", slot, "MIGRATING", target_id)
    try:
        await store.execute("SET", key, "migrating")  # absent on the source: ASK -> target
        pipe = target.client().pipeline(transaction=False)
        pipe.execute_command("ASKING")
        pipe.get(key)
        assert pipe.execute()[1] == b"migrating"
        assert await store.execute("GET", key) == b"migrating"
    finally:
        for node in cluster.nodes:
            node.client().execute_command("CLUSTER", "SETSLOT", slot, "NODE", source_id)
    await store.aclose()


async def test_cluster_with_an_uncovered_slot(cluster: Cluster, log_stream: Any) -> None:
    """Slots served by no node: logged, their keys fail fast, others work, readiness fails."""
    from launchready_sdk.logs import configure_logging

    configure_logging(Settings(), stream=log_stream)
    lost = "lost-key"
    owner = cluster.node_for(lost)
    slot = int(owner.client().cluster("keyslot", lost))
    for node in cluster.nodes:
        node.client().execute_command("CLUSTER", "DELSLOTS", slot) if node is owner else None
    store = RedisStore(cluster.url(), timeout_s=0.5, prefix="t")
    started = time.perf_counter()
    with pytest.raises(StoreUnavailable):
        await store.execute("GET", lost)
    assert time.perf_counter() - started < 2.0
    other = next(k for k in (f"k{i}" for i in range(100)) if key_slot(k.encode()) != slot)
    await store.execute("SET", other, "1")
    with pytest.raises(StoreUnavailable):
        await store.ping()
    assert "store.cluster_incomplete" in [r["event"] for r in log_stream.records()]
    await store.aclose()


@pytest.fixture
def paused_redis(tmp_path: Path) -> Iterator[RedisProcess]:
    """A private redis-server the test pauses."""
    server = RedisProcess(tmp_path, "paused", []).start()
    yield server
    server.stop()


async def test_a_200ms_pause_under_load_keeps_protection_and_the_breaker_closed(
    paused_redis: RedisProcess, log_stream: Any
) -> None:
    """Redis SIGSTOPped for 200 ms while requests flow: no 5xx, a client over its budget stays
    refused, a checkout retried during the pause makes one order, the breaker stays closed."""
    lr, app = build(settings(f"redis://127.0.0.1:{paused_redis.port}/0"), log_stream=log_stream)
    assert lr.redis is not None
    attacker = "203.0.113.66"
    assert (await login_budget(app, ip=attacker)).count(200) == 20  # now over budget
    statuses: list[int] = []
    attacker_statuses: list[int] = []
    orders: list[str] = []
    stop = asyncio.Event()

    async def shopper(n: int) -> None:
        async with client(app, f"192.0.2.{n}") as c:
            while not stop.is_set():
                statuses.append((await c.get("/products")).status_code)
                await asyncio.sleep(0.002)

    async def attack() -> None:
        async with client(app, attacker) as c:
            while not stop.is_set():
                attacker_statuses.append((await c.post("/login")).status_code)
                await asyncio.sleep(0.002)

    async def checkout() -> None:
        async with client(app, "192.0.2.200") as c:
            while not stop.is_set():
                r = await c.post("/checkout", json={"cart": 9}, headers={"idempotency-key": "k9"})
                statuses.append(r.status_code)
                if r.status_code == 201:
                    orders.append(r.json()["order"])
                await asyncio.sleep(0.01)

    tasks = [asyncio.create_task(shopper(n)) for n in range(3)]
    tasks += [asyncio.create_task(attack()), asyncio.create_task(checkout())]
    await asyncio.sleep(0.3)
    paused_redis.pause()
    try:
        await asyncio.sleep(0.2)
    finally:
        paused_redis.cont()
    await asyncio.sleep(0.3)
    stop.set()
    await asyncio.gather(*tasks)
    assert not [s for s in statuses + attacker_statuses if s >= 500]
    assert attacker_statuses
    assert set(attacker_statuses) == {429}
    assert len(set(orders)) == 1
    assert lr.redis.breaker.opened == 0
    assert "store.unavailable" not in [r["event"] for r in log_stream.records()]
    await lr.shutdown()


def _login_statuses(urls: list[str], n: int) -> list[int]:
    """`n` POST /login spread over the instances, 8 at a time, each on a new connection."""
    from concurrent.futures import ThreadPoolExecutor

    def one(i: int) -> int:
        with httpx.Client(base_url=urls[i % len(urls)], timeout=10) as c:
            return c.post("/login").status_code

    with ThreadPoolExecutor(8) as pool:
        return list(pool.map(one, range(n)))


@pytest.mark.parametrize("topology", ["standalone", "sentinel", "cluster"])
def test_two_instances_of_four_workers_share_one_budget_exactly(
    topology: str, tmp_path: Path
) -> None:
    """Two uvicorn instances with four workers each, on one Redis (a server, a Sentinel
    master, a cluster): 90 logins from one client get exactly the 40 of its budget."""
    from tests.test_metrics_endpoint import uvicorn_workers

    fleet: Any
    if topology == "standalone":
        fleet = RedisProcess(tmp_path, "standalone", []).start()
        url = f"redis://127.0.0.1:{fleet.port}/0"
    elif topology == "sentinel":
        fleet = SentinelSet(tmp_path).start()
        url = fleet.url()
    else:
        fleet = Cluster(tmp_path).start()
        url = fleet.url()
    env = {
        "LAUNCHREADY_REDIS_URL": url,
        "LAUNCHREADY_RATE_LIMITS": "POST /login=40/hour",  # no refill during the test
        "LAUNCHREADY_ACCESS_LOG": "false",
        "LAUNCHREADY_LOG_LEVEL": "WARNING",
        "LAUNCHREADY_REDIS_TIMEOUT_S": "0.5",
    }
    servers = [uvicorn_workers(tmp_path, 4, env, name=f"i{n}") for n in range(2)]
    try:
        for server in servers:
            server.wait_ready()
        statuses = _login_statuses([s.url for s in servers], 90)
        assert statuses.count(200) == 40
        assert statuses.count(429) == 50
        for server in servers:
            assert "store.unavailable" not in server.log_path.read_text()
    finally:
        for server in servers:
            server.stop()
        fleet.stop()


class FakeResp3Server:
    """A server that speaks RESP3 only. No such Redis can run here (every Redis answers
    RESP2 until a client sends HELLO 3), so this stands in for a proxy or service that
    insists: it refuses every command with NOPROTO, or answers in RESP3 types only."""

    def __init__(self, mode: str) -> None:
        self.mode = mode
        self.server: asyncio.AbstractServer | None = None
        self.port = 0
        self.writers: list[asyncio.StreamWriter] = []

    async def start(self) -> FakeResp3Server:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]
        return self

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        import hiredis

        parser = hiredis.Reader()
        self.writers.append(writer)
        while data := await reader.read(65536):
            parser.feed(data)
            while (command := parser.gets()) is not False:
                name = command[0].upper()
                if self.mode == "noproto":
                    writer.write(b"-NOPROTO this server speaks RESP3 only: send HELLO 3\r\n")
                elif self.mode == "noscript":  # a script lost again right after loading it
                    reply = b"$40\r\n" + b"0" * 40 + b"\r\n" if name == b"SCRIPT" else None
                    writer.write(reply or b"-NOSCRIPT No matching script.\r\n")
                elif name == b"PING":
                    writer.write(b"+PONG\r\n")
                else:  # a map, a boolean and a null where RESP2 replies would be arrays
                    writer.write(b"%1\r\n+allowed\r\n#t\r\n")
            await writer.drain()
        writer.close()

    async def stop(self) -> None:
        for writer in self.writers:
            writer.close()
        if self.server is not None:
            self.server.close()
            await self.server.wait_closed()
        await asyncio.sleep(0.01)  # let the handlers see their connections closed


@pytest.mark.parametrize("mode", ["noproto", "resp3-types"])
async def test_a_resp3_only_server_is_an_outage_not_a_500(mode: str, log_stream: Any) -> None:
    """Against a server speaking RESP3 only, requests get no 5xx and never hang: limits fall
    back to memory, /readyz reports it (noproto), and the breaker's warning says why."""
    fake = await FakeResp3Server(mode).start()
    try:
        lr, app = build(
            settings(f"redis://127.0.0.1:{fake.port}/0", idempotency_fail="proceed"),
            log_stream=log_stream,
        )
        started = time.perf_counter()
        async with client(app) as c:
            statuses = []
            while time.perf_counter() - started < 1.0:
                statuses.append((await c.post("/login")).status_code)
                statuses.append((await c.get("/products")).status_code)
                r = await c.post("/checkout", json={}, headers={"idempotency-key": "a"})
                statuses.append(r.status_code)
            ready = await c.get("/readyz")
        assert not [s for s in statuses if s >= 500]
        if mode == "noproto":
            assert ready.status_code == 503
            warnings = [r for r in log_stream.records() if r["event"] == "store.unavailable"]
            assert warnings
            assert "NOPROTO" in warnings[0]["detail"]
        await lr.shutdown()
    finally:
        await fake.stop()


async def test_a_script_lost_again_after_loading_is_an_outage() -> None:
    """EVALSHA answered NOSCRIPT even after SCRIPT LOAD (the connection moved to another
    server in between, as in a failover): StoreUnavailable, never a raw reply error. (A fake
    server: no real Redis loses a script between two commands on demand.)"""
    from launchready_sdk.ratelimit._backends import GCRA

    fake = await FakeResp3Server("noscript").start()
    store = RedisStore(f"redis://127.0.0.1:{fake.port}/0", prefix="t")
    try:
        with pytest.raises(StoreUnavailable):
            await store.run_script(GCRA, ["t:k"], [1, 1])
        with pytest.raises(StoreUnavailable):
            await store.run_prepared(GCRA.prepare(["t:k"], [1, 1]))
    finally:
        await store.aclose()
        await fake.stop()
