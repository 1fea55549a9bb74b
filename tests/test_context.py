"""Request IDs and the per-request context: generation, validation, isolation, error responses."""

from __future__ import annotations

import asyncio
import random
import re
import uuid
from typing import Any

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse
from starlette.routing import Route

from launchready_sdk import context
from launchready_sdk.context import (
    RequestContext,
    RequestContextMiddleware,
    new_request_id,
    sanitize_client_id,
    valid_request_id,
)
from launchready_sdk.proxy import ProxyResolver

UUID7 = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")


class Recorder:
    """Collects access-log and error-log calls."""

    def __init__(self) -> None:
        self.access: list[tuple[RequestContext, int, int, float]] = []
        self.errors: list[BaseException] = []

    def log(self, ctx: RequestContext, status: int, sent: int, duration: float) -> None:
        self.access.append((ctx, status, sent, duration))

    def error(self, ctx: RequestContext, exc: BaseException) -> None:
        self.errors.append(exc)


async def _echo_id(request: Request) -> Response:
    await asyncio.sleep(random.random() / 200)
    return JSONResponse({"seen": context.get_request_id()})


async def _boom(request: Request) -> Response:
    raise RuntimeError("boom")


async def _sets_own_id(request: Request) -> Response:
    return PlainTextResponse("x", headers={"X-Request-ID": "app-chosen"})


async def _stream(request: Request) -> Response:
    async def body() -> Any:
        for i in range(3):
            yield f"part{i}".encode()

    return StreamingResponse(body())


def make_app(recorder: Recorder, **kwargs: Any) -> RequestContextMiddleware:
    app = Starlette(
        routes=[
            Route("/id", _echo_id),
            Route("/boom", _boom),
            Route("/own", _sets_own_id),
            Route("/stream", _stream),
            Route("/items/{item_id}", _echo_id),
        ]
    )
    return RequestContextMiddleware(
        app, access_log=recorder.log, error_log=recorder.error, **kwargs
    )


def test_generated_ids_are_uuid7_and_sort_by_time() -> None:
    """Generated IDs are RFC 9562 version-7 UUIDs whose order follows creation time."""
    first = new_request_id()
    ids = [first]
    for _ in range(50):
        ids.append(new_request_id())
    assert all(UUID7.match(i) for i in ids)
    assert uuid.UUID(first).version == 7
    later = new_request_id() if asyncio.run(asyncio.sleep(0.002)) is None else ""
    assert later > first


@pytest.mark.parametrize(
    "value",
    [
        b"0b4f3a2e-7d6c-4e3a-9f1b-2c3d4e5f6a7b",
        b"0B4F3A2E-7D6C-4E3A-9F1B-2C3D4E5F6A7B",
        b"4bf92f3577b34da6a3ce929d0e0e4736",
        b"01ARZ3NDEKTSV4RRFFQ69G5FAV",
        b"req:edge.1-abc_DEF",
        b"a" * 128,
    ],
)
def test_valid_incoming_ids_pass(value: bytes) -> None:
    """UUIDs in either case, nginx's 32-hex IDs, ULIDs and dotted/colon forms are accepted."""
    assert valid_request_id(value)


@pytest.mark.parametrize(
    "value",
    [
        b"",
        b"a" * 129,
        b"x" * 10_000,
        b"\x1b[31mred",
        b"abc\x00def",
        b"abc\r\nX-Injected: 1",
        b"abc%0d%0a",
        b'quote"d',
        b"back\\slash",
        "caf\xe9".encode("latin-1"),
        b"with space",
        b"a,b",
        b"Root=1-5759e988",
    ],
)
def test_hostile_incoming_ids_are_rejected(value: bytes) -> None:
    """Over-long IDs, control characters, CRLF, quotes, non-ASCII, spaces and lists are refused."""
    assert not valid_request_id(value)


@given(st.binary(max_size=300))
def test_sanitized_client_id_is_always_log_safe(value: bytes) -> None:
    """Whatever a client sends, the logged copy is short and of the safe charset only."""
    cleaned = sanitize_client_id(value)
    assert len(cleaned) <= 64
    assert re.fullmatch(r"[A-Za-z0-9._:\-]*", cleaned)


@given(st.binary(max_size=200))
def test_validation_agrees_with_the_allow_list(value: bytes) -> None:
    """An ID is valid exactly when it is 1-128 characters of [A-Za-z0-9._:-]."""
    expected = re.fullmatch(rb"[A-Za-z0-9._:\-]{1,128}", value) is not None
    assert valid_request_id(value) is expected


