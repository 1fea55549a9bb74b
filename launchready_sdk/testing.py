"""Switches and fakes for users' own test suites.

- `rate_limits_off()` (a context manager) and `set_rate_limits(False)` stop the rate limits
  in the whole process, for Starlette, FastAPI and Django alike, however the app was built:
  a suite that logs in a hundred times a minute is never throttled. In a `conftest.py`:

      @pytest.fixture(autouse=True)
      def _no_rate_limits():
          with rate_limits_off():
              yield

  To keep the limits and test them instead, give each test client an address of its own:
  requests without one (Starlette's `TestClient` sends `testclient`) share a single bucket.
  `TestClient(app, client=("198.51.100.7", 50000))`, or Django's
  `Client(REMOTE_ADDR="198.51.100.7")`.

- `no_retry_sleeps()` (a context manager) and `set_retry_sleeps(False)` make retries of
  `http_client()`, `http_client_sync()` and `@resilient` immediate: backoff and `Retry-After`
  waits become zero, while every other decision (which calls retry, the deadline, the
  `RetryAfterTooLong` check, the budget, the breaker) is unchanged. Both set
  `launchready_sdk.outbound.set_sleep_scale`, the public hook for other scales.
- `FaultTransport` is an httpx transport that injects faults, to mount under the policy:
  `http_client(policy, transport=FaultTransport(status=503))`. It can add latency, hang (until the
  request's read timeout, as a silent socket would), reset the connection, answer a status, or
  drip the body one byte at a time. With `rate` below 1 only that share of requests is faulted
  (seeded, so runs repeat); the others go to `inner`, or get an empty 200 when there is none.

Nothing here is imported by the rest of the SDK.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import AsyncIterator, Iterator, Mapping
from contextlib import contextmanager

import httpx

from launchready_sdk.outbound import set_sleep_scale
from launchready_sdk.ratelimit import set_enforcement

__all__ = [
    "FaultTransport",
    "no_retry_sleeps",
    "rate_limits_off",
    "set_rate_limits",
    "set_retry_sleeps",
]


def set_rate_limits(enabled: bool) -> None:
    """Enforce rate limits (`True`, the default) or not (`False`) in the whole process."""
    set_enforcement(enabled)


@contextmanager
def rate_limits_off() -> Iterator[None]:
    """Within the block, no request is rate-limited (or counted against a budget)."""
    previous = set_enforcement(False)
    try:
        yield
    finally:
        set_enforcement(previous)


def set_retry_sleeps(enabled: bool) -> None:
    """Turn retry sleeps off (`False`) or back on for the whole process."""
    set_sleep_scale(1.0 if enabled else 0.0)


@contextmanager
def no_retry_sleeps() -> Iterator[None]:
    """Within the block, retries do not sleep."""
    previous = set_sleep_scale(0.0)
    try:
        yield
    finally:
        set_sleep_scale(previous)


class FaultTransport(httpx.AsyncBaseTransport, httpx.BaseTransport):
    """An httpx transport (async and sync) that injects one kind of fault.

    Args:
        inner: where unfaulted requests go (None: an empty 200).
        latency_s: delay before forwarding.
        hang: never answer (until the request's read timeout, then `httpx.ReadTimeout`).
        reset: fail with `httpx.ReadError`, as a connection reset after the request was sent.
        status: answer this status without forwarding, with `headers`.
        drip_s: answer 200 with `body` (or endless bytes when `body` is empty), one byte per
            `drip_s` seconds.
        rate: the share of requests faulted (1.0: all).
        seed: the random seed used with `rate`.
    """

    def __init__(
        self,
        inner: httpx.AsyncBaseTransport | httpx.BaseTransport | None = None,
        *,
        latency_s: float = 0.0,
        hang: bool = False,
        reset: bool = False,
        status: int | None = None,
        headers: Mapping[str, str] | None = None,
        drip_s: float | None = None,
        body: bytes = b"",
        rate: float = 1.0,
        seed: int | None = 0,
    ) -> None:
        self.inner = inner
        self.latency_s = latency_s
        self.hang = hang
        self.reset = reset
        self.status = status
        self.headers = dict(headers or {})
        self.drip_s = drip_s
        self.body = body
        self.rate = rate
        self.calls = 0
        self.faulted = 0
        self._random = random.Random(seed)

    def _fault_now(self) -> bool:
        self.calls += 1
        hit = self.rate >= 1.0 or self._random.random() < self.rate
        self.faulted += hit
        return hit

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if not self._fault_now():
            return await self._forward_async(request)
        if self.latency_s:
            await asyncio.sleep(self.latency_s)
        if self.hang:
            await asyncio.sleep(_read_timeout(request))
            raise httpx.ReadTimeout("injected hang", request=request)
        return self._fault_response(request, _AsyncDrip) or await self._forward_async(request)

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        if not self._fault_now():
            return self._forward_sync(request)
        if self.latency_s:
            time.sleep(self.latency_s)
        if self.hang:
            time.sleep(_read_timeout(request))
            raise httpx.ReadTimeout("injected hang", request=request)
        return self._fault_response(request, _SyncDrip) or self._forward_sync(request)

    def _fault_response(
        self, request: httpx.Request, drip: type[_AsyncDrip] | type[_SyncDrip]
    ) -> httpx.Response | None:
        if self.reset:
            raise httpx.ReadError("injected connection reset", request=request)
        if self.status is not None:
            return httpx.Response(self.status, headers=self.headers, request=request)
        if self.drip_s is not None:
            stream = drip(self.body, self.drip_s)
            return httpx.Response(200, headers=self.headers, stream=stream, request=request)
        return None

    async def _forward_async(self, request: httpx.Request) -> httpx.Response:
        if isinstance(self.inner, httpx.AsyncBaseTransport):
            return await self.inner.handle_async_request(request)
        return httpx.Response(200, request=request)

    def _forward_sync(self, request: httpx.Request) -> httpx.Response:
        if isinstance(self.inner, httpx.BaseTransport):
            return self.inner.handle_request(request)
        return httpx.Response(200, request=request)

    async def aclose(self) -> None:
        if isinstance(self.inner, httpx.AsyncBaseTransport):
            await self.inner.aclose()

    def close(self) -> None:
        if isinstance(self.inner, httpx.BaseTransport):
            self.inner.close()


def _read_timeout(request: httpx.Request) -> float:
    timeout = (request.extensions.get("timeout") or {}).get("read")
    return float(timeout) if isinstance(timeout, (int, float)) else 3600.0


class _AsyncDrip(httpx.AsyncByteStream):
    def __init__(self, body: bytes, interval_s: float) -> None:
        self._body = body
        self._interval_s = interval_s

    async def __aiter__(self) -> AsyncIterator[bytes]:
        for byte in _bytes(self._body):
            await asyncio.sleep(self._interval_s)
            yield byte


class _SyncDrip(httpx.SyncByteStream):
    def __init__(self, body: bytes, interval_s: float) -> None:
        self._body = body
        self._interval_s = interval_s

    def __iter__(self) -> Iterator[bytes]:
        for byte in _bytes(self._body):
            time.sleep(self._interval_s)
            yield byte


def _bytes(body: bytes) -> Iterator[bytes]:
    if body:
        for i in range(len(body)):
            yield body[i : i + 1]
        return
    while True:
        yield b"."
