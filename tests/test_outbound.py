"""Outbound client: deadlines, retries, Retry-After, idempotency, breaker, budget, propagation.

Every network test runs against real scripted HTTP/1.1 servers on 127.0.0.1 (each in a thread
with its own event loop, so sync clients work too) that hang, drip, reset, answer 5xx, redirect
or send garbage, and count what they received.
"""

from __future__ import annotations

import asyncio
import contextlib
import email.utils
import json
import socket
import struct
import threading
import time
from collections import defaultdict
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import httpx
import pytest
import structlog

from launchready_sdk import context, outbound
from launchready_sdk.errors import LaunchReadyError, SettingsError
from launchready_sdk.outbound import (
    AttemptTimeout,
    BulkheadFull,
    CircuitOpen,
    DeadlineExceeded,
    OutboundError,
    OutboundPolicy,
    OutboundRecorder,
    ResponseTooLarge,
    RetryAfterTooLong,
    http_client,
    http_client_sync,
    idempotency_key,
    parse_retry_after,
    resilient,
    validate_outbound,
)
from launchready_sdk.testing import no_retry_sleeps

Handler = Callable[["Upstream", "Req", asyncio.StreamWriter], Any]


class Req:
    """One request the upstream received."""

    def __init__(self, method: str, path: str, headers: dict[str, str], body: bytes) -> None:
        self.method = method
        self.path = path
        self.headers = headers
        self.body = body
        self.at = time.monotonic()


class Upstream:
    """A scripted HTTP/1.1 server on 127.0.0.1: the path's first segment picks the behaviour."""

    def __init__(self) -> None:
        self.requests: dict[str, list[Req]] = defaultdict(list)
        self.failing = False
        self.redirect_to = ""
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self._thread.start()
        self._server = asyncio.run_coroutine_threadsafe(self._start(), self.loop).result(5)
        self.port = self._server.sockets[0].getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self._tasks: set[asyncio.Task[Any]] = set()

    async def _start(self) -> asyncio.Server:
        return await asyncio.start_server(self._connection, "127.0.0.1", 0)

    def hits(self, path: str) -> int:
        return len(self.requests[path])

    def close(self) -> None:
        async def stop() -> None:
            self._server.close()
            for task in list(self._tasks):
                task.cancel()
            await asyncio.sleep(0)

        asyncio.run_coroutine_threadsafe(stop(), self.loop).result(5)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(5)
        self.loop.close()

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        try:
            while True:
                req = await _read_request(reader)
                if req is None:
                    break
                self.requests[req.path].append(req)
                if await _ROUTES[req.path.split("/")[1]](self, req, writer) is False:
                    break
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.CancelledError):
            pass
        finally:
            self._tasks.discard(task)
            with contextlib.suppress(Exception):
                writer.close()


async def _read_request(reader: asyncio.StreamReader) -> Req | None:
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except (asyncio.IncompleteReadError, ConnectionError):
        return None
    lines = head.decode("latin-1").split("\r\n")
    method, target, _ = lines[0].split(" ", 2)
    headers = {}
    for line in lines[1:]:
        if ":" in line:
            name, value = line.split(":", 1)
            headers[name.strip().lower()] = value.strip()
    body = b""
    if "content-length" in headers:
        body = await reader.readexactly(int(headers["content-length"]))
    elif headers.get("transfer-encoding") == "chunked":
        while True:
            size = int((await reader.readline()).strip(), 16)
            body += await reader.readexactly(size + 2)
            if size == 0:
                break
    return Req(method, target.split("?")[0], headers, body)


def _reply(
    writer: asyncio.StreamWriter,
    status: int,
    body: bytes = b"",
    headers: dict[str, str] | None = None,
) -> None:
    lines = [f"HTTP/1.1 {status} X", f"Content-Length: {len(body)}"]
    lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
    writer.write(("\r\n".join(lines) + "\r\n\r\n").encode() + body)


async def _ok(up: Upstream, req: Req, w: asyncio.StreamWriter) -> None:
    _reply(w, 200, json.dumps(req.headers).encode(), {"Content-Type": "application/json"})


async def _hang(up: Upstream, req: Req, w: asyncio.StreamWriter) -> bool:
    await asyncio.sleep(3600)
    return False


