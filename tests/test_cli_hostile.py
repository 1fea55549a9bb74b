"""`launchready bench` against servers it does not control: tiny chunks, endless trailers,
malformed framing, 1xx responses mixed with chunked bodies, a streaming CSV, and scenarios
whose JSON integers do not fit in 64 bits. Every server here is a small loopback server
written for the test; each test is bounded in time and bytes and stops by itself."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from launchready_sdk.cli import main
from launchready_sdk.cli.client import Origin, Pool
from launchready_sdk.cli.html import render_html
from launchready_sdk.cli.scenario import Step
from launchready_sdk.cli.stats import percentile
from launchready_sdk.cli.wire import MAX_HEAD_BYTES, ClientError, ResponseParser
from tests.conftest import ROOT

Handler = Callable[[asyncio.StreamWriter, str, bytes], Awaitable[bool]]
CHUNKED_HEAD = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"


class LoopbackServer:
    """An HTTP/1.1 keep-alive server on 127.0.0.1, run by an event loop in a thread of its own.

    `routes` maps a path to `handler(writer, path, body) -> keep the connection open?`; a
    `/healthz` answering 200 is built in (the bench probes it first). Request bodies are kept
    in `bodies`.
    """

    def __init__(self, routes: dict[str, Handler]) -> None:
        self.routes = {"/healthz": answer(b"ok"), **routes}
        self.bodies: list[bytes] = []
        self.port = 0
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._stop: asyncio.Event | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._thread = threading.Thread(target=self._run, name="loopback-server", daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> LoopbackServer:
        self._thread.start()
        assert self._ready.wait(10), "the loopback server did not start"
        return self

    def __exit__(self, *exc: object) -> None:
        assert self._stop is not None
        self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(10)

    def _run(self) -> None:
        self._loop.run_until_complete(self._serve_forever())
        self._loop.close()

    async def _serve_forever(self) -> None:
        self._stop = asyncio.Event()
        server = await asyncio.start_server(self._connection, "127.0.0.1", 0)
        self.port = server.sockets[0].getsockname()[1]
        self._ready.set()
        await self._stop.wait()
        server.close()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await server.wait_closed()
        await asyncio.sleep(0.01)  # the aborted transports finish closing

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = re.search(rb"(?i)\r\ncontent-length: *([0-9]+)", head)
                body = await reader.readexactly(int(length.group(1))) if length else b""
                self.bodies.append(body)
                path = head.split(b" ", 2)[1].decode().split("?", 1)[0]
                handler = self.routes.get(path, answer(b"not found", 404))
                keep = await handler(writer, path, body)
                if not keep or re.search(rb"(?i)\r\nconnection: *close", head):
                    break
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            pass
        except asyncio.CancelledError:  # the server is stopping: end quietly
            pass
        finally:
            self._tasks.discard(task)
            writer.transport.abort()  # no waiting for a peer that stopped reading


def answer(body: bytes, status: int = 200) -> Handler:
    async def handle(writer: asyncio.StreamWriter, path: str, _: bytes) -> bool:
        head = f"HTTP/1.1 {status} X\r\nContent-Length: {len(body)}\r\n\r\n".encode()
        writer.write(head + body)
        await writer.drain()
        return True

    return handle


def raw(wire: bytes) -> Handler:
    """Answer with these bytes, whatever they are, and keep the connection."""

    async def handle(writer: asyncio.StreamWriter, path: str, _: bytes) -> bool:
        writer.write(wire)
        await writer.drain()
        return True

    return handle


async def stalled(writer: asyncio.StreamWriter, wire: bytes, seconds: float = 30.0) -> bool:
    """Write `wire`, then say nothing more until the client gives up (or `seconds` pass)."""
    writer.write(wire)
    await writer.drain()
    with contextlib.suppress(TimeoutError, ConnectionError):
        await asyncio.wait_for(writer.wait_closed(), seconds)
    return False


def bench(tmp_path: Path, url: str, scenario: str, options: str) -> tuple[int, str, dict[str, Any]]:
    """Run `launchready bench --url` as a subprocess; (exit status, stderr, JSON report)."""
    path = tmp_path / "s.toml"
    path.write_text(scenario, encoding="utf-8")
    out = tmp_path / "r.json"
    command = [sys.executable, "-m", "launchready_sdk.cli", "bench", "--quiet", "--url", url]
    command += [*options.split(), "--scenario", str(path), "--json", str(out)]
    result = subprocess.run(
        command, cwd=ROOT, env=os.environ, capture_output=True, text=True, timeout=90
    )
    report = json.loads(out.read_text()) if out.exists() else {}
    return result.returncode, result.stdout + result.stderr, report


# --- chunked bodies: linear parsing, bounded trailers, a timeout that holds --------------------


def tiny_chunks(n: int) -> bytes:
    return b"1\r\nx\r\n" * n


async def test_sixty_thousand_one_byte_chunks_arrive_whole() -> None:
    """60,000 one-byte chunks make one 60,000-byte body, well within the timeout."""

    async def handler(writer: asyncio.StreamWriter, path: str, _: bytes) -> bool:
        for i in range(0, 60_000, 1000):  # in many writes, as a streaming server sends them
            writer.write((CHUNKED_HEAD if i == 0 else b"") + tiny_chunks(1000))
            await writer.drain()
        writer.write(b"0\r\n\r\n")
        await writer.drain()
        return True

    with LoopbackServer({"/tiny": handler}) as server:
        pool = Pool(Origin.parse(server.url), timeout_s=20)
        started = time.monotonic()
        response = await pool.request("GET", "/tiny")
        elapsed = time.monotonic() - started
        await pool.close()
    assert response.body == b"x" * 60_000
    assert elapsed < 20  # the parser kept pace (a quadratic one needed 40 s of CPU)


async def test_the_timeout_fires_while_tiny_chunks_keep_coming() -> None:
    """A server that sends 60,000 one-byte chunks and never ends the body times out on time."""

    async def handler(writer: asyncio.StreamWriter, path: str, _: bytes) -> bool:
        return await stalled(writer, CHUNKED_HEAD + tiny_chunks(60_000))

    async def trickle(writer: asyncio.StreamWriter, path: str, _: bytes) -> bool:
        writer.write(CHUNKED_HEAD)
        for _ in range(3000):  # a byte every 5 ms, for longer than the timeout
            writer.write(b"1\r\nx\r\n")
            await writer.drain()
            await asyncio.sleep(0.005)
        return False

    with LoopbackServer({"/stall": handler, "/trickle": trickle}) as server:
        for path in ("/stall", "/trickle"):
            pool = Pool(Origin.parse(server.url), timeout_s=1.0)
            started = time.monotonic()
            with pytest.raises(ClientError) as info:
                await pool.request("GET", path)
            elapsed = time.monotonic() - started
            await pool.close()
            assert info.value.kind == "timeout", path
            assert elapsed < 5, (path, elapsed)  # the deadline held: never a hang


def test_a_trailer_that_never_ends_is_refused_with_bounded_memory() -> None:
    """An endless trailer line is a protocol error once it passes 64 KiB, not 150 MB."""
    parser = ResponseParser()
    parser.feed(CHUNKED_HEAD + b"3\r\nabc\r\n0\r\nX-Trailer: ")
    fed, refused = 0, None
    while fed < 10 * MAX_HEAD_BYTES and refused is None:
        try:
            parser.feed(b"a" * 1024)
        except ClientError as exc:
            refused = exc
        fed += 1024
    assert refused is not None
    assert refused.kind == "protocol"
    assert "trailers" in str(refused)
    assert fed <= MAX_HEAD_BYTES + 2048


def test_many_short_trailer_lines_are_bounded_too() -> None:
    """Trailer lines that each end but never stop count against the same 64 KiB."""
    parser = ResponseParser()
    parser.feed(CHUNKED_HEAD + b"0\r\n")
    with pytest.raises(ClientError) as info:  # noqa: PT012
        for _ in range(100_000):
            parser.feed(b"X-T: 1\r\n")
    assert info.value.kind == "protocol"


async def test_an_endless_trailer_over_the_wire_is_one_protocol_error() -> None:
    """Over a socket, an endless trailer ends the request as a protocol error, before the
    timeout."""

    async def handler(writer: asyncio.StreamWriter, path: str, _: bytes) -> bool:
        writer.write(CHUNKED_HEAD + b"2\r\nok\r\n0\r\nX-Endless: ")
        for _ in range(1024):  # up to 64 MiB, stopped by the client's refusal long before
            writer.write(b"a" * 65536)
            await writer.drain()
        return False

    with LoopbackServer({"/trailer": handler}) as server:
        pool = Pool(Origin.parse(server.url), timeout_s=10.0)
        with pytest.raises(ClientError) as info:
            await pool.request("GET", "/trailer")
        await pool.close()
    assert info.value.kind == "protocol"


def test_head_bytes_sent_one_at_a_time_parse_in_linear_time() -> None:
    """A 60 KiB head fed a byte at a time is read once, not rescanned for every byte."""
    wire = b"HTTP/1.1 200 OK\r\n" + b"X-Pad: " + b"p" * 60_000 + b"\r\nContent-Length: 2\r\n\r\nok"
    parser = ResponseParser()
    response = None
    for i in range(len(wire)):
        response = parser.feed(wire[i : i + 1]) or response
    assert response is not None
    assert response.body == b"ok"
    assert len(response.headers["x-pad"]) == 60_000


# --- malformed framing --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "wire",
    [
        b"HTTP/1.1 200 OK\r\nContent-Length: \xb2\r\n\r\n",  # '²' in latin-1 (isdigit() is True)
        b"HTTP/1.1 200 OK\r\nContent-Length: \xc2\xb2\r\n\r\n",  # '²' in UTF-8
        b"HTTP/1.1 200 OK\r\nContent-Length: \xd9\xa3\r\n\r\n",  # an Arabic-Indic three
        b"HTTP/1.1 200 OK\r\nContent-Length: +5\r\n\r\nhello",
        b"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: 1_0\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: 0x10\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: 99999999999999999999999\r\n\r\n",
        b"HTTP/1.1 \xb200 OK\r\n\r\n",
        b"HTTP/1.1 2000 OK\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0x5\r\nhello\r\n0\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n+5\r\nhello\r\n0\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1_0\r\n",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n-1\r\n",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n\xb2\r\n",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked, chunked\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nBad Name: x\r\n\r\n",
        b"HTTP/1.1 200 OK\r\n" + b"X: 1\r\n" * 300 + b"\r\n",
    ],
)
def test_malformed_framing_is_a_protocol_error(wire: bytes) -> None:
    """Lengths, sizes and status codes must be plain ASCII digits; anything else is refused
    with a ClientError of kind 'protocol', never a ValueError."""
    with pytest.raises(ClientError) as info:
        ResponseParser().feed(wire)
    assert info.value.kind == "protocol"


def test_interim_responses_before_a_chunked_body_are_skipped() -> None:
    """100 Continue and 103 Early Hints before a chunked 200: the body arrives whole."""
    wire = (
        b"HTTP/1.1 100 Continue\r\n\r\n"
        b"HTTP/1.1 103 Early Hints\r\nLink: </a.css>; rel=preload\r\n\r\n"
        + CHUNKED_HEAD
        + b"5\r\nhello\r\n0\r\n\r\n"
    )
    parser = ResponseParser()
    response = None
    for i in range(0, len(wire), 3):
        response = parser.feed(wire[i : i + 3]) or response
    assert response is not None
    assert (response.status, response.body) == (200, b"hello")


@pytest.mark.parametrize(
    "wire",
    [
        # a 1xx has no body, whatever its headers say: its "chunks" are not a status line
        b"HTTP/1.1 100 Continue\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n"
        b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n",
        # an interim response inside a chunked body
        CHUNKED_HEAD + b"2\r\nok\r\nHTTP/1.1 100 Continue\r\n\r\n0\r\n\r\n",
        # interim responses that never stop
        b"HTTP/1.1 102 Processing\r\n\r\n" * 40,
    ],
)
def test_interim_responses_mixed_into_chunked_bodies_are_protocol_errors(wire: bytes) -> None:
    """1xx responses where a chunk or a body belongs are refused as protocol errors."""
    with pytest.raises(ClientError) as info:
        ResponseParser().feed(wire)
    assert info.value.kind == "protocol"


def test_both_framings_answer_once_and_close_the_connection() -> None:
    """Transfer-Encoding with Content-Length: the chunked body is read, the connection dropped."""
    parser = ResponseParser()
    response = parser.feed(
        b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"2\r\nok\r\n0\r\n\r\n"
    )
    assert response is not None
    assert response.body == b"ok"
    assert not parser.keep_alive


ONE_ROUTE = '[[flow]]\npath = "/x"\n'


def test_a_malformed_length_is_counted_and_reported_once(tmp_path: Path) -> None:
    """A server answering `Content-Length: ²`: every request an error of kind 'protocol', one
    warning naming the cause, no traceback, exit 1 (the server missed the bar)."""
    with LoopbackServer({"/x": raw(b"HTTP/1.1 200 OK\r\nContent-Length: \xb2\r\n\r\n")}) as s:
        status, output, report = bench(
            tmp_path, s.url, ONE_ROUTE, "--rate 20 --users 2 --duration 1 --warmup 0"
        )
    assert status == 1, output
    assert "Traceback" not in output
    route = report["routes"]["GET /x"]
    assert route["count"] > 5
    assert route["error_kinds"] == {"protocol": route["errors"]}
    assert route["errors"] == route["count"]
    warnings = [w for w in report["warnings"] if "HTTP/1.1 framing" in w]
    assert len(warnings) == 1, report["warnings"]
    assert "bad Content-Length" in warnings[0]
    assert output.count("bad Content-Length") == 1


def test_interim_responses_mixed_with_chunked_bodies_fail_the_bar_cleanly(
    tmp_path: Path,
) -> None:
    """A server sending a 1xx with a chunked 'body': protocol errors, reported once."""
    wire = b"HTTP/1.1 100 Continue\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n"
    with LoopbackServer({"/x": raw(wire)}) as s:
        status, output, report = bench(
            tmp_path, s.url, ONE_ROUTE, "--rate 20 --users 2 --duration 1 --warmup 0"
        )
    assert status == 1, output
    assert "Traceback" not in output
    assert set(report["routes"]["GET /x"]["error_kinds"]) == {"protocol"}
    assert report["generator"]["protocol_errors"] >= report["routes"]["GET /x"]["errors"]


def test_the_bench_holds_its_deadline_against_a_stalling_server(tmp_path: Path) -> None:
    """60,000 tiny chunks and then silence: the run ends on time, as timeouts, not a pass."""

    async def handler(writer: asyncio.StreamWriter, path: str, _: bytes) -> bool:
        return await stalled(writer, CHUNKED_HEAD + tiny_chunks(60_000), seconds=20)

    with LoopbackServer({"/x": handler}) as s:
        started = time.monotonic()
        status, output, report = bench(
            tmp_path, s.url, ONE_ROUTE, "--users 2 --duration 1 --warmup 0 --timeout 1"
        )
        elapsed = time.monotonic() - started
    assert status == 1, output
    assert report["passed"] is False
    assert set(report["routes"]["GET /x"]["error_kinds"]) == {"timeout"}
    assert elapsed < 30  # duration + timeout + start-up, with room for a loaded machine


# --- a streaming CSV: the bench's figures are the server's, not its own parsing --------------

CSV_ROWS = 30_000


async def csv_export(writer: asyncio.StreamWriter, path: str, _: bytes) -> bool:
    """30,000 rows, each its own chunk, written row by row as a streaming response does."""
    writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/csv\r\nTransfer-Encoding: chunked\r\n\r\n")
    for i in range(CSV_ROWS):
        row = b"%d,product %d,%d.99\n" % (i, i, i % 500)
        writer.write(b"%x\r\n%s\r\n" % (len(row), row))
        if i % 200 == 0:
            await writer.drain()
    writer.write(b"0\r\n\r\n")
    await writer.drain()
    return True


def plain_download_s(port: int) -> float:
    """One download as a plain client makes it: a fresh connection, read to the close."""
    started = time.perf_counter()
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        sock.sendall(b"GET /export.csv HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        received = 0
        while chunk := sock.recv(1 << 16):
            received += len(chunk)
    elapsed = time.perf_counter() - started
    assert received > CSV_ROWS * 10
    return elapsed


def test_a_streaming_csv_is_timed_close_to_a_plain_client(tmp_path: Path) -> None:
    """The bench's p95 for a 30,000-row chunked CSV stays near a plain client's (it was 25x)."""
    with LoopbackServer({"/export.csv": csv_export}) as s:
        plain = sorted(plain_download_s(s.port) for _ in range(15))
        status, output, report = bench(
            tmp_path,
            s.url,
            '[[flow]]\npath = "/export.csv"\n',
            "--users 1 --duration 3 --warmup 0.5 --p95-ms 60000",
        )
        plain += [plain_download_s(s.port) for _ in range(15)]
    assert status == 0, output
    route = report["routes"]["GET /export.csv"]
    assert route["errors"] == 0
    assert route["count"] >= 5
    plain_p95_ms = (percentile(sorted(plain), 0.95) or 0) * 1000
    # Close, with room for a shared machine: the quadratic parser made this 25 times longer.
    assert route["p95_ms"] <= 3 * plain_p95_ms + 150, (route["p95_ms"], plain_p95_ms)


# --- integers over 64 bits and faults of the bench itself -----------------------------------

BIG = 2**70 + 1
BIG_SCENARIO = f"""\
[[setup]]
method = "POST"
path = "/big"
json = {{ id = {BIG}, nested = [{BIG}, {{ n = -{BIG} }}] }}

