"""Read-cache throughput: our HITs (memory, Redis) against fastapi-cache2 and cashews.

Each configuration of `benchmarks/cache_apps.py` runs in uvicorn (uvloop, httptools, one
worker) pinned to core 0, with `wrk` pinned to core 1; rounds are interleaved across
configurations and medians reported, with the server's CPU µs per request from /proc. The
catalog handler does 5 ms of simulated DB work, so "uncached" is the bare app's /catalog;
the bare app's trivial /ping is the yardstick for the HIT ratios. Then 64 concurrent requests
hit a cold key (a 100 ms handler) and the handler calls are counted per configuration.

    python benchmarks/bench_cache.py --rounds 3 --duration 5

Prints markdown tables ready for benchmarks/RESULTS.md.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import subprocess
import sys
import uuid
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.harness import free_port, measure, start_uvicorn  # noqa: E402

# (row label, config, path)
ROWS = (
    ("bare app, trivial /ping", "bare", "/ping"),
    ("uncached /catalog (5 ms DB)", "bare", "/catalog"),
    ("ours, HIT from memory", "ours_memory", "/catalog"),
    ("ours, HIT from Redis", "ours_redis", "/catalog"),
    ("fastapi-cache2 HIT (Redis)", "fastapi_cache2", "/catalog"),
    ("cashews HIT (Redis)", "cashews", "/catalog"),
)
COLD = ("bare", "ours_memory", "ours_redis", "fastapi_cache2", "cashews")


def _env() -> dict[str, str]:
    return {"BENCH_PREFIX": f"bench-cache-{uuid.uuid4().hex[:8]}"}


def start_server(config: str, port: int) -> subprocess.Popen[bytes]:
    return start_uvicorn(
        "benchmarks.cache_apps:app", port, {"BENCH_CONFIG": config, **_env()}, "/ping"
    )


def run_round(config: str, path: str, args: argparse.Namespace) -> dict[str, float]:
    return measure(
        "benchmarks.cache_apps:app",
        config,
        path,
        duration=args.duration,
        connections=args.connections,
        env=_env(),
        ready_path="/ping",
    )


async def _cold(port: int, n: int) -> int:
    base = f"http://127.0.0.1:{port}"
    limits = httpx.Limits(max_connections=n)
    async with httpx.AsyncClient(base_url=base, limits=limits, timeout=30) as client:
        before = (await client.get("/calls")).json()["calls"]
        responses = await asyncio.gather(*(client.get("/cold/7") for _ in range(n)))
        if any(r.status_code != 200 for r in responses):
            raise RuntimeError("cold burst had non-200 responses")
        return int((await client.get("/calls")).json()["calls"]) - int(before)


def cold_calls(config: str, n: int) -> int:
    port = free_port()
    proc = start_server(config, port)
    try:
        return asyncio.run(_cold(port, n))
    finally:
        proc.terminate()
        proc.wait()


def report(results: dict[str, dict[str, list[float]]], cold: dict[str, list[int]]) -> str:
    ping = statistics.median(results[ROWS[0][0]]["rps"])
    fc2 = statistics.median(results[ROWS[4][0]]["rps"])
    lines = [
        "| configuration | req/s median (min-max) | vs bare trivial route | vs fastapi-cache2 HIT "
        "| server CPU µs/req |",
        "|---|---|---|---|---|",
    ]
    for label, _, _ in ROWS:
        r = results[label]
        rps = statistics.median(r["rps"])
        lines.append(
            f"| {label} | {rps:.0f} ({min(r['rps']):.0f}-{max(r['rps']):.0f}) n={len(r['rps'])} "
            f"| {rps / ping:.2f}x | {rps / fc2:.2f}x | {statistics.median(r['cpu_us']):.0f} |"
        )
    lines += ["", "| 64 concurrent cold requests (100 ms handler) | handler calls per run |"]
    lines.append("|---|---|")
    for config in COLD:
        lines.append(f"| {config} | {', '.join(str(c) for c in cold[config])} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--duration", type=float, default=5)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--cold-rounds", type=int, default=2)
    args = parser.parse_args()
    print(f"command: python benchmarks/bench_cache.py {' '.join(sys.argv[1:])}".rstrip())
    results: dict[str, dict[str, list[float]]] = {
        label: {"rps": [], "cpu_us": []} for label, _, _ in ROWS
    }
    for round_no in range(args.rounds):
        shift = round_no % len(ROWS)
        for label, config, path in ROWS[shift:] + ROWS[:shift]:
            r = run_round(config, path, args)
            results[label]["rps"].append(r["rps"])
            results[label]["cpu_us"].append(r["cpu_us"])
            print(f"  round {round_no + 1} {label}: {r['rps']:.0f} req/s", file=sys.stderr)
    cold: dict[str, list[int]] = {config: [] for config in COLD}
    for _ in range(args.cold_rounds):
        for config in COLD:
            cold[config].append(cold_calls(config, 64))
    print()
    print(report(results, cold))


if __name__ == "__main__":
    main()
