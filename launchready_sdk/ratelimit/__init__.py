"""Rate limits for login, sign-up, password-reset and webhook routes.

`RateLimitMiddleware` sits inside the request-context and health layers and in front of the
app. For a request whose normalised path matches a rule (and whose method the rule covers), it
asks the limiter before the app runs and before the body is read; a refused request gets 429
problem+json with `Retry-After`, and a served one `RateLimit-Limit`, `RateLimit-Remaining` and
`RateLimit-Reset`. Requests on other routes pay one cached dictionary lookup.

Algorithm: GCRA (a token bucket stored as one "theoretical arrival time" per key), the same in
memory and in Redis. "5/minute" admits a burst of 5, then one request every 12 s. In Redis one
Lua script checks every rate of a rule at once, timed by the Redis clock (worker clock skew
changes nothing), and returns the decision with every header value: one round trip.

Security stance: clients are keyed by the trusted-proxy resolver's address, IPv6 aggregated to
a /64 by default; a request without an address shares one bucket rather than escaping. Keys are
hashed and bounded. Rules match the normalised path, so `/LOGIN/`, `//login`, `/%6Cogin` and
`/api/../login` draw from `/login`'s budget. HEAD and OPTIONS never drain a budget.

Redis down: with `fail="open"` a bounded in-process limiter takes over (the outage is not an open
door); with `fail="closed"` limited routes answer 503 problem+json. The breaker in `RedisStore`
keeps requests from waiting on a dead Redis.

Both backends, `MemoryBackend` and `RedisBackend`, answer `await backend.hit(key, rule)` with a
`Decision`; `RateLimiter` holds the rules and chooses the backend under its failure policy.
"""

from __future__ import annotations

from launchready_sdk.ratelimit._backends import Backend, Decision, MemoryBackend, RedisBackend
from launchready_sdk.ratelimit._discovery import KIND_RATES, AuthRoute, auth_routes, route_kind
from launchready_sdk.ratelimit._keys import KeySource, header_key, parse_key_source
from launchready_sdk.ratelimit._limiter import (
    DEFAULT_IPV6_PREFIX,
    RateLimiter,
    RateLimitFail,
    bucket_key,
    client_key,
    set_enforcement,
)
from launchready_sdk.ratelimit._middleware import RateLimitMiddleware, rate_limit_headers
from launchready_sdk.ratelimit._rules import (
    DEFAULT_RATE_LIMITS,
    WRITE_METHODS,
    Rule,
    compile_rules,
    parse_rule,
)

__all__ = [
    "DEFAULT_IPV6_PREFIX",
    "DEFAULT_RATE_LIMITS",
    "KIND_RATES",
    "WRITE_METHODS",
    "AuthRoute",
    "Backend",
    "Decision",
    "KeySource",
    "MemoryBackend",
    "RateLimitFail",
    "RateLimitMiddleware",
    "RateLimiter",
    "RedisBackend",
    "Rule",
    "auth_routes",
    "bucket_key",
    "client_key",
    "compile_rules",
    "header_key",
    "parse_key_source",
    "parse_rule",
    "rate_limit_headers",
    "route_kind",
    "set_enforcement",
]