[[flow]]
method = "POST"
path = "/big"
json = {{ id = {BIG}, pick = "{{rand:{BIG}:{BIG}}}" }}
"""


def test_integers_over_64_bits_are_sent_exactly(tmp_path: Path) -> None:
    """Big JSON integers, in setup and in flows, literal or from {rand}, arrive digit for
    digit; every request is counted."""
    with LoopbackServer({"/big": answer(b"{}")}) as s:
        status, output, report = bench(
            tmp_path, s.url, BIG_SCENARIO, "--rate 20 --users 2 --duration 1 --warmup 0"
        )
        bodies = [json.loads(b) for b in s.bodies if b]
    assert status == 0, output
    assert "Traceback" not in output
    assert report["routes"]["POST /big"]["count"] > 5
    assert report["routes"]["POST /big"]["errors"] == 0
    setup = [b for b in bodies if "nested" in b]
    flows = [b for b in bodies if "pick" in b]
    assert len(setup) == 2
    assert setup[0] == {"id": BIG, "nested": [BIG, {"n": -BIG}]}
    assert len(flows) == report["routes"]["POST /big"]["count"]
    assert all(b == {"id": BIG, "pick": BIG} for b in flows)


def test_a_big_integer_captured_from_a_response_is_sent_back_exactly(tmp_path: Path) -> None:
    """A 70-bit id captured from JSON is sent back as the same integer, not a rounded float."""
    scenario = (
        '[[setup]]\nmethod = "POST"\npath = "/signup"\ncapture = { uid = "id" }\n\n'
        '[[flow]]\nmethod = "POST"\npath = "/echo"\njson = { uid = "{uid}" }\n'
    )
    routes = {"/signup": answer(b'{"id": %d}' % BIG), "/echo": answer(b"{}")}
    with LoopbackServer(routes) as s:
        status, output, _ = bench(tmp_path, s.url, scenario, "--users 1 --duration 1 --warmup 0")
        sent = [json.loads(b) for b in s.bodies if b.startswith(b'{"uid"')]
    assert status == 0, output
    assert sent
    assert all(b == {"uid": BIG} for b in sent)


@pytest.fixture
def broken_step(monkeypatch: pytest.MonkeyPatch) -> None:
    """A fault inside the bench: building a request raises an error nothing expects."""

    def build(self: Step, values: Any) -> Any:
        raise ZeroDivisionError("a fault of the bench")

    monkeypatch.setattr(Step, "build", build)


def test_an_internal_error_is_never_a_pass_and_has_its_own_exit_status(
    tmp_path: Path, broken_step: None, capsys: pytest.CaptureFixture[str]
) -> None:
    """Requests the bench itself failed are counted as errors, the verdict is withheld, and
    the exit status is 3, not the 'bar missed' 1."""
    scenario = tmp_path / "s.toml"
    scenario.write_text(ONE_ROUTE)
    out = tmp_path / "r.json"
    with LoopbackServer({"/x": answer(b"ok")}) as s:
        target = ["--url", s.url, "--scenario", str(scenario), "--json", str(out)]
        load = ["--rate", "20", "--users", "2", "--duration", "1", "--warmup", "0"]
        status = main(["bench", "--quiet", *target, *load])
    captured = capsys.readouterr()
    assert status == 3, captured.err
    report = json.loads(out.read_text())
    assert report["passed"] is False
    route = report["routes"]["GET /x"]
    assert route["count"] > 5
    assert route["error_kinds"] == {"internal error": route["count"]}
    assert "ZeroDivisionError: a fault of the bench" in report["generator"]["first_internal_error"]
    assert "NO VERDICT" in captured.out
    assert "NO VERDICT" in render_html(report)
    assert "PASS" not in captured.out.splitlines()[-1]
    errors = [line for line in captured.err.splitlines() if "internal error" in line]
    assert len(errors) == 1
    assert "Traceback" not in captured.err


def test_an_internal_error_in_setup_is_one_line_and_exit_3(
    tmp_path: Path, broken_step: None, capsys: pytest.CaptureFixture[str]
) -> None:
    """A fault while setting users up stops the run with one line and exit status 3."""
    scenario = tmp_path / "s.toml"
    scenario.write_text('[[setup]]\npath = "/x"\n\n' + ONE_ROUTE)
    with LoopbackServer({"/x": answer(b"ok")}) as s:
        status = main(["bench", "--quiet", "--url", s.url, "--scenario", str(scenario)])
    captured = capsys.readouterr()
    assert status == 3
    errors = [line for line in captured.err.splitlines() if "error" in line]
    assert len(errors) == 1, captured.err
    assert errors[0].startswith("launchready bench: internal error: the setup failed")
    assert "ZeroDivisionError" in errors[0]
    assert "Traceback" not in captured.err


_HISTOGRAM = "launchready_http_request_duration_seconds"
_DB_HISTOGRAM = "launchready_db_query_duration_seconds"
_HEAD = f"# TYPE {_HISTOGRAM} histogram\n# TYPE {_DB_HISTOGRAM} histogram\n".encode()
NON_FINITE_METRICS = f"""\
# TYPE {_HISTOGRAM} histogram
{_HISTOGRAM}_bucket{{method="GET",route="/x",le="0.005"}} NaN
{_HISTOGRAM}_bucket{{method="GET",route="/x",le="+Inf"}} +Inf
{_HISTOGRAM}_bucket{{method="GET",route="/x",le="nan"}} 3
# TYPE {_DB_HISTOGRAM} histogram
{_DB_HISTOGRAM}_bucket{{statement="SELECT 1",le="+Inf"}} +Inf
""".encode()
MALFORMED_METRICS = NON_FINITE_METRICS + f'{_HISTOGRAM}_bucket{{method="GET" no end\n'.encode()


@pytest.mark.parametrize("metrics", [NON_FINITE_METRICS, MALFORMED_METRICS])
def test_hostile_metrics_leave_the_run_without_server_figures(
    tmp_path: Path, metrics: bytes
) -> None:
    """A /metrics of NaN, infinite or malformed samples: the run is judged on what the bench
    measured, without server-side figures, never as an internal error."""
    scrapes = 0

    async def hostile(writer: asyncio.StreamWriter, path: str, body: bytes) -> bool:
        nonlocal scrapes
        scrapes += 1  # the first scrape looks sane; the one after the run does not
        sane = f'{_DB_HISTOGRAM}_bucket{{statement="SELECT 1",le="+Inf"}} 1\n'.encode()
        return await answer(metrics if scrapes > 1 else _HEAD + sane)(writer, path, body)

    routes = {"/x": answer(b"ok"), "/metrics": hostile}
    with LoopbackServer(routes) as s:
        status, output, report = bench(
            tmp_path, s.url, ONE_ROUTE, "--rate 20 --users 2 --duration 1 --warmup 0"
        )
    assert status == 0, output
    assert "Traceback" not in output
    assert report["routes"]["GET /x"]["server_p95_ms"] is None
    assert report["queries"] == {}
    if metrics is MALFORMED_METRICS:
        assert any("no server-side figures" in w for w in report["warnings"])
