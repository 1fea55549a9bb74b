"""The perimeter through real uvicorn: headers on every response, trusted hosts, redirects that
never leave the site nor touch webhooks, the admin guard, and hostile request lines."""

from __future__ import annotations

import re
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urljoin, urlsplit

import httpx
import pytest

from tests.conftest import Server

SPEC = "tests.apps.perimeter_app:app"
NONCE_POLICY = "default-src 'self'; script-src 'self' 'nonce-{nonce}'; frame-ancestors 'none'"
SHOP = {
    "LAUNCHREADY_TRUSTED_PROXIES": "127.0.0.1",
    "LAUNCHREADY_ALLOWED_HOSTS": "shop.example,*.shop.example,::1,bücher.example",
    "LAUNCHREADY_CANONICAL_HOST": "www.shop.example",
    "LAUNCHREADY_HTTPS_REDIRECT": "true",
    "LAUNCHREADY_REDIRECTS": '{"/old/{id}": "/new/{id}", "/blog/*": "https://blog.shop.example/*"}',
    "LAUNCHREADY_ADMIN_PATHS": "/admin/*",
    "LAUNCHREADY_ADMIN_ALLOW": "203.0.113.0/24",
    "LAUNCHREADY_CACHE_ROUTES": "/products=60",
    "LAUNCHREADY_RATE_LIMITS": "/login=3/minute",
    "LAUNCHREADY_CSP_ROUTES": '{"/page": "' + NONCE_POLICY + '"}',
}
WWW = "www.shop.example"
HTTPS = {"X-Forwarded-Proto": "https"}
SECURITY = {
    "x-content-type-options": "nosniff",
    "x-frame-options": "DENY",
    "referrer-policy": "strict-origin-when-cross-origin",
    "cross-origin-opener-policy": "same-origin-allow-popups",
}
DEFAULT_CSP = (
    "default-src 'self'; base-uri 'self'; form-action 'self'; frame-ancestors 'none'; "
    "object-src 'none'"
)


@pytest.fixture(scope="module")
def servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Server]]:
    """The perimeter app under uvicorn, in three configurations, for the whole module."""
    folder = tmp_path_factory.mktemp("perimeter")
    configs = {
        "shop": SHOP,
        # No trusted proxy: X-Forwarded-* is nobody's word; any host, HTTPS redirect on.
        "direct": {"LAUNCHREADY_HTTPS_REDIRECT": "1", "LAUNCHREADY_RATE_LIMITS": ""},
        # Behind a trusted proxy, headers only (no host list, no redirects).
        "headers": {"LAUNCHREADY_TRUSTED_PROXIES": "127.0.0.1", "LAUNCHREADY_RATE_LIMITS": ""},
    }
    started: dict[str, Server] = {}
    try:
        for name, env in configs.items():
            started[name] = Server(SPEC, env, folder / f"{name}.log")
        for server in started.values():
            server.wait_ready()
        yield started
    finally:
        for server in started.values():
            server.stop()


def client(server: Server, host: str = WWW, **headers: str) -> httpx.Client:
    return httpx.Client(base_url=server.url, headers={"Host": host, **headers}, timeout=10)


def raw(server: Server, request: bytes) -> tuple[int, dict[str, str], bytes]:
    """Send bytes as they are over a socket; (status, headers, body) of the answer."""
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(request)
        data = b""
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers: dict[str, str] = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return int(lines[0].split()[1]), headers, body


def browser_host(location: str, base: str = "http://shop.example/") -> str | None:
    """The host a browser goes to for a Location (WHATWG: `\\` is `/` in http(s) URLs)."""
    return urlsplit(urljoin(base, location.replace("\\", "/"))).hostname


def assert_secured(response: httpx.Response, *, hsts: bool) -> None:
    """The default security headers are there, and HSTS exactly when it should be."""
    for name, value in SECURITY.items():
        assert response.headers.get(name) == value, (name, response.headers)
    assert "camera=()" in response.headers["permissions-policy"]
    assert response.headers.get_list("content-security-policy") == [DEFAULT_CSP]
    assert ("strict-transport-security" in response.headers) is hsts, response.headers
    if hsts:
        assert response.headers["strict-transport-security"] == (
            "max-age=31536000; includeSubDomains"
        )


