"""`RateLimitMiddleware`: the limiter applied to requests, its headers and its refusals."""

from __future__ import annotations

from typing import Any, Literal

from launchready_sdk.body import read_body, replay_body
from launchready_sdk.context import request_method, route_path
from launchready_sdk.logs import get_logger
from launchready_sdk.ratelimit._accounts import accounts_of
from launchready_sdk.ratelimit._backends import Decision
from launchready_sdk.ratelimit._limiter import NO_ADDRESS, RateLimiter, client_key
from launchready_sdk.responses import send_problem
from launchready_sdk.routing import SCOPE_ROUTE
from launchready_sdk.types import ASGIApp, Headers, Message, Receive, Scope, Send

_log = get_logger("launchready.ratelimit")

HeaderStyle = Literal["separate", "structured"]
BODY_MAX_BYTES = 64 * 1024


def rate_limit_headers(decision: Decision, style: HeaderStyle = "separate") -> Headers:
    """Rate-limit response headers (and `Retry-After` on a refusal).

    `separate`: `RateLimit-Limit`, `RateLimit-Remaining`, `RateLimit-Reset` (delta seconds).
    `structured`: the IETF draft's `RateLimit-Policy: "<rule>";q=<quota>;w=<window>` and
    `RateLimit: "<rule>";r=<remaining>;t=<reset>` structured fields.
    """
    if style == "structured":
        name = decision.policy.replace("\\", "").replace('"', "")
        headers = [
            (b"ratelimit-policy", f'"{name}";q={decision.limit};w={decision.window_s}'.encode()),
            (b"ratelimit", f'"{name}";r={decision.remaining};t={decision.reset_s}'.encode()),
        ]
    else:
        headers = [
            (b"ratelimit-limit", str(decision.limit).encode()),
            (b"ratelimit-remaining", str(decision.remaining).encode()),
            (b"ratelimit-reset", str(decision.reset_s).encode()),
        ]
    if not decision.allowed:
        headers.append((b"retry-after", str(decision.retry_after_s).encode()))
    return headers


class RateLimitMiddleware:
    """Applies a `RateLimiter` to matching requests, keyed by client address.

    Args:
        app: the ASGI app to wrap.
        limiter: the rules, backends and failure policy.
        client_ip: resolves the client address (trusted-proxy aware).
        retry_after_closed_s: `Retry-After` of the 503 sent while failing closed.
        body_max_bytes: the largest body read to find the account of a per-account rule (413
            above it).
        header_style: "separate" `RateLimit-*` headers or the IETF draft's "structured" pair.
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        limiter: RateLimiter,
        client_ip: Any = None,
        retry_after_closed_s: int = 5,
        body_max_bytes: int = BODY_MAX_BYTES,
        header_style: HeaderStyle = "separate",
    ) -> None:
        self.app = app
        self.header_style: HeaderStyle = header_style
        self.body_max_bytes = body_max_bytes
        self.limiter = limiter
        self._client_ip = client_ip or (lambda scope: (scope.get("client") or (None,))[0])
        self._closed_headers: Headers = [(b"retry-after", str(retry_after_closed_s).encode())]
        self._warned_no_address = False
        self._warned_test_client = False

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        method, path = request_method(scope), route_path(scope)
        rule = self.limiter.rule_for(method, path)
        account_rule = self.limiter.account_rule_for(method, path)
        if rule is None and account_rule is None:
            await self.app(scope, receive, send)
            return
        decisions: list[Decision] = []
        client = self._identity(scope)
        if rule is not None:
            decision = await self.limiter.hit(rule, self.limiter.identity(rule, scope, client))
            if decision is None or not decision.allowed:
                await self._refuse(decision, send, scope, rule.pattern)
                return
            decisions.append(decision)
        if account_rule is not None:
            body = await read_body(scope, receive, self.body_max_bytes)
            if body is None:
                self._name_route(scope, account_rule.pattern)
                await send_problem(send, 413, "The request body is too large.", scope=scope)
                return
            receive = replay_body(body, receive)
            # No account named is not "no account limit": such requests share the budget
            # of their client address, which an attacker cannot rotate like a username.
            accounts = accounts_of(_content_type(scope), body) or ["no-account:" + client]
            decision = await self.limiter.hit(account_rule, accounts, "account")
            if decision is None or not decision.allowed:
                await self._refuse(decision, send, scope, account_rule.pattern)
                return
            decisions.append(decision)
        tightest = min(decisions, key=lambda d: d.remaining)
        headers = rate_limit_headers(tightest, self.header_style)
        await self.app(scope, receive, _adding_headers(send, headers))

    def _name_route(self, scope: Scope, pattern: str) -> None:
        """Name the route of a response the app never made, when the rule's pattern is one of
        the app's own route templates (as the discovered auth routes are), so the refusal is
        counted with the route's other requests, not as unmatched."""
        if pattern in self.limiter.templates:
            scope[SCOPE_ROUTE] = pattern

    async def _refuse(
        self, decision: Decision | None, send: Send, scope: Scope, pattern: str
    ) -> None:
        """Send the 429 of a refusal, or the 503 of a limiter failing closed (None)."""
        self._name_route(scope, pattern)
        if decision is None:
            await send_problem(
                send,
                503,
                "Rate limiting is unavailable; try again shortly.",
                scope=scope,
                headers=self._closed_headers,
            )
            return
        self.limiter.refused += 1
        if not self._warned_test_client and (scope.get("client") or ("",))[0] == "testclient":
            self._warned_test_client = True  # Starlette's TestClient: a test suite is running
            _log.warning(
                "ratelimit.test_client_limited",
                detail="a test client was rate-limited; switch limits off in tests with "
                "launchready_sdk.testing.rate_limits_off(), or give each client an address",
                rule=decision.policy,
            )
        by_rule = self.limiter.refused_by
        by_rule[decision.policy] = by_rule.get(decision.policy, 0) + 1
        await send_problem(
            send,
            429,
            f"Too many requests; retry in {decision.retry_after_s} s.",
            scope=scope,
            headers=rate_limit_headers(decision, self.header_style),
        )

    def _identity(self, scope: Scope) -> str:
        key = client_key(self._client_ip(scope), self.limiter.ipv6_prefix)
        if key == NO_ADDRESS and not self._warned_no_address:
            self._warned_no_address = True
            _log.warning("ratelimit.no_client_address", detail="such requests share one bucket")
        return key


def _content_type(scope: Scope) -> bytes:
    for name, value in scope["headers"]:
        if name == b"content-type":
            return bytes(value)
    return b""


def _adding_headers(send: Send, headers: Headers) -> Send:
    async def send_with_headers(message: Message) -> None:
        if message["type"] == "http.response.start":
            message["headers"] = [*message.get("headers", ()), *headers]
        await send(message)

    return send_with_headers
