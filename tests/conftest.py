"""Shared fixtures: a key prefix per run on the shared Redis, private redis-servers, uvicorn."""

from __future__ import annotations

import asyncio
import io
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, settings

# A shared 2-core machine: per-example deadlines would make property tests flaky, not stricter.
settings.register_profile(
    "launchready", deadline=None, suppress_health_check=[HealthCheck.too_slow], print_blob=True
)
settings.load_profile("launchready")

SHARED_REDIS_URL = os.environ.get("LAUNCHREADY_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
RUN_PREFIX = f"lrtest-{uuid.uuid4().hex[:12]}"
ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    """The shared Redis; everything this run writes is under RUN_PREFIX and removed after."""
    import redis

    client = redis.Redis.from_url(SHARED_REDIS_URL)
    client.ping()
    yield SHARED_REDIS_URL
    for pattern in (f"{RUN_PREFIX}*", f"{{{RUN_PREFIX}*"):  # hash-tagged keys start with "{"
        for key in client.scan_iter(match=pattern, count=1000):
            client.delete(key)
    client.close()


@pytest.fixture
def redis_prefix() -> str:
    """A key prefix unique to this test, under the run's prefix."""
    return f"{RUN_PREFIX}-{uuid.uuid4().hex[:8]}"


class PrivateRedis:
    """A redis-server of the test's own, which it may kill, pause (SIGSTOP) and restart."""

    def __init__(self, tmp: Path) -> None:
        self.port = free_port()
        self.tmp = tmp
        self.proc: subprocess.Popen[bytes] | None = None
        self.url = f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        binary = shutil.which("redis-server")
        assert binary, "redis-server is not installed"
        self.proc = subprocess.Popen(
            [
                binary,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(self.tmp),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2) as sock:
                    sock.sendall(b"PING\r\n")
                    if sock.recv(16).startswith(b"+PONG"):
                        return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("private redis-server did not start")

    def kill(self) -> None:
        if self.proc is not None:
            self.cont()
            self.proc.kill()
            self.proc.wait()
            self.proc = None

    def pause(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGSTOP)

    def cont(self) -> None:
        if self.proc is not None:
            self.proc.send_signal(signal.SIGCONT)


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[PrivateRedis]:
    """A private redis-server on a free port, stopped at the end of the test."""
    server = PrivateRedis(tmp_path)
    server.start()
    yield server
    server.kill()


class Server:
    """A uvicorn subprocess serving `spec` on a free loopback port, its log kept in a file."""

    def __init__(
        self, spec: str, env: dict[str, str], log_path: Path, args: list[str] | None = None
    ) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = log_path
        self._log = log_path.open("wb")
        self.proc = subprocess.Popen(
            self.command(spec, args or []),
            stdout=self._log,
            stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONPATH": str(ROOT), **env},
            cwd=ROOT,
        )

    def command(self, spec: str, args: list[str]) -> list[str]:
        """The server's command line (uvicorn here)."""
        return [sys.executable, "-m", "uvicorn", spec, "--host", "127.0.0.1",
                "--port", str(self.port), "--no-proxy-headers", "--no-server-header",
                *args]  # fmt: skip

    def wait_ready(self, path: str = "/healthz", timeout_s: float = 20.0) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited:\n{self.log_path.read_text()}")
            try:
                if httpx.get(self.url + path, timeout=0.5).status_code < 500:
                    return
            except httpx.HTTPError:
                time.sleep(0.05)
        raise RuntimeError(f"server did not answer:\n{self.log_path.read_text()}")

    def log_lines(self) -> list[dict[str, Any]]:
        """The JSON lines the server has written so far (non-JSON lines are skipped)."""
        self._log.flush()
        lines = []
        for raw in self.log_path.read_text(errors="replace").splitlines():
            try:
                value = json.loads(raw)
            except ValueError:
                continue
            if isinstance(value, dict):
                lines.append(value)
        return lines

    def raw_log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()


class GunicornServer(Server):
    """A gunicorn subprocess (sync workers by default) serving the WSGI app `spec`."""

    def __init__(
        self,
        spec: str,
        env: dict[str, str],
        log_path: Path,
        args: list[str] | None = None,
        workers: int = 2,
    ) -> None:
        self.workers = workers
        super().__init__(spec, env, log_path, args)

    def command(self, spec: str, args: list[str]) -> list[str]:
        return [sys.executable, "-m", "gunicorn", spec, "--bind", f"127.0.0.1:{self.port}",
                "--workers", str(self.workers), "--timeout", "30", "--graceful-timeout", "10",
                *args]  # fmt: skip

    def worker_pids(self) -> list[int]:
        """The pids of the master's worker processes."""
        children = Path(f"/proc/{self.proc.pid}/task/{self.proc.pid}/children")
        return [int(pid) for pid in children.read_text().split()]

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)  # graceful: workers finish and exit
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()


@pytest.fixture
def serve(tmp_path: Path) -> Iterator[Any]:
    """Start uvicorn subprocesses: `serve("tests.apps.basic:app", {"ENV": "x"})`."""
    servers: list[Server] = []

    def start(spec: str, env: dict[str, str] | None = None, ready: str = "/healthz") -> Server:
        server = Server(spec, env or {}, tmp_path / f"server-{len(servers)}.log")
        servers.append(server)
        server.wait_ready(ready)
        return server

    yield start
    for server in servers:
        server.stop()


class LogCapture(io.StringIO):
    """A stream that collects the JSON log lines written to it."""

    def records(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.getvalue().splitlines() if line.strip()]


@pytest.fixture
def log_stream() -> LogCapture:
    """A stream for `LaunchReady(log_stream=...)`; `.records()` parses what was logged."""
    return LogCapture()


@pytest.fixture
async def asgi_client() -> AsyncIterator[Any]:
    """`make(app)` returns an httpx.AsyncClient that calls the ASGI app in-process."""
    clients: list[httpx.AsyncClient] = []

    def make(app: Any, client: tuple[str, int] = ("203.0.113.7", 50000)) -> httpx.AsyncClient:
        transport = httpx.ASGITransport(app=app, client=client)
        c = httpx.AsyncClient(transport=transport, base_url="http://testserver")
        clients.append(c)
        return c

    yield make
    await asyncio.gather(*(c.aclose() for c in clients))
