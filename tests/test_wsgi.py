"""The SDK around a WSGI app, called in-process as a WSGI server calls it."""

from __future__ import annotations

import asyncio
import io
import json
import sys
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from launchready_sdk import LaunchReady, Settings
from launchready_sdk.wsgi import thread_loop
from tests.conftest import LogCapture

Environ = dict[str, Any]


def environ(
    method: str = "GET",
    path: str = "/",
    body: bytes = b"",
    *,
    headers: dict[str, str] | None = None,
    length: int | None = None,
    chunked: bool = False,
    stream: Any = None,
) -> Environ:
    env: Environ = {
        "REQUEST_METHOD": method,
        "SCRIPT_NAME": "",
        "PATH_INFO": path,
        "QUERY_STRING": "",
        "SERVER_NAME": "127.0.0.1",
        "SERVER_PORT": "8000",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "HTTP_HOST": "shop.example",
        "REMOTE_ADDR": "203.0.113.9",
        "REMOTE_PORT": "50000",
        "wsgi.input": stream if stream is not None else io.BytesIO(body),
        "wsgi.url_scheme": "http",
        "wsgi.errors": sys.stderr,
    }
    if chunked:
        env["HTTP_TRANSFER_ENCODING"] = "chunked"
    elif body or length is not None:
        env["CONTENT_LENGTH"] = str(len(body) if length is None else length)
    for name, value in (headers or {}).items():
        env["HTTP_" + name.upper().replace("-", "_")] = value
    return env


class Answer:
    def __init__(self, status: str, headers: list[tuple[str, str]], body: bytes) -> None:
        self.status = int(status[:3])
        self.headers = headers
        self.body = body

    def header(self, name: str) -> list[str]:
        return [v for k, v in self.headers if k.lower() == name.lower()]

    def json(self) -> Any:
        return json.loads(self.body)


