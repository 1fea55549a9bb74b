"""Stored entries: the versioned wire format (never pickle) and content-hash ETags."""

from __future__ import annotations

import hashlib
import struct
from dataclasses import dataclass, field

import orjson

from launchready_sdk.types import Headers

MAX_IF_NONE_MATCH_BYTES = 4096
ENTRY_MAGIC = b"LRC1"
NOT_MODIFIED_HEADERS = frozenset(
    {b"etag", b"cache-control", b"vary", b"content-location", b"expires", b"last-modified"}
)


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

    def __post_init__(self) -> None:
        self.etag = next((v for n, v in self.headers if n == b"etag"), b"")
        self.replay = [*self.headers, (b"content-length", b"%d" % len(self.body))]
        self.not_modified = [(n, v) for n, v in self.headers if n in NOT_MODIFIED_HEADERS]


def encode_entry(entry: Entry) -> bytes:
    """The versioned wire form: magic, header length, JSON header, body."""
    meta = orjson.dumps(
        {
            "s": entry.status,
            "h": [[n.decode("latin-1"), v.decode("latin-1")] for n, v in entry.headers],
            "f": entry.fresh_ms,
            "l": entry.lifetime_ms,
        }
    )
    return b"".join((ENTRY_MAGIC, struct.pack(">I", len(meta)), meta, entry.body))


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
        return Entry(status, headers, data[8 + size :], fresh, lifetime)
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
