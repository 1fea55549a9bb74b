"""The perimeter's rules in process: policies checked at start-up, hosts normalised, the legacy
map compiled, Locations that never leave the site, headers per route, and settings errors."""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import urljoin, urlsplit

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Route

from launchready_sdk import LaunchReady, Settings, SettingsError
from launchready_sdk.perimeter import (
    AdminGuardMiddleware,
    CspNonce,
    Policy,
    RedirectMiddleware,
    SecurityHeadersMiddleware,
    check_canonical_host,
    check_host_entry,
    check_policy,
    check_redirects,
    csp_nonce,
    docs_policies,
    parse_host,
    parse_policy,
    safe_path,
)

# --- policies ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("policy", "says"),
    [
        ("default-src self", "must be quoted"),
        ("default-src 'self'; script-src unsafe-inline", "must be quoted"),
        ("default-src 'self'; script-src sha256-abc=", "must be quoted"),
        ("default-src 'slef'", "no CSP keyword"),
        ("default-src 'self'; scirpt-src 'self'", "did you mean script-src"),
        ("img-src 'self'", "no default-src"),
        ("default-src 'self', script-src 'self'", "second policy"),
        ("default-src 'self'; default-src https:", "given twice"),
        ("default-src 'self'; script-src", "lists no source"),
        ("default-src 'none' 'self'", "'none' with other sources"),
        ("default-src 'self'; script-src 'nonce-r4nd0m'", "fixed nonce"),
        ("default-src 'self'; script-src {nonce}", "'nonce-{nonce}'"),
        ("default-src 'self'; script-src 'sha256-short'", "no CSP keyword"),
        ("default-src 'self'; upgrade-insecure-requests 1", "takes no value"),
        ("default-src 'self'; report-to a b", "one endpoint"),
        ("default-src 'self'; sandbox scripts", "sandbox flag"),
        ("default-src 'self'; img-src https://cdn.example.com/a;b", "unknown directive 'b'"),
        ("default-src 'self' https://bücher.example", "non-ASCII"),
        ("default-src 'self' https://a.example/\x7f", "control"),
        ("default-src 'self'\r\nSet-Cookie: x=1", "control"),
        ("", None),
    ],
)
def test_bad_policies_are_refused_with_the_fix(policy: str, says: str | None) -> None:
    """Every mistake that would make a browser ignore a policy, or part of it, is refused."""
    if says is None:
        check_policy(policy)
        return
    with pytest.raises(ValueError, match=re.escape(says)):
        check_policy(policy)


def test_a_mapping_policy_refuses_smuggled_separators() -> None:
    """In the mapping form a `;` or `,` inside a value cannot start a directive or a policy."""
    for value in ("'self'; script-src *", "'self', script-src *", ["'self'", "a;b"]):
        with pytest.raises(ValueError, match="';' or ','"):
            check_policy({"default-src": value})
    assert check_policy(
        {"default_src": "'self'", "img-src": ["'self'", "data:"], "upgrade-insecure-requests": True}
    ) == ("default-src 'self'; img-src 'self' data:; upgrade-insecure-requests")


def test_good_policies_are_kept_in_header_form() -> None:
    """Valid sources of every kind pass and come back in canonical form."""
    policy = (
        "Default-Src 'self' ;  script-src 'self' 'strict-dynamic' 'nonce-{nonce}' "
        "'sha256-47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=' https://cdn.example.com:443/js/ "
        "*.example.org; img-src data: blob: https:; frame-ancestors 'none'; "
        "report-uri /csp; report-to csp; sandbox allow-forms allow-scripts"
    )
    assert check_policy(policy).startswith("default-src 'self'; script-src 'self' 'strict")


