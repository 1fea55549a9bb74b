"""Request bodies read under a size cap and handed on intact.

Layers that must see a body before the app does (per-account rate limits, idempotency keys)
read it with `read_body`, which refuses more than `max_bytes` (by `Content-Length` first, then
by what actually arrives), and give the app a `receive` from `replay_body` that returns the
same bytes once and then defers to the server (so disconnects still reach the app).
"""

from __future__ import annotations

from launchready_sdk.types import Message, Receive, Scope


async def read_body(scope: Scope, receive: Receive, max_bytes: int) -> bytes | None:
    """The whole request body, or None when it is (or says it is) larger than `max_bytes`."""
    for name, value in scope["headers"]:
        if name == b"content-length":
            if not value.isdigit() or int(value) > max_bytes:
                return None
            break
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] != "http.request":
            break
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > max_bytes:
            return None
        chunks.append(chunk)
        if not message.get("more_body", False):
            break
    return b"".join(chunks)


def replay_body(body: bytes, receive: Receive) -> Receive:
    """A `receive` that hands the app the body already read, then defers to the server."""
    pending = True

    async def replay() -> Message:
        nonlocal pending
        if pending:
            pending = False
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay
