"""The status page and error tracking, end to end through uvicorn (FastAPI and Django)."""

from __future__ import annotations

import asyncio
import datetime
import json
import re
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from launchready_sdk import Settings, SettingsError
from tests.conftest import PrivateRedis, Server
from tests.shopflows import wait_for

APP = "tests.apps.status_app:app"
DJANGO_APP = "tests.apps.django_proj.asgi:application"
TOKEN = secrets.token_urlsafe(32)
PATH = "/_launchready/status"
SECRET_PARTS = ("4eC39HqLyjWDarjtT1zdp7dc", "hunter2", "51HbQpLxL8kQ2vYtRz9WmN3c")
AUTH = {"Authorization": f"Bearer {TOKEN}"}
ROUTE_KEYS = {
    "count",
    "errors",
    "error_rate",
    "p50_ms",
    "p95_ms",
    "p99_ms",
    "budget_ms",
    "over_budget",
}
ERROR_KEYS = {
    "fingerprint",
    "type",
    "message",
    "count",
    "first_seen",
    "last_seen",
    "route",
    "request_id",
    "traceback",
}
SLOW_KEYS = {"at", "method", "route", "status", "duration_ms", "request_id"}


def env(**extra: str) -> dict[str, str]:
    return {
        "LAUNCHREADY_STATUS_TOKEN": TOKEN,
        "LAUNCHREADY_LATENCY_BUDGETS": "GET /slow/{ms}=50",
        "LAUNCHREADY_TRUSTED_PROXIES": "127.0.0.1/32",
        **extra,
    }


def status_json(server: Server, **headers: str) -> dict[str, Any]:
    response = httpx.get(server.url + PATH + ".json", headers={**AUTH, **headers}, timeout=10)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def assert_no_secret(text: str) -> None:
    for part in SECRET_PARTS:
        assert part not in text


def utc(text: str) -> datetime.datetime:
    moment = datetime.datetime.fromisoformat(text)
    assert moment.utcoffset() == datetime.timedelta(0)
    return moment


@pytest.fixture(scope="module")
def app_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """One FastAPI app with the status page on, for the tests that only read from it."""
    server = Server(APP, env(), tmp_path_factory.mktemp("status") / "app.log")
    try:
        server.wait_ready()
        yield server
    finally:
        server.stop()


# --- settings ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("token", "problem"),
    [
        ("short-token-1234", "at least 32 characters"),
        ("a" * 16 + "b" * 16 + "c" * 4, "too repetitive"),
        ("with spaces " + secrets.token_hex(16), "printable ASCII"),
        ("é" + secrets.token_hex(16), "printable ASCII"),
    ],
)
def test_a_weak_token_is_a_settings_error_that_never_echoes_it(token: str, problem: str) -> None:
    """Short, spaced, non-ASCII or repetitive tokens fail at start-up, naming the variable only."""
    with pytest.raises(SettingsError) as caught:
        Settings.from_env({"LAUNCHREADY_STATUS_TOKEN": token})
    assert caught.value.name == "LAUNCHREADY_STATUS_TOKEN"
    assert problem in str(caught.value)
    assert token not in str(caught.value)


def test_the_status_path_must_not_clash_with_another_endpoint() -> None:
    """`status_path` equal to the health path is refused."""
    with pytest.raises(SettingsError) as caught:
        Settings(status_token=TOKEN, status_path="/healthz")
    assert caught.value.name == "status_path"


# --- closed by default ------------------------------------------------------------------------


def test_without_a_token_the_status_paths_are_the_apps_plain_404(serve: Any) -> None:
    """No token: nothing is mounted; the paths answer like any unknown path, token or not."""
    server = serve(APP, {"LAUNCHREADY_STATUS_TOKEN": ""})
    unknown = httpx.get(server.url + "/no-such-page")
    for path in (PATH, PATH + ".json", PATH + "/login"):
        response = httpx.get(server.url + path, headers=AUTH)
        assert response.status_code == 404
        assert response.text == unknown.text
        assert "www-authenticate" not in response.headers


# --- access -----------------------------------------------------------------------------------


