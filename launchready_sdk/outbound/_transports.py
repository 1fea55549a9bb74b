"""The policy around an httpx transport, async and sync, outermost first: deadline, retry (the
loop in `_retry`), breaker, concurrency limit, attempt timeout. What differs between the two is
only the I/O: the concurrency limit, the attempt's timer and the body's guard."""

from __future__ import annotations

import asyncio
import threading

import httpx

from launchready_sdk.outbound._bodies import (
    GuardedAsyncStream,
    GuardedSyncStream,
    prefetch,
    prefetched,
)
from launchready_sdk.outbound._errors import AttemptTimeout, BulkheadFull
from launchready_sdk.outbound._exchange import begin, judge, set_timeouts
from launchready_sdk.outbound._policy import OutboundPolicy
from launchready_sdk.outbound._recorder import OutboundRecorder
from launchready_sdk.outbound._retry import Attempt
from launchready_sdk.outbound._tracing import attempt_span


class ResilientTransport(httpx.AsyncBaseTransport):
    """An async httpx transport applying an `OutboundPolicy` around `inner`.

    Args:
        inner: the transport that does the I/O (default `httpx.AsyncHTTPTransport()`).
        policy: deadlines, retries, breaker, concurrency limit and body cap.
        recorder: per-host state and counters (share one across clients).
    """

    def __init__(
        self,
        inner: httpx.AsyncBaseTransport | None = None,
        *,
        policy: OutboundPolicy | None = None,
        recorder: OutboundRecorder | None = None,
    ) -> None:
        self.policy = policy or OutboundPolicy()
        self.recorder = recorder or OutboundRecorder()
        self.inner = inner or httpx.AsyncHTTPTransport()
        self._limits: dict[str, asyncio.Semaphore] = {}

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        retrying = begin(request, self.policy, self.recorder)
        async for attempt in retrying:
            with attempt:
                response = await self._send(request, attempt)
                if judge(attempt, request, response, self.policy):
                    break
        if not isinstance(response.stream, httpx.ByteStream):
            response.stream = GuardedAsyncStream(response.stream, retrying)  # type: ignore[arg-type]
        return response

    async def _send(self, request: httpx.Request, attempt: Attempt) -> httpx.Response:
        """One attempt, in its client span: the host's concurrency limit and the attempt's timer
        around the inner transport."""
        host, budget = attempt.retrying.host.name, attempt.timeout_s
        limit = self._limits.get(host)
        if limit is None:
            limit = self._limits[host] = asyncio.Semaphore(self.policy.max_concurrency)
        acquired = False
        timer = asyncio.timeout(budget)
        with attempt_span(request, attempt.number):
            try:
                async with timer:
                    await limit.acquire()
                    acquired = True
                    set_timeouts(request, self.policy, budget)
                    response = await self.inner.handle_async_request(request)
                    return await prefetched(response) if prefetch(response) else response
            except TimeoutError as exc:
                if not timer.expired():
                    raise
                if not acquired:
                    raise BulkheadFull(f"concurrency limit full for {host}", host=host) from exc
                raise AttemptTimeout(f"attempt exceeded {budget:.3f} s", host=host) from exc
            finally:
                if acquired:
                    limit.release()

    async def aclose(self) -> None:
        await self.inner.aclose()


class ResilientSyncTransport(httpx.BaseTransport):
    """The sync counterpart of `ResilientTransport` (its limits are in the package docstring)."""

    def __init__(
        self,
        inner: httpx.BaseTransport | None = None,
        *,
        policy: OutboundPolicy | None = None,
        recorder: OutboundRecorder | None = None,
    ) -> None:
        self.policy = policy or OutboundPolicy()
        self.recorder = recorder or OutboundRecorder()
        self.inner = inner or httpx.HTTPTransport()
        self._limits: dict[str, threading.BoundedSemaphore] = {}
        self._limits_lock = threading.Lock()

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        retrying = begin(request, self.policy, self.recorder)
        for attempt in retrying:
            with attempt:
                response = self._send(request, attempt)
                if judge(attempt, request, response, self.policy):
                    break
        response.stream = GuardedSyncStream(response.stream, retrying)  # type: ignore[arg-type]
        return response

    def _send(self, request: httpx.Request, attempt: Attempt) -> httpx.Response:
        """One attempt, in its client span: the host's concurrency limit around the inner
        transport, whose socket operations carry the attempt's timeouts."""
        host, budget = attempt.retrying.host.name, attempt.timeout_s
        limit = self._limits.get(host)
        if limit is None:
            with self._limits_lock:
                limit = self._limits.setdefault(
                    host, threading.BoundedSemaphore(self.policy.max_concurrency)
                )
        with attempt_span(request, attempt.number):
            if not limit.acquire(timeout=budget):
                raise BulkheadFull(f"concurrency limit full for {host}", host=host)
            try:
                set_timeouts(request, self.policy, budget)
                return self.inner.handle_request(request)
            finally:
                limit.release()

    def close(self) -> None:
        self.inner.close()
