"""Per-request overhead of the SDK against the bare app and against peer libraries.

For each configuration of `benchmarks/apps.py`: uvicorn (uvloop, httptools, one worker) pinned
to core 0, `wrk` pinned to core 1, rounds interleaved across configurations, medians reported.
Besides requests/s it reads the server's CPU time from /proc, so "CPU µs per request" is a
figure that load on the other core disturbs far less than throughput. An in-process driver
(no sockets) measures µs per request of the ASGI stack alone.

    python benchmarks/bench_overhead.py --suite foundation
    python benchmarks/bench_overhead.py --suite ratelimit --rounds 5 --duration 5

Prints markdown tables ready for benchmarks/RESULTS.md.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.harness import measure  # noqa: E402

SUITES = {
    "foundation": (("GET", "/products"), ("bare", "peers_reqid_log", "sdk_no_latency", "sdk")),
    "ratelimit": (
        ("POST", "/login"),
        ("bare", "slowapi", "slowapi_asgi", "sdk_limit_memory", "sdk_limit_redis"),
    ),
}


def run_round(config: str, method: str, path: str, args: argparse.Namespace) -> dict[str, float]:
    return measure(
        "benchmarks.apps:app",
        config,
        path,
        duration=args.duration,
        connections=args.connections,
        method=method,
    )


INPROC = """
import asyncio, os, statistics, sys, time
sys.path.insert(0, {root!r})
os.environ["BENCH_CONFIG"] = {config!r}
from benchmarks.apps import app
scope = {{"type": "http", "asgi": {{"version": "3.0"}}, "http_version": "1.1",
          "method": {method!r}, "scheme": "http", "path": {path!r}, "raw_path": {path!r}.encode(),
          "query_string": b"", "root_path": "", "client": ("127.0.0.1", 50000),
          "server": ("127.0.0.1", 8000),
          "headers": [(b"host", b"127.0.0.1"), (b"content-type", b"application/json"),
                      (b"content-length", b"2")]}}
async def receive():
    return {{"type": "http.request", "body": b"{{}}", "more_body": False}}
async def send(message):
    pass
async def main():
    for _ in range(500):
        await app(dict(scope), receive, send)
    blocks = []
    for _ in range({blocks}):
        start = time.perf_counter()
        for _ in range(500):
            await app(dict(scope), receive, send)
        blocks.append((time.perf_counter() - start) / 500 * 1e6)
    print(statistics.median(blocks), file=sys.stderr)
asyncio.run(main())
"""


def inproc(config: str, method: str, path: str, blocks: int) -> float:
    code = INPROC.format(root=str(ROOT), config=config, method=method, path=path, blocks=blocks)
    command = ["taskset", "-c", "0", sys.executable, "-c", code]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    out = subprocess.run(
        command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env, check=True
    )
    return float(out.stderr.strip().splitlines()[-1])


def report(suite: str, method: str, path: str, results: dict[str, Any]) -> str:
    bare = results["bare"]
    b_rps = statistics.median(bare["rps"])
    b_cpu = statistics.median(bare["cpu_us"])
    b_in = statistics.median(bare["inproc"])
    lines = [
        f"#### {suite}: {method} {path}",
        "",
        "| configuration | req/s median (min-max) | % of bare req/s | server CPU µs/req | "
        "Δ CPU µs/req vs bare | p99 ms | in-process µs/req | Δ in-process µs |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for config, r in results.items():
        rps = statistics.median(r["rps"])
        cpu = statistics.median(r["cpu_us"])
        ip = statistics.median(r["inproc"])
        lines.append(
            f"| {config} | {rps:.0f} ({min(r['rps']):.0f}-{max(r['rps']):.0f}) n={len(r['rps'])} "
            f"| {rps / b_rps * 100:.0f} % | {cpu:.0f} | {cpu - b_cpu:+.0f} "
            f"| {statistics.median(r['p99_ms']):.1f} | {ip:.0f} | {ip - b_in:+.0f} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--suite", choices=[*SUITES, "all"], default="all")
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--duration", type=float, default=5)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--inproc-blocks", type=int, default=9)
    args = parser.parse_args()
    suites = list(SUITES) if args.suite == "all" else [args.suite]
    print(f"command: python benchmarks/bench_overhead.py {' '.join(sys.argv[1:])}".rstrip())
    for suite in suites:
        (method, path), configs = SUITES[suite]
        results: dict[str, Any] = {
            c: {"rps": [], "cpu_us": [], "p99_ms": [], "inproc": []} for c in configs
        }
        for round_no in range(args.rounds):
            order = configs[round_no % len(configs) :] + configs[: round_no % len(configs)]
            for config in order:
                r = run_round(config, method, path, args)
                for key, value in r.items():
                    results[config][key].append(value)
                print(
                    f"  round {round_no + 1} {config}: {r['rps']:.0f} req/s, "
                    f"{r['cpu_us']:.0f} CPU µs/req",
                    file=sys.stderr,
                )
        for config in configs:
            for _ in range(3):
                results[config]["inproc"].append(inproc(config, method, path, args.inproc_blocks))
        print()
        print(report(suite, method, path, results))
        print()
    asyncio.run(asyncio.sleep(0))


if __name__ == "__main__":
    main()
