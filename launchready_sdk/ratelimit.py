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
"""

from __future__ import annotations

import functools
import hashlib
import ipaddress
import math
import time
import urllib.parse
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal, NamedTuple

import orjson

from launchready_sdk.body import read_body, replay_body
from launchready_sdk.errors import StoreUnavailable
from launchready_sdk.logs import get_logger
from launchready_sdk.patterns import PatternTable, split_methods
from launchready_sdk.responses import send_problem
from launchready_sdk.store import Arg, BoundedLRU, RedisStore, Script
from launchready_sdk.types import ASGIApp, Headers, Message, Receive, Scope, Send

_log = get_logger("launchready.ratelimit")

# Rules in force with `rate_limits=None`: tight on password reset, generous on webhooks so a
# provider's retry burst is not refused. Keyed per client address.
DEFAULT_RATE_LIMITS: Mapping[str, str] = {
    "/login": "10/minute;100/hour",
    "/signin": "10/minute;100/hour",
    "/sign-in": "10/minute;100/hour",
    "/api/login": "10/minute;100/hour",
    "/auth/*": "20/minute;200/hour",
    "/api/auth/*": "20/minute;200/hour",
    "/token": "20/minute;200/hour",
    "/oauth/token": "20/minute;200/hour",
    "/api/token": "20/minute;200/hour",
    "/signup": "5/minute;50/hour",
    "/sign-up": "5/minute;50/hour",
    "/register": "5/minute;50/hour",
    "/api/signup": "5/minute;50/hour",
    "/api/register": "5/minute;50/hour",
    "/password-reset": "3/minute;10/hour",
    "/password/reset": "3/minute;10/hour",
    "/reset-password": "3/minute;10/hour",
    "/forgot-password": "3/minute;10/hour",
    "/api/password-reset": "3/minute;10/hour",
    "/webhooks/*": "600/minute",
    "/webhook/*": "600/minute",
    "/api/webhooks/*": "600/minute",
}
SAFE_METHODS = frozenset({"HEAD", "OPTIONS"})
HeaderStyle = Literal["separate", "structured"]
ACCOUNT_FIELDS = ("username", "email", "login", "user", "account")
BODY_MAX_BYTES = 64 * 1024
DEFAULT_IPV6_PREFIX = 64
MEMORY_MAX_KEYS = 100_000
_NO_ADDRESS = "no-address"

# KEYS: one per rate. ARGV: per rate, its period and emission interval in microseconds.
# Returns {allowed, index of the reported rate, remaining, reset_us, retry_after_us}.
GCRA_SCRIPT = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local n = #KEYS
local tats = {}
local allowed = 1
local report, report_remaining, retry = 1, math.huge, 0
for i = 1, n do
  local period = tonumber(ARGV[2 * i - 1])
  local interval = tonumber(ARGV[2 * i])
  local tat = tonumber(redis.call('GET', KEYS[i]) or '0')
  if tat < now then tat = now end
  local new_tat = tat + interval
  local over = new_tat - now - period
  if over > 0 then
    allowed = 0
    if over > retry then retry = over; report = i end
  end
  tats[i] = new_tat
end
local reset = 0
for i = 1, n do
  local period = tonumber(ARGV[2 * i - 1])
  local interval = tonumber(ARGV[2 * i])
  local used = tats[i] - now
  if allowed == 1 then
    redis.call('SET', KEYS[i], string.format('%d', tats[i]), 'PX', math.ceil(used / 1000) + 1)
  else
    used = used - interval
  end
  local remaining = math.floor((period - used) / interval)
  if remaining < 0 then remaining = 0 end
  if allowed == 1 and remaining < report_remaining then
    report_remaining = remaining; report = i; reset = used
  end
end
if allowed == 0 then report_remaining = 0; reset = retry end
return {allowed, report, report_remaining, math.ceil(reset), math.ceil(retry)}
"""
GCRA = Script(GCRA_SCRIPT)


class Rate(NamedTuple):
    """One rate of a rule: `amount` requests per `period_s`, one every `interval_s`."""

    amount: int
    period_s: float
    interval_s: float


@dataclass(frozen=True, slots=True)
class Rule:
    """A pattern, the rates it enforces (all of them at once) and the text they came from."""

    pattern: str
    rates: tuple[Rate, ...]
    text: str


