"""Stored entries: the versioned wire format (never pickle), content-hash ETags, and their
replay with the `X-Cache` and `Cache-Status` markers."""

from __future__ import annotations

import hashlib
import struct
from dataclasses import dataclass, field

import orjson

from launchready_sdk.types import Headers, Send

MAX_IF_NONE_MATCH_BYTES = 4096
ENTRY_MAGIC = b"LRC1"
NOT_MODIFIED_HEADERS = frozenset(
    {b"etag", b"cache-control", b"vary", b"content-location", b"expires", b"last-modified"}
)
# Response headers an entry keeps; everything else (Set-Cookie, Date, X-Request-ID, rate-limit
# headers, tracing headers) belongs to the request that produced it.
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

X_HIT = (b"x-cache", b"HIT")
X_MISS = (b"x-cache", b"MISS")
X_STALE = (b"x-cache", b"STALE")
X_BYPASS = (b"x-cache", b"BYPASS")


def cache_status(text: str) -> tuple[bytes, bytes]:
    """An RFC 9211 `Cache-Status` header of this cache."""
    return (b"cache-status", b"launchready; " + text.encode())


CS_COALESCED = cache_status("hit; detail=coalesced")
CS_STORED = cache_status("fwd=uri-miss; stored")
CS_STALE_ERROR = cache_status("fwd=stale; detail=stale-if-error")
CS_STORE_DOWN = cache_status("fwd=bypass; detail=store-unavailable")


@dataclass(slots=True)
class Entry:
    """A stored response: status, allow-listed headers (with ETag), body and its lifetimes."""

    status: int
    headers: Headers
    body: bytes
    fresh_ms: int
    lifetime_ms: int
    etag: bytes = b""
    replay: Headers = field(default_factory=list)
    not_modified: Headers = field(default_factory=list)
    route: str | None = None  # the app's route template (a HIT names it: the app never runs)

    def __post_init__(self) -> None:
        self.etag = next((v for n, v in self.headers if n == b"etag"), b"")
        self.replay = [*self.headers, (b"content-length", b"%d" % len(self.body))]
        self.not_modified = [(n, v) for n, v in self.headers if n in NOT_MODIFIED_HEADERS]


def encode_entry(entry: Entry) -> bytes:
    """The versioned wire form: magic, header length, JSON header, body."""
    fields: dict[str, object] = {
        "s": entry.status,
        "h": [[n.decode("latin-1"), v.decode("latin-1")] for n, v in entry.headers],
        "f": entry.fresh_ms,
        "l": entry.lifetime_ms,
    }
    if entry.route is not None:
        fields["r"] = entry.route
    meta = orjson.dumps(fields)
    return b"".join((ENTRY_MAGIC, struct.pack(">I", len(meta)), meta, entry.body))


_MAX_ROUTE = 1024  # a route template longer than this, read from the store, is not believed


def decode_entry(data: bytes) -> Entry | None:
    """An entry from its wire form, or None for anything malformed or of another version."""
    if not isinstance(data, bytes) or data[:4] != ENTRY_MAGIC or len(data) < 8:
        return None
    try:
        (size,) = struct.unpack(">I", data[4:8])
        meta = orjson.loads(data[8 : 8 + size])
        headers = [(n.encode("latin-1"), v.encode("latin-1")) for n, v in meta["h"]]
        status, fresh, lifetime = meta["s"], meta["f"], meta["l"]
        if not all(type(x) is int for x in (status, fresh, lifetime)) or len(data) < 8 + size:
            return None
        entry = Entry(status, headers, data[8 + size :], fresh, lifetime)
        route = meta.get("r")
        if isinstance(route, str) and len(route) <= _MAX_ROUTE:
            entry.route = route
        return entry
    except (ValueError, TypeError, KeyError, AttributeError, UnicodeError, struct.error):
        return None


def content_etag(body: bytes, headers: Headers) -> bytes:
    """A strong, quoted ETag: a hash of the body, its content type and its encoding."""
    digest = hashlib.blake2b(body, digest_size=16)
    for name, value in headers:
        if name in (b"content-type", b"content-encoding"):
            digest.update(b"\0" + name + b"=" + value)
    return b'"' + digest.hexdigest().encode() + b'"'


def etag_matches(if_none_match: bytes, etag: bytes) -> bool:
    """Weak comparison of `If-None-Match` (a list, or `*`) against an entry's ETag."""
    if not etag or len(if_none_match) > MAX_IF_NONE_MATCH_BYTES:
        return False
    if if_none_match.strip() == b"*":
        return True
    ours = etag.removeprefix(b"W/")
    return any(tag.strip().removeprefix(b"W/") == ours for tag in if_none_match.split(b","))


async def replay(
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
