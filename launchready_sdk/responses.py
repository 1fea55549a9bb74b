"""RFC 9457 problem+json bodies for the errors the SDK itself returns (429, 503, 413, 409, 500).

Bodies name the status and the request ID, never a traceback, a setting or a secret.
"""

from __future__ import annotations

from http import HTTPStatus

import orjson

from launchready_sdk.types import Headers, Send

PROBLEM_TYPE = b"application/problem+json"


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


async def send_problem(
    send: Send,
    status: int,
    detail: str | None = None,
    *,
    request_id: str | None = None,
    headers: Headers = (),  # type: ignore[assignment]
    head: bool = False,
) -> None:
    """Send a complete problem+json response; `head=True` sends the headers only."""
    body = problem_body(status, detail, request_id)
    response_headers: Headers = [
        (b"content-type", PROBLEM_TYPE),
        (b"content-length", str(len(body)).encode()),
        (b"cache-control", b"no-store"),
        *headers,
    ]
    await send({"type": "http.response.start", "status": status, "headers": response_headers})
    await send({"type": "http.response.body", "body": b"" if head else body})