class Decision(NamedTuple):
    """The limiter's answer: allowed or not, and the values of the response headers."""

    allowed: bool
    limit: int
    remaining: int
    reset_s: int
    retry_after_s: int
    window_s: int = 0
    policy: str = ""


def parse_rule(pattern: str, text: str) -> Rule:
    """A rule from `limits` notation (`"5/minute;100 per hour"`)."""
    from limits import parse_many

    items = parse_many(text)
    rates = tuple(
        Rate(item.amount, float(item.get_expiry()), float(item.get_expiry()) / max(item.amount, 1))
        for item in items
    )
    if not rates or any(rate.amount < 1 for rate in rates):
        raise ValueError(f"{pattern!r} has an unreadable rate {text!r}")
    return Rule(pattern, rates, text)


class MemoryLimiter:
    """GCRA over a bounded LRU of keys, timed by this process's monotonic clock."""

    def __init__(self, max_keys: int = MEMORY_MAX_KEYS) -> None:
        self._tats: BoundedLRU[str, list[float]] = BoundedLRU(max_keys)

    def hit(self, key: str, rule: Rule) -> Decision:
        if len(rule.rates) == 1:
            return self._hit_one(key, rule.rates[0], rule.pattern)
        now = time.monotonic()
        tats = self._tats.get(key) or [0.0] * len(rule.rates)
        new_tats = [
            max(tat, now) + rate.interval_s for tat, rate in zip(tats, rule.rates, strict=True)
        ]
        overs = [t - now - rate.period_s for t, rate in zip(new_tats, rule.rates, strict=True)]
        retry = max(overs)
        if retry > 1e-9:
            index = overs.index(retry)
            seconds = _ceil(retry)
            rate = rule.rates[index]
            return Decision(
                False, rate.amount, 0, seconds, seconds, int(rate.period_s), rule.pattern
            )
        self._tats.set(key, new_tats)
        remaining = [
            int((rate.period_s - (t - now)) / rate.interval_s + 1e-9)
            for t, rate in zip(new_tats, rule.rates, strict=True)
        ]
        index = remaining.index(min(remaining))
        reset = _ceil(new_tats[index] - now)
        rate = rule.rates[index]
        left = max(remaining[index], 0)
        return Decision(True, rate.amount, left, reset, 0, int(rate.period_s), rule.pattern)

    def _hit_one(self, key: str, rate: Rate, policy: str) -> Decision:
        """The common case of a rule with one rate, without the per-rate lists."""
        now = time.monotonic()
        stored = self._tats.get(key)
        tat = stored[0] if stored is not None and stored[0] > now else now
        used = tat + rate.interval_s - now
        if used - rate.period_s > 1e-9:
            seconds = _ceil(used - rate.period_s)
            return Decision(False, rate.amount, 0, seconds, seconds, int(rate.period_s), policy)
        self._tats.set(key, [now + used])
        remaining = int((rate.period_s - used) / rate.interval_s + 1e-9)
        return Decision(True, rate.amount, remaining, _ceil(used), 0, int(rate.period_s), policy)


class RedisLimiter:
    """GCRA in one Lua script per check; keys hashed under the store's prefix."""

    def __init__(self, store: RedisStore) -> None:
        self.store = store

    async def hit(self, key: str, rule: Rule) -> Decision:
        keys = [self.store.key("rl", f"{{{key}}}", str(i)) for i in range(len(rule.rates))]
        args: list[Arg] = []
        for rate in rule.rates:
            args += [round(rate.period_s * 1e6), round(rate.interval_s * 1e6)]
        reply = await self.store.run_script(GCRA, keys, args)
        allowed, index, remaining, reset_us, retry_us = reply
        rate = rule.rates[int(index) - 1]
        window, reset_s = int(rate.period_s), _ceil(int(reset_us) / 1e6)
        if allowed:
            return Decision(True, rate.amount, int(remaining), reset_s, 0, window, rule.pattern)
        retry_s = _ceil(int(retry_us) / 1e6)
        return Decision(False, rate.amount, 0, reset_s, retry_s, window, rule.pattern)


