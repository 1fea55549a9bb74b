"""A Redis-limited route against the bare app, this tree against another (main), in one run.

    git archive main launchready_sdk benchmarks | tar -x -C /tmp/lr-main-tree
    python benchmarks/bench_redis_limit.py --other /tmp/lr-main-tree --rounds 7

Rows, in interleaved rounds (uvicorn pinned to core 0, wrk to core 1, a private redis-server
flushed before each run): the bare FastAPI app, `RateLimitMiddleware` on Redis with a rule on
the measured route (`benchmarks/apps_full.py`'s `sdk_limit_redis`) from this tree and from
`--other`, and the whole SDK with the same rule (`sdk_full_route`) from both. Reports requests/s,
the server's CPU µs per request and both as a share of bare, per-round ratios included, and
the Redis breaker's openings seen in the servers' output.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.bench_overhead import PrivateRedis  # noqa: E402
from benchmarks.harness import measure  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument(
        "--other", required=True, help="a tree with launchready_sdk/ and benchmarks/"
    )
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--duration", type=float, default=4.0)
    parser.add_argument("--connections", type=int, default=32)
    args = parser.parse_args()
    rows = [
        ("bare", str(ROOT), "bare", "GET"),
        ("limit_redis this", str(ROOT), "sdk_limit_redis", "GET"),
        ("limit_redis other", args.other, "sdk_limit_redis", "GET"),
        ("sdk_full_route this", str(ROOT), "sdk_full_route", "GET"),
        ("sdk_full_route other", args.other, "sdk_full_route", "GET"),
    ]
    results: dict[str, dict[str, list[float]]] = {r[0]: {"rps": [], "cpu": []} for r in rows}
    trips: dict[str, int] = dict.fromkeys(results, 0)
    redis = PrivateRedis()
    try:
        for round_no in range(args.rounds):
            order = rows[round_no % len(rows) :] + rows[: round_no % len(rows)]
            for label, tree, config, method in order:
                redis.flush()
                log = Path(f"/tmp/bench-redis-limit-{uuid.uuid4().hex[:8]}.log")
                # PYTHONSAFEPATH: the server imports from `tree`, not from its working directory
                env = {"PYTHONPATH": tree, "PYTHONSAFEPATH": "1", "BENCH_REDIS_URL": redis.url,
                       "BENCH_PREFIX": f"rl-{uuid.uuid4().hex[:8]}"}  # fmt: skip
                kept = log if "limit" in label else None
                r = measure("benchmarks.apps_full:app", config, "/products",
                            duration=args.duration, connections=args.connections,
                            method=method, env=env, log=kept, cwd=Path(tree))  # fmt: skip
                if log.exists():
                    trips[label] += log.read_text(errors="replace").count("store.unavailable")
                    log.unlink()
                results[label]["rps"].append(r["rps"])
                results[label]["cpu"].append(r["cpu_us"])
                print(f"  round {round_no + 1} {label}: {r['rps']:.0f} req/s, "
                      f"{r['cpu_us']:.0f} CPU µs/req", file=sys.stderr)  # fmt: skip
    finally:
        redis.stop()
    bare = results["bare"]
    b_rps, b_cpu = statistics.median(bare["rps"]), statistics.median(bare["cpu"])
    print(
        "| configuration | req/s median (min-max) | % of bare req/s | per-round % of bare "
        "(median) | server CPU µs/req | bare CPU / CPU | breaker openings |"
    )
    print("|---|---|---|---|---|---|---|")
    for label, r in results.items():
        rps, cpu = statistics.median(r["rps"]), statistics.median(r["cpu"])
        per_round = statistics.median(a / b for a, b in zip(r["rps"], bare["rps"], strict=True))
        opened = trips[label] if "limit" in label else "-"
        print(f"| {label} | {rps:.0f} ({min(r['rps']):.0f}-{max(r['rps']):.0f}) n={len(r['rps'])} "
              f"| {rps / b_rps * 100:.0f} % | {per_round * 100:.0f} % | {cpu:.0f} "
              f"| {b_cpu / cpu * 100:.0f} % | {opened} |")  # fmt: skip
    print(f"\ncommand: python benchmarks/bench_redis_limit.py --other {args.other} "
          f"--rounds {args.rounds} --duration {args.duration:g}")  # fmt: skip


if __name__ == "__main__":
    main()
