"""Idempotency-Key replay for POST routes, and `once()` for external events.

`IdempotencyMiddleware` sits inside the rate limits and outside the cache. For a POST on a
configured route that carries an `Idempotency-Key` header, it reads the body (413 above the cap),
claims the key with a "pending" record, runs the app, and stores the response (status, an
allow-list of headers, body) as "done" for `ttl_s`. A retry with the same key and body replays the
stored response with `Idempotent-Replayed: true`; the same key while the first request is still
running gets 409, and the same key with another body 422 (all problem+json with the request id).
A response of 500 or more, a transient refusal (408, 409, 423, 425, 429), an exception or a
response larger than the cap releases the claim, so a retry runs again. Requests without the
header pass through untouched.

Records are keyed by (route pattern, caller, key), hashed with blake2b so they are bounded in
size. The default caller is a hash of every credential the request carries, with the one
definition the cache uses too (`Authorization`, API-key and token headers, session cookies), or
else its client address, so two users behind one NAT never share a record. An app whose
credentials rotate (a refreshed token, a re-issued session) names its caller itself, for
example the user id, with `LaunchReady.idempotency_caller(fn)`. The fingerprint covers the
normalised path, the query string and the body. Records
are JSON, never
pickle; a record that does not parse is treated as absent.

A claim is a lease (`lease_s`, 60 s by default), renewed every third of it while the handler
runs, so a slow handler keeps its key and a worker that dies lets a retry in once the lease
runs out. Limits, candidly: `Set-Cookie` is never stored nor replayed. The memory backend
protects one process only, and is bounded by entry count (each body by `max_body_bytes`), not
by bytes.

Redis down: `fail="refuse"` (the default) answers 503 problem+json with `Retry-After`, and
`once()` raises `StoreUnavailable`, so a retry comes back once Redis does and no order is ever
made twice; `fail="proceed"` runs the app without protection and logs a warning saying so
(a duplicate becomes possible). A blip is not an outage: each Redis command of this module
may wait up to `STORE_TIMEOUT_S` (half a second, or the store's own timeout if longer), so a
Redis paused for a few hundred milliseconds delays a checkout instead of refusing it.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import secrets
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import Literal, NamedTuple

import orjson

from launchready_sdk.body import read_body, replay_body
from launchready_sdk.context import request_method, route_path
from launchready_sdk.credentials import caller_credentials
from launchready_sdk.errors import StoreUnavailable
from launchready_sdk.logs import get_logger
from launchready_sdk.patterns import PatternTable, normalize_path
from launchready_sdk.responses import send_problem
from launchready_sdk.store import Arg, BoundedLRU, RedisStore, Script
from launchready_sdk.types import ASGIApp, Headers, Message, Receive, Scope, Send

_log = get_logger("launchready.idempotency")

DEFAULT_TTL_S = 86_400
DEFAULT_LEASE_S = 60
DEFAULT_MAX_BODY_BYTES = 1024 * 1024
MEMORY_MAX_ITEMS = 10_000
RETRY_AFTER_S = 5
STORE_TIMEOUT_S = 0.5  # a claim may wait out a blip: a late checkout beats a refused one
KEPT_HEADERS = frozenset({b"content-type", b"location", b"cache-control", b"etag"})
# Refusals a retry is meant to get past (timeout, conflict, locked, too early, too many
# requests): never stored, so the retry reaches the handler.
TRANSIENT_STATUSES = frozenset({408, 409, 423, 425, 429})
# What an idempotent route does while Redis is unreachable: run unprotected, or answer 503.
IdempotencyFail = Literal["proceed", "refuse"]
DEFAULT_FAIL: IdempotencyFail = "refuse"

# KEYS[1]: the record. ARGV: new record, lease seconds, the value it may replace ('' = none).
# Returns nil when the key is now ours, else the record standing in the way.
CLAIM = Script(
    """
