"""`/metrics` render cost at the route cap: prometheus_client's `generate_latest` over the
tracker's collector (as on main) against the SDK's own renderer, and a scrape served from the
reused text.

    python benchmarks/bench_metrics.py [--routes 500] [--rounds 5] [--main-src /tmp/lr-main]
    python benchmarks/bench_metrics.py --load [--main-src /tmp/lr-main]

The tracker is filled to `latency_max_routes` (500) route templates, each with GET and POST
and four status classes (2xx, 3xx, 4xx, 5xx), plus requests with odd methods and statuses;
every series has a few hundred requests spread over 1 ms to 2 s. `--main-src` points at an
export of main's package (`git archive main launchready_sdk | tar -x -C DIR`) to time the
code as it was, in the same run.

`--load` serves `benchmarks/metrics_load_app.py` (uvicorn, one worker, pinned to core 0) with
the tracker at the cap, and measures the latency of `GET /ping` (one client, one request at a
time) while four clients loop on `/metrics` as fast as they can, against the same with no
scraper; with `--main-src`, main's package serves it too, in alternating runs.
"""

from __future__ import annotations

import argparse
import importlib
import random
import statistics
import sys
import time
from typing import Any


def fill(latency: Any, routes: int) -> Any:
    tracker = latency.LatencyTracker(max_routes=routes)
    rnd = random.Random(7)
    for r in range(routes // 2):
        route = f"/api/v1/resource{r}/{{item_id}}"
        for method in ("GET", "POST"):
            for status in (200, 302, 404, 503):
                for _ in range(60):
                    tracker.observe(method, route, status, rnd.lognormvariate(-4, 1.2))
    for method, status in (("PURGE", 200), ("get", 999), ("BREW", 418), ("GET", 0)):
        for _ in range(50):
            tracker.observe(method, None, status, rnd.uniform(0.001, 0.05))
    return tracker


def timed(fn: Any, rounds: int) -> tuple[float, int]:
    times, size = [], 0
    for _ in range(rounds):
        started = time.perf_counter()
        body = fn()
        times.append(time.perf_counter() - started)
        size = len(body)
    return statistics.median(times) * 1000, size


def load_round(src: str, scrapers: int, seconds: float) -> tuple[float, float, int, float]:
    """p50 and p99 ms of GET /ping while `scrapers` clients loop on /metrics; scrapes done and
    their median ms."""
    import shutil
    import tempfile
    import threading
    from pathlib import Path

    import httpx

    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from benchmarks.harness import free_port, start_uvicorn, stop

    here = Path(__file__).resolve().parent
    app_dir = Path(tempfile.mkdtemp())
    shutil.copy(here / "metrics_load_app.py", app_dir / "metrics_load_app.py")
    port = free_port()
    env = {"PYTHONPATH": f"{src}:{app_dir}", "PYTHONSAFEPATH": "1"}
    proc = start_uvicorn("metrics_load_app:app", port, env, ready_path="/ping", cwd=app_dir)
    base = f"http://127.0.0.1:{port}"
    stop_at = time.monotonic() + seconds
    scrape_times: list[float] = []

    def scrape() -> None:  # as Prometheus does: gzip accepted (httpx's default)
        with httpx.Client(base_url=base, timeout=30) as c:
            while time.monotonic() < stop_at:
                started = time.perf_counter()
                c.get("/metrics")
                scrape_times.append(time.perf_counter() - started)

    try:
        threads = [threading.Thread(target=scrape) for _ in range(scrapers)]
        for t in threads:
            t.start()
        times = []
        with httpx.Client(base_url=base, timeout=30) as c:
            while time.monotonic() < stop_at:
                started = time.perf_counter()
                c.get("/ping")
                times.append(time.perf_counter() - started)
        for t in threads:
            t.join()
    finally:
        stop(proc)
        shutil.rmtree(app_dir, ignore_errors=True)
    times.sort()
    scrape_ms = statistics.median(scrape_times) * 1000 if scrape_times else 0.0
    p50, p99 = times[len(times) // 2] * 1000, times[int(len(times) * 0.99)] * 1000
    return p50, p99, len(scrape_times), scrape_ms


def run_load(args: argparse.Namespace) -> None:
    from pathlib import Path

    trees = {"this branch": str(Path(__file__).resolve().parent.parent)}
    if args.main_src:
        trees = {"main": args.main_src, **trees}
    print("| package | scrapers | GET /ping p50 ms | p99 ms | scrapes served | scrape median ms |")
    print("|---|---:|---:|---:|---:|---:|")
    rows = []
    for round_no in range(args.rounds):
        for name, src in trees.items():
            for scrapers in (0, 4):
                p50, p99, scrapes, scrape_ms = load_round(src, scrapers, args.seconds)
                rows.append((name, scrapers, p50, p99, scrapes, scrape_ms))
                print(f"  round {round_no + 1} {name} {scrapers}: p50 {p50:.1f} ms, "
                      f"p99 {p99:.1f} ms, {scrapes} scrapes", file=sys.stderr)  # fmt: skip
    for name in trees:
        for scrapers in (0, 4):
            mine = [r for r in rows if r[0] == name and r[1] == scrapers]
            p50 = statistics.median(r[2] for r in mine)
            p99 = statistics.median(r[3] for r in mine)
            scrapes = statistics.median(r[4] for r in mine)
            scrape_ms = statistics.median(r[5] for r in mine)
            shown = f"{scrape_ms:.1f}" if scrapers else "-"
            print(f"| {name} | {scrapers} | {p50:.1f} | {p99:.1f} | {scrapes:.0f} | {shown} |")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--routes", type=int, default=500)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--main-src", default=None)
    parser.add_argument("--load", action="store_true")
    parser.add_argument("--seconds", type=float, default=8.0)
    args = parser.parse_args()
    if args.load:
        run_load(args)
        return
    rows = []
    if args.main_src:
        sys.path.insert(0, args.main_src)
        old = importlib.import_module("launchready_sdk.latency")
        tracker = fill(old, args.routes)
        endpoint = old.MetricsEndpoint(None, tracker=tracker, include_default_registry=False)
        ms, size = timed(lambda: endpoint.render()[0], args.rounds)
        rows.append(("main: generate_latest, every scrape", ms, size, len(tracker.series)))
        for name in [m for m in sys.modules if m.startswith("launchready_sdk")]:
            del sys.modules[name]
        sys.path.remove(args.main_src)
    import asyncio

    from launchready_sdk import latency

    tracker = fill(latency, args.routes)
    endpoint = latency.MetricsEndpoint(None, tracker=tracker, include_default_registry=False)
    ms, size = timed(endpoint.render_bytes, args.rounds)
    rows.append(("this branch: own renderer, every scrape", ms, size, len(tracker.series)))
    ms_fig, _ = timed(lambda: b"x" * len(str(tracker.figures()["families"].keys())), args.rounds)
    rows.append(("this branch: figures only (a worker's publish)", ms_fig, 0, len(tracker.series)))

    async def cached() -> float:
        await endpoint.body()
        started = time.perf_counter()
        for _ in range(1000):
            await endpoint.body()
        return (time.perf_counter() - started) / 1000 * 1000

    rows.append(("this branch: scrape within metrics_cache_s", asyncio.run(cached()), size,
                 len(tracker.series)))  # fmt: skip
    print(f"| render | ms (median of {args.rounds}) | bytes | series |")
    print("|---|---:|---:|---:|")
    for name, ms, size, series in rows:
        print(f"| {name} | {ms:.3f} | {size:,} | {series} |")


if __name__ == "__main__":
    main()
