"""OpenTelemetry tracing, off unless asked: `setup_telemetry("otlp", "shop").wrap(app)`.

`setup_telemetry` builds a tracer provider (resource, sampler, exporter and the standard
`OTEL_*` variables: `OTEL_SDK_DISABLED`, `OTEL_TRACES_EXPORTER`, `OTEL_SERVICE_NAME`,
`OTEL_RESOURCE_ATTRIBUTES`, `OTEL_TRACES_SAMPLER[_ARG]`, `OTEL_EXPORTER_OTLP_*`) and returns a
`Telemetry` whose `wrap(app)` puts the OTel ASGI instrumentation around the app with its
per-message `http send`/`http receive` sub-spans excluded (they cost about a third of its
overhead and carry nothing useful). After the app returns, the server span gets `http.route`
and the name `"GET /products/{id}"` from the route template (see `routing.route_template`),
never the raw path. Its place in the stack is in `app.py`'s docstring. Once tracing is on,
`logs.add_trace_ids` puts `trace_id`/`span_id` on log lines.

No double instrumentation: an app already instrumented by `FastAPIInstrumentor` (or that
carries OTel's ASGI middleware) is returned unchanged, and FastAPI's own native telemetry is
told to stand down for requests this layer traces, so there is one server span per request.

Security stance: every span's attributes and event attributes (exception messages included)
go through `redact()` before any exporter sees them; query strings are redacted like logs.
Off by default and free when off: `opentelemetry` is imported only by `setup_telemetry`, and
`add_trace_ids` is one global check while tracing is off. Limits: traces only (no OTel
metrics: /metrics covers those); the OTLP exporter package is not a dependency of the SDK.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import re
from collections.abc import Callable, Iterable
from typing import Any, Literal

from launchready_sdk.errors import LaunchReadyError
from launchready_sdk.logs import get_logger, trace_ids_from
from launchready_sdk.routing import route_template
from launchready_sdk.types import ASGIApp, Message, Receive, Scope, Send

Exporter = Literal["none", "console", "otlp"]
EXPORTERS = ("none", "console", "otlp")
_log = get_logger("launchready.telemetry")


def setup_telemetry(
    exporter: Exporter | None = None,
    service_name: str = "app",
    *,
    excluded_paths: Iterable[str] = (),
    redactor: Callable[[object], object] | None = None,
    span_exporter: Any = None,
    set_global: bool = True,
) -> Telemetry | None:
    """Set up tracing; None when it is off (`exporter="none"`, or `OTEL_SDK_DISABLED=true`).

    Args:
        exporter: "none", "console" or "otlp"; None reads `OTEL_TRACES_EXPORTER` (default none).
        service_name: used unless `OTEL_SERVICE_NAME` is set.
        excluded_paths: paths never traced (health and metrics endpoints), exact match.
        redactor: applied to span attributes (default: `launchready_sdk.redaction`).
        span_exporter: an exporter object to use instead (tests: `InMemorySpanExporter`).
        set_global: install the provider as OTel's global tracer provider.
    """
    if os.environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return None
    chosen = exporter or os.environ.get("OTEL_TRACES_EXPORTER", "none").strip().lower()
    if chosen not in EXPORTERS:
        raise LaunchReadyError(f"otel_exporter must be one of {EXPORTERS}, got {chosen!r}")
    if chosen == "none" and span_exporter is None:
        return None
    telemetry = Telemetry(
        _build_provider(chosen, service_name, redactor, span_exporter),
        excluded_paths=excluded_paths,
    )
    if set_global:
        from opentelemetry import trace

        trace.set_tracer_provider(telemetry.provider)
    _enable_trace_ids()
    return telemetry


def _enable_trace_ids() -> None:
    from opentelemetry import trace

    trace_ids_from(trace.get_current_span)


def disable_trace_ids() -> None:
    """Make `add_trace_ids` a no-op again (at shutdown, or in tests)."""
    trace_ids_from(None)


def _build_provider(
    exporter: str, service_name: str, redactor: Callable[[object], object] | None, custom: Any
) -> Any:
    try:
        missing = importlib.util.find_spec("opentelemetry.sdk") is None
    except ImportError:  # no `opentelemetry` package at all
        missing = True
    if missing:
        raise LaunchReadyError(
            f"otel_exporter={exporter!r} needs OpenTelemetry: pip install 'launchready-sdk[otel]'"
        )
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor

    attributes = {} if os.environ.get("OTEL_SERVICE_NAME") else {"service.name": service_name}
    provider = TracerProvider(resource=Resource.create(attributes))
    if custom is not None:
        inner: Any = SimpleSpanProcessor(custom)
    else:
        inner = BatchSpanProcessor(_exporter(exporter))
    provider.add_span_processor(redacting_processor(inner, redactor))
    return provider


def _exporter(name: str) -> Any:
    if name == "console":
        from opentelemetry.sdk.trace.export import ConsoleSpanExporter

        return ConsoleSpanExporter(service_name=None)
    for transport in ("http", "grpc"):  # whichever OTLP exporter package is installed
        try:
            module = importlib.import_module(
                f"opentelemetry.exporter.otlp.proto.{transport}.trace_exporter"
            )
        except ImportError:
            continue
        return module.OTLPSpanExporter()
    raise LaunchReadyError(
        "otel_exporter='otlp' needs an OTLP exporter: "
        "pip install opentelemetry-exporter-otlp-proto-http"
    )


def redacting_processor(inner: Any, redactor: Callable[[object], object] | None = None) -> Any:
    """A span processor handing `inner` a copy of each finished span with redacted attributes."""
    from opentelemetry.sdk.trace import SpanProcessor

    from launchready_sdk.redaction import redact

    clean: Callable[[object], object] = redactor if redactor is not None else redact

    class RedactingSpanProcessor(SpanProcessor):
        def on_start(self, span: Any, parent_context: Any = None) -> None:
            inner.on_start(span, parent_context=parent_context)

        def on_end(self, span: Any) -> None:
            inner.on_end(redacted_span(span, clean))

        def shutdown(self) -> None:
            inner.shutdown()

        def force_flush(self, timeout_millis: int = 30000) -> bool:
            return bool(inner.force_flush(timeout_millis))

    return RedactingSpanProcessor()


def redacted_span(span: Any, redactor: Callable[[object], object]) -> Any:
    """A `ReadableSpan` equal to `span` but with its attributes passed through `redactor`."""
    from opentelemetry.sdk.trace import Event, ReadableSpan

    events = [
        Event(e.name, _redact_attributes(e.attributes, redactor), e.timestamp) for e in span.events
    ]
    return ReadableSpan(
        name=span.name,
        context=span.context,
        parent=span.parent,
        resource=span.resource,
        attributes=_redact_attributes(span.attributes, redactor),
        events=events,
        links=span.links,
        kind=span.kind,
        status=span.status,
        start_time=span.start_time,
        end_time=span.end_time,
        instrumentation_scope=span.instrumentation_scope,
    )


def _redact_attributes(attributes: Any, redactor: Callable[[object], object]) -> dict[str, Any]:
    if not attributes:
        return {}
    cleaned = redactor(dict(attributes))
    return cleaned if isinstance(cleaned, dict) else {}


class Telemetry:
    """A configured tracer provider and the ASGI layer that uses it."""

    def __init__(self, provider: Any, *, excluded_paths: Iterable[str] = ()) -> None:
        self.provider = provider
        self.excluded_paths = tuple(excluded_paths)

    def wrap(self, app: ASGIApp) -> ASGIApp:
        """`app` inside the OTel ASGI middleware (unchanged if OTel already instruments it)."""
        if already_instrumented(app):
            _log.info("telemetry.already_instrumented", detail="keeping the app's own spans")
            return app
        from opentelemetry.instrumentation.asgi import OpenTelemetryMiddleware
        from opentelemetry.util.http import ExcludeList

        # OTel searches the full URL: anchor each path between the authority and the query.
        patterns = [
            rf"^[a-z]+://[^/]+{re.escape(p.rstrip('/'))}/?(?:\?.*)?$" for p in self.excluded_paths
        ]
        excluded = ExcludeList(patterns) if patterns else None
        return OpenTelemetryMiddleware(
            _RouteNamer(app),
            excluded_urls=excluded,
            tracer_provider=self.provider,
            exclude_spans=["receive", "send"],
            default_span_details=_span_details,
        )

    def shutdown(self) -> None:
        """Flush and stop the exporter (call at lifespan shutdown)."""
        disable_trace_ids()
        self.provider.shutdown()


def already_instrumented(app: Any) -> bool:
    """True when OTel's FastAPI/Starlette instrumentor or ASGI middleware already wraps `app`."""
    seen: set[int] = set()
    node = app
    while node is not None and id(node) not in seen:
        seen.add(id(node))
        if getattr(node, "_is_instrumented_by_opentelemetry", False):
            return True
        if type(node).__name__ == "OpenTelemetryMiddleware":
            return True
        stack = getattr(node, "user_middleware", None) or ()
        if any("opentelemetry" in getattr(m.cls, "__module__", "") for m in stack):
            return True
        node = getattr(node, "app", None)
    return False


