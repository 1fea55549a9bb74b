"""Drop-in on real apps: the one line keeps the app what it was, the default limits find the
app's own auth routes, browsers get pages, a root path changes nothing, test suites have a
switch. Run against apps shaped like a full-stack-template FastAPI project and a Django
project using `django.contrib.auth.urls` and the admin."""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient

from launchready_sdk import Settings
from launchready_sdk.testing import rate_limits_off
from tests.apps import fullstack
from tests.conftest import ROOT, Server, free_port

LOGIN = "/api/v1/login/access-token"
PROXY_ENV = {"LAUNCHREADY_TRUSTED_PROXIES": "127.0.0.1/32"}


def from_ip(n: int) -> dict[str, str]:
    return {"X-Forwarded-For": f"198.51.100.{n}"}


def bad_login(client: httpx.Client, ip: str, **headers: str) -> httpx.Response:
    return client.post(
        LOGIN,
        data={"username": "victim@example.com", "password": "wrong"},
        headers={"X-Forwarded-For": ip, **headers},
    )


@pytest.fixture(scope="module")
def fullstack_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """The full-stack-shaped FastAPI app under uvicorn, served once for the module."""
    server = Server("tests.apps.fullstack:app", PROXY_ENV, tmp_path_factory.mktemp("fs") / "l")
    server.wait_ready()
    yield server
    server.stop()


def test_default_limits_find_the_auth_routes_of_a_real_layout(fullstack_server: Server) -> None:
    """Routes under /api/v1 (OAuth2 token form, sign-up, recovery, reset) are limited with the
    built-in rates; 25 bad logins in a row no longer all get through."""
    with httpx.Client(base_url=fullstack_server.url, timeout=10) as c:
        codes = [bad_login(c, "198.51.100.10").status_code for _ in range(25)]
        signup = [
            c.post("/api/v1/users/signup", json={"email": "a@b.c"}, headers=from_ip(11))
            for _ in range(7)
        ]
        recovery = [
            c.post("/api/v1/password-recovery/a@b.c", headers=from_ip(12)) for _ in range(5)
        ]
        history = [c.get("/api/v1/login-history", headers=from_ip(13)) for _ in range(30)]
    assert codes[:10] == [400] * 10
    assert set(codes[10:]) == {429}
    assert [r.status_code for r in signup] == [200] * 5 + [429, 429]
    assert [r.status_code for r in recovery] == [200] * 3 + [429, 429]
    assert {r.status_code for r in history} == {200}  # not mistaken for a login form
    report = [r for r in fullstack_server.log_lines() if r.get("event") == "ratelimit.protected"]
    protected = {item["route"]: item["rate"] for item in report[0]["routes"]}
    assert protected[LOGIN] == "10/minute;100/hour"
    assert protected["/api/v1/users/signup"] == "5/minute;50/hour"
    assert protected["/api/v1/password-recovery/{email}"] == "3/minute;10/hour"
    assert protected["/api/v1/reset-password/"] == "3/minute;10/hour"
    assert "/api/v1/login-history" not in protected
    assert "/api/v1/items/" not in protected


def test_a_browser_gets_an_html_429(fullstack_server: Server) -> None:
    """A refused browser request is a small HTML page with Retry-After and the request id;
    an API client gets problem+json."""
    with httpx.Client(base_url=fullstack_server.url, timeout=10) as c:
        for _ in range(10):
            bad_login(c, "198.51.100.20")
        page = bad_login(c, "198.51.100.20", Accept="text/html,application/xhtml+xml,*/*;q=0.8")
        api = bad_login(c, "198.51.100.20", Accept="application/json")
    assert page.status_code == 429
    assert page.headers["content-type"].startswith("text/html")
    assert int(page.headers["retry-after"]) >= 1
    assert page.headers["x-request-id"] in page.text
    assert api.headers["content-type"] == "application/problem+json"
    assert api.json()["request_id"] == api.headers["x-request-id"]


def test_errors_of_the_apps_own_handlers_carry_the_request_id(fullstack_server: Server) -> None:
    """A 500 raised inside the app's own exception handler still carries the request id."""
    response = httpx.get(fullstack_server.url + "/api/v1/utils/boom", timeout=10)
    assert response.status_code == 500
    assert response.json()["request_id"] == response.headers["x-request-id"]