def test_missing_wrong_and_odd_tokens_get_401_with_a_bearer_challenge(app_server: Server) -> None:
    """Missing, wrong, another scheme or non-ASCII bytes: 401 problem+json, never a 500."""
    url = app_server.url + PATH + ".json"
    cases: list[list[tuple[bytes, bytes]]] = [
        [],
        [(b"authorization", b"Bearer " + secrets.token_urlsafe(32).encode())],
        [(b"authorization", b"Basic " + TOKEN.encode())],
        [(b"authorization", b"Bearer \xff\xfe\xc3\x28" + TOKEN.encode()[:20])],
        [(b"authorization", b"Bearer")],
    ]
    with httpx.Client(timeout=10) as c:
        for i, headers in enumerate(cases):
            headers = [*headers, (b"x-forwarded-for", f"198.51.100.{i + 1}".encode())]
            response = c.get(url, headers=headers)
            assert response.status_code == 401, response.text
            assert response.headers["www-authenticate"].startswith("Bearer")
            assert response.headers["content-type"] == "application/problem+json"
            assert response.json()["request_id"] == response.headers["x-request-id"]
            assert response.headers["cache-control"] == "no-store"
        wrong = c.get(
            url, headers={"Authorization": "Bearer nope", "X-Forwarded-For": "198.51.100.9"}
        )
        assert 'error="invalid_token"' in wrong.headers["www-authenticate"]


def test_the_right_token_opens_the_page_with_its_own_headers(app_server: Server) -> None:
    """200 for HTML and JSON; no-store, noindex, no-referrer and a script-free CSP."""
    for suffix, kind in (("", "text/html"), (".json", "application/json")):
        response = httpx.get(app_server.url + PATH + suffix, headers=AUTH)
        assert response.status_code == 200
        assert response.headers["content-type"].startswith(kind)
        assert response.headers["cache-control"] == "no-store"
        assert response.headers["x-robots-tag"] == "noindex, nofollow"
        assert response.headers["referrer-policy"] == "no-referrer"
    csp = httpx.get(app_server.url + PATH, headers=AUTH).headers["content-security-policy"]
    assert "default-src 'none'" in csp
    assert "frame-ancestors 'none'" in csp
    assert "script-src" not in csp
    assert "unsafe-inline" not in csp
    head = httpx.head(app_server.url + PATH + ".json", headers=AUTH)
    assert head.status_code == 200
    assert head.content == b""
    post = httpx.post(app_server.url + PATH + ".json", headers=AUTH)
    assert post.status_code == 405


def test_a_token_in_the_query_string_is_refused_unchecked(app_server: Server) -> None:
    """`?token=` (even the right one, even with the right header) is a 400, never a login."""
    for query in (f"token={TOKEN}", f"access_token={TOKEN}", f"api%5Fkey={TOKEN}"):
        response = httpx.get(f"{app_server.url}{PATH}.json?{query}", headers=AUTH)
        assert response.status_code == 400
        assert "Authorization header" in response.json()["detail"]
    assert httpx.get(f"{app_server.url}{PATH}.json?view=all", headers=AUTH).status_code == 200


def test_failed_attempts_are_throttled_per_client(app_server: Server) -> None:
    """Ten failures a minute per client, then 429 even with the right token; others unaffected."""
    attacker = {"X-Forwarded-For": "203.0.113.66"}
    url = app_server.url + PATH + ".json"
    with httpx.Client(timeout=10) as c:
        codes = [c.get(url, headers={**attacker, "Authorization": f"Bearer x{i}"}).status_code
                 for i in range(12)]  # fmt: skip
        assert codes[:10] == [401] * 10
        assert codes[10:] == [429, 429]
        blocked = c.get(url, headers={**attacker, **AUTH})
        assert blocked.status_code == 429
        assert int(blocked.headers["retry-after"]) >= 1
        assert c.get(url, headers={"X-Forwarded-For": "203.0.113.67", **AUTH}).status_code == 200