def _span_details(scope: Scope) -> tuple[str, dict[str, Any]]:
    """The span's name before routing: the method alone, never the raw (high-cardinality) path."""
    method = scope.get("method", "HTTP")
    return str(method), {}


class _RouteNamer:
    """Inside the OTel middleware: names the server span after the route.

    The OTel middleware ends its span with the last body message, so the span is named when
    the response starts (routing is done by then), or when the app returns without one.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        from opentelemetry import trace

        span = trace.get_current_span()
        if not span.is_recording():
            await self.app(scope, receive, send)
            return
        scope["fastapi.telemetry"] = None  # FastAPI's native spans would duplicate ours
        root_path = scope.get("root_path", "")
        named = False

        async def naming_send(message: Message) -> None:
            nonlocal named
            if not named and message["type"] == "http.response.start":
                named = True
                _name_span(span, scope, root_path, message["status"])
            await send(message)

        try:
            await self.app(scope, receive, naming_send)
        finally:
            if not named:
                _name_span(span, scope, root_path, 500)


def _name_span(span: Any, scope: Scope, root_path: str, status: int) -> None:
    try:
        template = route_template(scope, root_path, status)
    except Exception:
        return
    if template is not None:
        span.set_attribute("http.route", template)
        span.update_name(f"{scope.get('method', 'HTTP')} {template}")
