"""The status page: what it costs requests, and how long the page takes with 500 routes.

    python benchmarks/bench_status.py --rounds 5 --duration 4
    python benchmarks/bench_status.py --only render

`overhead`: the default SDK stack (rate limits off) with and without `status_token`, on the
uncached `GET /products` of `benchmarks/status_apps.py`, measured as `bench_overhead.py` does:
uvicorn (uvloop, httptools, one worker) on core 0, `wrk -t1 -c32` on core 1, rounds interleaved,
medians of requests/s and of the server's CPU µs per request, plus the in-process driver's µs per
request. With the page on, each request pays one float comparison (is it slower than the
smallest budget?); nothing else runs until an exception or a page view.

`render`: one process, a tracker holding 500 routes with six minutes of traffic each (so every
route has a chart of six points), 100 error groups and 50 slow requests. It times, over 25 runs
after one warm-up, `render_page(view)` (the HTML from the data) and the whole page view
(`Status.view()`: latency snapshot, chart points, error records, then the HTML), and prints
the page's size.

Prints markdown ready for benchmarks/RESULTS.md.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import sys
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.bench_overhead import inproc  # noqa: E402
from benchmarks.harness import measure  # noqa: E402

SPEC = "benchmarks.status_apps:app"
CONFIGS = ("sdk", "sdk_status")


def overhead(args: argparse.Namespace) -> str:
    results: dict[str, dict[str, list[float]]] = {c: {} for c in CONFIGS}
    for round_no in range(args.rounds):
        order = CONFIGS if round_no % 2 == 0 else tuple(reversed(CONFIGS))
        for config in order:
            r = measure(SPEC, config, "/products", duration=args.duration, connections=32)
            for key, value in r.items():
                results[config].setdefault(key, []).append(value)
            print(f"  round {round_no + 1} {config}: {r['rps']:.0f} req/s, "
                  f"{r['cpu_us']:.0f} CPU µs/req", file=sys.stderr)  # fmt: skip
    for _ in range(args.inproc_rounds):
        for config in CONFIGS:
            wall, _ = inproc("benchmarks.status_apps", config, "GET", "/products", 9)
            results[config].setdefault("inproc", []).append(wall)
    base = results["sdk"]
    lines = [
        "| configuration | req/s median (min-max) | % of `sdk` req/s | server CPU µs/req | "
        "Δ CPU µs/req | p99 ms | in-process µs/req | Δ in-process µs |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for config in CONFIGS:
        r = results[config]
        rps, cpu, ip = (statistics.median(r[k]) for k in ("rps", "cpu_us", "inproc"))
        lines.append(
            f"| {config} | {rps:.0f} ({min(r['rps']):.0f}-{max(r['rps']):.0f}) n={len(r['rps'])} "
            f"| {rps / statistics.median(base['rps']) * 100:.0f} % | {cpu:.0f} "
            f"| {cpu - statistics.median(base['cpu_us']):+.0f} "
            f"| {statistics.median(r['p99_ms']):.1f} | {ip:.0f} "
            f"| {ip - statistics.median(base['inproc']):+.0f} |"
        )
    return "\n".join(lines)


def _loaded_status(routes: int, redis_url: str | None = None) -> object:
    from launchready_sdk import LaunchReady, Settings

    prefix = f"lrbench-{uuid.uuid4().hex[:8]}"
    lr = LaunchReady(Settings(status_token="bench-" + "Zq3x7Lk9PwN2mB8vRt5YcHs4JdFg6Ae1Uo0",
                              configure_logging=False, latency_max_routes=routes + 10,
                              redis_url=redis_url, redis_prefix=prefix))  # fmt: skip
    status = lr.status
    assert status is not None
    tracker = lr.latency
    rng = random.Random(7)
    now = time.perf_counter()
    for r in range(routes):
        for minutes_ago in range(5, -1, -1):
            at = now - minutes_ago * 60
            for i in range(40):
                status_code = 500 if i == 0 else (404 if i == 1 else 200)
                tracker.record("GET", f"/r{r}/{{id}}", status_code, rng.lognormvariate(-4, 1), at)
    for n in range(100):
        try:
            raise type(f"BenchError{n}", (Exception,), {})(f"failed with password=p{n}")
        except Exception as exc:
            status.errors.capture(exc)
    ctx_type = __import__("launchready_sdk.context", fromlist=["RequestContext"]).RequestContext
    for i in range(60):
        ctx = ctx_type(f"id-{i}", "GET", f"/r{i}/1", "127.0.0.1")
        ctx.route = f"/r{i}/{{id}}"
        status.slow.offer(ctx, 200, 0.9)
    return status


def render(routes: int = 500, runs: int = 25, redis_url: str | None = None) -> str:
    from launchready_sdk.status import render_page

    status = _loaded_status(routes, redis_url)

    async def timed() -> tuple[list[float], list[float], int]:
        tracker = status.tracker  # type: ignore[attr-defined]
        if redis_url:  # what the latency task does every flush interval: the fleet merge
            await tracker.tick()
        view = await status.view()  # type: ignore[attr-defined]
        assert view["scope"] == ("fleet" if redis_url else "worker")
        render_page(view)
        html_ms, full_ms = [], []
        size = 0
        for _ in range(runs):
            start = time.perf_counter()
            page = render_page(view)
            html_ms.append((time.perf_counter() - start) * 1000)
            start = time.perf_counter()
            page = render_page(await status.view())  # type: ignore[attr-defined]
            full_ms.append((time.perf_counter() - start) * 1000)
            size = len(page)
        if redis_url:  # remove every key of this run
            store = status.store  # type: ignore[attr-defined]
            cursor, pattern = b"0", store.key("*")
            while True:
                cursor, keys = await store.execute("SCAN", cursor, "MATCH", pattern, "COUNT", 500)
                if keys:
                    await store.execute("DEL", *keys)
                if cursor in (b"0", 0, "0"):
                    break
        return html_ms, full_ms, size

    html_ms, full_ms, size = asyncio.run(timed())
    where = "fleet view, Redis" if redis_url else "this worker, no Redis"
    return (
        f"| `render_page(view)`: the HTML ({where}) | {statistics.median(html_ms):.1f} "
        f"| {max(html_ms):.1f} | {size / 1024:.0f} KiB |\n"
        f"| the whole page view ({where}): `Status.view()` + HTML "
        f"| {statistics.median(full_ms):.1f} | {max(full_ms):.1f} | |"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--only", choices=["overhead", "render"])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--duration", type=int, default=4)
    parser.add_argument("--inproc-rounds", type=int, default=3)
    parser.add_argument(
        "--redis-url",
        default="redis://127.0.0.1:6379/0",
        help="for the fleet-view render (keys under a prefix of the run, deleted after)",
    )
    args = parser.parse_args()
    if args.only in (None, "render"):
        print("#### Page render: 500 routes, 100 error groups, 50 slow requests\n")
        print("| what is timed | median ms | max ms | page size |\n|---|---|---|---|")
        print(render())
        print(render(redis_url=args.redis_url))
        print()
    if args.only in (None, "overhead"):
        print("#### Status page on vs off: uncached GET /products\n")
        print(overhead(args))


if __name__ == "__main__":
    main()