def test_the_login_form_sets_a_signed_session_cookie_never_the_token(app_server: Server) -> None:
    """A browser gets the form, posts the token once and then browses with a short session."""
    html = {"Accept": "text/html", "X-Forwarded-For": "192.0.2.10"}
    with httpx.Client(base_url=app_server.url, timeout=10, headers=html) as c:
        form = c.get(PATH)
        assert form.status_code == 401
        assert form.headers["www-authenticate"].startswith("Bearer")
        assert '<form method="post" action="/_launchready/status/login"' in form.text
        assert "<script" not in form.text
        login = c.post(PATH + "/login", data={"token": TOKEN})
        assert login.status_code == 303
        assert login.headers["location"] == PATH
        cookie = login.headers["set-cookie"]
        for attribute in ("HttpOnly", "Secure", "SameSite=Strict", f"Path={PATH}", "Max-Age=900"):
            assert attribute in cookie
        value = cookie.split(";")[0].split("=", 1)[1]
        assert TOKEN not in value
        assert TOKEN[:12] not in value
        page = c.get(PATH, headers={"Cookie": f"launchready_status={value}"})
        assert page.status_code == 200
        assert "Sign out" in page.text
        forged = value[:-4] + ("AAAA" if not value.endswith("AAAA") else "BBBB")
        assert c.get(PATH, headers={"Cookie": f"launchready_status={forged}"}).status_code == 401
        expired = "1." + value.split(".", 1)[1]
        assert c.get(PATH, headers={"Cookie": f"launchready_status={expired}"}).status_code == 401
        form = {"Content-Type": "application/x-www-form-urlencoded"}
        garbled = c.post(PATH + "/login", content=b"token=\xff\xfe%FF", headers=form)
        assert garbled.status_code == 401
        assert (
            c.post(PATH + "/login", content=b"token=" + b"x" * 5000, headers=form).status_code
            == 413
        )
        wrong = c.post(PATH + "/login", data={"token": "not-it"})
        assert wrong.status_code == 401
        assert "not right" in wrong.text
        cross = c.post(
            PATH + "/login", data={"token": TOKEN}, headers={"Origin": "https://evil.example"}
        )
        assert cross.status_code == 403
        out = c.post(PATH + "/logout")
        assert out.status_code == 303
        assert "Max-Age=0" in out.headers["set-cookie"]


# --- what the page shows ----------------------------------------------------------------------


def test_the_json_has_the_contract_shape(app_server: Server) -> None:
    """scope, generated_at, redis, routes, health, errors, slow_requests, as DESIGN.md writes."""
    with httpx.Client(base_url=app_server.url, timeout=10) as c:
        c.get("/products/1")
        c.get("/slow/70")
        c.get("/boom/chained")
    body = status_json(app_server)
    assert body["scope"] == "worker"
    assert body["redis"] == "none"
    utc(body["generated_at"])
    assert body["routes"], body
    for entry in body["routes"].values():
        assert set(entry) >= ROUTE_KEYS
        assert 0.0 <= entry["error_rate"] <= 1.0
        assert isinstance(entry["over_budget"], bool)
    assert isinstance(body["health"], dict)
    assert body["errors"]
    assert body["slow_requests"]
    for err in body["errors"]:
        assert set(err) >= ERROR_KEYS
        utc(err["first_seen"]), utc(err["last_seen"])
    for slow in body["slow_requests"]:
        assert set(slow) >= SLOW_KEYS
        utc(slow["at"])
    chained = next(e for e in body["errors"] if e["type"] == "LookupError")
    assert "KeyError" in chained["traceback"]
    assert "direct cause" in chained["traceback"]
    assert chained["route"] == "/boom/chained"


def test_a_slowed_route_is_marked_over_budget_with_its_slow_requests(serve: Any) -> None:
    """25 requests at 80 ms on a 50 ms budget: over budget, counted, and listed by request id."""
    server = serve(APP, env())

    async def load() -> list[httpx.Response]:
        async with httpx.AsyncClient(base_url=server.url, timeout=10) as c:
            return list(await asyncio.gather(*(c.get(f"/slow/{80 + i}") for i in range(25))))

    responses = asyncio.run(load())
    ids = {r.headers["x-request-id"] for r in responses}
    for _ in range(20):
        httpx.get(server.url + "/products/7")
    body = status_json(server)
    slow = body["routes"]["GET /slow/{ms}"]
    assert slow["over_budget"] is True
    assert slow["budget_ms"] == 50
    assert slow["p95_ms"] > 50
    assert slow["over_budget_count"] == 25
    assert body["routes"]["GET /products/{product_id}"]["over_budget"] is False
    listed = [s for s in body["slow_requests"] if s["route"] == "/slow/{ms}"]
    assert {s["request_id"] for s in listed} == ids
    assert all(s["method"] == "GET" and s["status"] == 200 for s in listed)
    assert all(s["duration_ms"] > 50 for s in listed)
    page = httpx.get(server.url + PATH, headers=AUTH).text
    row = re.search(r'<tr class="over"><td><code>GET /slow/\{ms\}</code>.*?</tr>', page)
    assert row is not None
    assert "OVER BUDGET" in row.group(0)
    assert "<svg" in row.group(0)


def test_a_thousand_raw_paths_collapse_to_one_template(serve: Any) -> None:
    """1,000 product ids with query values: one route, templates in the slow list, no values."""
    server = serve(APP, env(LAUNCHREADY_LATENCY_BUDGETS="GET /products/{product_id}=0.001"))
    with httpx.Client(base_url=server.url, timeout=10) as c:
        for i in range(1000):
            assert c.get(f"/products/{i}", params={"q": f"query-value-{i}"}).status_code == 200
    body = status_json(server)
    text = json.dumps(body) + httpx.get(server.url + PATH, headers=AUTH).text
    assert [r for r in body["routes"] if "products" in r] == ["GET /products/{product_id}"]
    assert body["routes"]["GET /products/{product_id}"]["count"] == 1000
    assert {s["route"] for s in body["slow_requests"]} == {"/products/{product_id}"}
    assert len(body["slow_requests"]) == 50
    assert "query-value" not in text
    assert not re.search(r"/products/\d", text)


def test_errors_are_grouped_with_their_request_ids_and_no_secret_is_shown(serve: Any) -> None:
    """Three failures, one group with the last request id; message and local secrets hidden."""
    server = serve(APP, env())
    with httpx.Client(base_url=server.url, timeout=10) as c:
        failures = [c.get("/boom/secret", params={"password": "hunter2"}) for _ in range(3)]
    assert all(r.status_code == 500 for r in failures)
    body = status_json(server)
    group = next(e for e in body["errors"] if e["route"] == "/boom/secret")
    assert group["count"] == 3
    assert group["type"] == "RuntimeError"
    assert group["request_id"] == failures[-1].headers["x-request-id"]
    assert group["message"].startswith("payment failed for [REDACTED:stripe_key]")
    assert 'File "tests/apps/status_app.py"' in group["traceback"]
    assert "(library, folded)" in group["traceback"]
    assert "launchready_sdk/" not in group["traceback"]
    assert utc(group["first_seen"]) <= utc(group["last_seen"])
    page = httpx.get(server.url + PATH, headers=AUTH).text
    assert failures[-1].headers["x-request-id"] in page
    assert_no_secret(json.dumps(body) + page)


def test_bad_exceptions_never_break_capture_or_the_page(serve: Any) -> None:
    """Huge, non-UTF-8, unprintable and recursion-depth errors: 500s, bounded groups, a 200 page."""
    server = serve(APP, env())
    kinds = ("huge", "bytes", "unprintable", "recursion", "chained")
    with httpx.Client(base_url=server.url, timeout=30) as c:
        for kind in kinds:
            response = c.get(f"/boom/{kind}")
            assert response.status_code == 500
            assert response.json()["request_id"] == response.headers["x-request-id"]
    body = status_json(server)
    groups = {e["route"]: e for e in body["errors"]}
    assert set(groups) >= {f"/boom/{k}" for k in kinds}
    for group in groups.values():
        assert len(group["message"]) <= 1100
        assert len(group["traceback"]) <= 8100
    assert "password" not in groups["/boom/huge"]["message"]
    assert "could not be read" in groups["/boom/unprintable"]["message"]
    assert "\x00" not in json.dumps(body, ensure_ascii=False)
    recursion = groups["/boom/recursion"]["traceback"]
    assert "more frames" in recursion
    assert "Previous line repeated" in recursion
    page = httpx.get(server.url + PATH, headers=AUTH)
    assert page.status_code == 200
    assert "\x1b" not in page.text
    assert "\x00" not in page.text