def test_policy_variants() -> None:
    """upgrade-insecure-requests only over HTTPS and never in report-only mode; an app's
    X-Frame-Options decides frame-ancestors; the nonce only when read."""
    text = "default-src 'self'; script-src 'self' 'nonce-{nonce}'; frame-ancestors 'none'; " + (
        "upgrade-insecure-requests"
    )
    enforce = Policy(parse_policy(text), report_only=False)
    report = Policy(parse_policy(text), report_only=True)
    assert b"upgrade-insecure-requests" in enforce.value(True)
    assert b"upgrade-insecure-requests" not in enforce.value(False)
    assert b"upgrade-insecure-requests" not in report.value(True)
    assert enforce.value(True) == (
        b"default-src 'self'; script-src 'self'; frame-ancestors 'none'; upgrade-insecure-requests"
    )
    assert b"frame-ancestors 'self'" in enforce.value(False, "'self'")
    assert b"frame-ancestors https://a.example" in enforce.value(False, "https://a.example")
    assert b"'nonce-abc'" in enforce.value(False, None, "abc")
    only = Policy(parse_policy("default-src 'self'; script-src 'nonce-{nonce}'"), report_only=False)
    assert only.value(False) == b"default-src 'self'; script-src 'none'"


def test_the_nonce_is_made_only_when_read() -> None:
    """A nonce costs nothing until a template reads it; then it is 128 random bits."""
    nonce = CspNonce()
    assert not nonce.used
    assert nonce.value is None
    first = str(nonce)
    assert nonce.used
    assert str(nonce) == first
    assert nonce.__html__() == first
    assert re.fullmatch(r"[A-Za-z0-9_-]{22}", first)
    assert str(CspNonce()) != first
    assert csp_nonce({"launchready.csp_nonce": nonce}) == first
    assert csp_nonce({}) == ""


# --- hosts --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "parsed"),
    [
        ("shop.example", ("shop.example", None)),
        ("SHOP.Example.", ("shop.example", None)),
        ("shop.example:8443", ("shop.example", 8443)),
        ("[2001:DB8::1]:443", ("[2001:db8::1]", 443)),
        ("[::ffff:127.0.0.1]", ("[::ffff:7f00:1]", None)),
        ("127.0.0.1:80", ("127.0.0.1", 80)),
        ("xn--bcher-kva.example", ("xn--bcher-kva.example", None)),
        ("2001:db8::1", None),
        ("[fe80::1%25eth0]", None),
        ("shop.example:0", None),
        ("shop.example:65536", None),
        ("shop..example", None),
        ("-shop.example", None),
        ("shop.example/evil", None),
        ("a" * 64 + ".example", None),
        ("", None),
        (None, None),
    ],
)
def test_parse_host(value: str | None, parsed: tuple[str, int | None] | None) -> None:
    """Ports, IPv6 literals, case and trailing dots are normalised; junk is None."""
    assert parse_host(value) == parsed


@pytest.mark.parametrize(
    ("entry", "canonical"),
    [
        ("Shop.Example.", "shop.example"),
        ("*.shop.example", "*.shop.example"),
        ("bücher.example", "xn--bcher-kva.example"),
        ("*.bücher.example", "*.xn--bcher-kva.example"),
        ("::1", "[::1]"),
        ("[::1]", "[::1]"),
        ("10.0.0.1", "10.0.0.1"),
    ],
)
def test_host_entries_are_normalised(entry: str, canonical: str) -> None:
    """Allowed-host entries take the form browsers send."""
    assert check_host_entry(entry) == canonical


@pytest.mark.parametrize(
    "entry",
    ["*", "shop.example:443", "https://shop.example", "shop.*", "*.", "*.[::1]", "a b", 5],
)
def test_bad_host_entries(entry: Any) -> None:
    """Wildcards in the middle, ports, schemes and junk are refused."""
    with pytest.raises(ValueError, match=r"\*|port|scheme|host"):
        check_host_entry(entry)