local v = redis.call('GET', KEYS[1])
if v and v ~= ARGV[3] then return v end
redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[2])
return false
"""
)
# KEYS[1]: the record. ARGV: our pending record, the final record ('' = delete), ttl seconds.
SETTLE = Script(
    """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
if ARGV[2] == '' then return redis.call('DEL', KEYS[1]) end
redis.call('SET', KEYS[1], ARGV[2], 'EX', ARGV[3])
return 1
"""
)


class MemoryBackend:
    """Records with expiry in a bounded LRU; every operation is one synchronous step."""

    def __init__(self, max_items: int = MEMORY_MAX_ITEMS) -> None:
        self._items: BoundedLRU[str, tuple[float, bytes]] = BoundedLRU(max_items)

    def _get(self, key: str) -> bytes | None:
        entry = self._items.get(key)
        if entry is None:
            return None
        if entry[0] <= time.monotonic():
            self._items.pop(key)
            return None
        return entry[1]

    async def claim(
        self, key: str, value: bytes, lease_s: int, replace: bytes = b""
    ) -> bytes | None:
        current = self._get(key)
        if current is not None and current != replace:
            return current
        self._items.set(key, (time.monotonic() + lease_s, value))
        return None

    async def settle(self, key: str, pending: bytes, final: bytes, ttl_s: int) -> None:
        if self._get(key) != pending:
            return
        if final:
            self._items.set(key, (time.monotonic() + ttl_s, final))
        else:
            self._items.pop(key)

    async def add(self, key: str, ttl_s: int) -> bool:
        return await self.claim(key, b"1", ttl_s) is None


class RedisBackend:
    """The same operations as one Redis round trip each."""

    def __init__(self, store: RedisStore) -> None:
        self.store = store
        self.timeout_s = max(store.timeout_s, STORE_TIMEOUT_S)

    async def claim(
        self, key: str, value: bytes, lease_s: int, replace: bytes = b""
    ) -> bytes | None:
        args: list[Arg] = [value, lease_s, replace]
        reply = await self.store.run_script(
            CLAIM, [self.store.key("idem", key)], args, timeout_s=self.timeout_s
        )
        if reply is None or isinstance(reply, bytes):
            return reply
        if reply is False:  # a server speaking RESP3 answers Lua's false as a boolean
            return None
        raise StoreUnavailable("unexpected reply to an idempotency claim")

    async def settle(self, key: str, pending: bytes, final: bytes, ttl_s: int) -> None:
        await self.store.run_script(
            SETTLE, [self.store.key("idem", key)], [pending, final, ttl_s], timeout_s=self.timeout_s
        )

    async def add(self, key: str, ttl_s: int) -> bool:
        reply = await self.store.execute(
            "SET", self.store.key("idem", key), 1, "NX", "EX", ttl_s, timeout_s=self.timeout_s
        )
        return reply is not None


class Record(NamedTuple):
    """A parsed record: pending (no status) or done (status, headers, body)."""

    fingerprint: str
    status: int = 0
    headers: tuple[tuple[bytes, bytes], ...] = ()
    body: bytes = b""


def encode_done(fingerprint: str, status: int, headers: Headers, body: bytes) -> bytes:
    """The JSON of a finished response."""
    pairs = [[k.decode("latin-1"), v.decode("latin-1")] for k, v in headers]
    data = {
        "s": "d",
        "f": fingerprint,
        "st": status,
        "h": pairs,
        "b": base64.b64encode(body).decode(),
    }
    return orjson.dumps(data)


def decode(raw: bytes) -> Record | None:
    """The record stored as `raw`, or None when it does not parse (treated as absent)."""
    try:
        data = orjson.loads(raw)
        if data["s"] == "p":
            return Record(str(data["f"]))
        headers = tuple((k.encode("latin-1"), v.encode("latin-1")) for k, v in data["h"])
        status = data["st"]
        if data["s"] != "d" or not isinstance(status, int) or not 100 <= status < 600:
            return None
        return Record(str(data["f"]), status, headers, base64.b64decode(data["b"], validate=True))
    except (ValueError, TypeError, KeyError, AttributeError, orjson.JSONDecodeError):
        return None


def digest(*parts: str | bytes) -> str:
    """A bounded hex key for the parts; no two part tuples collide."""
    h = hashlib.blake2b(digest_size=20)
    for part in parts:
        data = part if isinstance(part, bytes) else part.encode("utf-8", "surrogatepass")
        h.update(len(data).to_bytes(8, "big"))
        h.update(data)
    return h.hexdigest()


class Idempotency:
    """Atomic once-only records in Redis (when `store` is given) or in this process's memory.

    Args:
        store: the Redis store, or None for memory.
        ttl_s: how long a finished response and a `once()` mark are kept.
        fail: on a Redis outage, "refuse" with 503 (the default) or "proceed" without
            protection.
        max_body_bytes: the largest request body read and response body stored.
        lease_s: how long a pending claim holds before a duplicate may run.
    """

    def __init__(
        self,
        *,
        store: RedisStore | None,
        ttl_s: int = DEFAULT_TTL_S,
        fail: IdempotencyFail = DEFAULT_FAIL,
        max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
        lease_s: int = DEFAULT_LEASE_S,
        memory_max_items: int = MEMORY_MAX_ITEMS,
    ) -> None:
        if ttl_s < 1 or lease_s < 1 or max_body_bytes < 0:
            raise ValueError("ttl_s and lease_s must be at least 1, max_body_bytes at least 0")
        self.backend: MemoryBackend | RedisBackend = (
            RedisBackend(store) if store is not None else MemoryBackend(memory_max_items)
        )
        self.ttl_s = ttl_s
        self.fail: IdempotencyFail = fail
        self.max_body_bytes = max_body_bytes
        self.lease_s = lease_s
        self._warned_at = -1e9

    async def once(self, event_id: str, ttl_s: int | None = None) -> bool:
        """True the first time `event_id` is seen within the TTL, False for every repeat."""
        if ttl_s is not None and ttl_s < 1:
            raise ValueError("ttl_s must be at least 1")
        try:
            return await self.backend.add("once:" + digest(event_id), ttl_s or self.ttl_s)
        except StoreUnavailable:
            if self.fail == "refuse":
                raise
            self.warn_unprotected("once")
            return True

    async def forget(self, event_id: str) -> None:
        """Forget that `event_id` was seen, so its next delivery gets True from `once()`.

        For a handler whose work failed after `once()` said True: without it, the
        provider's retry of the event would be taken for a duplicate and the work never done.
        """
        try:
            await self.backend.settle("once:" + digest(event_id), b"1", b"", 1)
        except StoreUnavailable:
            self.warn_unprotected("forget")

    def warn_unprotected(self, what: str) -> None:
        """One warning per 10 s while Redis is down and requests run unprotected."""
        now = time.monotonic()
        if now - self._warned_at >= 10:
            self._warned_at = now
            _log.warning("idempotency.unprotected", what=what, detail="Redis is unavailable")


def default_identity(scope: Scope, client_ip: Callable[[Scope], str | None] | None = None) -> str:
    """Who sent a request: a hash of every credential it carries (`Authorization`, API-key and
    token headers, session cookies: `credentials.caller_credentials`), else the client address
    (from `client_ip`, the peer in `scope["client"]` by default), else one shared identity."""
    credentials = caller_credentials(scope["headers"])
    if credentials:
        return "cred:" + digest(*credentials)
    if client_ip is not None:
        address = client_ip(scope)
    else:
        client = scope.get("client")
        address = client[0] if client else None
    return f"ip:{address}" if address else "anonymous"


def valid_key(value: bytes) -> bool:
    """1 to 255 visible ASCII characters."""
    return 0 < len(value) <= 255 and all(0x21 <= c <= 0x7E for c in value)


class _Capture:
    """Forwards the app's response while keeping a storable copy of it.

    `on_complete` runs before the last body chunk is forwarded, so the record is stored before
    the client has the whole response: a client retrying the moment it has it is replayed
    the response, never told the first attempt is still in progress.
    """

    def __init__(
        self, send: Send, max_bytes: int, on_complete: Callable[[_Capture], Awaitable[None]]
    ) -> None:
        self.send = send
        self.max_bytes = max_bytes
        self.on_complete = on_complete
        self.status = 0
        self.headers: Headers = []
        self.chunks: list[bytes] = []
        self.size = 0
        self.complete = False

    async def __call__(self, message: Message) -> None:
        if message["type"] == "http.response.start":
            self.status = int(message["status"])
            self.headers = [(k.lower(), v) for k, v in message.get("headers", ()) if _kept(k)]
        elif message["type"] == "http.response.body" and not self.complete:
            chunk = message.get("body", b"")
            self.size += len(chunk)
            if self.size <= self.max_bytes:
                self.chunks.append(chunk)
            self.complete = not message.get("more_body", False)
            if self.complete:
                await self.on_complete(self)
        await self.send(message)

    @property
    def storable(self) -> bool:
        return (
            self.complete
            and 0 < self.status < 500
            and self.status not in TRANSIENT_STATUSES
            and self.size <= self.max_bytes
        )


def _kept(name: bytes) -> bool:
    name = name.lower()
    return name in KEPT_HEADERS or (name.startswith(b"x-") and name != b"x-request-id")


class IdempotencyMiddleware:
    """Applies `Idempotency-Key` replay to POST requests on the configured routes.

    Args:
        app: the ASGI app to wrap.
        idempotency: the store, TTL, body cap and failure policy.
        routes: route patterns (`/checkout`, `/orders/{id}/pay`, `/api/*`).
        identity: the caller of a request (default: `default_identity`).
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        idempotency: Idempotency,
        routes: Mapping[str, object] | Iterable[str],
        identity: Callable[[Scope], str] | None = None,
    ) -> None:
        self.app = app
        self.idem = idempotency
        self.table: PatternTable[object] = PatternTable(
            routes if isinstance(routes, Mapping) else dict.fromkeys(routes, True)
        )
        self.identity = identity or default_identity
        self._retry_after: Headers = [(b"retry-after", str(RETRY_AFTER_S).encode())]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or request_method(scope) != "POST" or not self.table:
            await self.app(scope, receive, send)
            return
        path = normalize_path(route_path(scope), decoded=True)
        found = self.table.match(path)
        keys = [v for k, v in scope["headers"] if k == b"idempotency-key"] if found else []
        if found is None or not keys:
            await self.app(scope, receive, send)
            return
        if len(keys) > 1 or not valid_key(keys[0]):
            detail = "Idempotency-Key must be one value of 1 to 255 visible ASCII characters."
            await send_problem(send, 400, detail, scope=scope)
            return
        body = await read_body(scope, receive, self.idem.max_body_bytes)
        if body is None:
            await send_problem(send, 413, "The request body is too large.", scope=scope)
            return
        key = "req:" + digest(found[0], self.identity(scope), keys[0])
        fingerprint = digest(path, scope.get("query_string", b""), body)
        await self._guarded(scope, replay_body(body, receive), send, key, fingerprint)

    async def _guarded(
        self, scope: Scope, receive: Receive, send: Send, key: str, fingerprint: str
    ) -> None:
        """Claim the key, then run the app and settle, or answer from the record in the way."""
        pending = orjson.dumps({"s": "p", "f": fingerprint, "t": secrets.token_hex(8)})
        try:
            record = await self._claim(key, pending)
        except StoreUnavailable:
            if self.idem.fail == "refuse":
                detail = "Idempotency protection is unavailable; retry shortly."
                await send_problem(send, 503, detail, scope=scope, headers=self._retry_after)
                return
            self.idem.warn_unprotected("request")
            await self.app(scope, receive, send)
            return
        if record is None:
            await self._run(scope, receive, send, key, pending, fingerprint)
        elif record.fingerprint != fingerprint:
            detail = "This Idempotency-Key was used with a different request."
            await send_problem(send, 422, detail, scope=scope)
        elif record.status == 0:
            detail = "A request with this Idempotency-Key is still in progress."
            await send_problem(send, 409, detail, scope=scope)
        else:
            await _send_replay(send, record)

    async def _claim(self, key: str, pending: bytes) -> Record | None:
        """None when the key is ours now; else the parsed record (a corrupt one is replaced)."""
        raw = await self.idem.backend.claim(key, pending, self.idem.lease_s)
        for _ in range(3):
            if raw is None:
                return None
            record = decode(raw)
            if record is not None:
                return record
            raw = await self.idem.backend.claim(key, pending, self.idem.lease_s, raw)
        raise StoreUnavailable("idempotency records keep failing to parse")

    async def _run(
        self, scope: Scope, receive: Receive, send: Send, key: str, pending: bytes, fp: str
    ) -> None:
        """Run the app and store its response as done, or release the claim."""
        settled = False
        renewal = _Renewal(self.idem, key, pending)

        async def settle(final: bytes) -> None:
            nonlocal settled
            settled = True
            # Stopped first: a renewal must never bring back a claim settled after it. One
            # already sent reaches Redis before the settle, on the same connection.
            await renewal.stop()
            try:
                await self.idem.backend.settle(key, pending, final, self.idem.ttl_s)
            except StoreUnavailable:
                self.idem.warn_unprotected("store response")

        async def store(capture: _Capture) -> None:
            final = b""
            if capture.storable:
                body = b"".join(capture.chunks)
                final = encode_done(fp, capture.status, capture.headers, body)
            await settle(final)

        capture = _Capture(send, self.idem.max_body_bytes, store)
        try:
            await self.app(scope, receive, capture)
        finally:
            if not settled:  # no complete response: an exception, or an app that sent none
                await settle(b"")