async def test_every_response_carries_one_request_id(asgi_client: Any) -> None:
    """200, 404, 405 and streaming responses all carry exactly one X-Request-ID."""
    client = asgi_client(make_app(Recorder()))
    for method, path in [("GET", "/id"), ("GET", "/nope"), ("POST", "/id"), ("GET", "/stream")]:
        response = await client.request(method, path)
        assert len(response.headers.get_list("x-request-id")) == 1
        assert UUID7.match(response.headers["x-request-id"])
    streamed = await client.get("/stream")
    assert streamed.text == "part0part1part2"


async def test_app_set_request_id_is_replaced(asgi_client: Any) -> None:
    """If the app sets its own X-Request-ID the response still has one, the SDK's."""
    client = asgi_client(make_app(Recorder()))
    response = await client.get("/own")
    assert response.headers.get_list("x-request-id") != ["app-chosen"]
    assert len(response.headers.get_list("x-request-id")) == 1


async def test_unhandled_exception_becomes_problem_json_with_id(asgi_client: Any) -> None:
    """An exception escaping the app is a 500 problem+json naming the request ID, logged once."""
    recorder = Recorder()
    client = asgi_client(make_app(recorder))
    response = await client.get("/boom")
    assert response.status_code == 500
    assert response.headers["content-type"] == "application/problem+json"
    body = response.json()
    assert body["request_id"] == response.headers["x-request-id"]
    assert body["status"] == 500
    assert "boom" not in response.text
    assert len(recorder.errors) == 1
    assert recorder.access[-1][1] == 500


async def test_exception_inside_starlette_error_handler_keeps_id(asgi_client: Any) -> None:
    """Starlette's own 500 (written before the exception reaches us) still carries the ID."""
    recorder = Recorder()
    client = asgi_client(make_app(recorder))
    response = await client.get("/boom")
    assert response.headers["x-request-id"]
    assert recorder.errors
    assert isinstance(recorder.errors[0], RuntimeError)


async def test_untrusted_peer_cannot_choose_the_id(asgi_client: Any) -> None:
    """By default a client's valid ID is not echoed; it is kept as client_request_id."""
    recorder = Recorder()
    client = asgi_client(make_app(recorder))
    response = await client.get("/id", headers={"X-Request-ID": "client-chosen-1"})
    assert response.headers["x-request-id"] != "client-chosen-1"
    assert response.json()["seen"] == response.headers["x-request-id"]
    assert recorder.access[-1][0].client_request_id == "client-chosen-1"


async def test_trusted_proxy_id_is_echoed(asgi_client: Any) -> None:
    """A valid ID from a trusted proxy is used for the request and echoed."""
    proxies = ProxyResolver(["10.0.0.0/8"])
    app = make_app(Recorder(), client_ip=proxies.client_ip, is_trusted_peer=proxies.is_trusted_peer)
    client = asgi_client(app, client=("10.1.2.3", 1234))
    response = await client.get("/id", headers={"X-Request-ID": "edge-abc.123"})
    assert response.headers["x-request-id"] == "edge-abc.123"
    assert response.json()["seen"] == "edge-abc.123"


async def test_trust_request_id_setting_believes_everyone(asgi_client: Any) -> None:
    """With trust_request_id=True any peer's valid ID is used."""
    client = asgi_client(make_app(Recorder(), trust_request_id=True))
    response = await client.get("/id", headers={"X-Request-ID": "abc-123"})
    assert response.headers["x-request-id"] == "abc-123"


async def test_invalid_id_is_replaced_even_from_trusted_peer(asgi_client: Any) -> None:
    """A malformed ID is replaced whoever sends it, and logged sanitised and truncated."""
    recorder = Recorder()
    client = asgi_client(make_app(recorder, trust_request_id=True))
    response = await client.get("/id", headers={"X-Request-ID": "x" * 300})
    assert UUID7.match(response.headers["x-request-id"])
    assert recorder.access[-1][0].client_request_id == "x" * 64


async def test_two_id_headers_give_one_deterministic_id(asgi_client: Any) -> None:
    """With two X-Request-ID headers the first is used and one header is returned."""
    client = asgi_client(make_app(Recorder(), trust_request_id=True))
    response = await client.get(
        "/id", headers=[("X-Request-ID", "first"), ("X-Request-ID", "second")]
    )
    assert response.headers.get_list("x-request-id") == ["first"]


