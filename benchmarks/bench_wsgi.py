"""Django under WSGI: the SDK (`launchready_django_wsgi()`) against bare Django, gunicorn sync.

Each configuration runs `gunicorn benchmarks.wsgi_app:application` with one sync worker pinned
to core 0 (the master and worker share it), `wrk -t1 -c16` pinned to core 1. Rounds alternate
bare and SDK; medians are reported. "server CPU µs/req" is the worker's CPU time (from /proc)
per request served. Logs go to /dev/null.

    python benchmarks/bench_wsgi.py --rounds 3 --duration 4

Rows: `GET /ping`, a trivial sync view no path-specific layer acts on (the request context
runs in the WSGI thread: request id, access line, latency); `POST /login`, a limited route
(the ASGI layers run on the thread's private loop around Django); `GET /products/1`, a cache
route (a HIT answered on the loop without Django). The target is the first row: at least 85 %
of bare Django's requests/s.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.harness import _answers, cpu_seconds, free_port, stop, wrk_run  # noqa: E402

ROUTES = (("GET", "/ping"), ("POST", "/login"), ("GET", "/products/1"))
CONFIGS = ("bare", "sdk")


def start_gunicorn(config: str, port: int) -> subprocess.Popen[bytes]:
    command = [
        "taskset", "-c", "0", sys.executable, "-m", "gunicorn", "benchmarks.wsgi_app:application",
        "--bind", f"127.0.0.1:{port}", "--workers", "1", "--worker-class", "sync",
        "--log-level", "warning", "--backlog", "256",
    ]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(ROOT), "BENCH_CONFIG": config}
    proc = subprocess.Popen(
        command, env=env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if _answers(port, "/ping"):
            return proc
        time.sleep(0.05)
    stop(proc)
    raise RuntimeError(f"gunicorn ({config}) did not start")


def workers(proc: subprocess.Popen[bytes]) -> list[int]:
    children = Path(f"/proc/{proc.pid}/task/{proc.pid}/children").read_text().split()
    return [int(pid) for pid in children]


def measure(config: str, method: str, route: str, duration: float) -> dict[str, float]:
    port = free_port()
    proc = start_gunicorn(config, port)
    try:
        url = f"http://127.0.0.1:{port}{route}"
        wrk_run(url, 1, 16, method)
        pids = workers(proc)
        before = sum(cpu_seconds(pid) for pid in pids)
        r = wrk_run(url, duration, 16, method)
        cpu_us = (sum(cpu_seconds(pid) for pid in pids) - before) / r["requests"] * 1e6
    finally:
        stop(proc)
    return {"rps": r["rps"], "cpu_us": cpu_us, "p99_ms": r["p99_ms"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--duration", type=float, default=4.0)
    parser.add_argument("--route", action="append", help="only these routes (e.g. /ping)")
    args = parser.parse_args()
    routes = [r for r in ROUTES if not args.route or r[1] in args.route]
    results: dict[tuple[str, str, str], list[dict[str, float]]] = {}
    for round_no in range(args.rounds):
        for method, route in routes:
            order = CONFIGS if round_no % 2 == 0 else tuple(reversed(CONFIGS))
            for config in order:
                r = measure(config, method, route, args.duration)
                results.setdefault((method, route, config), []).append(r)
                print(f"round {round_no + 1} {method} {route} {config}: {r['rps']:.0f} req/s",
                      file=sys.stderr)  # fmt: skip
    print("| route | configuration | req/s median (min-max) | % of bare req/s | "
          "worker CPU µs/req | Δ CPU µs/req | p99 ms |")  # fmt: skip
    print("|---|---|---|---|---|---|---|")
    for method, route in routes:
        bare = results[(method, route, "bare")]
        bare_rps = statistics.median(r["rps"] for r in bare)
        bare_cpu = statistics.median(r["cpu_us"] for r in bare)
        for config in CONFIGS:
            runs = results[(method, route, config)]
            rps = [r["rps"] for r in runs]
            cpu = statistics.median(r["cpu_us"] for r in runs)
            p99 = statistics.median(r["p99_ms"] for r in runs)
            print(
                f"| {method} {route} | {config} | {statistics.median(rps):.0f} "
                f"({min(rps):.0f}-{max(rps):.0f}) n={len(rps)} | "
                f"{statistics.median(rps) / bare_rps * 100:.0f} % | {cpu:.0f} | "
                f"{cpu - bare_cpu:+.0f} | {p99:.1f} |"
            )


if __name__ == "__main__":
    main()