# --- headers on every response ----------------------------------------------------------------


def test_every_kind_of_response_carries_the_headers(servers: dict[str, Server]) -> None:
    """200s, the app's 404, the SDK's 400, 301, 308, 429, 500, cache HITs, /healthz and the
    admin 404 all leave with the security headers; HSTS only over HTTPS."""
    shop = servers["shop"]
    with client(shop, **HTTPS) as c:
        answers = {
            "ok": c.get("/"),
            "app 404": c.get("/nope"),
            "cache miss": c.get("/products"),
            "cache hit": c.get("/products"),
            "boom": c.get("/boom"),
            "health": c.get("/healthz"),
            "admin": c.get("/admin/orders", headers={"X-Forwarded-For": "198.51.100.9"}),
            "canonical 301": c.get("/", headers={"Host": "shop.example"}),
            "bad host": c.get("/", headers={"Host": "evil.example"}),
        }
        limited = [c.post("/login", headers={"X-Forwarded-For": "192.0.2.44"}) for _ in range(4)]
    answers["429"] = limited[-1]
    with client(shop) as plain:
        answers["https 301"] = plain.get("/")
        answers["https 308"] = plain.post("/login", headers={"X-Forwarded-For": "192.0.2.45"})
    expected = {
        "ok": 200,
        "app 404": 404,
        "cache miss": 200,
        "cache hit": 200,
        "boom": 500,
        "health": 200,
        "admin": 404,
        "canonical 301": 301,
        "bad host": 400,
        "429": 429,
        "https 301": 301,
        "https 308": 308,
    }
    assert {k: r.status_code for k, r in answers.items()} == expected
    assert answers["cache hit"].headers["x-cache"] == "HIT"
    assert answers["boom"].headers["content-type"] == "application/problem+json"
    for name, response in answers.items():
        over_https = not name.startswith("https 3")
        assert response.headers["x-request-id"], name
        assert_secured(response, hsts=over_https)


def test_hsts_follows_the_trusted_scheme(servers: dict[str, Server]) -> None:
    """HSTS goes out only when the request arrived over HTTPS by the trusted-proxy scheme: not
    over plain HTTP, not on an untrusted peer's X-Forwarded-Proto, never for localhost."""
    trusted, untrusted = servers["headers"], servers["direct"]
    with client(trusted, host="shop.example") as c:
        assert "strict-transport-security" in c.get("/", headers=HTTPS).headers
        assert "strict-transport-security" not in c.get("/").headers
        assert (
            "strict-transport-security"
            not in c.get("/", headers={"X-Forwarded-Proto": "http"}).headers
        )
        for local in ("localhost", "localhost:8443", "app.localhost", "LOCALHOST."):
            response = c.get("/", headers={**HTTPS, "Host": local})
            assert response.status_code == 200
            assert "strict-transport-security" not in response.headers, local
        assert (
            "strict-transport-security"
            in c.get("/", headers={**HTTPS, "Host": "127.0.0.1"}).headers
        )
    with client(untrusted, host="shop.example") as c:
        forged = c.get("/", headers=HTTPS)  # the peer is not a trusted proxy
    assert "strict-transport-security" not in forged.headers


def test_the_app_keeps_its_own_headers(servers: dict[str, Server]) -> None:
    """A header the app set is never replaced or doubled; its X-Frame-Options relaxes the
    policy's frame-ancestors to match, and its own CSP drops the SDK's X-Frame-Options."""
    with client(servers["headers"], host="shop.example") as c:
        framed = c.get("/framed")
        own = c.get("/own")
    assert framed.headers.get_list("x-frame-options") == ["SAMEORIGIN"]
    assert "frame-ancestors 'self'" in framed.headers["content-security-policy"]
    assert "frame-ancestors 'none'" not in framed.headers["content-security-policy"]
    assert own.headers.get_list("referrer-policy") == ["no-referrer"]
    assert own.headers.get_list("content-security-policy") == [
        "default-src 'none'; frame-ancestors https://partner.example"
    ]
    assert "x-frame-options" not in own.headers
    assert own.headers["x-content-type-options"] == "nosniff"


