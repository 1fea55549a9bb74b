"""Request bodies read under a size cap and handed on intact.

Layers that must see a body before the app does (per-account rate limits, idempotency keys)
read it with `read_body`, which refuses more than `max_bytes` (by `Content-Length` first, then
by what actually arrives), and give the app a `receive` from `replay_body` that returns the
same bytes once and then defers to the server (so disconnects still reach the app). A body
cut short by a client that left is not replayed: the app sees the disconnect, as it would
without the layer, and never a truncated body posing as a whole one.
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
        if message["type"] != "http.request":  # the client left before the end of its body
            return _CutShort(b"".join(chunks))
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > max_bytes:
            return None
        chunks.append(chunk)
        if not message.get("more_body", False):
            break
    return b"".join(chunks)


class _CutShort(bytes):
    """What arrived of a body before its client left."""


def replay_body(body: bytes, receive: Receive) -> Receive:
    """A `receive` that hands the app the body already read, then defers to the server."""
    pending = not isinstance(body, _CutShort)  # a cut body is never handed on as whole

    async def replay() -> Message:
        nonlocal pending
        if pending:
            pending = False
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay
