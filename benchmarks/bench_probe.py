"""`launchready probe` at scale: CPU share and schedule drift checking many loopback targets.

One probe process (the real command, `--json` lines to a file) checks N targets on one
loopback server (a subprocess of its own, answering 200 on every path, so its CPU is not
counted) every `--interval` seconds. Measured over the window after a warm-up:

- CPU: the probe's user + system CPU time (from /proc) over the window's wall time, as a
  share of one core;
- drift: each check's `late_ms` (how long after its due time it started) from the probe's own
  log lines: p50, p99, max;
- checks/s against the schedule's rate (N / interval), and the probe's peak RSS.

    python benchmarks/bench_probe.py [--targets 1000] [--interval 60] [--duration 240]
    python benchmarks/bench_probe.py --per-check 2000

`--interval 6 --targets 100` keeps the same check rate in a tenth of the time. `--per-check N`
instead measures one check's CPU in this process (N checks back to back, rounds interleaved):
as shipped, and with httpcore's per-connection `import sniffio` search left in (sniffio is not
installed here), which the command avoids by recording the miss.
Prints markdown ready for benchmarks/RESULTS.md.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

SERVER = r"""
import asyncio, sys
try:
    import uvloop
    uvloop.install()
except ImportError:
    pass

async def handle(reader, writer):
    try:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok")
        await writer.drain()
    except Exception:
        pass
    finally:
        writer.close()

async def main():
    server = await asyncio.start_server(handle, "127.0.0.1", 0, backlog=2048)
    print(server.sockets[0].getsockname()[1], flush=True)
    await server.serve_forever()

asyncio.run(main())
"""


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of `pid` so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15)
    return ticks / os.sysconf("SC_CLK_TCK")


def peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--targets", type=int, default=1000)
    parser.add_argument("--interval", type=float, default=60.0)
    parser.add_argument("--duration", type=float, default=240.0, help="measured seconds")
    parser.add_argument("--warmup", type=float, help="default: one interval")
    parser.add_argument("--per-check", type=int, metavar="N", help="CPU per check, in-process")
    args = parser.parse_args()
    if args.per_check:
        per_check(args.per_check)
        return
    warmup = args.interval if args.warmup is None else args.warmup

    server = subprocess.Popen([sys.executable, "-c", SERVER], stdout=subprocess.PIPE, text=True)
    tmp = Path(tempfile.mkdtemp(prefix="bench-probe-"))
    probe: subprocess.Popen[bytes] | None = None
    try:
        assert server.stdout is not None
        port = int(server.stdout.readline())
        targets = tmp / "targets.toml"
        targets.write_text(
            "".join(
                f'[[target]]\nname = "t{i:04d}"\nurl = "http://127.0.0.1:{port}/t/{i}"\n'
                for i in range(args.targets)
            )
        )
        log_path = tmp / "probe.log"
        with log_path.open("wb") as log:
            probe = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "launchready_sdk.cli",
                    "probe",
                    "--json",
                    "--targets",
                    str(targets),
                    "--interval",
                    str(args.interval),
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=ROOT,
                env={**os.environ, "PYTHONPATH": str(ROOT)},
            )
            time.sleep(warmup)
            cpu0, wall0 = cpu_seconds(probe.pid), time.monotonic()
            mark0 = time.time()
            time.sleep(args.duration)
            cpu1, wall1 = cpu_seconds(probe.pid), time.monotonic()
            mark1 = time.time()
            rss = peak_rss_mb(probe.pid)
            probe.send_signal(signal.SIGTERM)
            probe.wait(30)
        report(args, log_path, (cpu1 - cpu0) / (wall1 - wall0), mark0, mark1, rss, warmup)
    finally:
        if probe is not None and probe.poll() is None:
            probe.kill()
        server.kill()
        server.wait()
        shutil.rmtree(tmp, ignore_errors=True)


def report(
    args: argparse.Namespace,
    log_path: Path,
    cpu_share: float,
    mark0: float,
    mark1: float,
    rss_mb: float,
    warmup: float,
) -> None:
    late: list[float] = []
    failed = 0
    for raw in log_path.read_text().splitlines():
        try:
            line = json.loads(raw)
        except ValueError:
            continue
        if line.get("event") != "probe.check":
            continue
        stamp = time.mktime(time.strptime(line["timestamp"][:19], "%Y-%m-%dT%H:%M:%S"))
        stamp -= time.timezone  # the log is UTC
        if not mark0 <= stamp < mark1:
            continue
        late.append(line["late_ms"])
        failed += not line["ok"]
    window = mark1 - mark0
    rate = len(late) / window
    expected = args.targets / args.interval
    print(
        f"probe: {args.targets} targets every {args.interval:g} s, measured {window:.0f} s "
        f"after a {warmup:g} s warm-up\n"
    )
    print(
        "| targets | interval | checks/s (schedule) | failed | CPU, one core | "
        "drift p50 | drift p99 | drift max | peak RSS |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    print(
        f"| {args.targets} | {args.interval:g} s | {rate:.2f} ({expected:.2f}) | {failed} | "
        f"{cpu_share * 100:.2f} % | {statistics.median(late):.1f} ms | "
        f"{percentile(late, 0.99):.1f} ms | {max(late):.1f} ms | {rss_mb:.0f} MB |"
    )


def per_check(n: int, rounds: int = 5) -> None:
    """CPU µs per check, with the missing-sniffio miss remembered (as shipped) and not."""
    import asyncio

    sys.path.insert(0, str(ROOT))
    from launchready_sdk.cli.probe import Checker, Target

    server = subprocess.Popen([sys.executable, "-c", SERVER], stdout=subprocess.PIPE, text=True)
    try:
        assert server.stdout is not None
        url = f"http://127.0.0.1:{int(server.stdout.readline())}/t/1"
        target = Target(name="t", url=url, request_url=url)
        missing = importlib.util.find_spec("sniffio") is None
        results: dict[str, list[float]] = {"as shipped": [], "sniffio searched": []}

        async def measure() -> None:
            checker = Checker(10.0)
            for _ in range(50):
                await checker.check(target)
            for _ in range(rounds):
                for label in results:
                    if label == "as shipped" and missing:
                        sys.modules["sniffio"] = None  # type: ignore[assignment]
                    else:
                        sys.modules.pop("sniffio", None)
                    start = time.process_time()
                    for _ in range(n):
                        await checker.check(target)
                    results[label].append((time.process_time() - start) / n * 1e6)
            await checker.aclose()

        try:
            import uvloop

            uvloop.run(measure())
        except ImportError:
            asyncio.run(measure())
    finally:
        server.kill()
        server.wait()
    print(
        f"CPU per check, {n} checks x {rounds} rounds (median of rounds), sniffio "
        f"{'not installed' if missing else 'installed'}\n"
    )
    print("| variant | CPU µs per check |")
    print("|---|---|")
    for label, values in results.items():
        print(f"| {label} | {statistics.median(values):.0f} |")


if __name__ == "__main__":
    main()
