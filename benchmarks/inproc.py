"""In-process ASGI driver: µs per request of one benchmark configuration, without sockets.

    python benchmarks/inproc.py benchmarks.apps_full sdk_full GET /products --blocks 9

Imports `<module>:app` with `BENCH_CONFIG=<config>`, runs its lifespan start-up, pushes
requests one at a time straight into the ASGI app (no sockets, no uvicorn, no wrk) and prints
two figures over `--blocks` blocks of `--block-size` requests, after one unmeasured block of
warm-up: the median wall-clock µs per request, and the median CPU µs per request of the whole
process (all threads), which unlike the wall-clock figure leaves out waiting on Redis. POSTs
carry the body `{}`; `--idempotency-key` gives each request an `Idempotency-Key` of its own;
`--header "Name: value"` adds a request header.
Every response must be 2xx.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import os
import statistics
import sys
import time
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

Message = dict[str, Any]


class Driver:
    """Calls one ASGI app with a fixed request and checks each response's status."""

    def __init__(
        self, app: Any, method: str, path: str, unique_key: bool, extra: list[str] | None = None
    ) -> None:
        self.app = app
        self.unique_key = unique_key
        self.token = uuid.uuid4().hex[:12]
        self.count = 0
        self.status = 0
        headers = [(b"host", b"127.0.0.1"), (b"user-agent", b"bench")]
        for item in extra or ():
            name, _, value = item.partition(":")
            headers.append((name.strip().lower().encode(), value.strip().encode()))
        self.body = b"{}" if method != "GET" else b""
        if self.body:
            headers += [(b"content-type", b"application/json"), (b"content-length", b"2")]
        self.scope: dict[str, Any] = {
            "type": "http",
            "asgi": {"version": "3.0"},
            "http_version": "1.1",
            "method": method,
            "scheme": "http",
            "path": path,
            "raw_path": path.encode(),
            "query_string": b"",
            "root_path": "",
            "client": ("127.0.0.1", 50000),
            "server": ("127.0.0.1", 8000),
            "headers": headers,
            "state": {},
        }

    async def receive(self) -> Message:
        return {"type": "http.request", "body": self.body, "more_body": False}

    async def send(self, message: Message) -> None:
        if message["type"] == "http.response.start":
            self.status = message["status"]

    async def one(self) -> None:
        scope = dict(self.scope)
        if self.unique_key:
            self.count += 1
            key = f"{self.token}-{self.count}".encode()
            scope["headers"] = [*self.scope["headers"], (b"idempotency-key", key)]
        await self.app(scope, self.receive, self.send)
        if not 200 <= self.status < 300:
            raise RuntimeError(f"{scope['method']} {scope['path']}: status {self.status}")


async def lifespan_start(app: Any) -> tuple[asyncio.Queue[Message], asyncio.Task[Any]]:
    """Send lifespan start-up and wait for it to complete; returns what shutdown needs."""
    inbox: asyncio.Queue[Message] = asyncio.Queue()
    started: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    async def send(message: Message) -> None:
        if message["type"] == "lifespan.startup.complete":
            started.set_result(None)
        elif message["type"] == "lifespan.startup.failed":
            started.set_exception(RuntimeError(message.get("message", "start-up failed")))

    scope = {"type": "lifespan", "asgi": {"version": "3.0"}, "state": {}}
    inbox.put_nowait({"type": "lifespan.startup"})
    task = asyncio.create_task(app(scope, inbox.get, send))
    await asyncio.wait_for(started, 20)
    return inbox, task


async def run(args: argparse.Namespace) -> tuple[float, float]:
    os.environ["BENCH_CONFIG"] = args.config
    app = importlib.import_module(args.module).app
    inbox, task = await lifespan_start(app)
    driver = Driver(app, args.method, args.path, args.idempotency_key, args.header)
    for _ in range(args.block_size):
        await driver.one()
    wall: list[float] = []
    cpu: list[float] = []
    for _ in range(args.blocks):
        start, start_cpu = time.perf_counter(), time.process_time()
        for _ in range(args.block_size):
            await driver.one()
        wall.append((time.perf_counter() - start) / args.block_size * 1e6)
        cpu.append((time.process_time() - start_cpu) / args.block_size * 1e6)
    inbox.put_nowait({"type": "lifespan.shutdown"})
    await asyncio.wait_for(task, 10)
    return statistics.median(wall), statistics.median(cpu)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("module")
    parser.add_argument("config")
    parser.add_argument("method")
    parser.add_argument("path")
    parser.add_argument("--blocks", type=int, default=9)
    parser.add_argument("--block-size", type=int, default=500)
    parser.add_argument("--idempotency-key", action="store_true")
    parser.add_argument("--header", action="append", default=[], help="NAME: VALUE, repeatable")
    args = parser.parse_args()
    import uvloop  # the loop uvicorn runs the servers on

    wall, cpu = uvloop.run(run(args))
    print(f"{wall} {cpu}", file=sys.stderr)


if __name__ == "__main__":
    main()
