"""The load generator's own capacity, side by side with wrk and locust.

    python benchmarks/bench_generator.py [--duration 5] [--rounds 2] [--compare-with DIR]

A raw loopback server (`rawserver.c`, one thread, epoll, a fixed 200 "ok" for every request;
compiled with `cc` into a temp dir, or a uvloop protocol server when there is no compiler)
runs pinned to core 0; each client runs pinned to core 1 for `--duration` seconds:

- `launchready bench`, closed model (`--users 64`): the throughput it reaches;
- `launchready bench`, open model at rising rates: the rate it actually sends, and whether
  it held the rate (the report's `generator.held_rate`);
- wrk (`-t1 -c64`), and locust's `FastHttpUser` (one process, 64 users, no wait).

First, accuracy: a uvloop server answering every request 50 ms later, measured by a plain
blocking socket client and by `launchready bench` in both models (p50 and p95, ms).

For each: requests/s, the client's CPU (one core = 100 %), requests/s per core of client CPU,
and client CPU µs per request. `--compare-with DIR` also runs `launchready bench` from another
source tree (e.g. `git archive <commit> launchready_sdk | tar -x -C DIR`), to compare the
closed and open models before and after a change. Rounds are interleaved. Prints a markdown
table for `benchmarks/RESULTS.md`.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
USERS = 64
SCENARIO = 'forwarded_for = false\nname = "raw"\n[[flow]]\npath = "/"\n'
LOCUSTFILE = """
from locust import FastHttpUser, constant, task


class Raw(FastHttpUser):
    wait_time = constant(0)

    @task
    def get(self):
        self.client.get("/")
"""
PY_SERVER = """
import asyncio, sys, uvloop
R = b"HTTP/1.1 200 OK\\r\\nContent-Type: text/plain\\r\\nContent-Length: 2\\r\\n\\r\\nok"
class P(asyncio.Protocol):
    def connection_made(self, t): self.t = t; self.buf = b""
    def data_received(self, d):
        self.buf += d
        n = self.buf.count(b"\\r\\n\\r\\n")
        if n:
            self.buf = self.buf[self.buf.rfind(b"\\r\\n\\r\\n") + 4:]
            self.t.write(R * n)
async def main():
    server = await asyncio.get_running_loop().create_server(P, "127.0.0.1", int(sys.argv[1]))
    await server.serve_forever()
uvloop.run(main())
"""


DELAY_SERVER = """
import asyncio, sys, uvloop
R = b"HTTP/1.1 200 OK\\r\\nContent-Type: text/plain\\r\\nContent-Length: 2\\r\\n\\r\\nok"
DELAY = float(sys.argv[2])
class P(asyncio.Protocol):
    def connection_made(self, t): self.t = t; self.buf = b""
    def data_received(self, d):
        self.buf += d
        n = self.buf.count(b"\\r\\n\\r\\n")
        if n:
            self.buf = self.buf[self.buf.rfind(b"\\r\\n\\r\\n") + 4:]
            asyncio.get_running_loop().call_later(DELAY, self.t.write, R * n)
async def main():
    server = await asyncio.get_running_loop().create_server(P, "127.0.0.1", int(sys.argv[1]))
    await server.serve_forever()
uvloop.run(main())
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def pinned(core: int, command: list[str]) -> list[str]:
    return ["taskset", "-c", str(core), *command] if shutil.which("taskset") else command


