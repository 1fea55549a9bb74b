"""`ResilientSyncTransport`: the policy around a sync httpx transport (its limits are in the
package docstring)."""

from __future__ import annotations

import threading
import time

import httpx

from launchready_sdk.outbound._bodies import GuardedSyncStream
from launchready_sdk.outbound._breaker import breaker_failure
from launchready_sdk.outbound._errors import (
    BulkheadFull,
    CircuitOpen,
    ResponseTooLarge,
    RetryAfterTooLong,
)
from launchready_sdk.outbound._policy import BREAKER_STATUSES, OutboundPolicy
from launchready_sdk.outbound._recorder import HostState, OutboundRecorder
from launchready_sdk.outbound._retry import Call, Engine
from launchready_sdk.outbound._tracing import attempt_span


class ResilientSyncTransport(httpx.BaseTransport):
    """The sync twin of `ResilientTransport` (see the module docstring for its limits)."""

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
        self._engine = Engine(self.policy, self.recorder)
        self._limits: dict[str, threading.BoundedSemaphore] = {}
        self._limits_lock = threading.Lock()

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        call, host = self._engine.begin(request)
        started = time.monotonic()
        try:
            response = self._with_retries(request, call, host)
        except Exception:
            host.finished(started, error=True)
            raise
        host.finished(started, error=response.status_code >= 500)
        try:
            self._engine.check_size(response, host)
        except ResponseTooLarge:
            response.close()
            raise
        response.stream = GuardedSyncStream(
            response.stream,  # type: ignore[arg-type]
            call.deadline,
            self.policy.max_response_bytes,
            host.name,
        )
        return response

    def _with_retries(self, request: httpx.Request, call: Call, host: HostState) -> httpx.Response:
        attempt = 0
        while True:
            attempt += 1
            try:
                response = self._attempt(request, call, host, attempt)
            except httpx.TransportError as exc:
                delay = self._engine.error_delay(request, call, host, attempt, exc)
            else:
                try:
                    retry = self._engine.response_delay(request, call, host, attempt, response)
                except RetryAfterTooLong:
                    response.close()
                    raise
                if retry is None:
                    return response
                response.close()
                delay = retry
            time.sleep(delay)

    def _attempt(
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
                response = self._limited(request, host, budget)
        except BaseException as exc:
            host.breaker.record(probe, breaker_failure(exc) if isinstance(exc, Exception) else None)
            raise
        host.breaker.record(probe, response.status_code in BREAKER_STATUSES)
        return response

    def _limited(self, request: httpx.Request, host: HostState, budget: float) -> httpx.Response:
        limit = self._limits.get(host.name)
        if limit is None:
            with self._limits_lock:
                limit = self._limits.setdefault(
                    host.name, threading.BoundedSemaphore(self.policy.max_concurrency)
                )
        if not limit.acquire(timeout=budget):
            raise BulkheadFull(f"concurrency limit full for {host.name}", host=host.name)
        try:
            self._engine.set_timeouts(request, budget)
            return self.inner.handle_request(request)
        finally:
            limit.release()

    def close(self) -> None:
        self.inner.close()