def test_wrap_returns_the_same_app_with_its_state_and_overrides() -> None:
    """`wrap()` keeps the FastAPI app itself: state, `url_path_for`, and
    `dependency_overrides` in a test suite all work through it."""
    from fastapi import FastAPI

    app = fullstack.create_app(Settings(configure_logging=False))
    assert isinstance(app, FastAPI)
    assert app.state.started == "yes"
    assert app.url_path_for("me") == "/api/v1/users/me"
    app.dependency_overrides[fullstack.current_user] = lambda: {"email": "fake@example.com"}
    with TestClient(app) as client:
        me = client.get("/api/v1/users/me")
        assert me.json() == {"email": "fake@example.com"}
        assert me.headers["x-request-id"]
        assert client.get("/api/v1/utils/health-check/").json() is True
        assert client.get("/healthz").status_code == 200


def test_a_test_suite_that_logs_in_a_hundred_times_passes_with_the_switch() -> None:
    """`testing.rate_limits_off()` lets a suite log in 100 times; without it the limits hold
    (every TestClient request shares one bucket: it has no address)."""
    app = fullstack.create_app(Settings(configure_logging=False))
    form = {"username": "demo@example.com", "password": "right-password"}
    with TestClient(app) as client:
        with rate_limits_off():
            codes = {client.post(LOGIN, data=form).status_code for _ in range(100)}
        assert codes == {200}
        throttled = [client.post(LOGIN, data=form).status_code for _ in range(12)]
    assert 429 in throttled


