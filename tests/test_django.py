"""Django integration: LAUNCHREADY settings, resolver route templates, logs, queries, errors."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from launchready_sdk import LaunchReady, Settings, SettingsError
from launchready_sdk.django import django_route_template, settings_from_django
from tests.conftest import Server
from tests.shopflows import wait_for

APP = "tests.apps.django_proj.asgi:application"
LAUNCHREADY = {
    "service_name": "djproj",
    "cache_routes": {"/cached/{pk}": 30},
    "db_n_plus_one_threshold": 10,
    "log_level": "DEBUG",
    "metrics_cache_s": 0,  # the tests read /metrics right after their requests
}


@pytest.fixture(scope="module")
def django_settings() -> Iterator[Any]:
    """Django configured in this process with the test project's settings (no database use).

    The variable is removed again, so servers that later tests start do not inherit it.
    """
    before = os.environ.get("DJANGO_SETTINGS_MODULE")
    os.environ["DJANGO_SETTINGS_MODULE"] = "tests.apps.django_proj.settings"
    import django
    from django.conf import settings

    try:
        django.setup()
        yield settings
    finally:
        if before is None:
            os.environ.pop("DJANGO_SETTINGS_MODULE", None)
        else:
            os.environ["DJANGO_SETTINGS_MODULE"] = before


def _start(folder: Path, name: str, env: dict[str, str]) -> Server:
    full = {"DJANGO_PROJ_LAUNCHREADY": json.dumps(LAUNCHREADY), **env}
    server = Server(APP, full, folder / f"{name}.log")
    try:
        server.wait_ready("/healthz", timeout_s=60)
    except Exception:
        server.stop()
        raise
    return server


@pytest.fixture(scope="module")
def proj(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """The test project on SQLite with DEBUG on, served once for the module."""
    folder = tmp_path_factory.mktemp("django-proj")
    server = _start(
        folder, "sqlite", {"DJANGO_PROJ_DB": str(folder / "db.sqlite3"), "DJANGO_PROJ_DEBUG": "1"}
    )
    yield server
    server.stop()


def _psql(sql: str) -> None:
    subprocess.run(
        ["psql", "-h", "127.0.0.1", "-U", "postgres", "-d", "test", "-qc", sql],
        check=True,
        capture_output=True,
    )


@pytest.fixture(scope="module")
def proj_pg(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Server, str]]:
    """The test project on a PostgreSQL database of its own (DEBUG off), dropped afterwards."""
    name = f"lrdj_{uuid.uuid4().hex[:12]}"
    _psql(f"CREATE DATABASE {name}")
    server: Server | None = None
    try:
        server = _start(tmp_path_factory.mktemp("django-pg"), "pg", {"DJANGO_PROJ_PG_NAME": name})
        yield server, name
    finally:
        if server is not None:
            server.stop()
        _psql(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


def get(server: Server, path: str, **headers: str) -> httpx.Response:
    return httpx.get(server.url + path, headers=headers, timeout=20)


def route_counts(server: Server) -> dict[tuple[str, str], float]:
    text = get(server, "/metrics").text
    counts: dict[tuple[str, str], float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "launchready_http_request_duration_seconds_count":
                key = (sample.labels["route"], sample.labels["status"])
                counts[key] = counts.get(key, 0) + sample.value
    return counts


def assert_safe_page(response: httpx.Response, status: int) -> None:
    """The SDK's plain HTML error page: the status and the request id, nothing else."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("text/html")
    assert response.headers["x-request-id"] in response.text
    assert len(response.text) < 1000


def lines_of(server: Server, request_id: str) -> list[dict[str, Any]]:
    return [r for r in server.log_lines() if r.get("request_id") == request_id]