class _Renewal:
    """Extends a pending claim every third of the lease while its handler runs.

    A timer, not a task, waits between renewals: most handlers finish long before the first
    one is due, and then cancelling a timer is all it costs.
    """

    __slots__ = ("handle", "idem", "key", "loop", "pending", "stopped", "task")

    def __init__(self, idem: Idempotency, key: str, pending: bytes) -> None:
        self.idem, self.key, self.pending = idem, key, pending
        self.loop = asyncio.get_running_loop()
        self.stopped = False
        self.task: asyncio.Task[None] | None = None
        self.handle = self.loop.call_later(idem.lease_s / 3, self._due)

    def _due(self) -> None:
        if not self.stopped:
            self.task = self.loop.create_task(self._renew())

    async def _renew(self) -> None:
        with contextlib.suppress(Exception):  # a failed renewal only lets the lease run out
            await self.idem.backend.claim(self.key, self.pending, self.idem.lease_s, self.pending)
        if not self.stopped:
            self.handle = self.loop.call_later(self.idem.lease_s / 3, self._due)

    async def stop(self) -> None:
        self.stopped = True
        self.handle.cancel()
        if self.task is not None and not self.task.done():
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self.task


async def _send_replay(send: Send, record: Record) -> None:
    headers: Headers = [
        *record.headers,
        (b"content-length", str(len(record.body)).encode()),
        (b"idempotent-replayed", b"true"),
    ]
    await send({"type": "http.response.start", "status": record.status, "headers": headers})
    await send({"type": "http.response.body", "body": record.body})


__all__ = [
    "DEFAULT_FAIL",
    "DEFAULT_TTL_S",
    "Idempotency",
    "IdempotencyFail",
    "IdempotencyMiddleware",
    "default_identity",
]