def call(app: Any, env: Environ) -> Answer:
    """Call a WSGI app as a server does: start_response, iterate, close."""
    started: dict[str, Any] = {}

    def start_response(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
        started.update(status=status, headers=headers)
        return lambda data: None

    result = app(env, start_response)
    try:
        body = b"".join(result)
    finally:
        getattr(result, "close", lambda: None)()
    return Answer(started["status"], started["headers"], body)


class ShopApp:
    """A small WSGI app: echoes bodies, streams, raises; counts what it ran and closed."""

    def __init__(self) -> None:
        self.ran: list[str] = []
        self.bodies: list[bytes] = []
        self.closed = 0

    def __call__(self, env: Environ, start_response: Callable[..., Any]) -> Any:
        path = env["PATH_INFO"]
        self.ran.append(path)
        body = env["wsgi.input"].read(int(env.get("CONTENT_LENGTH") or 0))
        self.bodies.append(body)
        if path.startswith("/slow"):
            time.sleep(0.3)
        if path == "/boom":
            raise RuntimeError("payment failed for card 4111 1111 1111 1111")
        if path.startswith("/stream"):
            start_response("200 OK", [("Content-Type", "text/plain")])
            return self._stream()
        start_response(
            "201 Created" if env["REQUEST_METHOD"] == "POST" else "200 OK",
            [("Content-Type", "application/json"), ("X-Request-ID", "set-by-the-app")],
        )
        return [json.dumps({"path": path, "body": body.decode(), "n": len(self.ran)}).encode()]

    def _stream(self) -> Iterator[bytes]:
        try:
            for i in range(5):
                yield f"part {i}\n".encode()
        finally:
            self.closed += 1


_built: list[Any] = []


@pytest.fixture(autouse=True)
def _stop_background() -> Iterator[None]:
    """Each app's background loop stops with its test (a server's process exit does that)."""
    yield
    while _built:
        _built.pop().background.stop()


def build(log: LogCapture, **settings: Any) -> tuple[Any, ShopApp, LaunchReady]:
    shop = ShopApp()
    lr = LaunchReady(Settings(**settings), log_stream=log)
    app = lr.wrap_wsgi(shop)
    _built.append(app)
    return app, shop, lr


def access_lines(log: LogCapture) -> list[dict[str, Any]]:
    return [r for r in log.records() if r.get("logger") == "launchready.access"]


def loop_tasks() -> int:
    """Tasks still pending on this thread's private loop."""
    loop = thread_loop().loop

    async def count() -> int:
        return len([t for t in asyncio.all_tasks() if t is not asyncio.current_task()])

    return asyncio.run_coroutine_threadsafe(count(), loop).result(5)


def test_every_request_gets_one_request_id_and_an_access_line(log_stream: LogCapture) -> None:
    """A request no layer acts on runs straight through: one X-Request-ID replacing the app's,
    and an access line carrying it after the server closed the response."""
    app, shop, _ = build(log_stream)
    answer = call(app, environ("GET", "/plain", headers={"X-Request-ID": "forged"}))
    assert answer.status == 200
    [rid] = answer.header("X-Request-ID")
    assert rid != "set-by-the-app"
    assert rid != "forged"
    [line] = access_lines(log_stream)
    assert (line["request_id"], line["status"], line["path"]) == (rid, 200, "/plain")
    assert line["bytes"] == len(answer.body)
    assert shop.ran == ["/plain"]


def test_health_and_metrics_are_answered_by_the_layers(log_stream: LogCapture) -> None:
    """/healthz and /readyz are answered without the app; /metrics counts the app's requests."""
    app, shop, _ = build(log_stream)
    call(app, environ("GET", "/plain"))
    health = call(app, environ("GET", "/healthz"))
    ready = call(app, environ("GET", "/readyz"))
    metrics = call(app, environ("GET", "/metrics"))
    assert (health.status, ready.status) == (200, 200)
    assert health.header("X-Request-ID")
    assert b"launchready_http_requests_total" in metrics.body
    assert shop.ran == ["/plain"]


def test_limits_refuse_before_the_app_runs(log_stream: LogCapture) -> None:
    """A limited route's third POST gets a 429 problem with the request id; the app never
    sees it."""
    app, shop, _ = build(log_stream, rate_limits={"/login": "2/minute"})
    answers = [call(app, environ("POST", "/login", b'{"u": 1}')) for _ in range(3)]
    assert [a.status for a in answers] == [201, 201, 429]
    problem = answers[2].json()
    assert problem["request_id"] == answers[2].header("X-Request-ID")[0]
    assert answers[2].header("Retry-After")
    assert shop.ran == ["/login", "/login"]
    assert shop.bodies == [b'{"u": 1}', b'{"u": 1}']


def test_cache_routes_are_served_from_the_cache(log_stream: LogCapture) -> None:
    """The second GET of a cache route is a HIT the app does not run for."""
    app, shop, _ = build(log_stream, cache_routes={"/products/{id}": 30})
    first = call(app, environ("GET", "/products/7"))
    second = call(app, environ("GET", "/products/7"))
    assert (first.header("X-Cache"), second.header("X-Cache")) == (["MISS"], ["HIT"])
    assert first.body == second.body
    assert shop.ran == ["/products/7"]
    assert access_lines(log_stream)[1]["route"] == "/products/{id}"  # named by the cache


def test_idempotent_posts_are_replayed(log_stream: LogCapture) -> None:
    """A retried POST with the same Idempotency-Key is replayed, the app running once."""
    app, shop, _ = build(log_stream, idempotent_routes=("/checkout",))
    key = {"Idempotency-Key": "order-1"}
    first = call(app, environ("POST", "/checkout", b'{"cart": 1}', headers=key))
    again = call(app, environ("POST", "/checkout", b'{"cart": 1}', headers=key))
    assert (first.status, again.status) == (201, 201)
    assert again.header("Idempotent-Replayed") == ["true"]
    assert first.body == again.body
    assert shop.ran == ["/checkout"]


@pytest.mark.parametrize("path", ["/plain", "/checkout"])
def test_a_chunked_body_reaches_the_app_whole(log_stream: LogCapture, path: str) -> None:
    """A chunked body (no Content-Length) reaches the app with its length, through the
    layers or not."""
    app, shop, _ = build(log_stream, idempotent_routes=("/checkout",))
    payload = b"x" * 200_000
    headers = {"Idempotency-Key": "chunked-1"}
    answer = call(app, environ("POST", path, payload, chunked=True, headers=headers))
    assert answer.status == 201
    assert shop.bodies == [payload]


class _Broken(io.RawIOBase):
    """A request body that ends with the server's reader failing (a malformed chunk)."""

    def __init__(self, good: bytes) -> None:
        self.good = good

    def read(self, size: int = -1) -> bytes:
        if self.good:
            out, self.good = self.good, b""
            return out
        raise ValueError("invalid chunk size")


def test_a_bad_or_huge_chunked_body_is_refused_before_the_app(log_stream: LogCapture) -> None:
    """A malformed chunked body gets 400, one over the cap 413, both problem+json; the app
    never runs."""
    app, shop, _ = build(log_stream)
    bad = call(app, environ("POST", "/plain", chunked=True, stream=_Broken(b"abc")))
    app.max_chunked_body_bytes = 1000
    huge = call(app, environ("POST", "/plain", b"y" * 5000, chunked=True))
    assert (bad.status, huge.status) == (400, 413)
    assert bad.json()["request_id"] == bad.header("X-Request-ID")[0]
    assert shop.ran == []


def test_a_client_that_leaves_mid_body_leaves_no_claim(log_stream: LogCapture) -> None:
    """A body cut short (the client left) runs no app and releases the idempotency claim:
    the retry with the whole body goes through."""
    app, shop, _ = build(log_stream, idempotent_routes=("/checkout",))
    key = {"Idempotency-Key": "cut-1"}
    cut = call(app, environ("POST", "/checkout", b'{"ca', headers=key, length=40))
    retry = call(app, environ("POST", "/checkout", b'{"cart": 2}', headers=key))
    assert shop.ran == ["/checkout"]
    assert retry.status == 201
    assert cut.status == 400
    assert access_lines(log_stream)[0]["status"] == 499
    assert loop_tasks() == 0


def test_a_client_that_leaves_mid_response_stores_nothing(log_stream: LogCapture) -> None:
    """A streamed response of a cache route whose client leaves after one chunk: the app's
    response is closed, nothing partial is cached, and no task is left on the loop."""
    app, shop, _ = build(log_stream, cache_routes={"/stream": 30})
    started: dict[str, Any] = {}
    result = app(environ("GET", "/stream"), lambda s, h, e=None: started.update(s=s, h=h))
    chunks = iter(result)
    assert next(chunks) == b"part 0\n"
    result.close()  # what the server does when writing to the client fails
    assert shop.closed == 1
    assert loop_tasks() == 0
    again = call(app, environ("GET", "/stream"))
    assert again.header("X-Cache") == ["MISS"]
    assert again.body.count(b"part") == 5
    assert shop.closed == 2


def test_an_exception_is_a_problem_with_a_redacted_traceback(log_stream: LogCapture) -> None:
    """An app that raises (with or without the layers) answers a 500 problem carrying the
    request id; its traceback is logged, redacted."""
    app, _, _ = build(log_stream, rate_limits={"/boom": "100/minute"})
    direct_app, _, _ = build(log_stream)
    for target in (app, direct_app):
        answer = call(target, environ("POST", "/boom", b"{}"))
        assert answer.status == 500
        assert answer.json()["request_id"] == answer.header("X-Request-ID")[0]
    text = json.dumps(log_stream.records())
    assert "4111 1111 1111 1111" not in text
    assert text.count("request.unhandled_exception") == 2


def test_async_calls_from_sync_code_share_the_threads_loop(log_stream: LogCapture) -> None:
    """asgiref's async_to_sync in the request thread runs on the thread's private loop."""
    from asgiref.sync import async_to_sync

    seen: list[asyncio.AbstractEventLoop] = []

    async def where() -> None:
        seen.append(asyncio.get_running_loop())

    def view(env: Environ, start_response: Callable[..., Any]) -> list[bytes]:
        async_to_sync(where)()
        start_response("200 OK", [])
        return [b"ok"]

    lr = LaunchReady(Settings(), log_stream=log_stream)
    app = lr.wrap_wsgi(view)
    _built.append(app)
    call(app, environ("GET", "/a"))
    call(app, environ("GET", "/b"))
    assert seen == [thread_loop().loop, thread_loop().loop]


def test_threads_share_limits_through_redis(
    log_stream: LogCapture, redis_url: str, redis_prefix: str
) -> None:
    """Worker threads (as in gthread) each run their own loop and Redis connection and share
    one limit."""
    app, _shop, lr = build(
        log_stream,
        redis_url=redis_url,
        redis_prefix=redis_prefix,
        rate_limits={"/login": "6/minute"},
    )
    statuses: list[int] = []
    connections: list[int] = []
    done = threading.Barrier(3, timeout=30)

    def worker() -> None:
        for _ in range(4):
            statuses.append(call(app, environ("POST", "/login", b"{}")).status)
        done.wait()  # every thread's loop is alive here
        assert lr.redis is not None
        connections.append(lr.redis.client.connections)
        done.wait()
        thread_loop().submit(lr.redis.aclose()).result(5)  # as at shutdown

    threads = [threading.Thread(target=worker) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert sorted(statuses) == [201] * 6 + [429] * 6
    assert connections == [3, 3, 3]


def test_the_background_loop_flushes_latency_to_redis(
    log_stream: LogCapture, redis_url: str, redis_prefix: str
) -> None:
    """From the first request on, a background loop flushes the latency figures to Redis."""
    import redis

    app, _, lr = build(
        log_stream, redis_url=redis_url, redis_prefix=redis_prefix, latency_flush_interval_s=0.1
    )
    call(app, environ("GET", "/plain"))
    client = redis.Redis.from_url(redis_url)
    key = f"{redis_prefix}:{lr.settings.service_name}:latency:total"
    deadline = time.monotonic() + 10
    while not client.hlen(key) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert client.hlen(key) == 1
    client.close()


def test_threads_share_no_future_across_loops(log_stream: LogCapture) -> None:
    """Threads (as in gthread) asking at once for readiness and for the same cache miss each
    get their answer: an in-flight run on another thread's loop is not awaited across loops."""
    app, _, lr = build(log_stream, cache_routes={"/slow": 30})
    gate = threading.Barrier(4, timeout=10)

    async def slow_check() -> None:
        await asyncio.sleep(0.3)

    lr.add_health_check("slow", slow_check)
    statuses: list[tuple[str, int]] = []

    def worker(path: str) -> None:
        gate.wait()
        statuses.append((path, call(app, environ("GET", path)).status))

    threads = [threading.Thread(target=worker, args=(p,)) for p in ["/readyz", "/slow"] * 2]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert sorted(statuses) == [("/readyz", 200)] * 2 + [("/slow", 200)] * 2


def test_the_perimeter_answers_and_marks_every_response(log_stream: LogCapture) -> None:
    """Under WSGI as under ASGI: a foreign Host gets 400, plain HTTP a 301 to HTTPS (308 for a
    POST), a legacy path its 301, a webhook is never redirected; every response (the app's,
    a layer's, a problem, a redirect) carries the security headers and one request ID."""
    app, shop, _ = build(
        log_stream,
        allowed_hosts=["shop.example"],
        https_redirect=True,
        trusted_proxies=["203.0.113.9"],
        redirects={"/old-catalog": "/products"},
        redirect_exempt=["/webhooks/*"],
        csp="default-src 'self'; script-src 'self' 'nonce-{nonce}'",
    )
    https = {"X-Forwarded-Proto": "https"}
    refused = call(app, environ("GET", "/plain", headers={"Host": "evil.example", **https}))
    upgrade = call(app, environ("GET", "/plain"))
    post = call(app, environ("POST", "/checkout", b"{}"))
    legacy = call(app, environ("GET", "/old-catalog", headers=https))
    webhook = call(app, environ("POST", "/webhooks/stripe", b"{}"))
    served = call(app, environ("GET", "/plain", headers=https))
    health = call(app, environ("GET", "/healthz", headers=https))
    boom = call(app, environ("GET", "/boom", headers=https))
    assert refused.status == 400
    assert refused.json()["request_id"] == refused.header("X-Request-ID")[0]
    assert (upgrade.status, upgrade.header("Location")) == (301, ["https://shop.example/plain"])
    assert (post.status, post.header("Location")) == (308, ["https://shop.example/checkout"])
    assert (legacy.status, legacy.header("Location")) == (301, ["https://shop.example/products"])
    assert (webhook.status, served.status, health.status, boom.status) == (201, 200, 200, 500)
    assert shop.ran == ["/webhooks/stripe", "/plain", "/boom"]
    for answer in (refused, upgrade, post, legacy, webhook, served, health, boom):
        assert len(answer.header("X-Request-ID")) == 1
        assert answer.header("X-Content-Type-Options") == ["nosniff"]
        assert len(answer.header("Content-Security-Policy")) == 1
    assert served.header("Strict-Transport-Security")
    assert not upgrade.header("Strict-Transport-Security")  # never over plain HTTP


def test_the_csp_nonce_reaches_the_wsgi_app(log_stream: LogCapture) -> None:
    """A policy naming `{nonce}` puts a fresh nonce in the environ; the header carries the
    one the app read."""
    seen: list[str] = []

    def page(env: Environ, start_response: Callable[..., Any]) -> list[bytes]:
        nonce = str(env["launchready.csp_nonce"])
        seen.append(nonce)
        start_response("200 OK", [("Content-Type", "text/html")])
        return [f'<script nonce="{nonce}"></script>'.encode()]

    lr = LaunchReady(
        Settings(csp="default-src 'self'; script-src 'self' 'nonce-{nonce}'"), log_stream=log_stream
    )
    app = lr.wrap_wsgi(page)
    _built.append(app)
    answers = [call(app, environ("GET", "/page")) for _ in range(2)]
    assert seen[0] != seen[1]
    for nonce, answer in zip(seen, answers, strict=True):
        assert f"'nonce-{nonce}'" in answer.header("Content-Security-Policy")[0]