def test_canonical_host_may_carry_a_port() -> None:
    """The canonical host is a host, optionally with a port, never a URL or wildcard."""
    assert check_canonical_host("WWW.Shop.Example") == "www.shop.example"
    assert check_canonical_host("shop.example:8443") == "shop.example:8443"
    assert check_canonical_host("bücher.example") == "xn--bcher-kva.example"
    for bad in ("https://www.shop.example", "*.shop.example", "shop.example/x", ""):
        with pytest.raises(ValueError, match="host"):
            check_canonical_host(bad)


# --- the legacy map -----------------------------------------------------------------------------


def test_the_legacy_map_refuses_loops_chains_and_foreign_hosts() -> None:
    """Entries that point at themselves or at another entry, targets off the allowed hosts,
    downgrades and unknown placeholders are refused at start-up."""
    cases = [
        ({"/a": "/a"}, "forever"),
        ({"/a/{id}": "/A/{id}/"}, "forever"),
        ({"/a/*": "/a/b/*"}, "forever"),
        ({"/a": "/b", "/b": "/c"}, "redirects again"),
        ({"/a": "https://shop.example/b", "/b": "/c"}, "redirects again"),
        ({"/a": "https://evil.example/"}, "not in allowed_hosts"),
        ({"/a": "http://shop.example/"}, "downgrade"),
        ({"/a/{id}": "/b/{slug}"}, "lacks"),
        ({"/a": "/b/*"}, "'*'"),
        ({"/a": "//evil.example"}, "one '/'"),
        ({"/a": "b"}, "one '/'"),
        ({"/a": "https://user:pw@shop.example/"}, "credentials"),
        ({"/a": "/b c"}, "spaces"),
        ({"a": "/b"}, "starting with '/'"),
    ]
    for mapping, says in cases:
        with pytest.raises(ValueError, match=re.escape(says)):
            check_redirects(
                mapping, allowed_hosts=("shop.example",), canonical_host="www.shop.example",
                https_redirect=True,
            )  # fmt: skip


def test_the_legacy_map_carries_segments_and_the_rest() -> None:
    """`{name}` values are re-encoded whole; `*` carries the rest of the normalised path."""
    redirects = check_redirects(
        {
            "/old/{id}": "/new/{id}",
            "/p/{a}/{b}": "/q/{b}/{a}?from=p",
            "/blog/*": "https://blog.shop.example/*",
            "/docs/*": "/help/*",
        }
    )
    assert redirects.target("/old/a b?c") == "/new/a%20b%3Fc"
    assert redirects.target("/OLD/7/") == "/new/7"
    assert redirects.target("/p/1/2") == "/q/2/1?from=p"
    assert redirects.target("/blog") == "https://blog.shop.example/"
    assert redirects.target("/blog//2024/../x") == "https://blog.shop.example/x"
    assert redirects.target("/docs/a/b") == "/help/a/b"
    assert redirects.target("/other") is None


@given(st.binary(max_size=300))
def test_safe_path_never_names_another_host(raw: bytes) -> None:
    """Whatever bytes a path holds, the Location built from it stays on this host, as a
    browser reads it (`\\` as `/`, dot segments resolved) and with the origin cut off."""
    path = safe_path(raw)
    assert path.startswith("/")
    assert "//" not in path
    assert all(0x21 <= b < 0x7F for b in path.encode())
    for candidate in (path, path.replace("\\", "/")):
        assert urlsplit(urljoin("https://shop.example/", candidate)).hostname == "shop.example"


# --- headers per route, in process ----------------------------------------------------------------


async def _page(request: Request) -> HTMLResponse:
    return HTMLResponse(f'<script nonce="{csp_nonce(request)}"></script>')


async def _json(request: Request) -> JSONResponse:
    return JSONResponse({"ok": True})


async def _allow_from(request: Request) -> Response:
    return Response("x", headers={"X-Frame-Options": "ALLOW-FROM https://partner.example"})


def _starlette() -> Starlette:
    return Starlette(
        routes=[
            Route("/page", _page),
            Route("/api/items", _json),
            Route("/embed/widget", _json),
            Route("/allow-from", _allow_from),
        ]
    )