def test_the_nonce_reaches_the_page_and_its_policy_and_is_never_cached(
    servers: dict[str, Server],
) -> None:
    """A page that reads the nonce gets a new one per request, in its body and its policy."""
    with client(servers["shop"], **HTTPS) as c:
        first, second = c.get("/page"), c.get("/page")
        other = c.get("/")
    nonces = []
    for response in (first, second):
        body_nonce = re.search(r'nonce="([^"]+)"', response.text)
        assert body_nonce is not None
        nonce = body_nonce[1]
        assert len(nonce) >= 22  # 128 bits, base64url
        assert f"'nonce-{nonce}'" in response.headers["content-security-policy"]
        assert "{nonce}" not in response.headers["content-security-policy"]
        nonces.append(nonce)
    assert nonces[0] != nonces[1]
    assert "nonce" not in other.headers["content-security-policy"]


# --- trusted hosts ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("host", "status"),
    [
        ("www.shop.example", 200),
        ("WWW.SHOP.EXAMPLE", 200),  # case does not matter
        ("www.shop.example.", 200),  # nor a trailing dot
        ("www.shop.example:8443", 200),  # nor the port
        ("api.shop.example", 301),  # *.shop.example: allowed, then sent to the canonical host
        ("shop.example", 301),
        ("[::1]:8000", 301),
        ("xn--bcher-kva.example", 301),  # the IDNA form of an allowed Unicode name
        ("evil.example", 400),
        ("evilshop.example", 400),
        ("shop.example.evil.example", 400),
        ("::1", 400),  # an IPv6 literal without brackets is no Host
        ("www.shop.example:99999", 400),
        ("www.shop.example:", 400),
        ("www.shop.example@evil.example", 400),
        ("", 400),
    ],
)
def test_trusted_hosts(servers: dict[str, Server], host: str, status: int) -> None:
    """Only allowed hosts get past the host check; anything else is a 400 problem+json."""
    with client(servers["shop"], host=host, **HTTPS) as c:
        response = c.get("/seen")
    assert response.status_code == status, (host, response.text)
    if status == 400:
        assert response.headers["content-type"] == "application/problem+json"
        assert response.json()["request_id"] == response.headers["x-request-id"]
        assert "location" not in response.headers
    if status == 301:
        assert response.headers["location"] == "https://www.shop.example/seen"


def test_raw_hosts_that_no_client_library_sends(servers: dict[str, Server]) -> None:
    """Unicode bytes, control characters and two Host lines are refused, never echoed."""
    shop = servers["shop"]
    for host in (b"b\xc3\xbccher.example", b"shop.example\x01", b"shop example", b"*.shop.example"):
        status, headers, _ = raw(
            shop, b"GET / HTTP/1.1\r\nHost: " + host + b"\r\nConnection: close\r\n\r\n"
        )
        assert status == 400, host
        assert "location" not in headers
    status, headers, _ = raw(
        shop,
        b"GET / HTTP/1.1\r\nHost: www.shop.example\r\nHost: evil.example\r\n"
        b"X-Forwarded-Proto: https\r\nConnection: close\r\n\r\n",
    )
    assert status == 400
    assert "location" not in headers


def test_host_and_x_forwarded_host_disagreeing(servers: dict[str, Server]) -> None:
    """X-Forwarded-Host counts only from a trusted proxy, and is checked like Host."""
    with client(servers["shop"], host=WWW, **HTTPS) as c:
        assert c.get("/seen", headers={"X-Forwarded-Host": "evil.example"}).status_code == 400
        ok = c.get("/seen", headers={"Host": "internal:8000", "X-Forwarded-Host": WWW})
        assert ok.status_code == 200
    with client(servers["direct"], host="shop.example") as c:
        response = c.get("/x", headers={"X-Forwarded-Host": "evil.example"})
    assert response.status_code == 301
    assert response.headers["location"] == "https://shop.example/x"


