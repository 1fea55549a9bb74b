"""A client span per attempt, only when OpenTelemetry is already imported and a span is
recording."""

from __future__ import annotations

import sys
from contextlib import AbstractContextManager, nullcontext
from typing import Any

import httpx

from launchready_sdk.outbound._urls import safe_url


def attempt_span(request: httpx.Request, attempt: int) -> AbstractContextManager[Any]:
    trace = sys.modules.get("opentelemetry.trace")
    if trace is None or not trace.get_current_span().is_recording():
        return nullcontext()
    return _TracedAttempt(trace, request, attempt)


class _TracedAttempt:
    """A client span for one attempt, with `traceparent` injected into the request."""

    def __init__(self, trace: Any, request: httpx.Request, attempt: int) -> None:
        attributes: dict[str, Any] = {
            "http.request.method": request.method,
            "server.address": request.url.host,
            "url.full": safe_url(request.url),
        }
        if attempt > 1:
            attributes["http.request.resend_count"] = attempt - 1
        tracer = trace.get_tracer("launchready_sdk.outbound")
        self._cm = tracer.start_as_current_span(
            request.method, kind=trace.SpanKind.CLIENT, attributes=attributes
        )
        self._request = request

    def __enter__(self) -> Any:
        span = self._cm.__enter__()
        from opentelemetry import propagate

        propagate.inject(self._request.headers)
        return span

    def __exit__(self, *exc: Any) -> Any:
        return self._cm.__exit__(*exc)
