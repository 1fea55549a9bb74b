"""Boot the app under test: uvicorn in a child process on a free loopback port.

The child runs in the current directory (so `examples.fastapi_shop.app:app` imports as it
would for `uvicorn`), with `--no-proxy-headers` so uvicorn leaves `X-Forwarded-For` to the
SDK, and with `LAUNCHREADY_TRUSTED_PROXIES` set to the loopback addresses unless the caller
set it: the bench is then the trusted proxy in front of many clients. Its output goes to a
log file that outlives the run. `stop()` sends SIGTERM, then SIGKILL after a grace period.

The bundled example shops (`examples.fastapi_shop`, `examples.django_shop`) refuse to start on
their development secrets and fake payment provider unless `SHOP_DEV_MODE=1`; for them, and
only for them, the child gets `SHOP_DEV_MODE=1` unless the caller set the variable, so
`launchready bench --app examples.fastapi_shop.app:app` works on a fresh machine, and a fresh
`SHOP_ADMIN_TOKEN` unless one is set, which `environ` shows (the smoke scenario's admin flow
reads it).
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.machinery
import json
import os
import re
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path

from launchready_sdk.cli.client import ClientError, Origin, Pool

TRUSTED_LOOPBACK = "127.0.0.1/32,::1/128"
BUNDLED_SHOPS = ("examples.fastapi_shop.", "examples.django_shop.")
SHOP_DEV_MODE = "SHOP_DEV_MODE"
SHOP_ADMIN_TOKEN = "SHOP_ADMIN_TOKEN"
STOP_GRACE_S = 10.0
_SPEC = re.compile(r"[A-Za-z_][\w.]*:[A-Za-z_][\w.]*\Z")


class BootError(Exception):
    """The app did not start; `log_tail` holds the last lines it wrote."""

    def __init__(self, message: str, log_tail: str = "") -> None:
        super().__init__(message)
        self.log_tail = log_tail


def check_app_spec(spec: str, cwd: str) -> str | None:
    """Why `spec` cannot be an app (bad shape, top-level module not found), or None."""
    if not _SPEC.match(spec):
        return f"--app {spec!r}: expected module:attribute, e.g. examples.fastapi_shop.app:app"
    top = spec.split(":", 1)[0].split(".", 1)[0]
    if top in sys.builtin_module_names:
        return None
    if importlib.machinery.PathFinder.find_spec(top, [cwd, *sys.path]) is None:
        return f"--app {spec!r}: no module named {top!r} in {cwd} or on the Python path"
    return None


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def default_log_path() -> Path:
    stamp = time.strftime("%Y%m%d-%H%M%S")
    return Path(tempfile.gettempdir()) / f"launchready-bench-{stamp}-{os.getpid()}.log"


def last_words(log: str) -> str:
    """The last non-empty line of a log, the `event` of a JSON log line, at most 300 chars."""
    lines = [line.strip() for line in log.splitlines() if line.strip()]
    if not lines:
        return ""
    last = lines[-1]
    with contextlib.suppress(ValueError):
        record = json.loads(last)
        if isinstance(record, dict) and isinstance(record.get("event"), str):
            last = record["event"]
    last = last.removeprefix("ERROR:").strip()
    return last if len(last) <= 300 else last[:299] + "\u2026"


class AppServer:
    """One uvicorn child serving `spec`."""

    def __init__(self, spec: str, log_path: Path, environ: Mapping[str, str] | None = None):
        self.spec = spec
        self.log_path = log_path
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        env = dict(os.environ if environ is None else environ)
        env.setdefault("LAUNCHREADY_TRUSTED_PROXIES", TRUSTED_LOOPBACK)
        self.shop_dev_mode = spec.startswith(BUNDLED_SHOPS) and SHOP_DEV_MODE not in env
        if self.shop_dev_mode:
            env[SHOP_DEV_MODE] = "1"
            env.setdefault(SHOP_ADMIN_TOKEN, "adm_" + secrets.token_urlsafe(24))
        self._env = env
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def environ(self) -> Mapping[str, str]:
        """The child's environment."""
        return self._env

    def start(self) -> None:
        """Start the child (does not wait for it to answer)."""
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        command = [
            sys.executable,
            "-m",
            "uvicorn",
            self.spec,
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--no-proxy-headers",
            "--timeout-graceful-shutdown",
            "5",
        ]
        # Private to the user: an app's start-up output may hold development credentials.
        fd = os.open(self.log_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        os.chmod(self.log_path, 0o600)  # an existing file keeps its mode on open
        with os.fdopen(fd, "wb") as log:
            self.proc = subprocess.Popen(
                command,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=self._env,
                cwd=os.getcwd(),
                start_new_session=True,  # a Ctrl-C in the terminal is ours to pass on
            )

    async def wait_ready(self, health_path: str, timeout_s: float) -> None:
        """Poll `health_path` until it answers below 500; BootError if the child dies first."""
        pool = Pool(Origin.parse(self.url), max_connections=1, timeout_s=2.0)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        try:
            while True:
                code = self.returncode
                if code is not None:
                    tail = self.log_tail()
                    message = f"the app exited during start-up with code {code}"
                    last = last_words(tail)
                    if last:
                        message += f": {last}"
                    raise BootError(message, tail if len(tail.strip().splitlines()) > 1 else "")
                with contextlib.suppress(ClientError):
                    response = await pool.request("GET", health_path)
                    if response.status < 500:
                        return
                if loop.time() > deadline:
                    raise BootError(
                        f"the app did not answer {health_path} within {timeout_s:g} s",
                        self.log_tail(),
                    )
                await asyncio.sleep(0.1)
        finally:
            await pool.close()

    @property
    def returncode(self) -> int | None:
        return None if self.proc is None else self.proc.poll()

    def stop(self) -> None:
        """SIGTERM, then SIGKILL after `STOP_GRACE_S`."""
        proc = self.proc
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=STOP_GRACE_S)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()

    def log_tail(self, lines: int = 20) -> str:
        """The last `lines` lines of the child's log."""
        try:
            text = self.log_path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return ""
        return "\n".join(text.rstrip().splitlines()[-lines:])
