"""Shared pieces of the server benchmarks: uvicorn pinned to core 0, wrk pinned to core 1.

`measure(spec, config, path)` starts `uvicorn <spec>` with `BENCH_CONFIG=<config>`, warms it
up, runs wrk against `path` and returns requests/s, the server's CPU µs per request (read from
/proc, which load on the other core disturbs far less than throughput) and wrk's p50 and p99.
"""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Mapping
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
    spec: str,
    port: int,
    env: dict[str, str],
    ready_path: str | None = None,
    log: Path | None = None,
    root: Path = ROOT,
    cwd: Path | None = None,
) -> subprocess.Popen[bytes]:
    """uvicorn (uvloop, httptools, one worker) on core 0; waits for the port or `ready_path`.

    The server's output is discarded, or appended to `log` (for diagnosis: writing it costs).
    `root` is the source tree the app and the SDK are imported from (another checkout, to
    compare two versions).
    """
    command = [
        "taskset", "-c", "0", sys.executable, "-m", "uvicorn", spec,
        "--host", "127.0.0.1", "--port", str(port), "--no-access-log", "--no-proxy-headers",
        "--log-level", "warning", "--loop", "uvloop", "--http", "httptools",
    ]  # fmt: skip
    full_env = {**os.environ, "PYTHONPATH": str(root), **env}
    out = open(log, "ab") if log is not None else subprocess.DEVNULL  # noqa: SIM115
    try:
        # uvicorn imports from its working directory first (`--app-dir .`): `root` (or
        # `cwd`) serves another tree's package.
        proc = subprocess.Popen(command, env=full_env, cwd=cwd or root, stdout=out, stderr=out)
    finally:
        if not isinstance(out, int):
            out.close()
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if _answers(port, ready_path):
            return proc
        time.sleep(0.05)
    proc.kill()
    raise RuntimeError(f"{spec} ({env.get('BENCH_CONFIG')}): server did not start")


def stop(proc: subprocess.Popen[bytes]) -> None:
    """Terminate a server; kill it when it has not exited 15 s later."""
    proc.terminate()
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def _answers(port: int, ready_path: str | None) -> bool:
    try:
        if ready_path is None:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return True
        return httpx.get(f"http://127.0.0.1:{port}{ready_path}", timeout=0.5).status_code == 200
    except (OSError, httpx.HTTPError):
        return False


def wrk(
    url: str, seconds: float, connections: int, method: str = "GET", lua: str = ""
) -> tuple[float, int, float]:
    """(requests/s, requests, p99 ms) of one wrk run on core 1; non-2xx responses raise."""
    r = wrk_run(url, seconds, connections, method, lua)
    return r["rps"], int(r["requests"]), r["p99_ms"]


def wrk_run(
    url: str, seconds: float, connections: int, method: str = "GET", lua: str = ""
) -> dict[str, float]:
    """One wrk run on core 1: requests/s, requests, p50/p99 ms; non-2xx responses raise.

    POSTs carry the JSON body `{}`; `lua` is appended to the wrk script (a `request`
    function there replaces the fixed request, e.g. to send a header value of its own).
    """
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as script:
        script.write(
            f'wrk.method = "{method}"\n'
            + ('wrk.body = "{}"\nwrk.headers["Content-Type"] = "application/json"\n'
               if method != "GET" else "")
            + lua
        )  # fmt: skip
    command = [
        "taskset", "-c", "1", "wrk", "-t1", f"-c{connections}", f"-d{int(seconds)}s",
        "--latency", "-s", script.name, url,
    ]  # fmt: skip
    timeout = seconds + 30
    try:
        out = subprocess.run(
            command, capture_output=True, text=True, check=True, timeout=timeout
        ).stdout
    finally:
        os.unlink(script.name)
    if "Non-2xx" in out:
        raise RuntimeError(f"{url}: non-2xx responses\n{out}")
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    total = int(re.search(r"(\d+) requests in", out).group(1))  # type: ignore[union-attr]
    return {
        "rps": rps,
        "requests": float(total),
        "p50_ms": _percentile(out, "50"),
        "p99_ms": _percentile(out, "99"),
    }


def _percentile(out: str, which: str) -> float:
    """A latency percentile of wrk's `--latency` distribution, in ms (NaN when absent)."""
    found = re.search(rf"\b{which}%\s+([\d.]+)(us|ms|s)\b", out)
    scale = {"us": 0.001, "ms": 1.0, "s": 1000.0}
    return float(found.group(1)) * scale[found.group(2)] if found else float("nan")


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
    lua: str | Callable[[], str] = "",
    probe: Callable[[str], None] | None = None,
    counters: Mapping[str, Callable[[], float]] | None = None,
    root: Path = ROOT,
    log: Path | None = None,
    cwd: Path | None = None,
) -> dict[str, float]:
    """One round: start the server, warm up for a second, measure, stop.

    Returns requests/s, the server's CPU µs per request, wrk's p50 and p99 in ms and, for each
    of `counters` (cumulative figures read before and after the measured run, such as a Redis
    server's commands), its increase per request. `probe(base_url)` runs after the warm-up and
    raises when the server does not do what the configuration claims. A callable `lua` is
    called for each wrk run (warm-up included), so each run can send values of its own.
    """
    script = lua if callable(lua) else (lambda: lua)
    port = free_port()
    env = {"BENCH_CONFIG": config, **(env or {})}
    proc = start_uvicorn(spec, port, env, ready_path, log, root=root, cwd=cwd)
    try:
        base = f"http://127.0.0.1:{port}"
        wrk_run(base + path, 1, connections, method, script())
        if probe is not None:
            probe(base)
        sampled = {name: read() for name, read in (counters or {}).items()}
        before = cpu_seconds(proc.pid)
        r = wrk_run(base + path, duration, connections, method, script())
        if r["requests"] == 0:
            raise RuntimeError(f"{config} {path}: no request completed in {duration} s")
        cpu_us = (cpu_seconds(proc.pid) - before) / r["requests"] * 1e6
        per_request = {
            name: (read() - sampled[name]) / r["requests"]
            for name, read in (counters or {}).items()
        }
    finally:
        stop(proc)
    return {
        "rps": r["rps"],
        "cpu_us": cpu_us,
        "p50_ms": r["p50_ms"],
        "p99_ms": r["p99_ms"],
        **per_request,
    }
