"""Outbound client: per-call overhead, open-breaker fast-fail, and deadlines peers cannot hold.

A scripted HTTP/1.1 upstream runs in a subprocess pinned to core 1; this process (the client)
pins itself to core 0. Three measurements, one run:

1. Overhead on a healthy upstream: sequential keep-alive GETs through `http_client()` against a
   plain `httpx.AsyncClient` (and the sync pair), rounds interleaved, medians of client CPU µs
   per call (`time.process_time`, which load on the other core barely disturbs) and wall µs.
2. Fast-fail cost of an open breaker: µs per call that raises `CircuitOpen` (no I/O).
3. A slow-loris upstream (headers, then one byte every 0.2 s) and a silent one (accepts, never
   answers), each with a 0.5 s attempt timeout and a 1.0 s total deadline, under our client,
   tenacity (`stop_after_delay`) and stamina (`timeout=`), both over httpx with a 0.5 s timeout.

    python benchmarks/bench_outbound.py [--calls 2000] [--rounds 7]

Prints markdown tables ready for benchmarks/RESULTS.md.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from launchready_sdk.outbound import (  # noqa: E402
    CircuitOpen,
    OutboundPolicy,
    http_client,
    http_client_sync,
)

BODY = b'{"id": 1, "status": "succeeded", "amount": 1999}'


# --- the upstream (run with --serve PORT) ------------------------------------------------------


async def _handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            path = head.split(b" ", 2)[1]
            if path == b"/ok":
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(BODY), BODY))
            elif path == b"/fail":
                writer.write(b"HTTP/1.1 500 Oops\r\nContent-Length: 0\r\n\r\n")
            elif path == b"/drip":
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 20\r\n\r\n")
                for _ in range(20):
                    await asyncio.sleep(0.2)
                    writer.write(b".")
                    await writer.drain()
            else:  # /hang
                await asyncio.sleep(3600)
    except (asyncio.IncompleteReadError, ConnectionError):
        pass
    finally:
        writer.close()


def serve(port: int) -> None:
    async def main() -> None:
        server = await asyncio.start_server(_handle, "127.0.0.1", port, backlog=512)
        async with server:
            await server.serve_forever()

    asyncio.run(main())


def start_upstream() -> tuple[subprocess.Popen[bytes], str]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    command = ["taskset", "-c", "1", sys.executable, __file__, "--serve", str(port)]
    proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return proc, f"http://127.0.0.1:{port}"
        except OSError:
            time.sleep(0.05)
    raise RuntimeError("upstream did not start")


# --- 1. overhead -------------------------------------------------------------------------------

POLICY = OutboundPolicy(timeout_s=5.0, deadline_s=15.0, attempts=3)


async def _time_async(client: httpx.AsyncClient, url: str, calls: int) -> tuple[float, float]:
    for _ in range(50):
        (await client.get(url)).raise_for_status()
    cpu, wall = time.process_time(), time.perf_counter()
    for _ in range(calls):
        await client.get(url)
    return (time.process_time() - cpu) / calls * 1e6, (time.perf_counter() - wall) / calls * 1e6


def _time_sync(client: httpx.Client, url: str, calls: int) -> tuple[float, float]:
    for _ in range(50):
        client.get(url).raise_for_status()
    cpu, wall = time.process_time(), time.perf_counter()
    for _ in range(calls):
        client.get(url)
    return (time.process_time() - cpu) / calls * 1e6, (time.perf_counter() - wall) / calls * 1e6


async def overhead(base: str, calls: int, rounds: int) -> dict[str, list[tuple[float, float]]]:
    results: dict[str, list[tuple[float, float]]] = {
        k: [] for k in ("plain", "ours", "plain_sync", "ours_sync")
    }
    url = base + "/ok"
    for _ in range(rounds):
        async with httpx.AsyncClient() as plain:
            results["plain"].append(await _time_async(plain, url, calls))
        async with http_client(POLICY) as ours:
            results["ours"].append(await _time_async(ours, url, calls))
        with httpx.Client() as plain_sync:
            results["plain_sync"].append(_time_sync(plain_sync, url, calls))
        with http_client_sync(POLICY) as ours_sync:
            results["ours_sync"].append(_time_sync(ours_sync, url, calls))
    return results


async def in_process(calls: int, rounds: int) -> tuple[float, float]:
    """CPU µs per call with no network at all (an in-memory transport under both clients)."""
    from launchready_sdk.testing import FaultTransport

    plain_us, ours_us = [], []
    for _ in range(rounds):
        async with httpx.AsyncClient(transport=FaultTransport()) as plain:
            plain_us.append((await _time_async(plain, "http://x.test/ok", calls))[0])
        async with http_client(POLICY, transport=FaultTransport()) as ours:
            ours_us.append((await _time_async(ours, "http://x.test/ok", calls))[0])
    return statistics.median(plain_us), statistics.median(ours_us)


# --- 2. open breaker ---------------------------------------------------------------------------


async def open_breaker_us(base: str, calls: int) -> float:
    policy = OutboundPolicy(attempts=1, breaker_min_calls=1, breaker_break_s=600.0)
    async with http_client(policy) as client:
        await client.get(base + "/fail")
        start = time.process_time()
        for _ in range(calls):
            with contextlib.suppress(CircuitOpen):
                await client.get(base + "/fail")
        return (time.process_time() - start) / calls * 1e6


# --- 3. deadlines under peers ------------------------------------------------------------------

ATTEMPT_S, DEADLINE_S = 0.5, 1.0


async def ours_call(url: str) -> None:
    policy = OutboundPolicy(timeout_s=ATTEMPT_S, deadline_s=DEADLINE_S, attempts=3)
    async with http_client(policy) as client:
        await client.get(url)


async def tenacity_call(url: str) -> None:
    import tenacity

    async with httpx.AsyncClient(timeout=ATTEMPT_S) as client:
        retrying = tenacity.AsyncRetrying(
            stop=tenacity.stop_after_attempt(3) | tenacity.stop_after_delay(DEADLINE_S),
            wait=tenacity.wait_random_exponential(multiplier=0.1, max=1.0),
            retry=tenacity.retry_if_exception_type(httpx.TransportError),
            reraise=True,
        )
        async for attempt in retrying:
            with attempt:
                await client.get(url)


async def stamina_call(url: str) -> None:
    import stamina

    stamina.instrumentation.set_on_retry_hooks([])

    @stamina.retry(on=httpx.TransportError, attempts=3, timeout=DEADLINE_S, wait_max=1.0)
    async def call(client: httpx.AsyncClient) -> None:
        await client.get(url)

    async with httpx.AsyncClient(timeout=ATTEMPT_S) as client:
        await call(client)


async def elapsed(fn: Callable[[str], Awaitable[None]], url: str) -> tuple[float, str]:
    start = time.perf_counter()
    try:
        await fn(url)
        outcome = "returned"
    except Exception as exc:
        outcome = type(exc).__name__
    return time.perf_counter() - start, outcome


async def deadlines(base: str) -> list[tuple[str, str, float, str]]:
    rows = []
    for scenario in ("/drip", "/hang"):
        for name, fn in (
            ("ours", ours_call),
            ("tenacity", tenacity_call),
            ("stamina", stamina_call),
        ):
            seconds, outcome = await elapsed(fn, base + scenario)
            rows.append((scenario, name, seconds, outcome))
    return rows


# --- report ------------------------------------------------------------------------------------


def median_pair(samples: list[tuple[float, float]]) -> tuple[float, float]:
    return statistics.median(s[0] for s in samples), statistics.median(s[1] for s in samples)


def report(
    res: dict[str, Any],
    mem: tuple[float, float],
    breaker_us: float,
    rows: list[tuple[str, str, float, str]],
) -> None:
    print("| client | CPU µs/call | wall µs/call | CPU vs plain httpx | wall vs plain httpx |")
    print("|---|---:|---:|---:|---:|")
    for ours, plain in (("ours", "plain"), ("ours_sync", "plain_sync")):
        p_cpu, p_wall = median_pair(res[plain])
        o_cpu, o_wall = median_pair(res[ours])
        label = "async" if ours == "ours" else "sync"
        print(f"| plain httpx ({label}) | {p_cpu:.1f} | {p_wall:.1f} | 1.00 | 1.00 |")
        print(
            f"| http_client ({label}) | {o_cpu:.1f} | {o_wall:.1f} | "
            f"{o_cpu / p_cpu:.3f} | {o_wall / p_wall:.3f} |"
        )
    print(
        f"| in-memory transport, no network (async) | plain {mem[0]:.1f} / ours {mem[1]:.1f} | "
        f"— | +{mem[1] - mem[0]:.1f} µs | — |"
    )
    p_cpu = median_pair(res["plain"])[0]
    print()
    print("| open breaker | CPU µs/call | vs a healthy plain httpx call |")
    print("|---|---:|---:|")
    print(f"| CircuitOpen raised, no I/O | {breaker_us:.1f} | {breaker_us / p_cpu:.3f} |")
    print()
    print(f"Attempt timeout {ATTEMPT_S} s, deadline {DEADLINE_S} s, 3 attempts:")
    print()
    print("| upstream | library | elapsed s | over deadline | outcome |")
    print("|---|---|---:|---:|---|")
    for scenario, name, seconds, outcome in rows:
        kind = "slow-loris (1 B / 0.2 s)" if scenario == "/drip" else "accepts, never answers"
        print(f"| {kind} | {name} | {seconds:.2f} | {seconds / DEADLINE_S:.2f}x | {outcome} |")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--serve", type=int)
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()
    if args.serve:
        serve(args.serve)
        return
    os.sched_setaffinity(0, {0})
    proc, base = start_upstream()
    try:
        res = asyncio.run(overhead(base, args.calls, args.rounds))
        mem = asyncio.run(in_process(args.calls, args.rounds))
        breaker_us = asyncio.run(open_breaker_us(base, args.calls * 5))
        rows = asyncio.run(deadlines(base))
    finally:
        proc.terminate()
        proc.wait()
    report(res, mem, breaker_us, rows)


if __name__ == "__main__":
    main()
