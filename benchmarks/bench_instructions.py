"""Instructions per request of each configuration, counted by valgrind (immune to machine noise).

    python benchmarks/bench_instructions.py                       # bare, sdk and its parts
    python benchmarks/bench_instructions.py --config sdk --config sdk_floor

For each configuration of `benchmarks/apps.py`, runs the in-process driver of
`benchmarks/inproc.py` under `valgrind --tool=callgrind` twice, with `--small` and `--large`
requests after the same warm-up, and reports the difference divided by the extra requests:
the CPU instructions one `GET /products` costs, start-up and warm-up excluded.
The count does not depend on what else the machine does, except through threads that wake on
a timer (the event-loop monitor's watchdog and ticks): valgrind stretches a run's wall time
about 50 times and they add counts in proportion, so two runs of one configuration with the
monitor on differ by up to about 7,000 instructions per request. Smaller differences between
such configurations are not resolved; larger ones show, where requests/s on this shared
machine swing by ±30 %.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

SUITE = (
    "bare",
    "sdk",
    "sdk_floor",
    "sdk_no_access_log",
    "sdk_no_latency",
    "sdk_no_breakdown",
    "sdk_no_monitor",
    "sdk_no_perimeter",
)
WARM_UP = 300
_COLLECTED = re.compile(rb"Collected : (\d+)")


async def _drive(config: str, method: str, path: str, requests: int) -> None:
    from benchmarks.inproc import Driver, lifespan_start

    os.environ["BENCH_CONFIG"] = config
    app = importlib.import_module("benchmarks.apps").app
    inbox, task = await lifespan_start(app)
    driver = Driver(app, method, path, False)
    for _ in range(WARM_UP + requests):
        await driver.one()
    inbox.put_nowait({"type": "lifespan.shutdown"})
    await asyncio.wait_for(task, 10)


def count(config: str, method: str, path: str, requests: int) -> int:
    """Instructions of one whole run of `requests` requests (start-up and warm-up included)."""
    with tempfile.TemporaryDirectory() as tmp:
        out = subprocess.run(
            [
                "valgrind", "--tool=callgrind", f"--callgrind-out-file={tmp}/cg.out",
                sys.executable, __file__, "--drive", config, method, path, str(requests),
            ],
            capture_output=True,
            check=True,
            cwd=ROOT,
        )  # fmt: skip
    found = _COLLECTED.search(out.stderr)
    if found is None:
        raise SystemExit(f"{config}: valgrind printed no instruction count")
    return int(found.group(1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", action="append", help="a configuration (repeatable)")
    parser.add_argument("--path", default="/products")
    parser.add_argument("--small", type=int, default=1000)
    parser.add_argument("--large", type=int, default=3000)
    parser.add_argument("--drive", nargs=4, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.drive:
        config, method, path, n = args.drive
        sys.stdout = open(os.devnull, "w")  # noqa: SIM115 - the access lines go nowhere
        asyncio.run(_drive(config, method, path, int(n)))
        return
    if shutil.which("valgrind") is None:
        raise SystemExit("valgrind is not installed (apt-get install valgrind)")
    configs = args.config or list(SUITE)
    if "bare" not in configs:
        configs.insert(0, "bare")
    extra = args.large - args.small
    per: dict[str, int] = {}
    for config in configs:
        small = count(config, "GET", args.path, args.small)
        large = count(config, "GET", args.path, args.large)
        per[config] = (large - small) // extra
        print(f"{config}: {per[config]} instructions/request", file=sys.stderr)
    bare = per["bare"]
    print("| configuration | instructions/request | Δ vs bare | % of bare's count |")
    print("|---|---|---|---|")
    for config, n in per.items():
        print(f"| {config} | {n:,} | {n - bare:+,} | {n / bare:.1%} |")


if __name__ == "__main__":
    main()
