"""`StatusEndpoint`: the ASGI layer answering the status paths; everything else passes through."""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qsl

import orjson

from launchready_sdk.body import read_body
from launchready_sdk.context import request_method, route_path
from launchready_sdk.credentials import is_credential_header
from launchready_sdk.logs import get_logger
from launchready_sdk.responses import send_problem, wants_html
from launchready_sdk.status._auth import SESSION_COOKIE, bearer_token, session_cookie
from launchready_sdk.status._page import CSP, render_login, render_page
from launchready_sdk.status._status import Status
from launchready_sdk.types import ASGIApp, Headers, Receive, Scope, Send

_log = get_logger("launchready.status")
_LOGIN_BODY_MAX = 4096
# On every status response; problems (`send_problem`) add `Cache-Control: no-store` themselves.
_SAFETY: Headers = [
    (b"x-robots-tag", b"noindex, nofollow"),
    (b"referrer-policy", b"no-referrer"),
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
]
_COMMON: Headers = [(b"cache-control", b"no-store"), *_SAFETY]
_HTML: Headers = [
    (b"content-type", b"text/html; charset=utf-8"),
    (b"content-security-policy", CSP.encode()),
    *_COMMON,
]
_JSON: Headers = [(b"content-type", b"application/json"), *_COMMON]
_UNAUTHORIZED = "The status page needs the status token: send Authorization: Bearer <token>."


class StatusEndpoint:
    """Answers `GET|HEAD <path>` (HTML) and `<path>.json` for a valid token or session, and
    `POST <path>/login` / `<path>/logout` for the browser form. Without credentials: 401
    with `WWW-Authenticate: Bearer` (the login form for a browser); a client over its budget
    of failed attempts: 429. A token in the query string: 400, never checked.

    Args:
        app: the ASGI app to wrap.
        status: the page's parts and data.
    """

    def __init__(self, app: ASGIApp, *, status: Status) -> None:
        self.app = app
        self.status = status
        self.kinds = status.paths

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = self.kinds.get(route_path(scope)) if scope["type"] == "http" else None
        if kind is None:
            await self.app(scope, receive, send)
            return
        method = request_method(scope)
        wanted = ("POST",) if kind in ("login", "logout") else ("GET", "HEAD")
        if method not in wanted:
            allow = ", ".join(wanted).encode()
            await send_problem(send, 405, "Method not allowed.", scope=scope,
                               headers=[(b"allow", allow), *_SAFETY])  # fmt: skip
            return
        if _query_has_credentials(scope.get("query_string") or b""):
            await send_problem(
                send,
                400,
                "A token in the URL lands in access logs and Referer headers; send it in the "
                "Authorization header.",
                scope=scope,
                headers=_SAFETY,
            )
            return
        if kind == "login":
            await self._login(scope, receive, send)
        elif kind == "logout":
            await self._logout(scope, send)
        else:
            await self._page(scope, send, kind)

    def _prefixed(self, scope: Scope, suffix: str = "") -> str:
        return str(scope.get("root_path") or "") + self.status.path + suffix

    async def _page(self, scope: Scope, send: Send, kind: str) -> None:
        status = self.status
        client = status.throttle.client(scope)
        wait = status.throttle.blocked_for(client)
        if wait:
            await self._throttled(scope, send, wait)
            return
        token = bearer_token(scope)
        cookie = session_cookie(scope) if token is None else None
        ok = (token is not None and status.credentials.token_ok(token)) or (
            cookie is not None and status.credentials.session_ok(cookie)
        )
        if not ok:
            await self._unauthorized(
                scope, send, client, presented=token is not None or cookie is not None
            )
            return
        view = await status.view()
        head = request_method(scope) == "HEAD"
        if kind == "json":
            body, headers = orjson.dumps(view), _JSON
        else:
            logout = self._prefixed(scope, "/logout") if token is None else None
            body, headers = render_page(view, logout=logout), _HTML
        await _respond(send, 200, body, headers, head)

    async def _unauthorized(
        self, scope: Scope, send: Send, client: str, *, presented: bool
    ) -> None:
        wait = await self.status.throttle.failed(client)
        if presented:
            _log.warning("status.auth_failed", client=client, throttled=bool(wait))
        if wait:
            await self._throttled(scope, send, wait)
            return
        challenge = b'Bearer realm="launchready-status"'
        if presented:
            challenge += b', error="invalid_token"'
        headers: Headers = [(b"www-authenticate", challenge), *_SAFETY]
        if wants_html(scope):
            problem = "That token is not right." if presented else None
            page = render_login(self._prefixed(scope, "/login"), problem=problem)
            await _respond(send, 401, page, [*_HTML, (b"www-authenticate", challenge)],
                           request_method(scope) == "HEAD")  # fmt: skip
            return
        await send_problem(send, 401, _UNAUTHORIZED, scope=scope, headers=headers)

    async def _throttled(self, scope: Scope, send: Send, wait: int) -> None:
        await send_problem(
            send,
            429,
            f"Too many failed attempts; retry in {wait} s.",
            scope=scope,
            headers=[(b"retry-after", str(wait).encode()), *_SAFETY],
        )

    async def _login(self, scope: Scope, receive: Receive, send: Send) -> None:
        status = self.status
        if not _same_origin(scope):
            await send_problem(send, 403, "Cross-site sign-in refused.", scope=scope,
                               headers=_SAFETY)  # fmt: skip
            return
        client = status.throttle.client(scope)
        wait = status.throttle.blocked_for(client)
        if wait:
            await self._throttled(scope, send, wait)
            return
        body = await read_body(scope, receive, _LOGIN_BODY_MAX)
        if body is None:
            await send_problem(send, 413, "The request body is too large.", scope=scope,
                               headers=_SAFETY)  # fmt: skip
            return
        token = _form_token(body)
        if token is None or not status.credentials.token_ok(token):
            await self._unauthorized(scope, send, client, presented=True)
            return
        cookie = (
            f"{SESSION_COOKIE}={status.credentials.new_session()}; Path={self._prefixed(scope)}; "
            f"Max-Age={status.credentials.ttl_s}; HttpOnly; Secure; SameSite=Strict"
        )
        await self._redirect(send, scope, cookie)

    async def _logout(self, scope: Scope, send: Send) -> None:
        if not _same_origin(scope):
            await send_problem(send, 403, "Cross-site sign-out refused.", scope=scope,
                               headers=_SAFETY)  # fmt: skip
            return
        cookie = (
            f"{SESSION_COOKIE}=; Path={self._prefixed(scope)}; Max-Age=0; HttpOnly; Secure; "
            "SameSite=Strict"
        )
        await self._redirect(send, scope, cookie)

    async def _redirect(self, send: Send, scope: Scope, cookie: str) -> None:
        headers: Headers = [
            (b"location", self._prefixed(scope).encode("latin-1", "replace")),
            (b"set-cookie", cookie.encode("latin-1", "replace")),
            (b"content-length", b"0"),
            *_COMMON,
        ]
        await send({"type": "http.response.start", "status": 303, "headers": headers})
        await send({"type": "http.response.body", "body": b""})


