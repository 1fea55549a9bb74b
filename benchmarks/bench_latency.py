"""Cost of per-route latency recording, /metrics and OpenTelemetry, against peers, in one run.

Part 1 (in-process): ns per histogram record and per tracker record; percentile agreement of
the log-linear histogram with exact nearest-rank percentiles of the raw samples.
Part 2 (servers): uvicorn (uvloop, httptools, one worker) pinned to core 0 and `wrk` pinned to
core 1, rounds interleaved across configurations, medians reported, plus server CPU µs per
request read from /proc. Configurations of `GET /products/{id}` on one FastAPI app:

    bare           the app alone
    latency        LatencyMiddleware serving /metrics (served, not scraped during the run)
    instrumentator prometheus-fastapi-instrumentator: instrument(app).expose(app)
    otel           setup_telemetry(...).wrap(app) with a span exporter that drops spans

    python benchmarks/bench_latency.py --rounds 5 --duration 5

Served as `benchmarks.bench_latency:app` with `BENCH_CONFIG` set.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import re
import socket
import statistics
import subprocess
import sys
import time
import timeit
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
CONFIGS = ("bare", "latency", "instrumentator", "otel")
PATH = "/products/42"
CLK_TCK = os.sysconf("SC_CLK_TCK")


def build_api() -> Any:
    from fastapi import FastAPI

    api = FastAPI()

    @api.get("/products/{product_id}")
    async def product(product_id: int) -> dict[str, Any]:
        return {"id": product_id, "name": "mug", "price_cents": 1200}

    return api


def build(config: str) -> Any:
    api = build_api()
    if config == "bare":
        return api
    if config == "latency":
        from launchready_sdk.latency import LatencyMiddleware, LatencyTracker

        tracker = LatencyTracker()
        return LatencyMiddleware(api, tracker=tracker, metrics_path="/metrics")
    if config == "instrumentator":
        from prometheus_fastapi_instrumentator import Instrumentator

        Instrumentator().instrument(api).expose(api)
        return api
    if config == "otel":
        from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

        from launchready_sdk.telemetry import setup_telemetry

        class Drop(SpanExporter):
            def export(self, spans: Any) -> SpanExportResult:
                return SpanExportResult.SUCCESS

        telemetry = setup_telemetry("none", "bench", span_exporter=Drop(), set_global=False)
        assert telemetry is not None
        return telemetry.wrap(api)
    raise SystemExit(f"unknown BENCH_CONFIG {config!r}")


if __name__ != "__main__":
    app = build(os.environ.get("BENCH_CONFIG", "bare"))


# --- part 1 -----------------------------------------------------------------------------------


def in_process() -> list[str]:
    from launchready_sdk.latency import LatencyTracker, LogLinearHistogram

    h = LogLinearHistogram()
    tracker = LatencyTracker()
    n = 200_000
    per_hist = min(timeit.repeat(lambda: h.record(0.0123), number=n, repeat=5)) / n * 1e9
    now = time.perf_counter()
    per_tracker = (
        min(
            timeit.repeat(
                lambda: tracker.record("GET", "/products/{id}", 200, 0.0123, now),
                number=n,
                repeat=5,
            )
        )
        / n
        * 1e9
    )
    rng = random.Random(11)
    worst = 0.0
    for sigma in (0.3, 1.0, 2.0):
        values = [rng.lognormvariate(math.log(0.02), sigma) for _ in range(100_000)]
        hist = LogLinearHistogram()
        for v in values:
            hist.record(v)
        ordered = sorted(values)
        for q in (0.5, 0.95, 0.99, 0.999):
            exact = ordered[max(1, math.ceil(q * len(ordered))) - 1]
            got = hist.quantile(q)
            assert got is not None
            worst = max(worst, abs(got - exact) / exact)
    return [
        "| figure | value |",
        "|---|---|",
        f"| histogram record | {per_hist:.0f} ns |",
        f"| tracker record (route lookup + rolling window) | {per_tracker:.0f} ns |",
        f"| worst p50/p95/p99/p99.9 error vs exact (3 log-normal sets, 100k each) | "
        f"{worst * 100:.2f} % |",
    ]


# --- part 2 -----------------------------------------------------------------------------------


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
        "taskset", "-c", "0", sys.executable, "-m", "uvicorn", "benchmarks.bench_latency:app",
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


def wrk(url: str, seconds: float, connections: int) -> tuple[float, int]:
    command = [
        "taskset", "-c", "1", "wrk", "-t1", f"-c{connections}", f"-d{int(seconds)}s", url,
    ]  # fmt: skip
    out = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    if "Non-2xx" in out:
        raise RuntimeError(f"{url}: non-2xx responses")
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    total = int(re.search(r"(\d+) requests in", out).group(1))  # type: ignore[union-attr]
    return rps, total


def run_round(config: str, args: argparse.Namespace) -> tuple[float, float]:
    port = free_port()
    proc = start_server(config, port)
    try:
        url = f"http://127.0.0.1:{port}{PATH}"
        wrk(url, 1, args.connections)
        before = cpu_seconds(proc.pid)
        rps, total = wrk(url, args.duration, args.connections)
        cpu_us = (cpu_seconds(proc.pid) - before) / total * 1e6
    finally:
        proc.terminate()
        proc.wait()
    return rps, cpu_us


def servers(args: argparse.Namespace) -> list[str]:
    results: dict[str, dict[str, list[float]]] = {c: {"rps": [], "cpu": []} for c in CONFIGS}
    for round_no in range(args.rounds):
        order = CONFIGS[round_no % len(CONFIGS) :] + CONFIGS[: round_no % len(CONFIGS)]
        for config in order:
            rps, cpu = run_round(config, args)
            results[config]["rps"].append(rps)
            results[config]["cpu"].append(cpu)
            print(
                f"  round {round_no + 1} {config}: {rps:.0f} req/s, {cpu:.0f} µs", file=sys.stderr
            )
    med = {
        c: (statistics.median(r["rps"]), statistics.median(r["cpu"])) for c, r in results.items()
    }
    b_rps, b_cpu = med["bare"]
    lines = [
        f"GET {PATH}, {args.rounds} rounds of {args.duration:.0f} s, "
        f"{args.connections} connections",
        "",
        "| configuration | req/s median (min-max) | % of bare req/s | server CPU µs/req "
        "| Δ CPU µs/req vs bare |",
        "|---|---|---|---|---|",
    ]
    for config, r in results.items():
        rps, cpu = med[config]
        lines.append(
            f"| {config} | {rps:.0f} ({min(r['rps']):.0f}-{max(r['rps']):.0f}) "
            f"| {rps / b_rps * 100:.1f} % | {cpu:.0f} | {cpu - b_cpu:+.1f} |"
        )
    ours, peer = med["latency"][1] - b_cpu, med["instrumentator"][1] - b_cpu
    if peer > 0:
        lines += ["", f"latency middleware cost / instrumentator cost: {ours / peer:.2f}"]
    return lines


INPROC = """
import asyncio, json, os, statistics, sys, time
sys.path.insert(0, {root!r})
os.environ["BENCH_CONFIG"] = "bare"
from benchmarks.bench_latency import build
apps = {{c: build(c) for c in {configs!r}}}
scope = {{"type": "http", "asgi": {{"version": "3.0"}}, "http_version": "1.1", "method": "GET",
          "scheme": "http", "path": {path!r}, "raw_path": {path!r}.encode(), "query_string": b"",
          "root_path": "", "client": ("127.0.0.1", 50000), "server": ("127.0.0.1", 8000),
          "headers": [(b"host", b"127.0.0.1")]}}