async def test_csp_routes_report_only_and_overrides(asgi_client: Any) -> None:
    """Per-route policies ("" for none), report-only mode and header overrides."""
    app = SecurityHeadersMiddleware(
        _starlette(),
        csp_routes={
            "/api/*": "",
            "/embed/*": {"default-src": "'self'", "frame-ancestors": "https://partner.example"},
            "/page": "default-src 'self'; script-src 'nonce-{nonce}'",
        },
        csp_report_only=True,
        headers={"Referrer-Policy": "no-referrer", "X-Frame-Options": None},
    )
    c = asgi_client(app)
    api, embed, page, other = [
        await c.get(p) for p in ("/api/items", "/embed/widget", "/page", "/allow-from")
    ]
    assert "content-security-policy-report-only" not in api.headers
    assert api.headers["referrer-policy"] == "no-referrer"
    assert "x-frame-options" not in api.headers
    assert embed.headers["content-security-policy-report-only"] == (
        "default-src 'self'; frame-ancestors https://partner.example"
    )
    assert "content-security-policy" not in embed.headers
    nonce = re.search(r'nonce="([^"]+)"', page.text)
    assert nonce is not None
    assert f"'nonce-{nonce[1]}'" in page.headers["content-security-policy-report-only"]
    assert (
        "frame-ancestors https://partner.example"
        in (other.headers["content-security-policy-report-only"])
    )


async def test_a_page_that_read_its_nonce_is_never_cached(asgi_client: Any) -> None:
    """A cache route whose page reads the nonce is answered by the app every time."""
    lr = LaunchReady(
        Settings(
            configure_logging=False,
            cache_routes={"/page": 60, "/api/items": 60},
            csp="default-src 'self'; script-src 'self' 'nonce-{nonce}'",
        )
    )
    c = asgi_client(lr.wrap(_starlette()))
    pages = [await c.get("/page") for _ in range(3)]
    items = [await c.get("/api/items") for _ in range(2)]
    assert [p.headers["x-cache"] for p in pages] == ["BYPASS"] * 3
    assert len({p.text for p in pages}) == 3
    assert items[1].headers["x-cache"] == "HIT"
    assert "nonce" not in items[1].headers["content-security-policy"]
    assert items[1].headers["x-frame-options"] == "DENY"


async def test_fastapi_docs_get_a_policy_that_lets_them_load(asgi_client: Any) -> None:
    """FastAPI's /docs and /redoc load from jsDelivr; everything else keeps the default."""
    from fastapi import FastAPI

    api = FastAPI()
    assert set(docs_policies(api)) == {"/docs", "/redoc", "/docs/oauth2-redirect"}
    assert docs_policies(api, taken=["/docs/"]).keys() == {"/redoc", "/docs/oauth2-redirect"}
    assert docs_policies(FastAPI(docs_url=None, redoc_url=None)) == {}
    c = asgi_client(LaunchReady(Settings(configure_logging=False)).wrap(api))
    docs, spec = await c.get("/docs"), await c.get("/openapi.json")
    assert "https://cdn.jsdelivr.net" in docs.headers["content-security-policy"]
    assert "cdn.jsdelivr.net" not in spec.headers["content-security-policy"]
    mine = LaunchReady(Settings(configure_logging=False, csp_routes={"/docs": ""}))
    c = asgi_client(mine.wrap(FastAPI()))
    assert "content-security-policy" not in (await c.get("/docs")).headers


async def test_turning_everything_off_adds_no_work() -> None:
    """With the headers off, no CSP, no HSTS and no host or redirect setting, `wrap` gives
    the request context no headers to add and the dispatch no gate."""
    off = Settings(configure_logging=False, security_headers=False, csp="", hsts_max_age_s=0)
    lr = LaunchReady(off)
    lr.stack(_starlette())
    assert lr._dispatch is not None
    assert lr._dispatch.gate is None
    assert lr.security_headers() is None
    on = LaunchReady(Settings(configure_logging=False, allowed_hosts=("shop.example",)))
    on.stack(_starlette())
    assert on._dispatch is not None
    assert on._dispatch.gate is not None
    assert on.security_headers() is not None


