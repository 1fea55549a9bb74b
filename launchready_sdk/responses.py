"""The errors the SDK itself returns (429, 503, 413, 409, 422, 400, 500): RFC 9457 problem+json
for API clients, a small HTML page for browsers.

Bodies name the status and the request ID, never a traceback, a setting or a secret. The
format follows content negotiation: a request whose `Accept` prefers `text/html` over JSON (a
browser's does) gets a plain HTML page with the same status, headers (`Retry-After` included)
and request ID; everyone else, including clients that send no `Accept`, gets problem+json.
"""

from __future__ import annotations

import html
from http import HTTPStatus

import orjson

from launchready_sdk.types import Headers, Scope, Send

PROBLEM_TYPE = b"application/problem+json"
HTML_TYPE = b"text/html; charset=utf-8"
_SCOPE_HTML = "launchready.wants_html"


def problem_body(status: int, detail: str | None = None, request_id: str | None = None) -> bytes:
    """The JSON body of a problem response."""
    body: dict[str, object] = {
        "type": "about:blank",
        "title": HTTPStatus(status).phrase,
        "status": status,
    }
    if detail:
        body["detail"] = detail
    if request_id:
        body["request_id"] = request_id
    return orjson.dumps(body)


def problem_page(status: int, detail: str | None = None, request_id: str | None = None) -> bytes:
    """The HTML page of a problem response: status, detail and request ID, escaped."""
    title = html.escape(f"{status} {HTTPStatus(status).phrase}")
    parts = [
        "<!doctype html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{title}</title></head>",
        '<body style="font-family:system-ui,sans-serif;max-width:40rem;margin:4rem auto;'
        'padding:0 1rem;color:#222">',
        f"<h1>{title}</h1>",
    ]
    if detail:
        parts.append(f"<p>{html.escape(detail)}</p>")
    if request_id:
        parts.append(
            f'<p style="color:#666">Request ID: <code>{html.escape(request_id)}</code></p>'
        )
    parts.append("</body></html>")
    return "\n".join(parts).encode()


def wants_html(scope: Scope) -> bool:
    """Whether the request's `Accept` prefers an HTML page to JSON (decided once per request)."""
    decided = scope.get(_SCOPE_HTML)
    if decided is None:
        accept = b""
        for name, value in scope.get("headers") or ():
            if name == b"accept":
                accept = accept + b"," + value if accept else value
        decided = scope[_SCOPE_HTML] = prefers_html(accept)
    return bool(decided)


def prefers_html(accept: bytes) -> bool:
    """`text/html` is acceptable and weighs at least as much as any JSON type."""
    if b"html" not in accept:
        return False
    html_q = json_q = -1.0
    for item in accept[:2048].split(b","):
        media, _, params = item.strip().partition(b";")
        media = media.strip().lower()
        q = _quality(params)
        if media in (b"text/html", b"application/xhtml+xml"):
            html_q = max(html_q, q)
        elif media.endswith(b"json"):
            json_q = max(json_q, q)
    return html_q > 0 and html_q >= json_q


def _quality(params: bytes) -> float:
    for param in params.split(b";"):
        key, _, value = param.strip().partition(b"=")
        if key.strip().lower() == b"q":
            try:
                return max(0.0, min(1.0, float(value.strip())))
            except ValueError:
                return 0.0
    return 1.0


async def send_problem(
    send: Send,
    status: int,
    detail: str | None = None,
    *,
    scope: Scope | None = None,
    request_id: str | None = None,
    headers: Headers = (),  # type: ignore[assignment]
    head: bool = False,
) -> None:
    """Send a complete problem response: problem+json, or an HTML page for a browser.

    With `scope`, the request ID, the format and whether the request is a HEAD (headers
    only) come from it.
    """
    page = False
    if scope is not None:
        request_id = request_id or scope.get("launchready.request_id")
        page = wants_html(scope)
        head = head or scope.get("method") == "HEAD"
    if page:
        body, content_type = problem_page(status, detail, request_id), HTML_TYPE
    else:
        body, content_type = problem_body(status, detail, request_id), PROBLEM_TYPE
    response_headers: Headers = [
        (b"content-type", content_type),
        (b"content-length", str(len(body)).encode()),
        (b"cache-control", b"no-store"),
        *headers,
    ]
    await send({"type": "http.response.start", "status": status, "headers": response_headers})
    await send({"type": "http.response.body", "body": b"" if head else body})