async def receive():
    return {{"type": "http.request", "body": b"", "more_body": False}}
async def send(message):
    pass
async def block(app, n):
    start = time.perf_counter()
    for _ in range(n):
        await app(dict(scope), receive, send)
    return (time.perf_counter() - start) / n * 1e6
async def main():
    for app in apps.values():
        await block(app, 300)
    runs = {{c: [] for c in apps}}
    for _ in range({blocks}):
        for c, app in apps.items():
            runs[c].append(await block(app, 300))
    print(json.dumps({{c: statistics.median(v) for c, v in runs.items()}}), file=sys.stderr)
asyncio.run(main())
"""


def inproc_table(blocks: int) -> list[str]:
    """µs per request of each ASGI stack alone: one process on core 0, blocks interleaved."""
    code = INPROC.format(root=str(ROOT), configs=CONFIGS, path=PATH, blocks=blocks)
    command = ["taskset", "-c", "0", sys.executable, "-c", code]
    out = subprocess.run(
        command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, check=True
    )
    med: dict[str, float] = json.loads(out.stderr.strip().splitlines()[-1])
    lines = [
        "| configuration (in-process, no sockets) | µs/req | Δ µs/req vs bare | % of bare req/s |",
        "|---|---|---|---|",
    ]
    for config in CONFIGS:
        lines.append(
            f"| {config} | {med[config]:.1f} | {med[config] - med['bare']:+.1f} "
            f"| {med['bare'] / med[config] * 100:.1f} % |"
        )
    ours, peer = med["latency"] - med["bare"], med["instrumentator"] - med["bare"]
    if peer > 0:
        lines += [
            "",
            f"in-process: latency middleware cost / instrumentator cost: {ours / peer:.2f}",
        ]
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--duration", type=float, default=5)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--skip-servers", action="store_true")
    args = parser.parse_args()
    print(f"command: python benchmarks/bench_latency.py {' '.join(sys.argv[1:])}".rstrip())
    print()
    print("\n".join(in_process()))
    print()
    print("\n".join(inproc_table(args.rounds * 6)))
    if not args.skip_servers:
        print()
        print("\n".join(servers(args)))


if __name__ == "__main__":
    main()