# --- Redis ------------------------------------------------------------------------------------


def test_two_workers_share_errors_and_slow_requests_through_redis(
    serve: Any, redis_url: str, redis_prefix: str
) -> None:
    """An error raised on one worker and slow requests on both show on either worker's page."""
    shared = env(
        LAUNCHREADY_REDIS_URL=redis_url,
        LAUNCHREADY_REDIS_PREFIX=redis_prefix,
        LAUNCHREADY_LATENCY_FLUSH_INTERVAL_S="0.2",
    )
    one, two = serve(APP, shared), serve(APP, shared)
    for server in (one, two):
        httpx.get(server.url + "/boom/secret")
        httpx.get(server.url + "/slow/60")

    def merged() -> dict[str, Any] | None:
        body = status_json(one)
        group = [e for e in body["errors"] if e["route"] == "/boom/secret"]
        ok = body["workers"] == 2 and group and group[0]["count"] == 2
        return body if ok and len(body["slow_requests"]) == 2 else None

    body = wait_for(merged)
    assert body["scope"] == "fleet"
    assert body["redis"] == "up"
    assert status_json(two)["scope"] == "fleet"
    assert_no_secret(json.dumps(body))


def test_a_dead_redis_leaves_a_quick_page_that_says_so(
    serve: Any, private_redis: PrivateRedis
) -> None:
    """Redis killed: concurrent page loads all answer 200, with local data and "redis": "down"."""
    server = serve(APP, env(LAUNCHREADY_REDIS_URL=private_redis.url))
    with httpx.Client(base_url=server.url, timeout=10) as c:
        c.get("/boom/secret")
        c.get("/slow/60")
    assert status_json(server)["redis"] == "up"
    private_redis.kill()

    async def loads() -> list[httpx.Response]:
        async with httpx.AsyncClient(base_url=server.url, timeout=3) as c:
            calls = [c.get(PATH + (".json" if i % 2 else ""), headers=AUTH) for i in range(40)]
            return list(await asyncio.gather(*calls))

    responses = asyncio.run(loads())
    assert [r.status_code for r in responses] == [200] * 40
    body = next(r.json() for r in responses if r.headers["content-type"] == "application/json")
    assert body["redis"] == "down"
    assert body["scope"] == "worker"
    assert any(e["route"] == "/boom/secret" for e in body["errors"])
    assert body["slow_requests"]
    assert "Redis is down" in next(r.text for r in responses if "html" in r.headers["content-type"])
    assert (
        httpx.get(
            server.url + PATH + ".json", headers={"X-Forwarded-For": "192.0.2.77"}
        ).status_code
        == 401
    )


def test_a_paused_redis_does_not_hang_the_page(serve: Any, private_redis: PrivateRedis) -> None:
    """Redis stopped (SIGSTOP): the page still answers within the client's short timeout."""
    server = serve(APP, env(LAUNCHREADY_REDIS_URL=private_redis.url))
    httpx.get(server.url + "/boom/secret")
    private_redis.pause()
    try:
        for _ in range(3):
            body = httpx.get(server.url + PATH + ".json", headers=AUTH, timeout=3).json()
            assert body["redis"] == "down"
    finally:
        private_redis.cont()


# --- Django -----------------------------------------------------------------------------------