def test_health_answers_whatever_the_host(servers: dict[str, Server]) -> None:
    """/healthz and /readyz answer monitors that call them by IP or any name."""
    with client(servers["shop"], host="10.1.2.3") as c:
        assert c.get("/healthz").status_code == 200
        assert c.get("/readyz").status_code == 200
        assert c.get("/metrics").status_code == 200


# --- redirects --------------------------------------------------------------------------------


def test_http_goes_to_https_on_the_same_host_then_to_the_canonical_host(
    servers: dict[str, Server],
) -> None:
    """Two hops, as the HTTP Observatory wants them: same host first, then the canonical
    host; the query is kept, the port dropped, GET/HEAD 301 and other methods 308."""
    with client(servers["shop"], host="shop.example:8080") as c:
        first = c.get("/seen?a=1&b=%20x")
        head = c.head("/seen")
        post = c.post("/seen", content=b"{}")
        put = c.put("/seen")
    assert first.status_code == 301
    assert first.headers["location"] == "https://shop.example/seen?a=1&b=%20x"
    assert (head.status_code, post.status_code, put.status_code) == (301, 308, 308)
    with client(servers["shop"], host="shop.example", **HTTPS) as c:
        second = c.get("/seen?a=1&b=%20x")
    assert second.status_code == 301
    assert second.headers["location"] == "https://www.shop.example/seen?a=1&b=%20x"
    with client(servers["shop"], host=WWW, **HTTPS) as c:
        assert c.get("/seen?a=1").status_code == 200


def test_the_legacy_map(servers: dict[str, Server]) -> None:
    """Old URLs 301 to their new home, `{name}` and `*` carried over, the query kept; over
    plain HTTP the same hop also goes to HTTPS."""
    with client(servers["shop"], **HTTPS) as c:
        moved = c.get("/old/42?ref=mail")
        cased = c.get("/OLD/7/")
        blog = c.get("/blog/2024/launch?x=1")
        posted = c.post("/old/42")
        followed = c.get(moved.headers["location"].replace("https://www.shop.example", ""))
    assert moved.status_code == 301
    assert moved.headers["location"] == "https://www.shop.example/new/42?ref=mail"
    assert cased.headers["location"] == "https://www.shop.example/new/7"
    assert blog.headers["location"] == "https://blog.shop.example/2024/launch?x=1"
    assert posted.status_code == 308
    assert followed.status_code == 200
    with client(servers["shop"], host="shop.example") as c:
        plain = c.get("/old/42")
    assert plain.headers["location"] == "https://shop.example/new/42"


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("POST", "/webhooks/payment"),
        ("POST", "/webhooks//payment"),
        ("POST", "/WEBHOOKS/payment/"),
        ("GET", "/auth/callback?code=abc&state=xyz"),
        ("GET", "/oauth/callback?code=abc"),
        ("GET", "/.well-known/acme-challenge/token123"),
    ],
)
def test_exempt_routes_are_never_redirected(
    servers: dict[str, Server], method: str, path: str
) -> None:
    """Webhooks, auth callbacks and ACME challenges are answered where they arrive: over
    plain HTTP, on a non-canonical host, never a 3xx (a provider counts that a failure)."""
    with client(servers["shop"], host="shop.example") as c:
        response = c.request(method, path, content=b'{"id": "evt_1"}')
    assert response.status_code in (200, 404), response.headers
    assert "location" not in response.headers
    assert_secured(response, hsts=False)


def test_exempt_routes_still_meet_the_host_check(servers: dict[str, Server]) -> None:
    """Exempt means never redirected, not unchecked: a webhook for a foreign host is a 400."""
    with client(servers["shop"], host="evil.example") as c:
        response = c.post("/webhooks/payment", content=b"{}")
    assert response.status_code == 400
    assert "location" not in response.headers


# Requests an open-redirect scanner sends: each must stay a path on this site.
OPEN_REDIRECT_CORPUS = [
    b"//evil.example",
    b"//evil.example/",
    b"///evil.example",
    b"////evil.example/a",
    b"/\\evil.example",
    b"/\\/evil.example",
    b"/\\\\evil.example",
    b"//\\evil.example",
    b"/%2F%2Fevil.example",
    b"/%2f%2fevil.example",
    b"/%5Cevil.example",
    b"/%5C%5Cevil.example",
    b"//%2F/evil.example",
    b"/.//evil.example",
    b"/..//evil.example",
    b"//evil.example/%2e%2e",
    b"/%09/evil.example",
    b"/@evil.example",
    b"//@evil.example",
    b"/evil.example%2F%2F..",
    b"//evil.example?x=//evil.example",
    b"/?next=//evil.example",
    b"/%0d%0aLocation:%20https://evil.example",
    b"/old/%2F%2Fevil.example",
    b"/old/..%2F..%2Fevil.example",
    b"/blog//evil.example",
    b"http://evil.example/",
    b"https://evil.example/x",
    b"//evil.example:443@www.shop.example/",
]


@pytest.mark.parametrize("target", OPEN_REDIRECT_CORPUS, ids=lambda t: t.decode("latin-1"))
@pytest.mark.parametrize("proto", [b"http", b"https"])
def test_no_open_redirect_from_raw_request_lines(
    servers: dict[str, Server], target: bytes, proto: bytes
) -> None:
    """Raw request lines never turn into a Location off the site: every Location is absolute,
    on the canonical or the request's own allowed host, and its path cannot be read as a
    host even after a browser treats `\\` as `/` or a proxy cuts the scheme and host."""
    request = (
        b"GET " + target + b" HTTP/1.1\r\nHost: shop.example\r\nX-Forwarded-Proto: " + proto
        + b"\r\nConnection: close\r\n\r\n"
    )  # fmt: skip
    status, headers, _ = raw(servers["shop"], request)
    location = headers.get("location")
    if location is None:
        assert status in (200, 400, 404), (status, headers)
        return
    assert status == 301
    parts = urlsplit(location)
    assert parts.scheme == "https"
    assert parts.hostname in ("shop.example", WWW, "blog.shop.example"), location
    assert browser_host(location) == parts.hostname
    assert browser_host(location[len("https://") + len(parts.netloc) :]) == "shop.example"
    assert not re.match(r"[/\\]{2}", parts.path), location
    assert all(0x21 <= b < 0x7F for b in location.encode()), location


def test_a_long_path_redirects_whole_or_gets_414(servers: dict[str, Server]) -> None:
    """An 8 KB path is redirected with all of it, or refused with 414 beyond 8,000 bytes."""
    with client(servers["shop"], host="shop.example") as c:
        fits = c.get("/" + "a" * 7000)
        too_long = c.get("/" + "a" * 8200)
    assert fits.status_code == 301
    assert fits.headers["location"] == "https://shop.example/" + "a" * 7000
    assert too_long.status_code == 414
    assert too_long.headers["content-type"] == "application/problem+json"
    assert "location" not in too_long.headers


def test_control_characters_never_reach_a_header(servers: dict[str, Server]) -> None:
    """Encoded CR, LF and NUL in the path or query stay encoded in Location; raw ones are
    refused by the server before the app."""
    with client(servers["shop"], host="shop.example") as c:
        response = c.get("/a%0d%0aSet-Cookie:%20x=1%00?q=%0d%0a")
    assert response.status_code == 301
    assert response.headers["location"] == (
        "https://shop.example/a%0d%0aSet-Cookie:%20x=1%00?q=%0d%0a"
    )
    assert "set-cookie" not in response.headers
    status, headers, _ = raw(
        servers["shop"],
        b"GET /a\rSet-Cookie: x=1 HTTP/1.1\r\nHost: shop.example\r\nConnection: close\r\n\r\n",
    )
    assert status == 400
    assert "set-cookie" not in headers


def test_a_proxy_that_says_https_but_is_not_trusted_is_served_not_looped(
    servers: dict[str, Server],
) -> None:
    """HTTPS behind a proxy missing from trusted_proxies: served (a redirect would loop),
    without HSTS, with a warning naming the proxy."""
    direct = servers["direct"]
    with client(direct, host="shop.example") as c:
        answers = [c.get("/seen", headers=HTTPS) for _ in range(3)]
    assert [r.status_code for r in answers] == [200, 200, 200]
    assert "strict-transport-security" not in answers[0].headers
    time.sleep(0.2)
    lines = direct.log_lines()
    warnings = [r for r in lines if r.get("event") == "perimeter.untrusted_https_proxy"]
    assert len(warnings) == 1
    assert "trusted_proxies" in warnings[0]["hint"]