def _ceil(seconds: float) -> int:
    """Whole seconds, at least 1, for `Retry-After` and `RateLimit-Reset`."""
    return max(1, math.ceil(seconds - 1e-9))


@functools.lru_cache(maxsize=8192)
def client_key(ip: str | None, ipv6_prefix: int) -> str:
    """The bucket of a client address: IPv4 as is, IPv6 aggregated to its /prefix network."""
    if not ip:
        return _NO_ADDRESS
    try:
        address = ipaddress.ip_address(ip)
    except ValueError:
        return _NO_ADDRESS
    if address.version == 6 and ipv6_prefix < 128:
        network = ipaddress.ip_network(f"{address}/{ipv6_prefix}", strict=False)
        return f"{network.network_address}/{ipv6_prefix}"
    return str(address)


@functools.lru_cache(maxsize=16384)
def bucket_key(pattern: str, kind: str, identity: str) -> str:
    """A fixed-length key for (rule, kind, identity); no two component tuples collide."""
    raw = "\x00".join((pattern, kind, identity)).encode("utf-8", "surrogatepass")
    return hashlib.blake2b(raw, digest_size=16).hexdigest()


class RateLimiter:
    """Rules, their backends and the failure policy.

    Args:
        rules: pattern to rate text (`limits` notation). An optional method list may precede
            the pattern (`"GET /search"`); without one, every method but HEAD and OPTIONS counts.
        store: the Redis store, or None for memory only.
        fail: "open" (fall back to the in-process limiter) or "closed" (refuse with 503).
        ipv6_prefix: IPv6 clients in one /prefix network share a bucket.
        account_rules: pattern to rate, keyed by the account a request names (the
            `username`, `email` or `login` field of its JSON or form body) instead of the client.
    """

    def __init__(
        self,
        rules: Mapping[str, str],
        *,
        account_rules: Mapping[str, str] | None = None,
        store: RedisStore | None = None,
        fail: Literal["open", "closed"] = "open",
        ipv6_prefix: int = DEFAULT_IPV6_PREFIX,
        memory_max_keys: int = MEMORY_MAX_KEYS,
    ) -> None:
        self.table = _rule_table(rules)
        self.accounts = _rule_table(account_rules or {})
        self.memory = MemoryLimiter(memory_max_keys)
        self.redis = RedisLimiter(store) if store is not None else None
        self.fail = fail
        self.ipv6_prefix = ipv6_prefix
        self.refused = 0

    def rule_for(self, method: str, path: str) -> Rule | None:
        """The per-client rule covering this request, or None."""
        return _lookup(self.table, method, path)

    def account_rule_for(self, method: str, path: str) -> Rule | None:
        """The per-account rule covering this request, or None."""
        return _lookup(self.accounts, method, path)

    async def hit(self, rule: Rule, identity: str, kind: str = "ip") -> Decision | None:
        """Spend one request of `identity`'s budget; None means "refuse: store unavailable"."""
        key = bucket_key(rule.pattern, kind, identity)
        if self.redis is not None:
            try:
                return await self.redis.hit(key, rule)
            except StoreUnavailable:
                if self.fail == "closed":
                    return None
        return self.memory.hit(key, rule)


RuleTable = PatternTable[tuple[frozenset[str] | None, Rule]]


def _rule_table(rules: Mapping[str, str]) -> RuleTable:
    parsed: dict[str, tuple[frozenset[str] | None, Rule]] = {}
    for spec, text in rules.items():
        methods, pattern = split_methods(spec)
        parsed[pattern] = (methods, parse_rule(pattern, text))
    return PatternTable(parsed)