def test_django_view_errors_are_captured_with_templates_and_no_secrets(
    tmp_path: Path,
) -> None:
    """Async and sync view failures under launchready_django(): groups, routes, ids, redaction."""
    config = {"service_name": "djstatus", "status_token": TOKEN}
    server = Server(
        DJANGO_APP,
        {"DJANGO_PROJ_LAUNCHREADY": json.dumps(config), "DJANGO_PROJ_DB": str(tmp_path / "db")},
        tmp_path / "django.log",
    )
    try:
        server.wait_ready(timeout_s=60)
        with httpx.Client(base_url=server.url, timeout=20) as c:
            responses = {
                p: c.get(p) for p in ("/boom", "/boom-sync", "/boom-local/7", "/boom-local/8")
            }
        assert all(r.status_code == 500 for r in responses.values())
        body = status_json(server)
        groups = {e["route"]: e for e in body["errors"]}
        assert set(groups) == {"/boom", "/boom-sync", "/boom-local/{pk}"}
        assert groups["/boom-local/{pk}"]["count"] == 2
        assert (
            groups["/boom-local/{pk}"]["request_id"]
            == responses["/boom-local/8"].headers["x-request-id"]
        )
        assert groups["/boom"]["request_id"] == responses["/boom"].headers["x-request-id"]
        assert "views.py" in groups["/boom-sync"]["traceback"]
        assert "GET /boom-local/{pk}" in body["routes"]
        page = httpx.get(server.url + PATH, headers=AUTH).text
        assert_no_secret(json.dumps(body) + page)
        assert "sk_live_abcdef" not in json.dumps(body)
        assert httpx.get(server.url + PATH + ".json").status_code == 401
    finally:
        server.stop()


def test_the_django_shop_serves_the_status_page(tmp_path: Path) -> None:
    """The bundled Django shop with a token: its routes, readiness and the contract's shape."""
    from tests.shopflows import running_shop

    extra = {"LAUNCHREADY_STATUS_TOKEN": TOKEN}
    with running_shop("examples.django_shop.asgi:application", tmp_path, None, extra) as shop:
        with shop.client() as c:
            for _ in range(3):
                assert c.get("/products").status_code == 200
            c.get("/products/1")
            assert c.get(PATH + ".json").status_code == 401
        body = status_json(shop.server)
        assert "GET /products" in body["routes"]
        assert body["routes"]["GET /products"]["count"] >= 3
        assert body["health"]["db"]["ok"] is True
        assert body["cache"]
        page = httpx.get(shop.url + PATH, headers=AUTH)
        assert page.status_code == 200
        assert "<code>GET /products</code>" in page.text


# --- Sentry -----------------------------------------------------------------------------------


class SentryCollector:
    """A loopback HTTP server taking Sentry envelopes, as a Sentry ingest endpoint would."""

    def __init__(self) -> None:
        import http.server
        import threading

        received: list[bytes] = []
        self.received = received

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                encoding = self.headers.get("Content-Encoding", "")
                if encoding == "gzip":
                    import gzip

                    body = gzip.decompress(body)
                elif encoding == "br":
                    import brotli

                    body = brotli.decompress(body)
                received.append(body)
                self.send_response(200)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"{}")

            def log_message(self, *args: Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.dsn = f"http://publickey@127.0.0.1:{self.server.server_address[1]}/1"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def events(self) -> list[dict[str, Any]]:
        out = []
        for envelope in list(self.received):
            for line in envelope.split(b"\n"):
                try:
                    item = json.loads(line)
                except ValueError:
                    continue
                if isinstance(item, dict) and "exception" in item:
                    out.append(item)
        return out

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.mark.parametrize("own", ["1", "0"], ids=["sentry-defaults", "no-sentry-integrations"])
def test_errors_reach_sentry_redacted_with_the_status_fingerprint(serve: Any, own: str) -> None:
    """Sentry gets one event with the status fingerprint and request id, no locals, no secrets."""
    pytest.importorskip("sentry_sdk")
    collector = SentryCollector()
    try:
        server = serve(APP, env(STATUS_SENTRY_DSN=collector.dsn, STATUS_SENTRY_OWN=own))
        failed = httpx.get(server.url + "/boom/secret", params={"password": "hunter2"})
        assert failed.status_code == 500
        events = wait_for(collector.events, timeout_s=15)
        group = next(e for e in status_json(server)["errors"] if e["route"] == "/boom/secret")
        assert len(events) == 1
        event = events[0]
        assert event["fingerprint"] == [group["fingerprint"]]
        assert event["tags"]["request_id"] == failed.headers["x-request-id"]
        assert event["exception"]["values"][-1]["type"] == "RuntimeError"
        raw = b"".join(collector.received).decode("utf-8", "replace")
        assert_no_secret(raw)
        assert '"vars"' not in raw
        assert "password=hunter2" not in raw
    finally:
        collector.close()
