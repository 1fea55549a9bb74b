"""`ResilientTransport`: the policy around an async httpx transport, outermost first
(deadline, retry, breaker, concurrency limit, attempt timeout)."""

from __future__ import annotations

import asyncio
import time

import httpx

from launchready_sdk.outbound._bodies import GuardedAsyncStream, prefetch, prefetched
from launchready_sdk.outbound._breaker import breaker_failure
from launchready_sdk.outbound._errors import (
    AttemptTimeout,
    BulkheadFull,
    CircuitOpen,
    ResponseTooLarge,
    RetryAfterTooLong,
)
from launchready_sdk.outbound._policy import BREAKER_STATUSES, OutboundPolicy
from launchready_sdk.outbound._recorder import HostState, OutboundRecorder
from launchready_sdk.outbound._retry import Call, Engine
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
        self._engine = Engine(self.policy, self.recorder)
        self._limits: dict[str, asyncio.Semaphore] = {}

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        call, host = self._engine.begin(request)
        started = time.monotonic()
        try:
            response = await self._with_retries(request, call, host)
        except Exception:
            host.finished(started, error=True)
            raise
        host.finished(started, error=response.status_code >= 500)
        try:
            self._engine.check_size(response, host)
        except ResponseTooLarge:
            await response.aclose()
            raise
        if not isinstance(response.stream, httpx.ByteStream):
            response.stream = GuardedAsyncStream(
                response.stream,  # type: ignore[arg-type]
                call.deadline,
                self.policy.max_response_bytes,
                host.name,
            )
        return response

    async def _with_retries(
        self, request: httpx.Request, call: Call, host: HostState
    ) -> httpx.Response:
        attempt = 0
        while True:
            attempt += 1
            try:
                response = await self._attempt(request, call, host, attempt)
            except httpx.TransportError as exc:
                delay = self._engine.error_delay(request, call, host, attempt, exc)
            else:
                try:
                    retry = self._engine.response_delay(request, call, host, attempt, response)
                except RetryAfterTooLong:
                    await response.aclose()
                    raise
                if retry is None:
                    return response
                await response.aclose()
                delay = retry
            await asyncio.sleep(delay)

    async def _attempt(
        self, request: httpx.Request, call: Call, host: HostState, attempt: int
    ) -> httpx.Response:
        budget = call.attempt_budget(self.policy.timeout_s, host.name)
        try:
            probe = host.breaker.before()
        except CircuitOpen:
            host.rejected += 1
            raise
        host.attempts += 1
        try:
            with attempt_span(request, attempt):
                response = await self._limited(request, host, budget)
        except BaseException as exc:
            host.breaker.record(probe, breaker_failure(exc) if isinstance(exc, Exception) else None)
            raise
        host.breaker.record(probe, response.status_code in BREAKER_STATUSES)
        return response

    async def _limited(
        self, request: httpx.Request, host: HostState, budget: float
    ) -> httpx.Response:
        """The concurrency limit and the attempt timeout around the inner transport."""
        limit = self._limits.get(host.name)
        if limit is None:
            limit = self._limits[host.name] = asyncio.Semaphore(self.policy.max_concurrency)
        acquired = False
        timer = asyncio.timeout(budget)
        try:
            async with timer:
                await limit.acquire()
                acquired = True
                self._engine.set_timeouts(request, budget)
                response = await self.inner.handle_async_request(request)
                return await prefetched(response) if prefetch(response) else response
        except TimeoutError as exc:
            if not timer.expired():
                raise
            if not acquired:
                raise BulkheadFull(
                    f"concurrency limit full for {host.name}", host=host.name
                ) from exc
            raise AttemptTimeout(f"attempt exceeded {budget:.3f} s", host=host.name) from exc
        finally:
            if acquired:
                limit.release()

    async def aclose(self) -> None:
        await self.inner.aclose()