def test_a_redirect_loop_is_broken_with_a_clear_line(servers: dict[str, Server]) -> None:
    """HTTPS behind a proxy that sends no scheme at all: the client comes back over plain HTTP
    again and again; after 5 redirects of the same URL it gets a 508, and the log says why."""
    direct = servers["direct"]
    with client(direct, host="loop.example", **{"User-Agent": "loop-test"}) as c:
        answers = [c.get("/seen?loop=1") for _ in range(8)]
    statuses = [r.status_code for r in answers]
    assert statuses[:5] == [301] * 5
    assert set(statuses[5:]) == {508}
    assert answers[-1].headers["content-type"] == "application/problem+json"
    time.sleep(0.2)
    loops = [r for r in direct.log_lines() if r.get("event") == "perimeter.redirect_loop"]
    assert len(loops) == 1
    assert "X-Forwarded-Proto" in loops[0]["hint"]
    with client(direct, host="loop.example", **{"User-Agent": "another-browser"}) as c:
        assert c.get("/seen?loop=1").status_code == 301  # another client is not affected


def test_without_a_host_list_the_redirect_echoes_only_a_valid_host(
    servers: dict[str, Server],
) -> None:
    """With no allowed_hosts the HTTPS redirect keeps the request's host, but only one that
    parses as a host; a request without one gets a 400."""
    direct = servers["direct"]
    with client(direct, host="Shop.Example.:8080") as c:
        assert c.get("/x").headers["location"] == "https://shop.example/x"
    status, headers, _ = raw(direct, b"GET /x HTTP/1.0\r\n\r\n")
    assert status == 400
    assert "location" not in headers


# --- admin paths ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("headers", "allowed"),
    [
        ({"X-Forwarded-For": "203.0.113.7"}, True),
        ({"X-Forwarded-For": "198.51.100.9"}, False),
        ({"X-Forwarded-For": "203.0.113.7, 198.51.100.9"}, False),  # the client is rightmost
        ({"Forwarded": "for=203.0.113.7;proto=https"}, True),
        ({"X-Real-IP": "203.0.113.7"}, False),  # never read
        ({"True-Client-IP": "203.0.113.7", "X-Forwarded-For": "198.51.100.9"}, False),
        ({}, False),  # the peer itself (127.0.0.1) is not allowed
    ],
)
def test_admin_paths_from_allowed_networks_only(
    servers: dict[str, Server], headers: dict[str, str], allowed: bool
) -> None:
    """Admin paths answer clients of admin_allow (by the trusted-proxy client address);
    everyone else gets exactly the 404 of a path that does not exist."""
    with client(servers["shop"], **HTTPS) as c:
        admin = c.get("/admin/orders?secret=1", headers=headers)
        posted = c.post("/admin/orders", headers=headers)
        unknown = c.get("/no-such-page", headers=headers)
    if allowed:
        assert admin.status_code == posted.status_code == 200
        return
    for response in (admin, posted):
        assert response.status_code == 404
        assert response.content == unknown.content
        same = {k: v for k, v in response.headers.items() if k not in ("x-request-id",)}
        other = {k: v for k, v in unknown.headers.items() if k not in ("x-request-id",)}
        assert same == other


def test_spoofed_forwarding_from_an_untrusted_peer_reaches_no_admin_path(
    tmp_path: Path, serve: Any
) -> None:
    """Without trusted proxies, X-Forwarded-For naming an allowed address changes nothing."""
    server = serve(
        SPEC,
        {"LAUNCHREADY_ADMIN_PATHS": "/admin/*", "LAUNCHREADY_ADMIN_ALLOW": "203.0.113.0/24"},
    )
    spoofs = [
        {"X-Forwarded-For": "203.0.113.7"},
        {"Forwarded": "for=203.0.113.7"},
        {"X-Real-IP": "203.0.113.7"},
    ]
    with httpx.Client(base_url=server.url) as c:
        assert [c.get("/admin/orders", headers=h).status_code for h in spoofs] == [404] * 3
        assert c.get("/ADMIN//orders/").status_code == 404
    time.sleep(0.2)
    denied = [r for r in server.log_lines() if r.get("event") == "perimeter.admin_denied"]
    assert len(denied) == 4
    assert {r["client_ip"] for r in denied} == {"127.0.0.1"}
    assert all(r["request_id"] for r in denied)


