"""Loopback servers for the probe's tests: switchable targets, alert receivers, an SMTP sink.

Each runs its own asyncio loop in a daemon thread, so tests drive them from plain code while a
probe (a subprocess, or a coroutine on the test's loop) talks to them over real sockets.
"""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import json
import os
import signal
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

from tests.conftest import ROOT

BIG_BODY_BYTES = 10 * 1024 * 1024
BIG_BODY_NEEDLE = b"needle"  # the last bytes of the 10 MB body
BOMB = gzip.compress(b"\0" * BIG_BODY_BYTES + BIG_BODY_NEEDLE)


class LoopThread:
    """An asyncio loop running in a daemon thread."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self._thread.start()

    def call(self, coro: Coroutine[Any, Any, Any], timeout: float = 10.0) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def stop(self) -> None:
        """Cancel what still runs (hanging answers), stop and close the loop."""

        async def cancel_all() -> None:
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

        with contextlib.suppress(Exception):
            self.call(cancel_all())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(5)
        self.loop.close()


class HttpServer:
    """A tiny HTTP/1.1 server; `respond(method, path, headers, body)` decides each answer.

    `respond` returns (status, headers, body) or "hang" (never answer) or a coroutine function
    taking the writer (custom streaming). One request per connection.
    """

    def __init__(self, respond: Callable[..., Any], tls: ssl.SSLContext | None = None) -> None:
        self._respond = respond
        self._tls = tls
        self._thread = LoopThread()
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self.port = 0
        self._thread.call(self._listen())
        scheme = "https" if tls else "http"
        self.url = f"{scheme}://127.0.0.1:{self.port}"

    async def _listen(self) -> None:
        self._server = await asyncio.start_server(
            self._serve, "127.0.0.1", self.port, ssl=self._tls, reuse_address=True
        )
        self.port = self._server.sockets[0].getsockname()[1]

    def refuse(self) -> None:
        """Stop listening: connections are refused until `listen()`."""

        async def close() -> None:
            if self._server is not None:
                self._server.close()
                for writer in list(self._writers):
                    writer.transport.abort()
                self._server = None

        self._thread.call(close())

    def listen(self) -> None:
        if self._server is None:
            self._thread.call(self._listen())

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.add(writer)
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            lines = head.decode("latin-1").split("\r\n")
            method, path, _ = lines[0].split(" ", 2)
            headers = {}
            for line in lines[1:]:
                if ":" in line:
                    name, _, value = line.partition(":")
                    headers[name.strip().lower()] = value.strip()
            length = int(headers.get("content-length", "0"))
            body = await reader.readexactly(length) if length else b""
            answer = self._respond(method, path, headers, body)
            if answer == "hang":
                await asyncio.sleep(3600)
                return
            if callable(answer):
                await answer(writer)
                return
            status, extra, content = answer
            out = [f"HTTP/1.1 {status} X", f"Content-Length: {len(content)}", "Connection: close"]
            out += [f"{k}: {v}" for k, v in extra.items()]
            writer.write(("\r\n".join(out) + "\r\n\r\n").encode() + content)
            await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            pass
        except asyncio.CancelledError:
            pass
        finally:
            self._writers.discard(writer)
            with contextlib.suppress(Exception):
                writer.close()

    def stop(self) -> None:
        self.refuse()
        self._thread.stop()


class Target:
    """A target whose paths answer by mode: up, 503, hang, refused, loop, big, or a body."""

    def __init__(self, tls: ssl.SSLContext | None = None) -> None:
        self.modes: dict[str, str] = {}
        self.default = "up"
        self.fail_next: dict[str, int] = {}  # path -> 503s to give before the mode applies
        self.hits: dict[str, int] = {}
        self.requests: list[dict[str, str]] = []  # method, path and headers of each request
        self.server = HttpServer(self._respond, tls)
        self.url = self.server.url
        self.refused = False

    def set(self, mode: str, path: str | None = None) -> None:
        """Switch `path` (or every path) to `mode`; "refused" stops the whole server."""
        if mode == "refused":
            self.refused = True
            self.server.refuse()
            return
        if self.refused:
            self.refused = False
            self.server.listen()
        if path is None:
            self.modes.clear()
            self.default = mode
        else:
            self.modes[path] = mode

    def _respond(self, method: str, path: str, headers: dict[str, str], body: bytes) -> Any:
        self.hits[path] = self.hits.get(path, 0) + 1
        self.requests.append({"method": method, "path": path, **headers})
        if self.fail_next.get(path, 0) > 0:
            self.fail_next[path] -= 1
            return 503, {}, b"busy"
        mode = self.modes.get(path, self.default)
        if mode == "up":
            return 200, {"Content-Type": "text/plain"}, b"ok: Sign in to the shop"
        if mode == "503":
            return 503, {}, b"unavailable"
        if mode == "hang":
            return "hang"
        if mode == "slow":  # 200 after 0.3 s
            return self._slow
        if mode == "echo":  # the request, back as the body
            return 200, {}, f"{method} {body.decode()}".encode()
        if mode == "gzip":
            return 200, {"Content-Encoding": "gzip"}, gzip.compress(b"ok: Sign in to the shop")
        if mode == "bomb":  # 10 MB of zeros in about 10 KB, the needle at the end
            return 200, {"Content-Encoding": "gzip"}, BOMB
        if mode == "flap":  # every other request fails
            return (503, {}, b"busy") if self.hits[path] % 2 else (200, {}, b"ok")
        if mode == "loop":
            return 302, {"Location": path}, b""
        if mode == "big":
            return self._big
        raise AssertionError(f"unknown mode {mode}")

    async def _slow(self, writer: asyncio.StreamWriter) -> None:
        await asyncio.sleep(0.3)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
        await writer.drain()

    async def _big(self, writer: asyncio.StreamWriter) -> None:
        head = f"HTTP/1.1 200 OK\r\nContent-Length: {BIG_BODY_BYTES}\r\n\r\n"
        writer.write(head.encode())
        chunk = b"x" * 65536
        for _ in range(BIG_BODY_BYTES // len(chunk) - 1):
            writer.write(chunk)
            await writer.drain()
        writer.write(chunk[: -len(BIG_BODY_NEEDLE)] + BIG_BODY_NEEDLE)  # found by a whole read
        await writer.drain()

    def stop(self) -> None:
        self.server.stop()


class Receiver:
    """Records what is POSTed to it (webhooks, Slack) and GETs (heartbeats)."""

    def __init__(self, mode: str = "ok") -> None:
        self.mode = mode
        self.posts: list[dict[str, Any]] = []
        self.gets: list[str] = []
        self.server = HttpServer(self._respond)
        self.url = self.server.url

    def _respond(self, method: str, path: str, headers: dict[str, str], body: bytes) -> Any:
        if method == "GET":
            self.gets.append(path)
            return 200, {}, b"OK"
        self.posts.append(
            {
                "path": path,
                "headers": headers,
                "raw": body,
                "json": json.loads(body) if body else None,
                "at": time.monotonic(),
            }
        )
        if self.mode == "hang":
            return "hang"
        if self.mode == "500":
            return 500, {}, b"oops"
        return 200, {}, b"ok"

    def events(self) -> list[dict[str, Any]]:
        """The JSON bodies received, in order."""
        return [post["json"] for post in self.posts]

    def stop(self) -> None:
        self.server.stop()


class SmtpSink:
    """An aiosmtpd server on loopback that keeps every message."""

    def __init__(self) -> None:
        from aiosmtpd.controller import Controller

        from tests.conftest import free_port

        self.messages: list[Any] = []
        sink = self

        class Handler:
            async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
                import email

                sink.messages.append(email.message_from_bytes(envelope.content))
                return "250 Message accepted for delivery"

        self.port = free_port()
        self.controller = Controller(Handler(), hostname="127.0.0.1", port=self.port)
        self.controller.start()
        self.url = f"smtp://127.0.0.1:{self.port}"

    def stop(self) -> None:
        self.controller.stop()


class Probe:
    """`launchready probe --json ...` in a subprocess; its log lines parsed on demand."""

    def __init__(self, args: list[str], tmp: Path, env: dict[str, str] | None = None) -> None:
        self.log_path = tmp / f"probe-{time.monotonic_ns()}.log"
        self._log = self.log_path.open("wb")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "launchready_sdk.cli", "probe", "--json", *args],
            stdout=self._log,
            stderr=subprocess.STDOUT,
            cwd=ROOT,
            env={**os.environ, "PYTHONPATH": str(ROOT), **(env or {})},
        )

    def raw(self) -> str:
        return self.log_path.read_text(errors="replace")

    def lines(self, event: str | None = None) -> list[dict[str, Any]]:
        out = []
        for raw in self.raw().splitlines():
            try:
                line = json.loads(raw)
            except ValueError:
                continue
            if isinstance(line, dict) and (event is None or line.get("event") == event):
                out.append(line)
        return out

    def wait_for(
        self, predicate: Callable[[], Any], timeout: float = 20.0, what: str = "condition"
    ) -> Any:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            value = predicate()
            if value:
                return value
            if self.proc.poll() is not None:
                value = predicate()
                if value:
                    return value
                raise AssertionError(f"probe exited ({self.proc.returncode}):\n{self.raw()}")
            time.sleep(0.02)
        raise AssertionError(f"timed out waiting for {what}; the probe's log:\n{self.raw()}")

    def checks(self, target: str | None = None) -> list[dict[str, Any]]:
        return [
            line for line in self.lines("probe.check") if target is None or line["target"] == target
        ]

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self._log.close()

    def terminate(self, timeout: float = 10.0) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()
        return self.proc.returncode

    def wait(self, timeout: float = 30.0) -> int:
        try:
            return self.proc.wait(timeout)
        finally:
            self._log.close()


def settle(seconds: float) -> None:
    """Let a running probe go on for `seconds` (to see that nothing more happens)."""
    time.sleep(seconds)
