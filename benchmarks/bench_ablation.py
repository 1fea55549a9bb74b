"""Where the whole SDK's time goes on an uncached route: in-process ablations in one process.

    python benchmarks/bench_ablation.py                # parts of the default stack
    python benchmarks/bench_ablation.py --behind-proxy # the perimeter behind a TLS proxy

Every configuration wraps the same FastAPI app (`benchmarks/apps_full.py`) in
`LaunchReady(Settings(...))` with one part taken away (or, with `--behind-proxy`, one part of the
perimeter added), and is driven in process like `benchmarks/inproc.py`: one request at a time,
no sockets. Rounds of 1,000 requests are interleaved across the configurations and the median
CPU µs per request of the process is reported, with its difference to the bare app. Log lines
go to /dev/null. Run it pinned to one core: `taskset -c 0 python benchmarks/bench_ablation.py`.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.apps_full import build_api  # noqa: E402
from benchmarks.inproc import Driver, lifespan_start  # noqa: E402

OFF = {"security_headers": False, "csp": "", "hsts_max_age_s": 0}
PROXY = ("127.0.0.1",)


def sdk(**settings: Any) -> Any:
    from launchready_sdk import LaunchReady, Settings

    base: dict[str, Any] = {
        "service_name": "bench",
        "cache_routes": {"/products/{id}": 3600},
        "idempotent_routes": ("/orders",),
        "otel_exporter": "none",
        **settings,
    }
    stream = open(os.devnull, "w")  # noqa: SIM115
    return LaunchReady(Settings(**base), log_stream=stream).wrap(build_api())


def without_latency(**settings: Any) -> Any:
    app = sdk(**settings)
    app._launchready.latency.record = lambda *args, **kwargs: None
    return app


PARTS: dict[str, Callable[[], Any]] = {
    "bare": build_api,
    "whole SDK": sdk,
    "- perimeter": lambda: sdk(**OFF),
    "- perimeter - access line": lambda: sdk(access_log=False, **OFF),
    "- perimeter - access line - latency": lambda: without_latency(access_log=False, **OFF),
    "- ... - rules (request context and dispatch)": lambda: without_latency(
        access_log=False, rate_limits={}, cache_routes={}, idempotent_routes=(), **OFF
    ),
}
BEHIND_PROXY: dict[str, Callable[[], Any]] = {
    "bare": build_api,
    "whole SDK (plain HTTP view)": sdk,
    "+ trusted proxy (HSTS on)": lambda: sdk(trusted_proxies=PROXY),
    "+ allowed_hosts": lambda: sdk(trusted_proxies=PROXY, allowed_hosts=("127.0.0.1",)),
    "+ canonical_host, https_redirect": lambda: sdk(
        trusted_proxies=PROXY,
        allowed_hosts=("127.0.0.1",),
        canonical_host="127.0.0.1",
        https_redirect=True,
    ),
    "+ redirects (legacy map)": lambda: sdk(
        trusted_proxies=PROXY,
        allowed_hosts=("127.0.0.1",),
        canonical_host="127.0.0.1",
        https_redirect=True,
        redirects={"/old/{id}": "/products/{id}"},
    ),
}


async def run(configs: dict[str, Callable[[], Any]], headers: list[str], rounds: int) -> None:
    drivers = {}
    for name, make in configs.items():
        app = make()
        await lifespan_start(app)
        drivers[name] = Driver(app, "GET", "/products", False, headers)
        for _ in range(2000):
            await drivers[name].one()
    results: dict[str, list[float]] = {name: [] for name in configs}
    for _ in range(rounds):
        for name, driver in drivers.items():
            start = time.process_time()
            for _ in range(1000):
                await driver.one()
            results[name].append((time.process_time() - start) / 1000 * 1e6)
    bare = statistics.median(results["bare"])
    print("| configuration | CPU µs/req (median) | Δ vs bare | Δ vs the row above |")
    print("|---|---|---|---|")
    previous = bare
    for name, values in results.items():
        value = statistics.median(values)
        print(f"| {name} | {value:.1f} | {value - bare:+.1f} | {value - previous:+.1f} |")
        previous = value


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--behind-proxy", action="store_true")
    parser.add_argument("--rounds", type=int, default=25)
    args = parser.parse_args()
    configs = BEHIND_PROXY if args.behind_proxy else PARTS
    headers = ["X-Forwarded-Proto: https"] if args.behind_proxy else []
    print(f"command: python benchmarks/bench_ablation.py {' '.join(sys.argv[1:])}".rstrip())
    import uvloop

    uvloop.run(run(configs, headers, args.rounds))


if __name__ == "__main__":
    main()