def assert_problem(response: httpx.Response, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    body: dict[str, Any] = response.json()
    assert body["request_id"] == response.headers["x-request-id"]
    assert body["status"] == status
    return body


# --- settings ---------------------------------------------------------------------------------


def test_launchready_dict_builds_settings(django_settings: Any) -> None:
    """The LAUNCHREADY dict sets fields; the environment fills the rest; the dict wins."""
    from django.test import override_settings

    environ = {"LAUNCHREADY_REDIS_PREFIX": "from-env", "LAUNCHREADY_SERVICE_NAME": "env-name"}
    wanted = {"service_name": "shop", "rate_limits": {"/login": "3/minute"}}
    with override_settings(LAUNCHREADY=wanted):
        settings = settings_from_django(environ)
    assert settings.service_name == "shop"
    assert dict(settings.rate_limits or {}) == {"/login": "3/minute"}
    assert settings.redis_prefix == "from-env"
    with override_settings(LAUNCHREADY=None):
        assert settings_from_django({}) == Settings()


@pytest.mark.parametrize(
    ("value", "environ", "name", "message"),
    [
        ({"rate_limits": {"/login": "lots"}}, {}, 'LAUNCHREADY["rate_limits"]', "unreadable"),
        ({"outbound_attempts": 0}, {}, 'LAUNCHREADY["outbound_attempts"]', "1 to 10"),
        ({"rate_limit": {}}, {}, 'LAUNCHREADY["rate_limit"]', "did you mean 'rate_limits'"),
        ({}, {"LAUNCHREADY_OUTBOUND_ATTEMPTS": "many"}, "LAUNCHREADY_OUTBOUND_ATTEMPTS", "whole"),
        (["service_name"], {}, "LAUNCHREADY", "expected a dict"),
    ],
)
def test_bad_launchready_values_name_the_key(
    django_settings: Any, value: Any, environ: dict[str, str], name: str, message: str
) -> None:
    """A bad value raises SettingsError naming LAUNCHREADY["key"] or the variable it came from."""
    from django.test import override_settings

    with override_settings(LAUNCHREADY=value), pytest.raises(SettingsError) as caught:
        settings_from_django(environ)
    assert caught.value.name == name
    assert message in str(caught.value)


@pytest.mark.parametrize(
    ("route", "template"),
    [
        ("", "/"),
        ("products/<int:pk>", "/products/{pk}"),
        ("api/v1/products/<int:pk>/", "/api/v1/products/{pk}/"),
        ("users/<slug:username>/files/<path:rest>", "/users/{username}/files/{rest}"),
        ("<name>/", "/{name}/"),
        ("^articles/(?P<year>[0-9]{4})/(?P<slug>[-\\w]+)/$", "/articles/{year}/{slug}/"),
        ("api/^legacy/(\\d+)\\.json$", "/api/legacy/{arg1}.json"),
    ],
)
def test_django_routes_become_templates(route: str, template: str) -> None:
    """Path converters and regex groups turn into the SDK's {name} style."""
    assert django_route_template(route) == template


async def test_plain_wrap_of_django_handler_works(django_settings: Any, log_stream: Any) -> None:
    """LaunchReady().wrap(get_asgi_application()) serves Django with request IDs, unchanged."""
    from django.core.asgi import get_asgi_application

    lr = LaunchReady(Settings(service_name="plain"), log_stream=log_stream)
    app = lr.wrap(get_asgi_application())
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        home = await client.get("/")
        health = await client.get("/healthz")
    assert home.json() == {"hello": "django"}
    assert home.headers["x-request-id"]
    assert health.status_code == 200
    access = [r for r in log_stream.records() if r["event"] == "request"]
    assert access[0]["request_id"] == home.headers["x-request-id"]
    # Django's loggers go through the SDK's handler: no console or mail_admins handler left.
    for name in ("django", "django.request", "django.server"):
        assert logging.getLogger(name).handlers == []
        assert logging.getLogger(name).propagate


def test_a_converted_error_page_keeps_its_cookies_and_headers(django_settings: Any) -> None:
    """A view that saves the session and answers a 400 HTML page: the problem+json that replaces
    the page keeps the session's Set-Cookie and every header but those of the old body."""
    from django.contrib.sessions.backends.signed_cookies import SessionStore
    from django.contrib.sessions.middleware import SessionMiddleware
    from django.http import HttpRequest, HttpResponse, HttpResponseBadRequest
    from django.test import RequestFactory, override_settings

    from launchready_sdk.django import LaunchReadyDjangoMiddleware

    def view(request: HttpRequest) -> HttpResponse:
        request.session["cart"] = [42]
        response = HttpResponseBadRequest("<h1>Bad request</h1>")  # text/html
        response["X-Shop"] = "kept"
        response["Vary"] = "Accept-Language"
        response["ETag"] = '"html-page"'
        response["Content-Language"] = "en"
        response["Content-Length"] = str(len(response.content))
        response.set_cookie("theme", "dark")
        return response

    engine = "django.contrib.sessions.backends.signed_cookies"
    with override_settings(SESSION_ENGINE=engine):
        stack = LaunchReadyDjangoMiddleware(SessionMiddleware(view))
        response = stack(RequestFactory().post("/cart", HTTP_ACCEPT="application/json"))
        session = SessionStore(session_key=response.cookies["sessionid"].value).load()
    assert response.status_code == 400
    assert response["Content-Type"] == "application/problem+json"
    assert json.loads(response.content)["status"] == 400
    assert session == {"cart": [42]}
    assert response.cookies["theme"].value == "dark"
    assert response["X-Shop"] == "kept"
    assert {v.strip() for v in response["Vary"].split(",")} == {"Accept-Language", "Cookie"}
    assert response["Cache-Control"] == "no-store"
    assert not response.has_header("ETag")
    assert not response.has_header("Content-Language")
    assert not response.has_header("Content-Length")  # the HTML page's, set by the view


# --- through uvicorn --------------------------------------------------------------------------


def test_route_templates_from_the_resolver_reach_metrics(proj: Server) -> None:
    """Included URLconfs, converters and regex routes are labelled by template; 404s share one."""
    paths = [
        "/",
        "/items/3/",
        "/items/4/",
        "/api/v1/products/7",
        "/api/v1/articles/2024/",
        "/api/v1/users/bob/orders/12345678-1234-5678-1234-567812345678/",
        "/no/such/page",
        "/another/missing",
        "/items/not-a-number/",
    ]
    for path in paths:
        assert get(proj, path).status_code < 500
    counts = route_counts(proj)
    assert counts[("/items/{pk}/", "2xx")] >= 2
    assert counts[("/api/v1/products/{pk}", "2xx")] >= 1
    assert counts[("/api/v1/articles/{year}/", "2xx")] >= 1
    assert counts[("/api/v1/users/{username}/orders/{order}/", "2xx")] >= 1
    assert counts[("<unmatched>", "4xx")] >= 3
    assert not [route for route, _ in counts if "bob" in route or "missing" in route]
    access = {r["path"]: r for r in proj.log_lines() if r.get("logger") == "launchready.access"}
    assert access["/api/v1/products/7"]["route"] == "/api/v1/products/{pk}"


def test_a_cache_route_keeps_its_template_on_miss_and_hit(proj: Server) -> None:
    """A Django view behind the SDK's cache is named by its template whether it hit or missed."""
    first, second = get(proj, "/cached/5"), get(proj, "/cached/5")
    assert (first.headers["x-cache"], second.headers["x-cache"]) == ("MISS", "HIT")
    assert route_counts(proj)[("/cached/{pk}", "2xx")] >= 2


def test_unmatched_paths_are_problems_with_the_request_id(proj: Server) -> None:
    """An unknown path (DEBUG on) is never Django's debug page listing the URLconf: a browser
    gets the SDK's plain page, an API client a 404 problem+json, both with the request id."""
    response = get(proj, "/definitely/not/here", Accept="text/html")
    assert_safe_page(response, 404)
    assert "urlpatterns" not in response.text.lower()
    assert_problem(get(proj, "/definitely/not/here", Accept="application/json"), 404)
    warning = [r for r in lines_of(proj, response.headers["x-request-id"]) if r["level"] != "info"]
    assert warning[0]["logger"] == "django.request"


@pytest.mark.parametrize("path", ["/boom", "/boom-sync"])
def test_a_failing_view_is_a_problem_never_a_debug_page(proj: Server, path: str) -> None:
    """A view's exception (async or sync, DEBUG on) is never a debug page: a 500 problem+json
    for an API client, the SDK's plain page for a browser; the log is redacted."""
    page = get(proj, path, Accept="text/html,application/xhtml+xml")
    assert_safe_page(page, 500)
    assert "Traceback" not in page.text
    assert "hunter2" not in page.text
    response = get(proj, path, Accept="application/json")
    body = assert_problem(response, 500)
    assert body["detail"] == "The server failed to handle this request."
    assert "<html" not in response.text.lower()
    lines = lines_of(proj, response.headers["x-request-id"])
    errors = [r for r in lines if r["logger"] == "django.request"]
    assert len(errors) == 1
    assert errors[0]["level"] == "error"
    assert errors[0]["exception"][0]["exc_type"] == "RuntimeError"
    raw = proj.raw_log()
    assert "hunter2" not in raw
    assert "sk_live_abcdef123456" not in raw


def test_sync_view_logs_carry_the_request_id_and_are_redacted(proj: Server) -> None:
    """In a sync view (thread pool) structlog and stdlib lines carry the request ID, redacted."""
    response = get(proj, "/sync")
    request_id = response.headers["x-request-id"]
    assert response.json() == {"request_id": request_id}
    lines = lines_of(proj, request_id)
    events = {r["logger"]: r for r in lines}
    assert events["tests.django_proj"]["password"].startswith("[REDACTED")
    assert "tok-secret-123" not in events["tests.django_proj.stdlib"]["event"]
    raw = proj.raw_log()
    assert "hunter2-sync" not in raw
    assert "tok-secret-123" not in raw


def test_naive_view_warns_of_n_plus_one_with_fingerprints(proj: Server) -> None:
    """31 queries in one request warn once, by fingerprint; a select_related view does not."""
    naive = get(proj, "/books")
    few = get(proj, "/books/few")
    assert naive.status_code == few.status_code == 200
    naive_lines = lines_of(proj, naive.headers["x-request-id"])
    warnings = [r for r in naive_lines if r["event"] == "db.n_plus_one_suspected"]
    assert len(warnings) == 1
    assert warnings[0]["queries"] == 11
    assert warnings[0]["statement"] == (
        'SELECT "django_proj_author"."id", "django_proj_author"."name" FROM '
        '"django_proj_author" WHERE "django_proj_author"."id" = ? LIMIT ?'
    )
    access = [r for r in naive_lines if r["event"] == "request"]
    assert access[0]["db_queries"] == 31
    few_lines = lines_of(proj, few.headers["x-request-id"])
    assert not [r for r in few_lines if r["event"] == "db.n_plus_one_suspected"]
    assert [r["db_queries"] for r in few_lines if r["event"] == "request"] == [1]
    metrics = get(proj, "/metrics").text
    assert 'statement="SELECT \\"django_proj_author\\".\\"id\\"' in metrics
    # DEBUG and log_level DEBUG: still no query text with its values in the log.
    assert "secret-title%" not in proj.raw_log()
    assert "secret-title" not in metrics


def test_readiness_checks_the_database(proj: Server) -> None:
    """/readyz runs a `db` check against the default database."""
    ready = get(proj, "/readyz")
    assert ready.status_code == 200
    assert ready.json()["checks"]["db"]["status"] == "pass"


@pytest.mark.parametrize("path", ["/computed", "/computed-async"])
def test_cached_functions_serve_sync_and_async_views(proj: Server, path: str) -> None:
    """@cached_sync (sync view) and @cached (async view) run the function once for repeats."""
    pk = uuid.uuid4().int % 10_000 + 100
    first = get(proj, f"{path}/{pk}").json()
    second = get(proj, f"{path}/{pk}").json()
    assert first["pk"] == second["pk"] == pk
    assert second["calls"] == first["calls"]


def test_sync_outbound_client_propagates_the_request_id(proj: Server) -> None:
    """lr.http_client_sync() in a sync view sends the serving request's ID on."""
    response = get(proj, "/outbound")
    body = response.json()
    assert body["echo"]["x-request-id"] == body["request_id"] == response.headers["x-request-id"]


def test_lifespan_startup_runs_for_django(proj: Server) -> None:
    """Django refuses ASGI lifespan; the SDK answers it, so its start-up hooks run."""
    raw = proj.raw_log()
    assert "appears unsupported" not in raw
    assert any(r.get("event") == "ratelimit.protected" for r in proj.log_lines())


def test_postgres_queries_readiness_and_an_outage(proj_pg: tuple[Server, str]) -> None:
    """On PostgreSQL: fingerprints and N+1; a dropped database fails readiness, never a 500 page."""
    server, name = proj_pg
    naive = get(server, "/books")
    assert naive.status_code == 200
    warnings = [
        r
        for r in lines_of(server, naive.headers["x-request-id"])
        if r["event"] == "db.n_plus_one_suspected"
    ]
    assert warnings[0]["statement"].endswith('WHERE "django_proj_author"."id" = ? LIMIT ?')
    assert get(server, "/readyz").json()["checks"]["db"]["status"] == "pass"
    # DEBUG off: a browser and a client naming no type get the site's own HTML page (so a
    # test client's template assertions hold), an API client asking for JSON a problem.
    assert get(server, "/nope", Accept="text/html").headers["content-type"].startswith("text/html")
    assert "Not Found" in get(server, "/nope").text
    assert_problem(get(server, "/nope", Accept="application/json"), 404)
    _psql(f"DROP DATABASE {name} WITH (FORCE)")
    ready = wait_for(lambda: (r := get(server, "/readyz")).status_code == 503 and r)
    assert ready, "readiness never failed"
    assert ready.json()["checks"]["db"]["status"] == "fail"
    assert_problem(get(server, "/books", Accept="application/json"), 500)
    assert get(server, "/books", Accept="text/html").headers["content-type"].startswith("text/html")


def test_long_orm_column_lists_keep_queries_distinct() -> None:
    """Django's full, quoted column lists are cut so FROM and WHERE stay in the fingerprint."""
    from launchready_sdk.dbtiming import fingerprint

    columns = ", ".join(f'"shop_product"."column_{i}"' for i in range(12))
    by_id = f'SELECT {columns} FROM "shop_product" WHERE "shop_product"."id" = %s LIMIT 21'
    featured = f'SELECT {columns} FROM "shop_product" WHERE "shop_product"."featured" ORDER BY 1'
    assert fingerprint(by_id) == (
        'SELECT "shop_product"."column_0", ... FROM "shop_product" '
        'WHERE "shop_product"."id" = ? LIMIT ?'
    )
    assert fingerprint(featured) != fingerprint(by_id)
    assert fingerprint('SELECT "t"."a", "t"."b" FROM "t"') == 'SELECT "t"."a", "t"."b" FROM "t"'
