"""`LaunchReady.limit(rate)`: a FastAPI dependency that limits the endpoint it sits on.

    @app.post("/reports", dependencies=[Depends(lr.limit("5/minute;50/hour"))])

It uses the same rates grammar, the same backends (one Redis round trip per decision) and the
same failure policy as the rules of `rate_limits`; its budget is per route template and per
client address (or per key: `lr.limit("100/hour", key="header:X-Api-Key")`). A refusal
raises `HTTPException(429)` with `Retry-After` and the `RateLimit-*` headers, which FastAPI
renders; a served request gets the `RateLimit-*` headers.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import HTTPException, Request, Response

from launchready_sdk.ratelimit._keys import KeySource, parse_key_source
from launchready_sdk.ratelimit._limiter import ENFORCEMENT, RateLimiter, client_key
from launchready_sdk.ratelimit._middleware import HeaderStyle, rate_limit_headers
from launchready_sdk.ratelimit._rules import Rule, parse_rule


class EndpointLimit:
    """A FastAPI dependency enforcing one rate on the routes it is attached to."""

    def __init__(
        self,
        limiter: RateLimiter,
        rate: str,
        *,
        key: str | KeySource | None = None,
        client_ip: Callable[[Any], str | None],
        header_style: HeaderStyle = "separate",
    ) -> None:
        parse_rule("/", rate)  # a bad rate fails here, where the route is declared
        self.limiter = limiter
        self.rate = rate
        self.key = parse_key_source(key) if isinstance(key, str) else key
        self.client_ip = client_ip
        self.header_style: HeaderStyle = header_style
        self._rules: dict[str, Rule] = {}

    async def __call__(self, request: Request, response: Response) -> None:
        if not ENFORCEMENT.on:
            return
        scope = request.scope
        route = getattr(scope.get("route"), "path", None) or scope["path"]
        rule = self._rules.get(route)
        if rule is None:
            rule = self._rules[route] = parse_rule(route, self.rate)
        identity = client_key(self.client_ip(scope), self.limiter.ipv6_prefix)
        if self.key is not None:
            named = self.key(scope)
            identity = "k:" + named if named else identity
        decision = await self.limiter.hit(rule, identity, "endpoint")
        if decision is None:
            raise HTTPException(503, "Rate limiting is unavailable; try again shortly.")
        headers = dict(
            (k.decode(), v.decode()) for k, v in rate_limit_headers(decision, self.header_style)
        )
        if not decision.allowed:
            self.limiter.refused += 1
            detail = f"Too many requests; retry in {decision.retry_after_s} s."
            raise HTTPException(429, detail, headers=headers)
        for name, value in headers.items():
            response.headers[name] = value
