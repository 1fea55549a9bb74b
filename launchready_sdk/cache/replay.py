"""What a cached response carries: the replayed headers, the `X-Cache` and `Cache-Status`
markers, and the replay of an entry (or its 304)."""

from __future__ import annotations

from launchready_sdk.cache.entry import Entry, etag_matches
from launchready_sdk.types import Send

# Response headers replayed from an entry; everything else (Set-Cookie, Date, X-Request-ID,
# rate-limit headers, tracing headers) belongs to the request that produced it.
REPLAY_HEADERS = frozenset(
    {
        b"content-type",
        b"content-encoding",
        b"content-language",
        b"content-disposition",
        b"content-location",
        b"cache-control",
        b"etag",
        b"expires",
        b"last-modified",
        b"link",
        b"vary",
        b"x-content-type-options",
    }
)

_X_HIT = (b"x-cache", b"HIT")
_X_MISS = (b"x-cache", b"MISS")
_X_STALE = (b"x-cache", b"STALE")
_X_BYPASS = (b"x-cache", b"BYPASS")


def _status(text: str) -> tuple[bytes, bytes]:
    return (b"cache-status", b"launchready; " + text.encode())


_CS_COALESCED = _status("hit; detail=coalesced")
_CS_STORED = _status("fwd=uri-miss; stored")
_CS_STALE_ERROR = _status("fwd=stale; detail=stale-if-error")
_CS_STORE_DOWN = _status("fwd=bypass; detail=store-unavailable")


async def _replay(
    send: Send,
    entry: Entry,
    if_none_match: bytes | None,
    head: bool,
    age_ms: int,
    marker: tuple[bytes, bytes],
    status: tuple[bytes, bytes],
) -> None:
    """Send an entry (or its 304) with a fresh Age and the cache markers."""
    age = (b"age", b"%d" % (age_ms // 1000))
    if if_none_match is not None and etag_matches(if_none_match, entry.etag):
        headers = [*entry.not_modified, age, marker, status]
        await send({"type": "http.response.start", "status": 304, "headers": headers})
        await send({"type": "http.response.body", "body": b""})
        return
    await send(
        {
            "type": "http.response.start",
            "status": entry.status,
            "headers": [*entry.replay, age, marker, status],
        }
    )
    await send({"type": "http.response.body", "body": b"" if head else entry.body})