def test_admin_paths_with_no_allow_list_admit_nobody(serve: Any) -> None:
    """`admin_paths` without `admin_allow` keeps everyone out, the loopback included."""
    server = serve(SPEC, {"LAUNCHREADY_ADMIN_PATHS": "/admin/*"})
    with httpx.Client(base_url=server.url) as c:
        assert c.get("/admin/orders").status_code == 404
        assert c.get("/").status_code == 200


# --- start-up -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("env", "says"),
    [
        ({"LAUNCHREADY_REDIRECTS": "/a=/a"}, "LAUNCHREADY_REDIRECTS"),
        ({"LAUNCHREADY_REDIRECTS": "/a=/b;/b=/a"}, "redirects again"),
        ({"LAUNCHREADY_CSP": "default-src self"}, "must be quoted"),
        ({"LAUNCHREADY_ALLOWED_HOSTS": "shop.example:443"}, "LAUNCHREADY_ALLOWED_HOSTS"),
    ],
)
def test_a_bad_setting_stops_the_server_at_start_up(
    tmp_path: Path, env: dict[str, str], says: str
) -> None:
    """A redirect loop or a bad policy stops uvicorn at start-up with the variable named."""
    server = Server(SPEC, env, tmp_path / "bad.log")
    try:
        deadline = time.monotonic() + 30
        while server.proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.1)
        assert server.proc.poll() is not None, "the server started"
    finally:
        server.stop()
    log = server.raw_log()
    assert "SettingsError" in log
    assert says in log


def test_a_server_speaking_tls_itself_gets_hsts_without_any_proxy(tmp_path: Path) -> None:
    """With uvicorn's own TLS (no proxy at all) the request is HTTPS: HSTS goes out; the same
    app over plain HTTP is redirected to it, and a forged X-Forwarded-Proto gets no HSTS."""
    import ssl

    from benchmarks.observatory import Uvicorn, certificates
    from tests.conftest import free_port

    ca, cert, key = certificates("127.0.0.1", tmp_path)
    env = {"LAUNCHREADY_HTTPS_REDIRECT": "1", "LAUNCHREADY_ALLOWED_HOSTS": "127.0.0.1"}
    port, plain_port = free_port(), free_port()
    servers = [
        Uvicorn("127.0.0.1", port, env, tmp_path / "tls.log", (str(cert), str(key)), SPEC),
        Uvicorn("127.0.0.1", plain_port, env, tmp_path / "plain.log", spec=SPEC),
    ]
    try:
        servers[0].wait(f"https://127.0.0.1:{port}/healthz", str(ca))
        servers[1].wait(f"http://127.0.0.1:{plain_port}/healthz", str(ca))
        context = ssl.create_default_context(cafile=str(ca))
        with httpx.Client(verify=context, timeout=10) as c:
            secure = c.get(f"https://127.0.0.1:{port}/seen")
            plain = c.get(f"http://127.0.0.1:{plain_port}/seen")
            forged = c.get(f"http://127.0.0.1:{plain_port}/seen", headers=HTTPS)
    finally:
        for server in servers:
            server.stop()
    assert secure.status_code == 200
    assert secure.json()["scheme"] == "https"
    assert secure.headers["strict-transport-security"] == "max-age=31536000; includeSubDomains"
    assert plain.status_code == 301
    assert plain.headers["location"] == "https://127.0.0.1/seen"
    assert "strict-transport-security" not in plain.headers
    assert forged.status_code == 200  # served where it is: see the untrusted-proxy test
    assert forged.json()["scheme"] == "http"
    assert "strict-transport-security" not in forged.headers
