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
import os
import re
import socket
import statistics
import subprocess
import sys
import time
import uuid
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
CLK_TCK = os.sysconf("SC_CLK_TCK")
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


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def start_server(config: str, port: int) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "BENCH_CONFIG": config,
        "BENCH_PREFIX": f"bench-cache-{uuid.uuid4().hex[:8]}",
        "PYTHONPATH": str(ROOT),
    }
    command = [
        "taskset", "-c", "0", sys.executable, "-m", "uvicorn", "benchmarks.cache_apps:app",
        "--host", "127.0.0.1", "--port", str(port), "--no-access-log", "--no-proxy-headers",
        "--log-level", "warning", "--loop", "uvloop", "--http", "httptools",
    ]  # fmt: skip
    proc = subprocess.Popen(command, env=env, cwd=ROOT, stdout=subprocess.DEVNULL)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/ping", timeout=0.5).status_code == 200:
                return proc
        except httpx.HTTPError:
            time.sleep(0.05)
    proc.kill()
    raise RuntimeError(f"{config}: server did not start")


def wrk(url: str, seconds: float, connections: int) -> tuple[float, int]:
    """(requests/s, requests) from one wrk run pinned to core 1."""
    command = ["taskset", "-c", "1", "wrk", "-t1", f"-c{connections}", f"-d{int(seconds)}s", url]
    out = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    if "Non-2xx" in out:
        raise RuntimeError(f"{url}: non-2xx responses\n{out}")
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    total = int(re.search(r"(\d+) requests in", out).group(1))  # type: ignore[union-attr]
    return rps, total


def run_round(config: str, path: str, args: argparse.Namespace) -> dict[str, float]:
    port = free_port()
    proc = start_server(config, port)
    try:
        url = f"http://127.0.0.1:{port}{path}"
        wrk(url, 1, args.connections)  # warm-up (fills the cache)
        before = cpu_seconds(proc.pid)
        rps, total = wrk(url, args.duration, args.connections)
        cpu_us = (cpu_seconds(proc.pid) - before) / total * 1e6
    finally:
        proc.terminate()
        proc.wait()
    return {"rps": rps, "cpu_us": cpu_us}


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
