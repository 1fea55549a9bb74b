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
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
SUITES = {
    "foundation": (("GET", "/products"), ("bare", "peers_reqid_log", "sdk")),
    "ratelimit": (
        ("POST", "/login"),
        ("bare", "slowapi", "slowapi_asgi", "sdk_limit_memory", "sdk_limit_redis"),
    ),
}
CLK_TCK = os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def start_server(config: str, port: int) -> subprocess.Popen[bytes]:
    env = {**os.environ, "BENCH_CONFIG": config, "PYTHONPATH": str(ROOT)}
    command = [
        "taskset", "-c", "0", sys.executable, "-m", "uvicorn", "benchmarks.apps:app",
        "--host", "127.0.0.1", "--port", str(port), "--no-access-log", "--no-proxy-headers",
        "--log-level", "warning", "--loop", "uvloop", "--http", "httptools",
    ]  # fmt: skip
    proc = subprocess.Popen(
        command, env=env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return proc
        except OSError:
            time.sleep(0.05)
    proc.kill()
    raise RuntimeError(f"{config}: server did not start")


def wrk(url: str, method: str, seconds: float, connections: int) -> tuple[float, int, float]:
    """(requests/s, requests, p99 ms) from one wrk run pinned to core 1."""
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as script:
        script.write(
            f'wrk.method = "{method}"\n'
            'wrk.body = "{}"\n'
            'wrk.headers["Content-Type"] = "application/json"\n'
        )
    command = [
        "taskset", "-c", "1", "wrk", "-t1", f"-c{connections}", f"-d{int(seconds)}s", "--latency",
        "-s", script.name, url,
    ]  # fmt: skip
    out = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    os.unlink(script.name)
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    total = int(re.search(r"(\d+) requests in", out).group(1))  # type: ignore[union-attr]
    p99 = re.search(r"99%\s+([\d.]+)(us|ms|s)", out)
    scale = {"us": 0.001, "ms": 1.0, "s": 1000.0}
    p99_ms = float(p99.group(1)) * scale[p99.group(2)] if p99 else float("nan")
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    if non_2xx:
        raise RuntimeError(f"{url}: {non_2xx.group(1)} non-2xx responses")
    return rps, total, p99_ms


def run_round(config: str, method: str, path: str, args: argparse.Namespace) -> dict[str, float]:
    port = free_port()
    proc = start_server(config, port)
    try:
        url = f"http://127.0.0.1:{port}{path}"
        wrk(url, method, 1, args.connections)  # warm-up
        cpu_before = cpu_seconds(proc.pid)
        rps, total, p99 = wrk(url, method, args.duration, args.connections)
        cpu_us = (cpu_seconds(proc.pid) - cpu_before) / total * 1e6
    finally:
        proc.terminate()
        proc.wait()
    return {"rps": rps, "cpu_us": cpu_us, "p99_ms": p99}


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
