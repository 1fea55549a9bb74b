"""Per-request cost of a Redis-backed rate-limit check on each topology, in one run.

    python benchmarks/bench_topology.py [--rounds 5] [--requests 20000] [--concurrency 32]

Starts a private standalone redis-server, a master + replica + sentinel, and a three-node
cluster (`redis-cli --cluster create`), then, in interleaved rounds, pushes the same limited
request through `RateLimitMiddleware` in process (no HTTP server: the figure is the SDK's own
work plus its Redis I/O) with `--concurrency` requests in flight, each request from one of 500
client addresses (so cluster keys spread over the three nodes). Reports the median CPU µs and
wall µs per request of this process. A last row times the same script call through redis-py's
cluster client (`redis.asyncio.RedisCluster`), the alternative to the SDK's own routing.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.redisfleet import Cluster, RedisProcess, SentinelSet  # noqa: E402

HUGE_RATE = "100000000/minute"


async def _ok(scope: Any, receive: Any, send: Any) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"ok"})


async def sdk_round(url: str, requests: int, concurrency: int) -> tuple[float, float]:
    from launchready_sdk.ratelimit import RateLimiter, RateLimitMiddleware
    from launchready_sdk.store import RedisStore

    store = RedisStore(url, prefix=f"bench-{uuid.uuid4().hex[:6]}")
    limiter = RateLimiter({"/login": HUGE_RATE}, store=store)
    app = RateLimitMiddleware(_ok, limiter=limiter)

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: Any) -> None:
        return None

    def scope(n: int) -> dict[str, Any]:
        return {"type": "http", "method": "POST", "path": "/login", "raw_path": b"/login",
                "root_path": "", "query_string": b"", "headers": [],
                "client": (f"10.0.{n % 500 // 250}.{n % 250}", 5000)}  # fmt: skip

    async def worker(start: int, count: int) -> None:
        for i in range(count):
            await app(scope(start + i), receive, send)

    per = requests // concurrency
    await asyncio.gather(*(worker(k * per, 200) for k in range(concurrency)))  # warm-up
    cpu, wall = time.process_time(), time.perf_counter()
    await asyncio.gather(*(worker(k * per, per) for k in range(concurrency)))
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    assert store.breaker.opened == 0, "the breaker opened during the run"
    await store.aclose()
    n = per * concurrency
    return cpu / n * 1e6, wall / n * 1e6


async def redispy_cluster_round(port: int, requests: int, concurrency: int) -> tuple[float, float]:
    from redis.asyncio.cluster import RedisCluster

    from launchready_sdk.ratelimit._backends import GCRA_SCRIPT

    client = RedisCluster(host="127.0.0.1", port=port)
    script = client.register_script(GCRA_SCRIPT)
    prefix = uuid.uuid4().hex[:6]

    async def worker(start: int, count: int) -> None:
        for i in range(count):
            key = f"bench:{prefix}:rl:{{10.0.0.{(start + i) % 500}}}:0"
            await script(keys=[key], args=[60_000_000, 1])

    per = requests // concurrency
    await asyncio.gather(*(worker(k * per, 100) for k in range(concurrency)))
    cpu, wall = time.process_time(), time.perf_counter()
    await asyncio.gather(*(worker(k * per, per) for k in range(concurrency)))
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    await client.aclose()
    n = per * concurrency
    return cpu / n * 1e6, wall / n * 1e6


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--requests", type=int, default=20000)
    parser.add_argument("--concurrency", type=int, default=32)
    args = parser.parse_args()
    import uvloop

    tmp = Path(tempfile.mkdtemp(prefix="lr-topology-"))
    standalone = RedisProcess(tmp, "standalone", []).start()
    sentinels = SentinelSet(tmp / "sentinel").start()
    cluster = Cluster(tmp / "cluster").start()
    urls = {
        "standalone": f"redis://127.0.0.1:{standalone.port}/0",
        "sentinel": sentinels.url(),
        "cluster": cluster.url(),
    }
    results: dict[str, list[tuple[float, float]]] = {name: [] for name in [*urls, "redis-py"]}
    try:
        names = list(results)
        for round_no in range(args.rounds):
            order = names[round_no % len(names) :] + names[: round_no % len(names)]
            for name in order:
                if name == "redis-py":
                    coro = redispy_cluster_round(
                        cluster.nodes[0].port, args.requests // 4, args.concurrency
                    )
                else:
                    coro = sdk_round(urls[name], args.requests, args.concurrency)
                cpu, wall = uvloop.run(coro)
                results[name].append((cpu, wall))
                print(f"  round {round_no + 1} {name}: {cpu:.1f} CPU µs, {wall:.1f} µs",
                      file=sys.stderr)  # fmt: skip
    finally:
        standalone.stop()
        sentinels.stop()
        cluster.stop()
    base = statistics.median(c for c, _ in results["standalone"])
    print(
        f"| topology | CPU µs/request (median of {args.rounds}) | vs standalone | wall µs/request |"
    )
    print("|---|---:|---:|---:|")
    labels = {
        "standalone": "standalone `redis://` (SDK client)",
        "sentinel": "Sentinel master `redis+sentinel://` (SDK client)",
        "cluster": "three-node `redis+cluster://` (SDK routing)",
        "redis-py": "same cluster, the script through redis-py's `RedisCluster` (no HTTP layer)",
    }
    for name, values in results.items():
        cpu = statistics.median(c for c, _ in values)
        wall = statistics.median(w for _, w in values)
        print(f"| {labels[name]} | {cpu:.1f} | {cpu / base:.2f}x | {wall:.1f} |")
    print(f"\ncommand: python benchmarks/bench_topology.py --rounds {args.rounds} "
          f"--requests {args.requests} --concurrency {args.concurrency}")  # fmt: skip


if __name__ == "__main__":
    main()