def _lookup(table: RuleTable, method: str, path: str) -> Rule | None:
    if method in SAFE_METHODS or not table:
        return None
    found = table.match(path)
    if found is None:
        return None
    methods, rule = found[1]
    if methods is not None and method not in methods:
        return None
    return rule


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

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        method, path = scope["method"], scope["path"]
        rule = self.limiter.rule_for(method, path)
        account_rule = self.limiter.account_rule_for(method, path)
        if rule is None and account_rule is None:
            await self.app(scope, receive, send)
            return
        request_id = scope.get("launchready.request_id")
        decisions: list[Decision] = []
        if rule is not None:
            decision = await self.limiter.hit(rule, self._identity(scope))
            if decision is None or not decision.allowed:
                await self._refuse(decision, send, request_id)
                return
            decisions.append(decision)
        if account_rule is not None:
            body = await read_body(scope, receive, self.body_max_bytes)
            if body is None:
                await send_problem(
                    send, 413, "The request body is too large.", request_id=request_id
                )
                return
            receive = replay_body(body, receive)
            account = account_of(scope, body)
            if account is not None:
                decision = await self.limiter.hit(account_rule, account, "account")
                if decision is None or not decision.allowed:
                    await self._refuse(decision, send, request_id)
                    return
                decisions.append(decision)
        if not decisions:
            await self.app(scope, receive, send)
            return
        tightest = min(decisions, key=lambda d: d.remaining)
        headers = rate_limit_headers(tightest, self.header_style)
        await self.app(scope, receive, _adding_headers(send, headers))

    async def _refuse(self, decision: Decision | None, send: Send, request_id: str | None) -> None:
        """Send the 429 of a refusal, or the 503 of a limiter failing closed (None)."""
        if decision is None:
            await send_problem(
                send,
                503,
                "Rate limiting is unavailable; try again shortly.",
                request_id=request_id,
                headers=self._closed_headers,
            )
            return
        self.limiter.refused += 1
        await send_problem(
            send,
            429,
            f"Too many requests; retry in {decision.retry_after_s} s.",
            request_id=request_id,
            headers=rate_limit_headers(decision, self.header_style),
        )

    def _identity(self, scope: Scope) -> str:
        key = client_key(self._client_ip(scope), self.limiter.ipv6_prefix)
        if key == _NO_ADDRESS and not self._warned_no_address:
            self._warned_no_address = True
            _log.warning("ratelimit.no_client_address", detail="such requests share one bucket")
        return key


def account_of(scope: Scope, body: bytes) -> str | None:
    """The account a login names: `username`, `email` or `login` in a JSON or form body."""
    content_type = b""
    for name, value in scope["headers"]:
        if name == b"content-type":
            content_type = value.split(b";", 1)[0].strip().lower()
            break
    fields: Mapping[str, Any] = {}
    try:
        if content_type == b"application/json" or content_type.endswith(b"+json"):
            parsed = orjson.loads(body)
            fields = parsed if isinstance(parsed, dict) else {}
        elif content_type == b"application/x-www-form-urlencoded":
            text = body.decode("utf-8", "replace")
            fields = {k: v for k, v in urllib.parse.parse_qsl(text, max_num_fields=200)}
    except (ValueError, orjson.JSONDecodeError):
        return None
    for field in ACCOUNT_FIELDS:
        value = fields.get(field)
        if isinstance(value, str) and value.strip():
            return value.strip().casefold()[:512]
    return None


def _adding_headers(send: Send, headers: Headers) -> Send:
    async def send_with_headers(message: Message) -> None:
        if message["type"] == "http.response.start":
            message["headers"] = [*message.get("headers", ()), *headers]
        await send(message)

    return send_with_headers


def describe_rules(rules: Iterable[str], app_paths: Iterable[str]) -> dict[str, list[str]]:
    """For each rule, the app route templates it covers (for the start-up report)."""
    paths = list(app_paths)
    report: dict[str, list[str]] = {}
    for spec in rules:
        _, pattern = split_methods(spec)
        table: PatternTable[bool] = PatternTable({pattern: True})
        report[spec] = [p for p in paths if table.match(_sample_path(p)) is not None]
    return report


def log_rule_coverage(rules: Mapping[str, str], app: Any, *, defaults: bool) -> None:
    """Log each rule with the routes it covers; a configured rule covering nothing is a warning."""
    from launchready_sdk.routing import iter_route_paths

    for spec, covered in describe_rules(rules, iter_route_paths(app)).items():
        if covered:
            _log.info("ratelimit.rule", rule=spec, rate=rules[spec], routes=covered)
        elif not defaults:
            _log.warning("ratelimit.rule_covers_no_route", rule=spec, rate=rules[spec])


def _sample_path(route_path: str) -> str:
    """A concrete path for a route template: each `{param}` becomes one segment."""
    segments = ["x" if s.startswith("{") else s for s in route_path.split("/")]
    return "/".join(segments) or "/"