async def test_the_middlewares_work_alone(asgi_client: Any) -> None:
    """Each layer works without LaunchReady, configured by keyword arguments."""
    app = SecurityHeadersMiddleware(
        RedirectMiddleware(
            AdminGuardMiddleware(_starlette(), paths=("/api/*",), allow=("203.0.113.0/24",)),
            allowed_hosts=("testserver",),
            https_redirect=True,
        ),
        hsts_max_age_s=600,
        hsts_preload=True,
    )
    c = asgi_client(app)
    moved = await c.get("/page")
    assert moved.status_code == 301
    assert moved.headers["location"] == "https://testserver/page"
    transport = httpx.ASGITransport(app=app, client=("203.0.113.9", 1))
    async with httpx.AsyncClient(transport=transport, base_url="https://testserver") as secure:
        ok = await secure.get("/api/items")
    assert ok.status_code == 200
    assert ok.headers["strict-transport-security"] == "max-age=600; includeSubDomains; preload"
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app, client=("198.51.100.1", 1)),
        base_url="https://testserver",
    ) as outsider:
        assert (await outsider.get("/api/items")).status_code == 404


# --- settings -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"csp": "img-src 'self'"}, "csp"),
        ({"csp": 5}, "csp"),
        ({"csp_routes": {"/a": "default-src self"}}, "csp_routes"),
        ({"csp_routes": {"a": "default-src 'self'"}}, "csp_routes"),
        ({"csp_routes": {"/a": "", "/A/": ""}}, "csp_routes"),
        ({"hsts_max_age_s": -1}, "hsts_max_age_s"),
        ({"hsts_max_age_s": 1.5}, "hsts_max_age_s"),
        ({"allowed_hosts": ("*",)}, "allowed_hosts"),
        ({"allowed_hosts": ("shop.example:80",)}, "allowed_hosts"),
        ({"canonical_host": "https://shop.example"}, "canonical_host"),
        ({"redirects": {"/a": "/a"}}, "redirects"),
        ({"redirects": {"/a": "https://evil.example/"}, "allowed_hosts": ("shop.example",)},
         "redirects"),
        ({"redirects": {"/a": "http://shop.example/"}, "https_redirect": True}, "redirects"),
        ({"redirect_exempt": ("webhooks",)}, "redirect_exempt"),
        ({"admin_paths": ("/admin/*/x",)}, "admin_paths"),
        ({"admin_allow": ("*",)}, "admin_allow"),
        ({"admin_allow": ("office",)}, "admin_allow"),
        ({"https_redirect": "yes"}, "https_redirect"),
    ],
)  # fmt: skip
def test_bad_perimeter_settings(kwargs: dict[str, Any], field: str) -> None:
    """Each bad perimeter setting is a SettingsError naming the field."""
    with pytest.raises(SettingsError) as caught:
        Settings(**kwargs)
    assert caught.value.name == field


@pytest.mark.parametrize(
    ("variable", "value", "shows"),
    [
        ("LAUNCHREADY_CSP_ROUTES", '{"/a": 5}', "LAUNCHREADY_CSP_ROUTES="),
        ("LAUNCHREADY_CSP_ROUTES", '{"/a": "default-src', "LAUNCHREADY_CSP_ROUTES="),
        ("LAUNCHREADY_CSP", "default-src 'self'; script-src unsafe-inline", "default-src"),
        ("LAUNCHREADY_REDIRECTS", "/old=/old", "/old/{id}=/new/{id}"),
        ("LAUNCHREADY_ALLOWED_HOSTS", "shop.example;*", "shop.example,*.shop.example"),
        ("LAUNCHREADY_HSTS_MAX_AGE_S", "a year", "3"),
        ("LAUNCHREADY_ADMIN_ALLOW", "10.0.0.0/33", "10.0.0.0/8"),
    ],
)
def test_bad_perimeter_variables_name_the_variable(variable: str, value: str, shows: str) -> None:
    """A malformed perimeter variable raises SettingsError naming it, with an example."""
    with pytest.raises(SettingsError) as caught:
        Settings.from_env({variable: value})
    assert caught.value.name == variable
    assert shows in str(caught.value)