def start_server(tmp: Path) -> tuple[subprocess.Popen[bytes], int, str]:
    port = free_port()
    if shutil.which("cc"):
        binary = tmp / "rawserver"
        source = Path(__file__).with_name("rawserver.c")
        subprocess.run(["cc", "-O2", "-o", str(binary), str(source)], check=True)
        command, kind = [str(binary), str(port)], "C epoll server"
    else:
        script = tmp / "rawserver.py"
        script.write_text(PY_SERVER)
        command, kind = [sys.executable, str(script), str(port)], "uvloop protocol server"
    server = subprocess.Popen(pinned(0, command), stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return server, port, kind
        except OSError:
            time.sleep(0.05)
    server.kill()
    raise RuntimeError("the raw server did not start")


def timed(
    command: list[str], env: dict[str, str] | None = None, cwd: Path = ROOT
) -> tuple[str, float, float]:
    """Run `command` in `cwd`; (stdout, wall seconds, CPU seconds of it and its children)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    began = time.perf_counter()
    result = subprocess.run(
        command, capture_output=True, text=True, env=env, check=False, cwd=cwd, timeout=300
    )
    wall = time.perf_counter() - began
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    if result.returncode not in (0, 1):
        raise RuntimeError(f"{command[:4]} failed: {result.stderr[-2000:]}")
    return result.stdout, wall, cpu


def launchready(
    url: str, tmp: Path, duration: float, tree: Path | None, rate: float | None = None
) -> dict[str, Any]:
    scenario = tmp / "raw.toml"
    scenario.write_text(SCENARIO)
    out = tmp / "bench.json"
    load = ["--rate", f"{rate:g}", "--users", str(USERS)] if rate else ["--users", str(USERS)]
    command = [
        sys.executable, "-m", "launchready_sdk.cli", "bench", "--quiet", "--url", url,
        "--scenario", str(scenario), "--duration", str(duration), "--warmup", "1",
        "--json", str(out), *load,
    ]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(tree or ROOT)}
    timed(pinned(1, command), env, cwd=tree or ROOT)  # `python -m` puts the cwd first
    report = json.loads(out.read_text())
    generator = report["generator"]
    cpu = generator.get("cpu_share") or 0.0
    sent = generator.get("achieved_rps") or report["throughput_rps"]
    return {
        "rps": report["throughput_rps"],
        "sent": sent,
        "cpu": cpu,
        "held": generator.get("held_rate"),
        "p50_ms": report["overall"]["p50_ms"],
    }


def wrk(url: str, duration: float) -> dict[str, Any]:
    out, wall, cpu = timed(pinned(1, ["wrk", "-t1", f"-c{USERS}", f"-d{duration:g}s", url + "/"]))
    line = next(x for x in out.splitlines() if x.startswith("Requests/sec:"))
    rps = float(line.split()[1])
    return {"rps": rps, "sent": rps, "cpu": cpu / wall, "held": None, "p50_ms": None}


def locust(url: str, tmp: Path, duration: float) -> dict[str, Any]:
    locustfile = tmp / "locustfile.py"
    locustfile.write_text(LOCUSTFILE)
    prefix = tmp / "locust"
    command = [
        sys.executable, "-m", "locust", "-f", str(locustfile), "--headless", "-u", str(USERS),
        "-r", str(USERS), "-t", f"{duration:g}s", "--host", url, "--csv", str(prefix),
        "--only-summary", "--loglevel", "ERROR",
    ]  # fmt: skip
    _, wall, cpu = timed(pinned(1, command))
    rows = (prefix.parent / f"{prefix.name}_stats.csv").read_text().splitlines()
    head = rows[0].split(",")
    total = dict(zip(head, rows[-1].split(","), strict=False))
    rps = float(total["Requests/s"])
    return {"rps": rps, "sent": rps, "cpu": cpu / wall, "held": None, "p50_ms": None}


def reference_p50(port: int, requests: int = 200) -> tuple[float, float]:
    """p50 and p95 in ms of a plain blocking socket client, one keep-alive connection."""
    request = b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
    times = []
    with socket.create_connection(("127.0.0.1", port)) as sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        for _ in range(requests):
            began = time.perf_counter()
            sock.sendall(request)
            got = b""
            while not got.endswith(b"ok"):
                got += sock.recv(4096)
            times.append((time.perf_counter() - began) * 1000)
    times.sort()
    return times[len(times) // 2], times[int(len(times) * 0.95)]


def accuracy(tmp: Path, duration: float, delay_s: float = 0.05) -> list[str]:
    """The bench's p50 and p95 against a plain client's, on a route that answers in 50 ms."""
    script = tmp / "delay.py"
    script.write_text(DELAY_SERVER)
    port = free_port()
    server = subprocess.Popen(pinned(0, [sys.executable, str(script), str(port), str(delay_s)]))
    try:
        time.sleep(1.0)
        ref = reference_p50(port)
        url = f"http://127.0.0.1:{port}"
        rows = [f"| plain socket client, one connection | {ref[0]:.2f} | {ref[1]:.2f} |"]
        for label, rate in (("open model, 40 req/s", 40.0), ("closed model, 4 users", None)):
            out = tmp / "acc.json"
            load = ["--rate", "40", "--users", "8"] if rate else ["--users", "4"]
            command = [
                sys.executable, "-m", "launchready_sdk.cli", "bench", "--quiet", "--url", url,
                "--scenario", str(tmp / "raw.toml"), "--duration", str(duration), "--warmup",
                "1", "--json", str(out), *load,
            ]  # fmt: skip
            (tmp / "raw.toml").write_text(SCENARIO)
            timed(pinned(1, command))
            overall = json.loads(out.read_text())["overall"]
            p50, p95 = overall["p50_ms"], overall["p95_ms"]
            rows.append(f"| launchready bench, {label} | {p50:.2f} | {p95:.2f} |")
        return rows
    finally:
        server.kill()
        server.wait()


def row(name: str, runs: list[dict[str, Any]]) -> str:
    rps = statistics.median(r["sent"] for r in runs)
    cpu = statistics.median(r["cpu"] for r in runs)
    per_core = rps / cpu if cpu else float("nan")
    us = cpu * 1e6 / rps if rps else float("nan")
    held = {r["held"] for r in runs} - {None}
    held_text = "" if not held else ("yes" if held == {True} else "no" if held == {False} else "?")
    spread = f"{min(r['sent'] for r in runs):,.0f}-{max(r['sent'] for r in runs):,.0f}"
    return (
        f"| {name} | {rps:,.0f} ({spread}) | {cpu:.0%} | {per_core:,.0f} | {us:.1f} | {held_text} |"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=5.0)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--rates", default="5000,10000,15000,20000")
    parser.add_argument("--compare-with", type=Path, help="another tree's launchready_sdk")
    parser.add_argument("--no-peers", action="store_true", help="skip wrk and locust")
    parser.add_argument("--accuracy-only", action="store_true", help="only the 50 ms route")
    args = parser.parse_args()
    rates = [float(r) for r in args.rates.split(",")]
    results: dict[str, list[dict[str, Any]]] = {}
    with tempfile.TemporaryDirectory() as name:
        tmp = Path(name)
        accuracy_rows = accuracy(tmp, args.duration)
        print("Accuracy on a route that answers in 50 ms (ms):\n")
        print("| client | p50 | p95 |\n|---|---|---|")
        print("\n".join(accuracy_rows) + "\n")
        if args.accuracy_only:
            return
        server, port, kind = start_server(tmp)
        url = f"http://127.0.0.1:{port}"
        began = time.monotonic()
        try:
            for _ in range(args.rounds):
                trees: list[tuple[str, Path | None]] = [("", None)]
                if args.compare_with:
                    trees.append((" (before)", args.compare_with))
                for label, tree in trees:
                    key = f"launchready bench, closed model, {USERS} users{label}"
                    results.setdefault(key, []).append(launchready(url, tmp, args.duration, tree))
                    for rate in rates:
                        key = f"launchready bench, open model at {rate:,.0f} req/s{label}"
                        results.setdefault(key, []).append(
                            launchready(url, tmp, args.duration, tree, rate)
                        )
                if not args.no_peers:
                    if shutil.which("wrk"):
                        results.setdefault(f"wrk -t1 -c{USERS}", []).append(wrk(url, args.duration))
                    results.setdefault(f"locust FastHttpUser, {USERS} users", []).append(
                        locust(url, tmp, args.duration)
                    )
        finally:
            server.kill()
            server.wait()
    wall = time.monotonic() - began
    print(
        f"server: {kind}, pinned to core 0; clients pinned to core 1; {args.rounds} rounds "
        f"of {args.duration:g} s, medians (min-max); wall time {wall:.0f} s"
    )
    print()
    print("| client | requests/s sent | client CPU | requests/s per core | CPU µs/request "
          "| held the rate |")  # fmt: skip
    print("|---|---|---|---|---|---|")
    for key, runs in results.items():
        print(row(key, runs))


if __name__ == "__main__":
    main()
