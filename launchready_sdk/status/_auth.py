"""Who may see the status page: the bearer token, signed session cookies and the throttle."""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import time
from collections.abc import Callable

from launchready_sdk.ratelimit import RateLimiter, client_key, parse_rule
from launchready_sdk.store import BoundedLRU, RedisStore
from launchready_sdk.types import Scope

MIN_TOKEN_LENGTH = 32
TOKEN_EXAMPLE = (
    "LAUNCHREADY_STATUS_TOKEN=\"$(python -c 'import secrets; print(secrets.token_urlsafe(32))')\""
)
SESSION_COOKIE = "launchready_status"
SESSION_TTL_S = 900
FAILED_ATTEMPTS_RATE = "10/minute;100/hour"
_MIN_DISTINCT = 8
_SESSION_CONTEXT = b"launchready status session v1"


def check_token(token: object) -> str:
    """The token if it is fit to guard the page; `ValueError` saying why not (never echoing it)."""
    if not isinstance(token, str):
        raise ValueError(f"expected a string, got {type(token).__name__}")
    if len(token) < MIN_TOKEN_LENGTH:
        raise ValueError(f"must be at least {MIN_TOKEN_LENGTH} characters, got {len(token)}")
    if not all("!" <= c <= "~" for c in token):
        raise ValueError("must be printable ASCII without spaces (it travels in a header)")
    if len(set(token)) < _MIN_DISTINCT:
        raise ValueError("is too repetitive to be a secret; generate one at random")
    return token


class Credentials:
    """Checks a presented token in constant time, and issues and checks session cookies.

    A session cookie is `<expiry>.<nonce>.<signature>`: an HMAC-SHA256, keyed by a key
    derived from the token, of when it expires and a random nonce. It never holds the token,
    every worker holding the same token accepts it, and changing the token ends every session.
    """

    def __init__(self, token: str, *, ttl_s: int = SESSION_TTL_S) -> None:
        self._digest = hashlib.sha256(token.encode()).digest()
        self._key = hmac.new(token.encode(), _SESSION_CONTEXT, hashlib.sha256).digest()
        self.ttl_s = ttl_s

    def token_ok(self, presented: bytes) -> bool:
        """Whether `presented` is the token (compared as digests: no length or prefix leak)."""
        return hmac.compare_digest(hashlib.sha256(presented).digest(), self._digest)

    def new_session(self, now: float | None = None) -> str:
        expires = int((time.time() if now is None else now) + self.ttl_s)
        payload = f"{expires}.{base64.urlsafe_b64encode(os.urandom(12)).decode()}"
        return f"{payload}.{self._sign(payload)}"

    def session_ok(self, value: bytes, now: float | None = None) -> bool:
        """Whether a cookie value is a session this token signed and that has not expired."""
        try:
            text = value.decode("ascii")
            expires_text, nonce, signature = text.split(".")
            expires = int(expires_text)
        except (UnicodeDecodeError, ValueError):
            return False
        clock = time.time() if now is None else now
        if not clock < expires <= clock + self.ttl_s + 60:
            return False
        return hmac.compare_digest(signature, self._sign(f"{expires_text}.{nonce}"))

    def _sign(self, payload: str) -> str:
        mac = hmac.new(self._key, payload.encode(), hashlib.sha256).digest()
        return base64.urlsafe_b64encode(mac).decode().rstrip("=")


def bearer_token(scope: Scope) -> bytes | None:
    """The credential of an `Authorization: Bearer ...` header, as raw bytes (or None)."""
    for name, value in scope["headers"]:
        if name == b"authorization":
            scheme, _, rest = bytes(value).strip().partition(b" ")
            if scheme.lower() == b"bearer" and rest.strip():
                return rest.strip()
            return b""  # another scheme, or an empty credential: a wrong one
    return None


def session_cookie(scope: Scope) -> bytes | None:
    """The value of the status session cookie, if the request carries one."""
    wanted = SESSION_COOKIE.encode()
    for name, value in scope["headers"]:
        if name == b"cookie":
            for item in bytes(value).split(b";"):
                key, sep, cookie = item.strip().partition(b"=")
                if sep and key == wanted:
                    return cookie.strip()
    return None


class Throttle:
    """Failed attempts per client, through the SDK's rate limiter (shared through Redis when
    configured; in this process's memory while Redis is down, never open). A client over its
    budget is refused without its credential being checked until the budget allows again.

    Args:
        store: Redis, to count attempts across the fleet (None: this process).
        client_ip: the trusted-proxy client address of a request.
        rate: the budget of failed attempts per client.
        ipv6_prefix: IPv6 clients in one such network share a budget.
    """

    def __init__(
        self,
        *,
        store: RedisStore | None,
        client_ip: Callable[[Scope], str | None],
        rate: str = FAILED_ATTEMPTS_RATE,
        ipv6_prefix: int = 64,
    ) -> None:
        self.limiter = RateLimiter({}, store=store, fail="open", ipv6_prefix=ipv6_prefix)
        self.rule = parse_rule("status", rate)
        self._client_ip = client_ip
        self._blocked: BoundedLRU[str, float] = BoundedLRU(10_000)
        self.refused = 0

    def client(self, scope: Scope) -> str:
        return client_key(self._client_ip(scope), self.limiter.ipv6_prefix)

    def blocked_for(self, client: str) -> int:
        """Seconds this client must wait, or 0."""
        until = self._blocked.get(client)
        if until is None:
            return 0
        left = until - time.monotonic()
        return max(1, int(left + 0.999)) if left > 0 else 0

    async def failed(self, client: str) -> int:
        """Count a failed attempt; the seconds to wait when it went over the budget, else 0."""
        decision = await self.limiter.hit(self.rule, client, "status")
        if decision is None or decision.allowed:
            return 0
        self.refused += 1
        wait = max(1, decision.retry_after_s)
        self._blocked.set(client, time.monotonic() + wait)
        return wait