def test_policies_in_the_environment_as_json_or_pairs() -> None:
    """`csp_routes` values holding `;` come as JSON; simple ones as pairs."""
    env = {
        "LAUNCHREADY_CSP_ROUTES": '{"/embed/*": "default-src https:; frame-ancestors *"}',
        "LAUNCHREADY_REDIRECTS": "/a=/b;/c/{id}=/d/{id}",
    }
    s = Settings.from_env(env)
    assert dict(s.csp_routes) == {"/embed/*": "default-src https:; frame-ancestors *"}
    assert dict(s.redirects) == {"/a": "/b", "/c/{id}": "/d/{id}"}
    assert Settings(csp=None).csp == ""  # type: ignore[arg-type]


async def test_websockets_meet_the_host_check_and_the_admin_guard() -> None:
    """A websocket for a host off the list, or to an admin path from outside, is closed before
    the app sees it; an allowed one reaches the app."""
    reached: list[str] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        reached.append(scope["path"])
        await send({"type": "websocket.accept"})

    guarded = RedirectMiddleware(
        AdminGuardMiddleware(app, paths=("/admin/*",), allow=("203.0.113.0/24",)),
        allowed_hosts=("shop.example",),
    )

    async def connect(host: bytes, path: str, client: str) -> list[dict[str, Any]]:
        sent: list[dict[str, Any]] = []

        async def send(message: Any) -> None:
            sent.append(message)

        async def receive() -> dict[str, Any]:
            return {"type": "websocket.connect"}

        scope = {
            "type": "websocket", "path": path, "raw_path": path.encode(), "root_path": "",
            "headers": [(b"host", host)], "client": (client, 1), "query_string": b"",
        }  # fmt: skip
        await guarded(scope, receive, send)
        return sent

    assert await connect(b"evil.example", "/live", "203.0.113.9") == [
        {"type": "websocket.close", "code": 1008}
    ]
    assert await connect(b"shop.example", "/admin/feed", "198.51.100.1") == [
        {"type": "websocket.close", "code": 1008}
    ]
    assert (await connect(b"shop.example", "/admin/feed", "203.0.113.9"))[0]["type"] == (
        "websocket.accept"
    )
    assert reached == ["/admin/feed"]


async def test_redirects_keep_the_root_path() -> None:
    """Under a root path (`uvicorn --root-path /shop`) the rules match the app's own paths and
    every Location keeps the prefix."""
    seen: list[dict[str, Any]] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        raise AssertionError("redirected requests never reach the app")

    stage = RedirectMiddleware(app, redirects={"/old/{id}": "/new/{id}"}, https_redirect=True)

    async def send(message: Any) -> None:
        seen.append(message)

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b""}

    for path in ("/shop/old/7", "/shop/products"):
        scope = {
            "type": "http", "method": "GET", "path": path, "raw_path": path[5:].encode(),
            "root_path": "/shop", "query_string": b"a=1", "scheme": "https",
            "headers": [(b"host", b"shop.example")], "client": ("203.0.113.9", 1),
        }  # fmt: skip
        if path.endswith("products"):
            scope["scheme"] = "http"
        await stage(scope, receive, send)
    locations = [dict(m["headers"])[b"location"] for m in seen if m["type"].endswith("start")]
    assert locations == [
        b"https://shop.example/shop/new/7?a=1",
        b"https://shop.example/shop/products?a=1",
    ]