async def test_concurrent_requests_never_see_each_others_id(asgi_client: Any) -> None:
    """500 interleaved requests with random delays each see only their own ID."""
    client = asgi_client(make_app(Recorder()))
    responses = await asyncio.gather(*(client.get("/id") for _ in range(500)))
    for response in responses:
        assert response.json()["seen"] == response.headers["x-request-id"]
    assert len({r.headers["x-request-id"] for r in responses}) == 500
    assert context.get_request_id() is None


async def test_access_log_gets_status_bytes_route_and_duration(asgi_client: Any) -> None:
    """The access callback receives status, body size, route template and a duration."""
    recorder = Recorder()
    client = asgi_client(make_app(recorder))
    response = await client.get("/items/42")
    ctx, status, sent, duration = recorder.access[-1]
    assert (status, sent) == (200, len(response.content))
    assert ctx.route == "/items/{item_id}"
    assert ctx.path == "/items/42"
    assert ctx.client_ip == "203.0.113.7"
    assert duration > 0


async def test_non_http_scopes_pass_through() -> None:
    """Lifespan messages reach the app untouched."""
    seen: list[str] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        seen.append(scope["type"])

    await RequestContextMiddleware(app)({"type": "lifespan"}, None, None)  # type: ignore[arg-type]
    assert seen == ["lifespan"]


async def test_head_on_failing_route_has_no_body() -> None:
    """A HEAD request that fails gets a 500 with headers and an empty body."""

    async def app(scope: Any, receive: Any, send: Any) -> None:
        raise ValueError("nope")

    transport = httpx.ASGITransport(app=RequestContextMiddleware(app))
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        response = await client.head("/")
    assert response.status_code == 500
    assert response.content == b""
    assert response.headers["x-request-id"]


async def _upload(request: Request) -> Response:
    return PlainTextResponse(str(len(await request.body())))


async def test_a_client_that_leaves_mid_body_is_a_499_not_an_error() -> None:
    """Starlette raises `ClientDisconnect` when the client goes away while the app reads the
    body: the access line says 499 (as nginx logs it), no error is logged or captured, and
    nothing escapes to the server; through `wrap()` Starlette's own 500 page is not sent."""
    recorder = Recorder()
    inner = Starlette(routes=[Route("/upload", _upload, methods=["POST"])])
    app = RequestContextMiddleware(inner, access_log=recorder.log, error_log=recorder.error)
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST",
        "scheme": "http", "path": "/upload", "raw_path": b"/upload", "query_string": b"",
        "root_path": "", "headers": [(b"content-length", b"1000")],
        "client": ("127.0.0.1", 5000), "server": ("127.0.0.1", 8000),
    }  # fmt: skip
    await app(dict(scope), receive, send)
    assert [status for _, status, _, _ in recorder.access] == [499]
    assert recorder.errors == []
    assert sent == []

    from launchready_sdk import LaunchReady, Settings

    lr = LaunchReady(Settings(configure_logging=False, rate_limits={}))
    wrapped = lr.wrap(Starlette(routes=[Route("/upload", _upload, methods=["POST"])]))
    await wrapped(dict(scope), receive, send)
    assert sent == [], "Starlette's 500 page for a client that left is dropped"
    figures = lr.latency.snapshot()["POST /upload"]
    assert figures["errors"] == 0
    assert figures["client_errors"] == 1


@pytest.mark.slow
def test_a_client_that_leaves_mid_body_is_logged_as_499_by_a_real_server(serve: Any) -> None:
    """Through uvicorn: a POST that promises 1,000 bytes, sends 10 and closes gets an access
    line with status 499, and no unhandled-exception line."""
    import socket
    import time

    server = serve("tests.apps.basic:app")
    with socket.create_connection(("127.0.0.1", server.port)) as sock:
        sock.sendall(
            b"POST /echo-body HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            b"Content-Length: 1000\r\n\r\n0123456789"
        )
        time.sleep(0.2)
    lines: list[dict[str, Any]] = []
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        lines = [x for x in server.log_lines() if x.get("path") == "/echo-body"]
        if lines:
            break
        time.sleep(0.05)
    assert [x["status"] for x in lines] == [499], server.log_path.read_text()[-2000:]
    text = server.log_path.read_text()
    assert "unhandled_exception" not in text
    assert "Exception in ASGI application" not in text
