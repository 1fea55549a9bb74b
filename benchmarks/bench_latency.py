"""Cost of per-route latency recording, /metrics and OpenTelemetry, against peers, in one run.

Part 1 (in-process): ns per histogram record and per `LatencyTracker.observe` (what the
request-context layer calls after each response); percentile agreement of the log-linear
histogram with exact nearest-rank percentiles of the raw samples.
Part 2 (servers): uvicorn (uvloop, httptools, one worker) pinned to core 0 and `wrk` pinned to
core 1, rounds interleaved across configurations, medians reported, plus server CPU µs per
request read from /proc. Configurations of `GET /products/{id}` on one FastAPI app:

    bare           the app alone
    sdk_off        LaunchReady(...).wrap(app) with only latency on (no rate-limit rules, no
                   access log, no tracing), its recording switched off: the stack it rides on
    sdk_latency    the same with latency recorded, and /metrics served (not scraped)
    instrumentator prometheus-fastapi-instrumentator: instrument(app).expose(app)
    otel           setup_telemetry(...).wrap(app) with a span exporter that drops spans

The latency figure is `sdk_latency` against `sdk_off`; the peers' against `bare`.

    python benchmarks/bench_latency.py --rounds 5 --duration 5

Served as `benchmarks.bench_latency:app` with `BENCH_CONFIG` set.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import statistics
import subprocess
import sys
import timeit
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.harness import measure  # noqa: E402

CONFIGS = ("bare", "sdk_off", "sdk_latency", "instrumentator", "otel")
PATH = "/products/42"


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
    if config in ("sdk_off", "sdk_latency"):
        from launchready_sdk import LaunchReady, Settings

        lr = LaunchReady(
            Settings(service_name="bench", rate_limits={}, access_log=False, otel_exporter="none")
        )
        if config == "sdk_off":
            lr.latency.observe = lambda *args: None  # type: ignore[method-assign]
        return lr.wrap(api)
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
    per_tracker = (
        min(
            timeit.repeat(
                lambda: tracker.observe("GET", "/products/{id}", 200, 0.0123),
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
        f"| tracker observe (route lookup + rolling window) | {per_tracker:.0f} ns |",
        f"| worst p50/p95/p99/p99.9 error vs exact (3 log-normal sets, 100k each) | "
        f"{worst * 100:.2f} % |",
    ]


# --- part 2 -----------------------------------------------------------------------------------


def run_round(config: str, args: argparse.Namespace) -> tuple[float, float]:
    r = measure(
        "benchmarks.bench_latency:app",
        config,
        PATH,
        duration=args.duration,
        connections=args.connections,
    )
    return r["rps"], r["cpu_us"]


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
    ours, peer = med["sdk_latency"][1] - med["sdk_off"][1], med["instrumentator"][1] - b_cpu
    lines += ["", f"latency recording: {ours:+.1f} CPU µs/req (sdk_latency against sdk_off)"]
    if peer > 0:
        lines.append(f"latency recording cost / instrumentator cost (CPU): {ours / peer:.2f}")
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
    ours, peer = med["sdk_latency"] - med["sdk_off"], med["instrumentator"] - med["bare"]
    lines += ["", f"in-process: latency recording {ours:+.2f} µs/req (sdk_latency against sdk_off)"]
    if peer > 0:
        lines.append(f"in-process: latency recording cost / instrumentator cost: {ours / peer:.2f}")
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
