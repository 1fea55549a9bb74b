"""Run the fake providers in a daemon thread of the current process, for local runs."""

from __future__ import annotations

import asyncio
import socket
import threading
import time

import uvicorn

from examples.providers.app import create_app


def start_in_thread() -> tuple[str, uvicorn.Server]:
    """Start the providers on a free loopback port, in a thread with its own event loop."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    config = uvicorn.Config(
        create_app(), host="127.0.0.1", port=port, log_level="warning", access_log=False
    )
    server = uvicorn.Server(config)
    threading.Thread(target=server.run, name="fake-providers", daemon=True).start()
    return f"http://127.0.0.1:{port}", server


async def start(timeout_s: float = 10.0) -> tuple[str, uvicorn.Server]:
    """`start_in_thread()`, then wait (without blocking the loop) until the server listens."""
    url, server = start_in_thread()
    deadline = time.monotonic() + timeout_s
    while not server.started:
        if time.monotonic() > deadline:
            raise RuntimeError(f"the fake providers did not start on {url}")
        await asyncio.sleep(0.02)
    return url, server
