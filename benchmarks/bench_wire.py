"""What `launchready bench`'s own HTTP client costs on bodies a server slices finely.

Rows:
  (a) parsing a chunked body of N one-byte chunks with `wire.ResponseParser`, fed as it would
      arrive (64 KiB reads), for N = 15,000, 30,000 and 60,000: the cost per chunk stays flat
      when parsing is linear (it grew with N when the body length was summed per chunk);
  (b) downloading a 30,000-row streaming CSV (one chunk per row, written row by row by a
      loopback asyncio server in a thread of its own) with the bench's client (`client.Pool`,
      keep-alive), with a plain client (a socket read to the close, as curl does without
      parsing chunks), and with httpx (h11 parses the chunks in Python).

Rows run interleaved, round after round; figures are medians, and the ratios are medians of
per-round ratios, so load from other processes affects each side alike. Run:

    python benchmarks/bench_wire.py
"""

from __future__ import annotations

import asyncio
import platform
import socket
import statistics
import threading
import time
from collections.abc import Callable

import httpx

from launchready_sdk.cli.client import Origin, Pool
from launchready_sdk.cli.wire import ResponseParser

ROUNDS = 15
CSV_ROWS = 30_000
COMMAND = "python benchmarks/bench_wire.py"
HEAD = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"


def parse_tiny_chunks(n: int) -> Callable[[], float]:
    wire = HEAD + b"1\r\nx\r\n" * n + b"0\r\n\r\n"
    reads = [wire[i : i + 65536] for i in range(0, len(wire), 65536)]

    def run() -> float:
        parser = ResponseParser()
        started = time.perf_counter()
        response = None
        for data in reads:
            response = parser.feed(data) or response
        elapsed = time.perf_counter() - started
        assert response is not None
        assert len(response.body) == n
        return elapsed

    return run


class CsvServer:
    """A keep-alive server streaming CSV_ROWS rows as chunks, on 127.0.0.1 in a thread."""

    def __init__(self) -> None:
        self.port = 0
        self._ready = threading.Event()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._tasks: set[asyncio.Task[None]] = set()

    def __enter__(self) -> CsvServer:
        self._thread.start()
        self._ready.wait(10)
        return self

    def __exit__(self, *exc: object) -> None:
        asyncio.run_coroutine_threadsafe(self._shutdown(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()

    async def _shutdown(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    def _run(self) -> None:
        server = self._loop.run_until_complete(asyncio.start_server(self._serve, "127.0.0.1", 0))
        self.port = server.sockets[0].getsockname()[1]
        self._ready.set()
        self._loop.run_forever()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                writer.write(HEAD)
                for i in range(CSV_ROWS):
                    row = b"%d,product %d,%d.99\n" % (i, i, i % 500)
                    writer.write(b"%x\r\n%s\r\n" % (len(row), row))
                    if i % 200 == 0:
                        await writer.drain()
                writer.write(b"0\r\n\r\n")
                await writer.drain()
                if b"close" in head.lower():
                    break
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.CancelledError):
            pass
        finally:
            self._tasks.discard(task)
            writer.transport.abort()


def plain(port: int) -> float:
    started = time.perf_counter()
    with socket.create_connection(("127.0.0.1", port)) as sock:
        sock.sendall(b"GET /export.csv HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        while sock.recv(1 << 16):
            pass
    return time.perf_counter() - started


def with_httpx(client: httpx.Client) -> float:
    started = time.perf_counter()
    assert len(client.get("/export.csv").content) > CSV_ROWS * 10
    return time.perf_counter() - started


async def with_bench_client(pool: Pool) -> float:
    started = time.perf_counter()
    response = await pool.request("GET", "/export.csv")
    assert len(response.body) > CSV_ROWS * 10
    return time.perf_counter() - started


def main() -> None:
    sizes = (15_000, 30_000, 60_000)
    parsers = {n: parse_tiny_chunks(n) for n in sizes}
    per_chunk: dict[int, list[float]] = {n: [] for n in sizes}
    csv: dict[str, list[float]] = {"bench": [], "plain": [], "httpx": []}
    ratios: dict[str, list[float]] = {"bench/plain": [], "bench/httpx": [], "60k/15k": []}
    loop = asyncio.new_event_loop()
    with CsvServer() as server:
        url = f"http://127.0.0.1:{server.port}"
        pool = Pool(Origin.parse(url), timeout_s=60)
        with httpx.Client(base_url=url, timeout=60) as client:
            for _ in range(ROUNDS):
                for n in sizes:
                    per_chunk[n].append(parsers[n]() / n * 1e6)
                ratios["60k/15k"].append(per_chunk[60_000][-1] / per_chunk[15_000][-1])
                b = loop.run_until_complete(with_bench_client(pool))
                p = plain(server.port)
                h = with_httpx(client)
                csv["bench"].append(b)
                csv["plain"].append(p)
                csv["httpx"].append(h)
                ratios["bench/plain"].append(b / p)
                ratios["bench/httpx"].append(b / h)
        loop.run_until_complete(pool.close())
    loop.close()
    med = statistics.median
    print(f"`{COMMAND}` ({ROUNDS} interleaved rounds, medians; Python {platform.python_version()})")
    print()
    print("| case | figure | ratio (median of per-round ratios) |")
    print("|---|---:|---:|")
    for n in sizes:
        extra = f"{med(ratios['60k/15k']):.2f} (60k vs 15k)" if n == 60_000 else ""
        print(f"| (a) parse {n:,} one-byte chunks | {med(per_chunk[n]):.2f} µs/chunk | {extra} |")
    print(f"| (b) 30,000-row CSV, bench client | {med(csv['bench']) * 1000:.1f} ms | |")
    print(
        f"| (b) 30,000-row CSV, plain socket to close | {med(csv['plain']) * 1000:.1f} ms | "
        f"bench/plain {med(ratios['bench/plain']):.2f} |"
    )
    print(
        f"| (b) 30,000-row CSV, httpx | {med(csv['httpx']) * 1000:.1f} ms | "
        f"bench/httpx {med(ratios['bench/httpx']):.2f} |"
    )


if __name__ == "__main__":
    main()