async def _respond(send: Send, status: int, body: bytes, headers: Headers, head: bool) -> None:
    full: Headers = [*headers, (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": full})
    await send({"type": "http.response.body", "body": b"" if head else body})


def _query_has_credentials(query: bytes) -> bool:
    """Whether a query string names a parameter like a credential (`token`, `key`, `auth`...)."""
    if not query:
        return False
    for item in query.split(b"&")[:64]:
        name = item.partition(b"=")[0].replace(b"+", b" ")
        if b"%" in name:
            from urllib.parse import unquote_to_bytes

            name = unquote_to_bytes(name)
        if name and is_credential_header(name.lower()[:64]):
            return True
    return False


def _form_token(body: bytes) -> bytes | None:
    try:
        fields: list[Any] = parse_qsl(body.decode("utf-8"), max_num_fields=8, strict_parsing=False)
    except (UnicodeDecodeError, ValueError):
        return None
    for name, value in fields:
        if name == "token":
            return str(value).strip().encode("utf-8")
    return None


def _same_origin(scope: Scope) -> bool:
    """A form post from this site (or from a client that sends no `Origin`, such as curl)."""
    origin = host = fetch_site = None
    for name, value in scope["headers"]:
        if name == b"origin":
            origin = bytes(value)
        elif name == b"host":
            host = bytes(value)
        elif name == b"sec-fetch-site":
            fetch_site = bytes(value)
    if fetch_site is not None:
        return fetch_site in (b"same-origin", b"none")
    if origin is None or origin == b"null":
        return origin is None
    return host is not None and origin.split(b"://", 1)[-1] == host
