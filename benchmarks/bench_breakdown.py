"""What the per-request breakdown and the event-loop monitor cost, and the whole SDK before/after.

    python benchmarks/bench_breakdown.py --before DIR [--rounds 6] [--duration 4]

`DIR` is another source tree of the project (`git archive <commit> launchready_sdk benchmarks
| tar -x -C DIR`): its `sdk` row is the whole SDK as it was. Configurations of
`benchmarks/apps.py`, on `GET /products`, uvicorn pinned to core 0 and wrk to core 1, rounds
interleaved (the order rotates each round):

- `bare`: the FastAPI app alone;
- `sdk`: `LaunchReady().wrap(app)` as shipped (rate limits off): the accounting and the loop
  monitor on;
- `sdk_no_breakdown`: the same, the per-route breakdown's recording switched off;
- `sdk_no_monitor`: the same with `loop_stall_ms=None` (no monitor, no in-flight table);
- `sdk (before)`: the `sdk` row of `DIR`.

Server CPU µs per request (from /proc) is the figure to read on a shared machine; the in-process
µs per request (no sockets, `benchmarks/inproc.py`) is measured for each tree too. Also
`timeit` of `Breakdown.record` for a request without SQL or outbound calls, with the monitor.
Prints markdown tables for `benchmarks/RESULTS.md`.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
import timeit
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.harness import measure  # noqa: E402

CONFIGS = ("bare", "sdk", "sdk_no_breakdown", "sdk_no_monitor")


def inproc(root: Path, config: str, blocks: int) -> float:
    """CPU µs per request of `config` driven in process from the tree at `root`."""
    command = [
        "taskset", "-c", "0", sys.executable, str(root / "benchmarks" / "inproc.py"),
        "benchmarks.apps", config, "GET", "/products", "--blocks", str(blocks),
    ]  # fmt: skip
    out = subprocess.run(
        command,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(root)},
        cwd=root,
        check=True,
        timeout=600,
    )
    _, cpu = out.stderr.strip().splitlines()[-1].split()
    return float(cpu)


def micro() -> list[str]:
    """ns per call of the breakdown's per-request work, monitor running, no SQL or calls."""
    import asyncio

    from launchready_sdk.breakdown import Breakdown
    from launchready_sdk.context import RequestContext
    from launchready_sdk.loopmonitor import LoopMonitor

    async def run() -> list[str]:
        monitor = LoopMonitor()
        monitor.start()
        try:
            breakdown = Breakdown(monitor=monitor)
            ctx = RequestContext("id", "GET", "/products", "127.0.0.1")
            ctx.route = "/products"
            n = 200_000
            record = min(timeit.repeat(lambda: breakdown.record(ctx, 120, 0.001), number=n,
                                       repeat=5)) / n * 1e9  # fmt: skip
            made = min(timeit.repeat(lambda: RequestContext("id", "GET", "/p", None),
                                     number=n, repeat=5)) / n * 1e9  # fmt: skip
        finally:
            monitor.stop()
        return [
            f"| `Breakdown.record` (no SQL, no outbound call, monitor on) | {record:.0f} ns |",
            f"| `RequestContext(...)` with the three new fields | {made:.0f} ns |",
        ]

    return asyncio.run(run())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--before", type=Path, required=True, help="the tree to compare with")
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--duration", type=int, default=4)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--inproc-blocks", type=int, default=9)
    args = parser.parse_args()
    rows = [(c, ROOT) for c in CONFIGS] + [("sdk (before)", args.before)]
    results: dict[str, dict[str, list[float]]] = {name: {} for name, _ in rows}
    began = time.monotonic()
    for round_no in range(args.rounds):
        shift = round_no % len(rows)
        for name, root in rows[shift:] + rows[:shift]:
            config = name.split(" ", 1)[0]
            r = measure(
                "benchmarks.apps:app",
                config,
                "/products",
                duration=args.duration,
                connections=args.connections,
                root=root,
            )
            for key, value in r.items():
                results[name].setdefault(key, []).append(value)
            print(f"  round {round_no + 1} {name}: {r['rps']:.0f} req/s, {r['cpu_us']:.1f} µs",
                  file=sys.stderr)  # fmt: skip
    for name, root in rows:
        results[name]["inproc"] = [
            inproc(root, name.split(" ", 1)[0], args.inproc_blocks) for _ in range(3)
        ]
    bare = results["bare"]
    b_rps, b_cpu = statistics.median(bare["rps"]), statistics.median(bare["cpu_us"])
    b_in = statistics.median(bare["inproc"])
    print(f"{args.rounds} interleaved rounds of {args.duration} s; wall time "
          f"{time.monotonic() - began:.0f} s\n")  # fmt: skip
    print("| configuration | req/s median (min-max) | % of bare req/s | server CPU µs/req "
          "| Δ CPU µs/req vs bare | in-process CPU µs/req | Δ in-process µs |")  # fmt: skip
    print("|---|---|---|---|---|---|---|")
    for name, r in results.items():
        rps, cpu, ip = (statistics.median(r[k]) for k in ("rps", "cpu_us", "inproc"))
        print(
            f"| {name} | {rps:.0f} ({min(r['rps']):.0f}-{max(r['rps']):.0f}) "
            f"| {rps / b_rps * 100:.0f} % | {cpu:.1f} | {cpu - b_cpu:+.1f} | {ip:.1f} "
            f"| {ip - b_in:+.1f} |"
        )
    print("\nPer round, server CPU µs/req of `sdk` minus the other rows (median; min-max):\n")
    for other in ("sdk_no_breakdown", "sdk_no_monitor", "sdk (before)"):
        diffs = [
            a - b for a, b in zip(results["sdk"]["cpu_us"], results[other]["cpu_us"], strict=True)
        ]
        print(f"- `sdk` minus `{other}`: {statistics.median(diffs):+.1f} µs "
              f"({min(diffs):+.1f} to {max(diffs):+.1f})")  # fmt: skip
    print("\n| per-request piece | cost |\n|---|---|")
    print("\n".join(micro()))


if __name__ == "__main__":
    main()