async def _drip(up: Upstream, req: Req, w: asyncio.StreamWriter) -> bool:
    w.write(b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n")
    for _ in range(1000):
        w.write(b".")
        await w.drain()
        await asyncio.sleep(0.05)
    return False


async def _reset(up: Upstream, req: Req, w: asyncio.StreamWriter) -> bool:
    sock = w.get_extra_info("socket")
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    w.transport.abort()
    return False


async def _status(up: Upstream, req: Req, w: asyncio.StreamWriter) -> None:
    code = int(req.path.split("/")[2])
    extra = {"Retry-After": req.path.split("/")[3]} if req.path.count("/") >= 3 else {}
    _reply(w, code, b"status", extra)


async def _flaky(up: Upstream, req: Req, w: asyncio.StreamWriter) -> None:
    """`/flaky/<n>/<retry-after>`: 503 for the first n requests, then 200."""
    parts = req.path.split("/")
    if up.hits(req.path) <= int(parts[2]):
        extra = {"Retry-After": parts[3]} if len(parts) > 3 and parts[3] else {}
        _reply(w, 503, b"busy", extra)
    else:
        _reply(w, 200, b"fine")


async def _toggle(up: Upstream, req: Req, w: asyncio.StreamWriter) -> None:
    """Healthy or failing by `up.failing`; `/toggle/slow` waits 0.2 s first."""
    if req.path.endswith("/slow"):
        await asyncio.sleep(0.2)
    _reply(w, 500 if up.failing else 200, b"toggle")


async def _big(up: Upstream, req: Req, w: asyncio.StreamWriter) -> None:
    if req.path.endswith("/chunked"):
        w.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
        for _ in range(20):
            w.write(b"400\r\n" + b"x" * 1024 + b"\r\n")
        w.write(b"0\r\n\r\n")
    else:
        _reply(w, 200, b"x" * 20_000)


async def _garbage(up: Upstream, req: Req, w: asyncio.StreamWriter) -> bool:
    w.write(b"HTTP/1.1 200 OK\r\nContent-Length: abc\r\n\x00\x01bad header\r\n\r\nzz")
    await w.drain()
    return False


async def _redirect(up: Upstream, req: Req, w: asyncio.StreamWriter) -> None:
    _reply(w, 307, b"", {"Location": up.redirect_to})


_ROUTES: dict[str, Handler] = {
    "ok": _ok,
    "hang": _hang,
    "drip": _drip,
    "reset": _reset,
    "status": _status,
    "flaky": _flaky,
    "toggle": _toggle,
    "big": _big,
    "garbage": _garbage,
    "redirect": _redirect,
}


@pytest.fixture
def upstream() -> Iterator[Upstream]:
    """A scripted upstream on a free loopback port."""
    server = Upstream()
    yield server
    server.close()


@pytest.fixture
def other_upstream() -> Iterator[Upstream]:
    """A second upstream, another origin (another port)."""
    server = Upstream()
    yield server
    server.close()


def fast(**overrides: Any) -> OutboundPolicy:
    """A policy with short real timeouts for tests."""
    values: dict[str, Any] = {
        "timeout_s": 0.3,
        "deadline_s": 1.0,
        "attempts": 3,
        "backoff_initial_s": 0.01,
        "backoff_max_s": 0.02,
    }
    return OutboundPolicy(**{**values, **overrides})


@contextlib.asynccontextmanager
async def client(
    policy: OutboundPolicy | None = None, **kwargs: Any
) -> AsyncIterator[httpx.AsyncClient]:
    c = http_client(policy or fast(), **kwargs)
    try:
        yield c
    finally:
        await c.aclose()


# --- deadlines and timeouts --------------------------------------------------------------------


async def test_healthy_get_returns_the_response(upstream: Upstream) -> None:
    """A healthy upstream answers through the policy unchanged."""
    async with client() as c:
        r = await c.get(upstream.url + "/ok")
    assert r.status_code == 200
    assert r.json()["host"].startswith("127.0.0.1")
    assert r.elapsed.total_seconds() >= 0
    assert upstream.hits("/ok") == 1


async def test_hanging_upstream_is_cut_at_the_deadline(upstream: Upstream) -> None:
    """O1: a GET to an upstream that never answers retries per attempt and ends at the deadline."""
    start = time.monotonic()
    async with client(fast(timeout_s=0.2, deadline_s=0.5, attempts=5)) as c:
        with pytest.raises(DeadlineExceeded):
            await c.get(upstream.url + "/hang")
    assert time.monotonic() - start < 1.5
    assert 2 <= upstream.hits("/hang") <= 3


async def test_dripping_body_is_cut_at_the_deadline(upstream: Upstream) -> None:
    """O2: a body dripping a byte every 50 ms is cut by the total deadline, not read for 50 s."""
    start = time.monotonic()
    async with client(fast(timeout_s=0.3, deadline_s=0.6)) as c:
        with pytest.raises(DeadlineExceeded):
            await c.get(upstream.url + "/drip")
    assert time.monotonic() - start < 1.5


async def test_post_that_times_out_is_not_retried(upstream: Upstream) -> None:
    """O12: a POST without a key that timed out after being sent reaches the upstream once."""
    async with client(fast(timeout_s=0.2, deadline_s=1.0)) as c:
        with pytest.raises(AttemptTimeout):
            await c.post(upstream.url + "/hang", json={"amount": 100})
    assert upstream.hits("/hang") == 1


async def test_connect_errors_are_retried_even_for_post() -> None:
    """O3: nothing was sent on a refused connection, so a POST is retried within its attempts."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    recorder = OutboundRecorder()
    with no_retry_sleeps():
        async with client(fast(), recorder=recorder) as c:
            with pytest.raises(httpx.ConnectError):
                await c.post(f"http://127.0.0.1:{port}/charge", json={})
    assert recorder.snapshot()[f"http://127.0.0.1:{port}"]["attempts"] == 3


async def test_cancellation_stops_the_attempt_and_retries(upstream: Upstream) -> None:
    """O6: cancelling the caller cancels the attempt; no retry follows and nothing counts as a
    breaker failure."""
    recorder = OutboundRecorder()
    async with client(fast(timeout_s=5.0, deadline_s=10.0), recorder=recorder) as c:
        task = asyncio.create_task(c.get(upstream.url + "/hang"))
        await asyncio.sleep(0.2)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await asyncio.sleep(0.3)
    assert upstream.hits("/hang") == 1
    host = recorder.snapshot()[upstream.url]
    assert host["breaker"] == "closed"
    assert host["retries"] == 0


# --- retries, Retry-After, idempotency ---------------------------------------------------------


async def test_503_with_retry_after_waits_then_succeeds(upstream: Upstream) -> None:
    """O8: after `503 Retry-After: 1` the next attempt comes about a second later, not earlier."""
    async with client(fast(timeout_s=1.0, deadline_s=3.0)) as c:
        r = await c.get(upstream.url + "/flaky/1/1")
    assert r.status_code == 200
    first, second = upstream.requests["/flaky/1/1"]
    assert second.at - first.at >= 0.9


async def test_retry_after_beyond_the_deadline_fails_at_once(upstream: Upstream) -> None:
    """O9: `Retry-After: 3600` with a second left raises RetryAfterTooLong carrying it, at once."""
    start = time.monotonic()
    async with client() as c:
        with pytest.raises(RetryAfterTooLong) as info:
            await c.get(upstream.url + "/status/503/3600")
    assert info.value.retry_after_s == 3600
    assert info.value.remaining_s <= 1.0
    assert time.monotonic() - start < 0.5
    assert upstream.hits("/status/503/3600") == 1


async def test_garbage_retry_after_falls_back_to_backoff(upstream: Upstream) -> None:
    """O10: an unparseable Retry-After is ignored and the jittered backoff is used."""
    async with client() as c:
        r = await c.get(upstream.url + "/flaky/2/soon")
    assert r.status_code == 200
    assert upstream.hits("/flaky/2/soon") == 3


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("2", 2.0),
        (" 7 ", 7.0),
        ("-5", None),
        ("abc", None),
        ("", None),
        ("1.5", None),
        ("9" * 40, None),
        ("99999999999", 365 * 86400.0),
        ("Thu, 01 Jan 1970 00:00:00 GMT", 0.0),
        ("Sun, 06 Nov 1994 08:49:37", None),
    ],
)
def test_parse_retry_after(value: str, expected: float | None) -> None:
    """O10: Retry-After parsing clamps huge values and ignores garbage."""
    assert parse_retry_after(value) == expected


def test_parse_retry_after_http_date() -> None:
    """O8: the HTTP-date form gives the seconds until that date."""
    now = 1_700_000_000.0
    value = email.utils.formatdate(now + 30, usegmt=True)
    assert parse_retry_after(value, now=now) == pytest.approx(30, abs=1)


@pytest.mark.parametrize("path", ["/status/500", "/status/503", "/status/502", "/reset"])
async def test_post_without_key_reaches_upstream_once(upstream: Upstream, path: str) -> None:
    """O12: a POST without an Idempotency-Key is never retried once sent (5xx, reset)."""
    async with client() as c:
        try:
            r = await c.post(upstream.url + path, json={"card": "4242"})
        except httpx.TransportError:
            pass
        else:
            assert r.status_code >= 500
    assert upstream.hits(path) == 1


async def test_post_with_key_is_retried_with_the_same_key(upstream: Upstream) -> None:
    """O13: a POST carrying an Idempotency-Key is retried, every attempt with the same key."""
    key = idempotency_key()
    async with client() as c:
        r = await c.post(upstream.url + "/flaky/2/", json={}, headers={"Idempotency-Key": key})
        await c.post(upstream.url + "/ok", json={}, headers={"Idempotency-Key": idempotency_key()})
    assert r.status_code == 200
    keys = [q.headers["idempotency-key"] for q in upstream.requests["/flaky/2/"]]
    assert keys == [key, key, key]
    assert upstream.requests["/ok"][0].headers["idempotency-key"] != key


@pytest.mark.parametrize("code", [400, 401, 403, 404, 409, 422, 500])
async def test_non_retryable_statuses_reach_upstream_once(upstream: Upstream, code: int) -> None:
    """O15: 4xx other than 429, and 500, are returned without a retry."""
    async with client() as c:
        r = await c.get(f"{upstream.url}/status/{code}")
    assert r.status_code == code
    assert upstream.hits(f"/status/{code}") == 1


@pytest.mark.parametrize("method", ["GET", "PUT", "DELETE"])
async def test_idempotent_methods_retry_on_resets(upstream: Upstream, method: str) -> None:
    """O14: GET, PUT and DELETE are retried on connection resets up to `attempts`."""
    async with client() as c:
        with pytest.raises(httpx.TransportError):
            await c.request(method, upstream.url + "/reset")
    assert upstream.hits("/reset") == 3


async def test_streamed_upload_is_never_retried(upstream: Upstream) -> None:
    """O16: a body that cannot be replayed is sent once even with an Idempotency-Key."""

    async def body() -> AsyncIterator[bytes]:
        yield b"chunk"

    async with client() as c:
        r = await c.post(
            upstream.url + "/flaky/5/", content=body(), headers={"Idempotency-Key": "k"}
        )
    assert r.status_code == 503
    assert upstream.hits("/flaky/5/") == 1


def test_backoff_has_full_jitter_within_the_cap() -> None:
    """O17: 1000 backoffs spread over [0, cap], never above it."""
    policy = fast(backoff_initial_s=0.1, backoff_max_s=0.4, deadline_s=10.0)
    delays = sorted(policy.backoff_s(4) for _ in range(1000))
    assert delays[-1] <= 0.4
    assert delays[100] < 0.08
    assert delays[900] > 0.32
    assert len({round(d, 3) for d in delays}) > 300


async def test_retry_budget_caps_traffic_to_a_dead_provider(upstream: Upstream) -> None:
    """O18: with every call failing, retries stop once the budget's tokens are spent."""
    policy = fast(retry_budget_burst=3, retry_budget_per_s=0.0001, breaker_min_calls=1000)
    recorder = OutboundRecorder()
    with no_retry_sleeps():
        async with client(policy, recorder=recorder) as c:
            for _ in range(20):
                await c.get(upstream.url + "/status/503")
    assert upstream.hits("/status/503") <= 20 + 3
    assert recorder.snapshot()[upstream.url]["budget_exhausted"] >= 15


async def test_discarded_responses_are_closed(upstream: Upstream) -> None:
    """O19: many retried 503s through a one-connection pool never raise PoolTimeout."""
    limits = httpx.Limits(max_connections=1, max_keepalive_connections=1)
    policy = fast(retry_budget_burst=1000, deadline_s=5.0, timeout_s=2.0, breaker_min_calls=1000)
    with no_retry_sleeps():
        async with client(policy, limits=limits) as c:
            for _ in range(30):
                r = await c.get(upstream.url + "/status/503")
                assert r.status_code == 503
    assert upstream.hits("/status/503") == 90


async def test_cross_origin_redirect_strips_credentials(
    upstream: Upstream, other_upstream: Upstream
) -> None:
    """O20: Authorization, Cookie and API-key headers do not follow a redirect to another origin,
    and the redirect spends no retries."""
    upstream.redirect_to = other_upstream.url + "/ok"
    recorder = OutboundRecorder()
    headers = {"Authorization": "Bearer sk_live_secret", "X-Api-Key": "k1", "Cookie": "s=1"}
    async with client(recorder=recorder, follow_redirects=True) as c:
        r = await c.get(upstream.url + "/redirect", headers={**headers, "X-Trace": "kept"})
    assert r.status_code == 200
    seen = other_upstream.requests["/ok"][0].headers
    assert "authorization" not in seen
    assert "x-api-key" not in seen
    assert "cookie" not in seen
    assert seen["x-trace"] == "kept"
    assert all(h["retries"] == 0 for h in recorder.snapshot().values())


async def test_redirect_hops_share_one_deadline(
    upstream: Upstream, other_upstream: Upstream
) -> None:
    """Redirect hops run under the first hop's deadline, not a fresh one each."""
    upstream.redirect_to = other_upstream.url + "/hang"
    start = time.monotonic()
    async with client(fast(timeout_s=0.4, deadline_s=0.6), follow_redirects=True) as c:
        with pytest.raises(DeadlineExceeded):
            await c.get(upstream.url + "/redirect")
    assert time.monotonic() - start < 1.5


# --- breaker and concurrency -------------------------------------------------------------------


def breaker_policy(**overrides: Any) -> OutboundPolicy:
    values: dict[str, Any] = {
        "attempts": 1,
        "breaker_min_calls": 4,
        "breaker_failure_ratio": 0.5,
        "breaker_break_s": 0.3,
    }
    return fast(**{**values, **overrides})


async def test_breaker_needs_minimum_calls_then_opens_on_ratio(upstream: Upstream) -> None:
    """O21/O22: 3 failures of 3 calls do not open it; the 4th does; then calls fail fast, no I/O."""
    upstream.failing = True
    async with client(breaker_policy()) as c:
        for _ in range(3):
            assert (await c.get(upstream.url + "/toggle")).status_code == 500
        assert (await c.get(upstream.url + "/toggle")).status_code == 500
        with pytest.raises(CircuitOpen) as info:
            await c.get(upstream.url + "/toggle")
    assert upstream.hits("/toggle") == 4
    assert 0 < info.value.retry_in_s <= 0.3
    assert isinstance(info.value, LaunchReadyError)
    assert isinstance(info.value, httpx.HTTPError)


async def test_half_open_admits_bounded_probes_then_closes(upstream: Upstream) -> None:
    """O23: once half-open, 20 concurrent calls send exactly one probe; its success closes."""
    upstream.failing = True
    async with client(breaker_policy()) as c:
        for _ in range(4):
            await c.get(upstream.url + "/toggle/slow")
        upstream.failing = False
        await asyncio.sleep(0.35)
        results = await asyncio.gather(
            *(c.get(upstream.url + "/toggle/slow") for _ in range(20)), return_exceptions=True
        )
        assert sum(isinstance(r, CircuitOpen) for r in results) == 19
        assert upstream.hits("/toggle/slow") == 5
        assert (await c.get(upstream.url + "/toggle/slow")).status_code == 200


async def test_failed_probe_reopens_for_longer(upstream: Upstream) -> None:
    """O23: a failed probe reopens the breaker with a doubled break."""
    upstream.failing = True
    async with client(breaker_policy()) as c:
        for _ in range(4):
            await c.get(upstream.url + "/toggle")
        await asyncio.sleep(0.35)
        assert (await c.get(upstream.url + "/toggle")).status_code == 500
        with pytest.raises(CircuitOpen) as info:
            await c.get(upstream.url + "/toggle")
    assert info.value.retry_in_s > 0.4


async def test_calls_through_a_closed_breaker_run_concurrently(upstream: Upstream) -> None:
    """O24: 4 concurrent 0.2 s calls take about 0.2 s, not 0.8 s (no lock around the call)."""
    async with client(fast(timeout_s=1.0, deadline_s=2.0)) as c:
        await c.get(upstream.url + "/ok")
        start = time.monotonic()
        await asyncio.gather(*(c.get(upstream.url + "/toggle/slow") for _ in range(4)))
    assert time.monotonic() - start < 0.7


async def test_one_hosts_breaker_never_affects_another(
    upstream: Upstream, other_upstream: Upstream
) -> None:
    """O25: a failing email provider opens its own breaker, never the payment provider's."""
    upstream.failing = True
    recorder = OutboundRecorder()
    async with client(breaker_policy(), recorder=recorder) as c:
        for _ in range(4):
            await c.get(upstream.url + "/toggle")
        with pytest.raises(CircuitOpen):
            await c.get(upstream.url + "/toggle")
        assert (await c.get(other_upstream.url + "/toggle")).status_code == 200
    snap = recorder.snapshot()
    assert snap[upstream.url]["breaker"] == "open"
    assert snap[other_upstream.url]["breaker"] == "closed"


async def test_concurrency_limit_rejects_after_the_attempt_timeout(upstream: Upstream) -> None:
    """O27: calls beyond the per-host limit wait at most the attempt timeout, then BulkheadFull,
    which does not count against the breaker."""
    policy = fast(max_concurrency=1, timeout_s=0.5, deadline_s=0.6, attempts=1)
    recorder = OutboundRecorder()
    # Both timers are due at almost the same instant; on a loaded machine the holder's slot can
    # come free a moment before the waiter's timer fires, and the waiter then times out inside
    # its attempt instead. The scenario is repeated until the refusal is seen.
    refused = None
    async with client(policy, recorder=recorder) as c:
        for _ in range(3):
            results = await asyncio.gather(
                c.get(upstream.url + "/hang"), c.get(upstream.url + "/ok"), return_exceptions=True
            )
            assert isinstance(results[0], AttemptTimeout)
            assert isinstance(results[1], BulkheadFull | AttemptTimeout)
            if isinstance(results[1], BulkheadFull):
                refused = results[1]
                break
    assert refused is not None
    assert upstream.hits("/ok") == 0


# --- bad input ---------------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/big/plain", "/big/chunked"])
async def test_body_over_the_cap_is_a_typed_error(upstream: Upstream, path: str) -> None:
    """A body over `max_response_bytes` raises ResponseTooLarge, declared or chunked."""
    async with client(fast(max_response_bytes=10_000)) as c:
        with pytest.raises(ResponseTooLarge):
            await c.get(upstream.url + path)


async def test_garbage_headers_fail_typed_and_fast(upstream: Upstream) -> None:
    """Malformed response headers are an httpx protocol error, retried within bounds, no hang."""
    async with client() as c:
        with pytest.raises(httpx.RemoteProtocolError):
            await c.get(upstream.url + "/garbage")
    assert upstream.hits("/garbage") == 3


# --- propagation and telemetry -----------------------------------------------------------------


async def test_request_id_is_propagated(upstream: Upstream) -> None:
    """The current request's X-Request-ID goes out on every outbound request."""
    seen: dict[str, str] = {}

    async def app(scope: Any, receive: Any, send: Any) -> None:
        async with client() as c:
            seen.update((await c.get(upstream.url + "/ok")).json())
        await send({"type": "http.response.start", "status": 204, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    inbound_app = context.RequestContextMiddleware(app, trust_request_id=True)
    transport = httpx.ASGITransport(app=inbound_app)
    async with httpx.AsyncClient(transport=transport, base_url="http://shop.test") as inbound:
        await inbound.post("/checkout", headers={"X-Request-ID": "req-123"})
    assert seen["x-request-id"] == "req-123"


async def test_traceparent_is_propagated_when_tracing(upstream: Upstream) -> None:
    """With a recording span, each attempt carries a traceparent of the same trace."""
    from opentelemetry.sdk.trace import TracerProvider

    tracer = TracerProvider().get_tracer("test")
    async with client() as c:
        with tracer.start_as_current_span("inbound") as span:
            r = await c.get(upstream.url + "/ok")
    trace_id = f"{span.get_span_context().trace_id:032x}"
    assert r.json()["traceparent"].split("-")[1] == trace_id


async def test_no_traceparent_without_tracing(upstream: Upstream) -> None:
    """Without a recording span nothing is injected."""
    async with client() as c:
        r = await c.get(upstream.url + "/ok")
    assert "traceparent" not in r.json()


async def test_retry_logs_carry_no_secrets(upstream: Upstream) -> None:
    """X2: the retry line has the host, attempt and reason, but no key, token or header value."""
    url = upstream.url + "/status/503?api_key=sk_live_51Habcdefghijklmnop&token=tok_canary"
    with structlog.testing.capture_logs() as logs, no_retry_sleeps():
        async with client() as c:
            await c.get(url, headers={"Authorization": "Bearer canary-bearer"})
    retries = [e for e in logs if e["event"] == "outbound.retry"]
    assert len(retries) == 2
    text = repr(logs)
    assert "sk_live_51H" not in text
    assert "tok_canary" not in text
    assert "canary-bearer" not in text
    assert retries[0]["reason"] == "503"
    assert retries[0]["attempt"] == 1


async def test_breaker_transitions_are_logged_once(upstream: Upstream) -> None:
    """One line per breaker transition, not per rejected call."""
    upstream.failing = True
    with structlog.testing.capture_logs() as logs:
        async with client(breaker_policy()) as c:
            for _ in range(4):
                await c.get(upstream.url + "/toggle")
            for _ in range(5):
                with pytest.raises(CircuitOpen):
                    await c.get(upstream.url + "/toggle")
    lines = [e for e in logs if e["event"] == "outbound.breaker"]
    assert [e["state"] for e in lines] == ["open"]


async def test_recorder_snapshot_counts_calls_and_latency(upstream: Upstream) -> None:
    """The recorder keeps per-host calls, errors, attempts and latency quantiles."""
    recorder = OutboundRecorder()
    with no_retry_sleeps():
        async with client(recorder=recorder) as c:
            for _ in range(3):
                await c.get(upstream.url + "/ok")
            await c.get(upstream.url + "/status/503")
    snap = recorder.snapshot()[upstream.url]
    assert snap["calls"] == 4
    assert snap["errors"] == 1
    assert snap["attempts"] == 6
    assert snap["retries"] == 2
    assert snap["p95_ms"] is not None
    assert snap["breaker"] == "closed"


# --- sync client -------------------------------------------------------------------------------


def test_sync_client_cuts_a_hang_at_the_deadline(upstream: Upstream) -> None:
    """X5: the sync client bounds a hanging upstream by the deadline too."""
    start = time.monotonic()
    c = http_client_sync(fast(timeout_s=0.2, deadline_s=0.5))
    with c, pytest.raises((DeadlineExceeded, httpx.ReadTimeout)):
        c.get(upstream.url + "/hang")
    assert time.monotonic() - start < 1.5


def test_sync_client_cuts_a_drip_at_the_deadline(upstream: Upstream) -> None:
    """X5: a dripping body is cut by the deadline in the sync client."""
    start = time.monotonic()
    c = http_client_sync(fast(timeout_s=0.3, deadline_s=0.5))
    with c, pytest.raises(DeadlineExceeded):
        c.get(upstream.url + "/drip")
    assert time.monotonic() - start < 1.5


def test_sync_client_posts_once_and_retries_gets(upstream: Upstream) -> None:
    """X5: the sync client keeps the POST and GET retry rules."""
    with no_retry_sleeps(), http_client_sync(fast()) as c:
        assert c.post(upstream.url + "/status/503", json={}).status_code == 503
        assert c.get(upstream.url + "/flaky/2/").status_code == 200
    assert upstream.hits("/status/503") == 1
    assert upstream.hits("/flaky/2/") == 3


# --- @resilient --------------------------------------------------------------------------------


async def test_resilient_retries_listed_errors() -> None:
    """@resilient retries the exception types it was given, then returns."""
    calls = 0

    @resilient(retry_on=(ConnectionError,), timeout_s=0.2, attempts=3, deadline_s=1.0)
    async def send() -> str:
        nonlocal calls
        calls += 1
        if calls < 3:
            raise ConnectionError("smtp gone")
        return "sent"

    with no_retry_sleeps():
        assert await send() == "sent"
    assert calls == 3


async def test_resilient_does_not_retry_other_errors() -> None:
    """@resilient lets unlisted exceptions through at once."""
    calls = 0

    @resilient(retry_on=(ConnectionError,), attempts=3)
    async def charge() -> None:
        nonlocal calls
        calls += 1
        raise ValueError("card declined")

    with pytest.raises(ValueError, match="declined"):
        await charge()
    assert calls == 1


async def test_resilient_timeout_is_not_retried_unless_listed() -> None:
    """A hung attempt times out; it is retried only when TimeoutError is in retry_on."""
    calls = {"charge": 0, "fetch": 0}

    @resilient(retry_on=(ConnectionError,), timeout_s=0.1, attempts=3, deadline_s=1.0)
    async def charge() -> None:
        calls["charge"] += 1
        await asyncio.sleep(10)

    @resilient(retry_on=(TimeoutError,), timeout_s=0.1, attempts=3, deadline_s=1.0)
    async def fetch() -> None:
        calls["fetch"] += 1
        await asyncio.sleep(10)

    with no_retry_sleeps():
        with pytest.raises(AttemptTimeout):
            await charge()
        with pytest.raises(AttemptTimeout):
            await fetch()
    assert calls == {"charge": 1, "fetch": 3}


async def test_resilient_deadline_holds() -> None:
    """The deadline cuts a call whose attempts and backoff would run past it."""
    start = time.monotonic()

    @resilient(retry_on=(TimeoutError,), timeout_s=0.3, attempts=10, deadline_s=0.5)
    async def slow() -> None:
        await asyncio.sleep(10)

    with pytest.raises((DeadlineExceeded, AttemptTimeout)):
        await slow()
    assert time.monotonic() - start < 1.0


async def test_resilient_breaker_opens() -> None:
    """@resilient's breaker opens on the failure ratio and then fails fast without calling."""
    calls = 0
    policy = breaker_policy()

    @resilient(retry_on=(ConnectionError,), policy=policy)
    async def send() -> None:
        nonlocal calls
        calls += 1
        raise ConnectionError

    for _ in range(4):
        with pytest.raises(ConnectionError):
            await send()
    with pytest.raises(CircuitOpen):
        await send()
    assert calls == 4


async def test_resilient_counts_like_the_clients() -> None:
    """@resilient's state counts calls, attempts, retries and breaker refusals as a client's host
    does: one loop runs both."""
    policy = fast(attempts=2, breaker_min_calls=2, breaker_break_s=30.0)

    @resilient(retry_on=(ConnectionError,), policy=policy)
    async def send() -> None:
        raise ConnectionError

    with no_retry_sleeps():
        with pytest.raises(ConnectionError):
            await send()
        for _ in range(2):
            with pytest.raises(CircuitOpen):
                await send()
    snap = send.outbound_state.snapshot()  # type: ignore[attr-defined]
    assert (snap["calls"], snap["errors"], snap["attempts"], snap["retries"]) == (3, 3, 2, 1)
    assert (snap["rejected"], snap["breaker"]) == (2, "open")


def test_resilient_rejects_sync_functions() -> None:
    """@resilient refuses a sync function instead of silently not timing it out."""
    with pytest.raises(TypeError):
        resilient(retry_on=(OSError,))(lambda: None)  # type: ignore[arg-type,return-value]


# --- validation --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("timeout_s", "deadline_s", "attempts", "field"),
    [
        (20.0, 15.0, 3, "outbound_timeout_s"),
        (0.0, 15.0, 3, "outbound_timeout_s"),
        (-1.0, 15.0, 3, "outbound_timeout_s"),
        (5.0, 0.0, 3, "outbound_deadline_s"),
        (5.0, float("inf"), 3, "outbound_deadline_s"),
        (float("nan"), 15.0, 3, "outbound_timeout_s"),
        (5.0, 15.0, 0, "outbound_attempts"),
        (5.0, 15.0, -2, "outbound_attempts"),
        (5.0, None, None, "outbound_attempts"),
    ],
)
def test_validate_outbound_rejects(
    timeout_s: float, deadline_s: float | None, attempts: int | None, field: str
) -> None:
    """X4: attempt timeout above the deadline, zero/negative values, unbounded attempts without
    a deadline are SettingsError naming the field."""
    with pytest.raises(SettingsError) as info:
        validate_outbound(timeout_s, deadline_s, attempts)
    assert info.value.name == field


def test_validate_outbound_accepts_sane_values() -> None:
    """X4: the defaults and unbounded attempts under a deadline are accepted."""
    validate_outbound(5.0, 15.0, 3)
    validate_outbound(1.0, 10.0, None)
    assert OutboundPolicy().attempts == 3


def test_policy_from_settings() -> None:
    """The policy takes the three Settings fields."""
    from launchready_sdk.settings import Settings

    s = Settings(outbound_timeout_s=2.0, outbound_deadline_s=8.0, outbound_attempts=4)
    p = OutboundPolicy.from_settings(s)
    assert (p.timeout_s, p.deadline_s, p.attempts) == (2.0, 8.0, 4)


def test_error_hierarchy() -> None:
    """Every outbound error is a LaunchReadyError and an httpx.TransportError."""
    for cls in (DeadlineExceeded, AttemptTimeout, CircuitOpen, BulkheadFull):
        assert issubclass(cls, OutboundError)
        assert issubclass(cls, LaunchReadyError)
        assert issubclass(cls, httpx.TransportError)
    assert issubclass(DeadlineExceeded, TimeoutError)


def test_exports_are_pinned() -> None:
    """launchready_sdk.outbound exports what the README documents, sorted."""
    assert outbound.__all__ == [
        "DEFAULT_ATTEMPTS",
        "DEFAULT_DEADLINE_S",
        "DEFAULT_TIMEOUT_S",
        "AttemptTimeout",
        "BulkheadFull",
        "CircuitOpen",
        "DeadlineExceeded",
        "OutboundError",
        "OutboundPolicy",
        "OutboundRecorder",
        "ResponseTooLarge",
        "RetryAfterTooLong",
        "http_client",
        "http_client_sync",
        "idempotency_key",
        "parse_retry_after",
        "resilient",
        "set_sleep_scale",
        "validate_outbound",
    ]
    assert sorted(outbound.__all__, key=lambda n: (not n.isupper(), n)) == outbound.__all__
