"""Shared pieces of the server benchmarks: uvicorn pinned to core 0, wrk pinned to core 1.

`measure(spec, config, path)` starts `uvicorn <spec>` with `BENCH_CONFIG=<config>`, warms it
up, runs wrk against `path` and returns requests/s, the server's CPU µs per request (read from
/proc, which load on the other core disturbs far less than throughput) and wrk's p99.
"""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
CLK_TCK = os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time of a process, in seconds."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def start_uvicorn(
    spec: str, port: int, env: dict[str, str], ready_path: str | None = None
) -> subprocess.Popen[bytes]:
    """uvicorn (uvloop, httptools, one worker) on core 0; waits for the port or `ready_path`."""
    command = [
        "taskset", "-c", "0", sys.executable, "-m", "uvicorn", spec,
        "--host", "127.0.0.1", "--port", str(port), "--no-access-log", "--no-proxy-headers",
        "--log-level", "warning", "--loop", "uvloop", "--http", "httptools",
    ]  # fmt: skip
    full_env = {**os.environ, "PYTHONPATH": str(ROOT), **env}
    proc = subprocess.Popen(
        command, env=full_env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if _answers(port, ready_path):
            return proc
        time.sleep(0.05)
    proc.kill()
    raise RuntimeError(f"{spec} ({env.get('BENCH_CONFIG')}): server did not start")


def _answers(port: int, ready_path: str | None) -> bool:
    try:
        if ready_path is None:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return True
        return httpx.get(f"http://127.0.0.1:{port}{ready_path}", timeout=0.5).status_code == 200
    except (OSError, httpx.HTTPError):
        return False


def wrk(
    url: str, seconds: float, connections: int, method: str = "GET"
) -> tuple[float, int, float]:
    """(requests/s, requests, p99 ms) of one wrk run on core 1; non-2xx responses raise."""
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as script:
        script.write(
            f'wrk.method = "{method}"\n'
            + ('wrk.body = "{}"\nwrk.headers["Content-Type"] = "application/json"\n'
               if method != "GET" else "")
        )  # fmt: skip
    command = [
        "taskset", "-c", "1", "wrk", "-t1", f"-c{connections}", f"-d{int(seconds)}s",
        "--latency", "-s", script.name, url,
    ]  # fmt: skip
    try:
        out = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    finally:
        os.unlink(script.name)
    if "Non-2xx" in out:
        raise RuntimeError(f"{url}: non-2xx responses\n{out}")
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    total = int(re.search(r"(\d+) requests in", out).group(1))  # type: ignore[union-attr]
    p99 = re.search(r"99%\s+([\d.]+)(us|ms|s)\b", out)
    scale = {"us": 0.001, "ms": 1.0, "s": 1000.0}
    return rps, total, float(p99.group(1)) * scale[p99.group(2)] if p99 else float("nan")


def measure(
    spec: str,
    config: str,
    path: str,
    *,
    duration: float,
    connections: int,
    method: str = "GET",
    env: dict[str, str] | None = None,
    ready_path: str | None = None,
) -> dict[str, float]:
    """One round: start the server, warm up for a second, measure, stop."""
    port = free_port()
    proc = start_uvicorn(spec, port, {"BENCH_CONFIG": config, **(env or {})}, ready_path)
    try:
        url = f"http://127.0.0.1:{port}{path}"
        wrk(url, 1, connections, method)
        before = cpu_seconds(proc.pid)
        rps, total, p99 = wrk(url, duration, connections, method)
        cpu_us = (cpu_seconds(proc.pid) - before) / total * 1e6
    finally:
        proc.terminate()
        proc.wait()
    return {"rps": rps, "cpu_us": cpu_us, "p99_ms": p99}