def test_fastapi_run_boots_the_wrapped_app(tmp_path: Path) -> None:
    """The FastAPI CLI that the template's Dockerfile uses finds and serves the wrapped app."""
    if shutil.which("fastapi", path=os.path.dirname(sys.executable)) is None:
        pytest.skip("the fastapi CLI is not installed (pip install fastapi-cli)")
    port = free_port()
    log = (tmp_path / "fastapi.log").open("wb")
    proc = subprocess.Popen(
        [os.path.join(os.path.dirname(sys.executable), "fastapi"), "run",
         "tests/apps/fullstack.py", "--host", "127.0.0.1", "--port", str(port)],
        cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 30
        response = None
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                response = httpx.get(f"http://127.0.0.1:{port}/api/v1/utils/health-check/")
                break
            except httpx.HTTPError:
                time.sleep(0.1)
        assert response is not None, (tmp_path / "fastapi.log").read_text()
        assert response.json() is True
        assert response.headers["x-request-id"]
        assert "Could not find FastAPI app" not in (tmp_path / "fastapi.log").read_text()
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        log.close()


# --- root paths, lowercase methods --------------------------------------------------------


def test_a_root_path_changes_no_protection(tmp_path: Path) -> None:
    """Under `uvicorn --root-path /shop` (the prefix lands in scope["path"]), logins are still
    limited, an Idempotency-Key still makes one item, and /healthz still answers."""
    env = {**PROXY_ENV, "LAUNCHREADY_IDEMPOTENT_ROUTES": "/api/v1/items/"}
    server = Server(
        "tests.apps.fullstack:app", env, tmp_path / "root.log", ["--root-path", "/shop"]
    )
    try:
        server.wait_ready("/healthz")
        with httpx.Client(base_url=server.url, timeout=10) as c:
            codes = [bad_login(c, "198.51.100.30").status_code for _ in range(12)]
            key = {"Idempotency-Key": "root-path-key", "X-Forwarded-For": "198.51.100.31"}
            items = [c.post("/api/v1/items/", headers=key).json()["id"] for _ in range(3)]
            health = c.get("/healthz")
    finally:
        server.stop()
    assert codes[:10] == [400] * 10
    assert codes[10:] == [429, 429]
    assert len(set(items)) == 1
    assert health.status_code == 200


def _raw(port: int, request: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(request)
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
        return data


def test_a_lowercase_method_is_counted_like_its_uppercase(tmp_path: Path) -> None:
    """h11 accepts `post`; the rule for POST still counts it."""
    server = Server("tests.apps.fullstack:app", PROXY_ENV, tmp_path / "h11.log", ["--http", "h11"])
    try:
        server.wait_ready()
        body = b"username=v%40example.com&password=wrong"
        request = (
            f"post {LOGIN} HTTP/1.1\r\nHost: x\r\nX-Forwarded-For: 198.51.100.40\r\n"
            "Content-Type: application/x-www-form-urlencoded\r\n"
            f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
        ).encode() + body
        statuses = [int(_raw(server.port, request).split(b" ", 2)[1]) for _ in range(12)]
    finally:
        server.stop()
    assert 429 in statuses
    assert statuses.index(429) == 10


# --- Django: contrib.auth.urls and the admin -----------------------------------------------


@pytest.fixture(scope="module")
def auth_project(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """The Django auth project under uvicorn (ASGI), on a SQLite file of its own."""
    folder = tmp_path_factory.mktemp("django-auth")
    env = {**PROXY_ENV, "DJANGO_AUTH_DB": str(folder / "db.sqlite3")}
    server = Server("tests.apps.django_auth.asgi:application", env, folder / "asgi.log")
    server.wait_ready(timeout_s=60)
    yield server
    server.stop()


def csrf_token(client: httpx.Client, path: str, ip: str) -> str:
    """The CSRF token of the Django form at `path`, fetched as the client `ip`."""
    page = client.get(path, headers={"X-Forwarded-For": ip})
    assert page.status_code == 200, page.text
    found = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page.text)
    assert found
    return found.group(1)


def test_django_accounts_and_admin_logins_are_limited(auth_project: Server) -> None:
    """`/accounts/login/`, `/accounts/password_reset/` and `/admin/login/` are limited; GETs of
    their forms never spend the budget, so showing the form then logging in works."""
    with httpx.Client(base_url=auth_project.url, timeout=10) as c:
        ip = "198.51.100.50"
        for _ in range(15):  # showing the form 15 times spends nothing
            token = csrf_token(c, "/accounts/login/", ip)
        codes = []
        for _ in range(11):
            r = c.post(
                "/accounts/login/",
                data={"username": "demo", "password": "wrong", "csrfmiddlewaretoken": token},
                headers={"X-Forwarded-For": ip, "Referer": auth_project.url},
            )
            codes.append(r.status_code)
        admin = [
            c.post("/admin/login/", data={"username": "x", "password": "y"},
                   headers={"X-Forwarded-For": "198.51.100.51"}).status_code
            for _ in range(11)
        ]  # fmt: skip
    assert codes[:10] == [200] * 10  # the form again, with its error
    assert codes[10] == 429
    assert admin[10] == 429
    report = [r for r in auth_project.log_lines() if r.get("event") == "ratelimit.protected"]
    routes = {item["route"] for item in report[0]["routes"]}
    assert {"/accounts/login/", "/accounts/password_reset/", "/admin/login/"} <= routes
    assert "/login-history" not in routes
    assert not [r for r in routes if r.startswith("/admin/auth/user/") and "password" not in r]
    assert report[0]["store"].startswith("memory: each worker process")


def test_django_keeps_its_html_pages_for_browsers(auth_project: Server) -> None:
    """Django's own 404 page stays HTML for a browser and for a client naming no type."""
    page = httpx.get(auth_project.url + "/nope", headers={"Accept": "text/html"})
    bare = httpx.get(auth_project.url + "/nope")
    api = httpx.get(auth_project.url + "/nope", headers={"Accept": "application/json"})
    assert page.headers["content-type"].startswith("text/html")
    assert bare.headers["content-type"].startswith("text/html")
    assert api.headers["content-type"] == "application/problem+json"


def test_django_json_login_sent_as_text_plain_still_counts_per_account(tmp_path: Path) -> None:
    """A Django view that calls `json.loads(request.body)` accepts a text/plain body (or none):
    the per-account limit reads it too, so rotating addresses does not help."""
    env = {
        **PROXY_ENV,
        "DJANGO_AUTH_DB": str(tmp_path / "db.sqlite3"),
        "LAUNCHREADY_RATE_LIMIT_ACCOUNTS": "/api/login=3/hour",
    }
    server = Server("tests.apps.django_auth.asgi:application", env, tmp_path / "acct.log")
    try:
        server.wait_ready(timeout_s=60)
        codes = []
        for i, content_type in enumerate(["text/plain", "", "text/plain", "", "text/plain"]):
            headers = {"X-Forwarded-For": f"198.51.100.{60 + i}"}
            if content_type:
                headers["Content-Type"] = content_type
            r = httpx.post(
                server.url + "/api/login/",
                content=b'{"username": "demo", "password": "wrong"}',
                headers=headers,
            )
            codes.append(r.status_code)
    finally:
        server.stop()
    assert codes == [401, 401, 401, 429, 429]


def test_a_refused_login_is_counted_under_its_route() -> None:
    """A 429 from a discovered auth route (the app never ran) is counted on `/metrics` under
    the route's template with its other requests, not as an unmatched request."""
    app = fullstack.create_app(Settings(configure_logging=False))
    form = {"username": "demo@example.com", "password": "wrong-password"}
    with TestClient(app, client=("198.51.100.40", 50000)) as client:
        codes = [client.post(LOGIN, data=form).status_code for _ in range(12)]
        metrics = client.get("/metrics").text
    assert codes == [400] * 10 + [429, 429]
    login = [x for x in metrics.splitlines() if x.startswith("launchready_http_requests_total")]
    assert f'method="POST",route="{LOGIN}",status="4xx"}} 12.0' in "\n".join(login), login
    assert not [x for x in login if 'method="POST"' in x and "unmatched" in x], login
