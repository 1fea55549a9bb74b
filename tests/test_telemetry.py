"""OpenTelemetry: one templated server span per request, redacted attributes, trace IDs in logs."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import pytest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from launchready_sdk.errors import LaunchReadyError
from launchready_sdk.logs import add_trace_ids
from launchready_sdk.telemetry import (
    Telemetry,
    already_instrumented,
    disable_trace_ids,
    setup_telemetry,
)
from tests.apps.latency_app import build


@pytest.fixture
def traced() -> Iterator[tuple[Telemetry, InMemorySpanExporter]]:
    exporter = InMemorySpanExporter()
    telemetry = setup_telemetry(
        "none", "shop", span_exporter=exporter, set_global=False, excluded_paths=["/healthz"]
    )
    assert telemetry is not None
    yield telemetry, exporter
    telemetry.shutdown()


async def test_one_server_span_per_request_named_by_template(traced: Any, asgi_client: Any) -> None:
    """Each request gives exactly one SERVER span, named and `http.route`d by template."""
    telemetry, exporter = traced
    client = asgi_client(telemetry.wrap(build()))
    for path in ("/products/7", "/api/v1/orders/x", "/star/items/3", "/nope"):
        await client.get(path)
    spans = exporter.get_finished_spans()
    assert [s.kind for s in spans] == [SpanKind.SERVER] * 4
    assert [s.name for s in spans] == [
        "GET /products/{product_id}",
        "GET /api/v1/orders/{order_id}",
        "GET /star/items/{id}",
        "GET",
    ]
    assert spans[0].attributes["http.route"] == "/products/{product_id}"
    assert "http.route" not in spans[3].attributes


async def test_span_attributes_are_redacted(traced: Any, asgi_client: Any) -> None:
    """A secret in the query string never reaches the exported span."""
    telemetry, exporter = traced
    client = asgi_client(telemetry.wrap(build()))
    await client.get("/products/1?access_token=abcdef0123456789secret&page=2")
    (span,) = exporter.get_finished_spans()
    text = repr(dict(span.attributes))
    assert "abcdef0123456789secret" not in text
    assert "page=2" in text


async def test_exception_span_and_excluded_paths(traced: Any, asgi_client: Any) -> None:
    """A route that raises gives an error span with its route; excluded paths give none."""
    telemetry, exporter = traced
    client = asgi_client(telemetry.wrap(build()))
    await client.get("/healthz")
    with pytest.raises(RuntimeError):
        await client.get("/boom")
    (span,) = exporter.get_finished_spans()
    assert span.name == "GET /boom"
    assert span.status.status_code == StatusCode.ERROR


def test_trace_ids_in_logs_only_when_on(traced: Any) -> None:
    """`add_trace_ids` adds the current span's IDs while tracing is on and nothing when off."""
    telemetry, _ = traced
    tracer = telemetry.provider.get_tracer("test")
    with tracer.start_as_current_span("work") as span:
        event = add_trace_ids(None, "info", {"event": "x"})
        assert event["trace_id"] == format(span.get_span_context().trace_id, "032x")
        assert len(event["span_id"]) == 16
        disable_trace_ids()
        assert add_trace_ids(None, "info", {"event": "x"}) == {"event": "x"}


def test_off_by_default_and_imports_nothing() -> None:
    """With exporter "none" setup returns None and OpenTelemetry is never imported."""
    code = (
        "import sys; from launchready_sdk.telemetry import setup_telemetry\n"
        "from launchready_sdk.logs import add_trace_ids\n"
        "assert setup_telemetry('none') is None\n"
        "add_trace_ids(None, 'info', {})\n"
        "print(any(m.startswith('opentelemetry') for m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_standard_variables_and_bad_exporters(monkeypatch: pytest.MonkeyPatch) -> None:
    """OTEL_SDK_DISABLED wins; OTEL_TRACES_EXPORTER is read; bad exporters are explained."""
    monkeypatch.setenv("OTEL_SDK_DISABLED", "true")
    assert setup_telemetry("console") is None
    monkeypatch.delenv("OTEL_SDK_DISABLED")
    monkeypatch.setenv("OTEL_TRACES_EXPORTER", "zipkin")
    with pytest.raises(LaunchReadyError, match="otel_exporter"):
        setup_telemetry(None)
    with pytest.raises(LaunchReadyError, match="opentelemetry-exporter-otlp"):
        setup_telemetry("otlp", set_global=False)


def test_no_double_instrumentation() -> None:
    """An app already wrapped by OTel's middleware or instrumentor is returned unchanged."""
    from opentelemetry.instrumentation.asgi import OpenTelemetryMiddleware

    telemetry = setup_telemetry("none", span_exporter=InMemorySpanExporter(), set_global=False)
    assert telemetry is not None
    api = build()
    wrapped = OpenTelemetryMiddleware(api)
    assert already_instrumented(wrapped)
    assert telemetry.wrap(wrapped) is wrapped
    api._is_instrumented_by_opentelemetry = True  # what FastAPIInstrumentor.instrument_app sets
    assert telemetry.wrap(api) is api
    assert not already_instrumented(build())
    telemetry.shutdown()
