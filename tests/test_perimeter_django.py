"""The perimeter under Django: the same headers through `launchready_django()` (uvicorn) and
`launchready_django_wsgi()` (gunicorn), the CSP nonce in templates as `request.csp_nonce`, and
Django's own SecurityMiddleware winning where it sets a header first."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import GunicornServer, Server

APPS = {
    "asgi": "tests.apps.django_proj.asgi:application",
    "wsgi": "tests.apps.django_proj.wsgi:application",
}
LAUNCHREADY = {
    "service_name": "djperimeter",
    "trusted_proxies": ["127.0.0.1"],
    "allowed_hosts": ["shop.example"],
    "csp_routes": {"/page": "default-src 'self'; script-src 'self' 'nonce-{nonce}'"},
}
HTTPS = {"X-Forwarded-Proto": "https", "Host": "shop.example"}


def _start(folder: Path, name: str, env: dict[str, str], interface: str) -> Server:
    full = {
        "DJANGO_PROJ_LAUNCHREADY": json.dumps(LAUNCHREADY),
        "DJANGO_PROJ_DB": str(folder / f"{name}.sqlite3"),
        **env,
    }
    log = folder / f"{name}.log"
    if interface == "wsgi":
        server: Server = GunicornServer(APPS["wsgi"], full, log, args=["--preload"])
    else:
        server = Server(APPS["asgi"], full, log)
    try:
        server.wait_ready("/healthz", timeout_s=60)
    except Exception:
        server.stop()
        raise
    return server


@pytest.fixture(scope="module", params=["asgi", "wsgi"])
def projects(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, Server]]:
    """The Django test project alone, and with Django's SecurityMiddleware in MIDDLEWARE,
    under uvicorn (ASGI) and gunicorn (WSGI)."""
    interface = request.param
    folder = tmp_path_factory.mktemp(f"django-perimeter-{interface}")
    servers: dict[str, Server] = {}
    try:
        servers["plain"] = _start(folder, "plain", {}, interface)
        servers["security"] = _start(folder, "security", {"DJANGO_PROJ_SECURITY": "1"}, interface)
        yield servers
    finally:
        for server in servers.values():
            server.stop()


def test_django_responses_carry_the_headers(projects: dict[str, Server]) -> None:
    """Views, Django's 404, the SDK's host 400 and /healthz all carry the headers; HSTS only
    over HTTPS by the trusted scheme."""
    with httpx.Client(base_url=projects["plain"].url, headers=HTTPS) as c:
        answers = [c.get("/"), c.get("/nope"), c.get("/healthz")]
        refused = c.get("/", headers={"Host": "evil.example"})
        plain = c.get("/", headers={"X-Forwarded-Proto": "http"})
    assert [r.status_code for r in answers] == [200, 404, 200]
    assert refused.status_code == 400
    for response in (*answers, refused):
        assert response.headers["x-content-type-options"] == "nosniff"
        assert response.headers["x-frame-options"] == "DENY"
        assert response.headers["strict-transport-security"].startswith("max-age=31536000")
        assert response.headers["content-security-policy"].startswith("default-src 'self'")
    assert "strict-transport-security" not in plain.headers


def test_templates_read_the_nonce_from_the_request(projects: dict[str, Server]) -> None:
    """`{{ request.csp_nonce }}` in a Django template is the nonce the policy carries."""
    with httpx.Client(base_url=projects["plain"].url, headers=HTTPS) as c:
        pages = [c.get("/page") for _ in range(2)]
    nonces = []
    for page in pages:
        found = re.search(r'nonce="([A-Za-z0-9_-]{22})"', page.text)
        assert found is not None, page.text
        assert f"'nonce-{found[1]}'" in page.headers["content-security-policy"]
        nonces.append(found[1])
    assert nonces[0] != nonces[1]


def test_djangos_security_middleware_wins_where_it_sets_a_header(
    projects: dict[str, Server],
) -> None:
    """With SecurityMiddleware and XFrameOptionsMiddleware, Django's values stay, each header
    appears once, the SDK adds only what Django left out, and the SDK's frame-ancestors
    follows Django's X-Frame-Options."""
    with httpx.Client(base_url=projects["security"].url, headers=HTTPS) as c:
        response = c.get("/")
    assert response.status_code == 200
    headers = response.headers
    assert headers.get_list("referrer-policy") == ["same-origin"]
    assert headers.get_list("x-frame-options") == ["SAMEORIGIN"]
    assert headers.get_list("cross-origin-opener-policy") == ["same-origin"]
    assert headers.get_list("strict-transport-security") == ["max-age=600"]
    assert headers.get_list("x-content-type-options") == ["nosniff"]
    assert "frame-ancestors 'self'" in headers["content-security-policy"]
    assert "camera=()" in headers["permissions-policy"]
