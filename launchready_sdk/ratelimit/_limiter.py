"""`RateLimiter`: the rules, the backend they are kept in, and the failure policy."""

from __future__ import annotations

import functools
import hashlib
import ipaddress
import math
import time
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Literal

from launchready_sdk.errors import StoreUnavailable
from launchready_sdk.logs import get_logger
from launchready_sdk.patterns import normalize_path, split_methods
from launchready_sdk.ratelimit._backends import (
    MEMORY_MAX_KEYS,
    Decision,
    MemoryBackend,
    RedisBackend,
)
from launchready_sdk.ratelimit._discovery import KIND_RATES, AuthRoute, auth_routes
from launchready_sdk.ratelimit._keys import MAX_KEY_BYTES, KeySource, parse_key_source
from launchready_sdk.ratelimit._rules import (
    DEFAULT_RATE_LIMITS,
    WRITE_METHODS,
    Rule,
    compile_rules,
    lookup,
)
from launchready_sdk.store import BoundedLRU, RedisStore

_log = get_logger("launchready.ratelimit")

DEFAULT_IPV6_PREFIX = 64
REFUSALS_KEPT = 10_000  # identities Redis refused, remembered until their Retry-After
NO_ADDRESS = "no-address"
# What a limited route does while Redis is unreachable: "open" keeps limiting in this
# process's memory, "closed" refuses with 503.
RateLimitFail = Literal["open", "closed"]


@functools.lru_cache(maxsize=8192)
def client_key(ip: str | None, ipv6_prefix: int) -> str:
    """The bucket of a client address: IPv4 as is, IPv6 aggregated to its /prefix network."""
    if not ip:
        return NO_ADDRESS
    try:
        address = ipaddress.ip_address(ip)
    except ValueError:
        return NO_ADDRESS
    if address.version == 6 and ipv6_prefix < 128:
        network = ipaddress.ip_network(f"{address}/{ipv6_prefix}", strict=False)
        return f"{network.network_address}/{ipv6_prefix}"
    return str(address)


@functools.lru_cache(maxsize=16384)
def bucket_key(pattern: str, kind: str, identity: str) -> str:
    """A fixed-length key for (rule, kind, identity); no two component tuples collide."""
    raw = "\x00".join((pattern, kind, identity)).encode("utf-8", "surrogatepass")
    return hashlib.blake2b(raw, digest_size=16).hexdigest()


class _Enforcement:
    """The process-wide switch test suites flip (`launchready_sdk.testing.rate_limits_off`)."""

    on = True


ENFORCEMENT = _Enforcement()


def set_enforcement(enabled: bool) -> bool:
    """Enforce rate limits in this process (True, the default) or not; returns the old value."""
    previous, ENFORCEMENT.on = ENFORCEMENT.on, bool(enabled)
    return previous


class RateLimiter:
    """Rules, their backends and the failure policy.

    Args:
        rules: pattern to rate text (`limits` notation), or None for the built-in rules. An
            optional method list may precede a pattern (`"GET /search"`); without one, every
            method but OPTIONS counts (HEAD with GET). The built-in rules count only the
            methods that change state, and `discover()` extends them to the app's own auth
            routes.
        store: the Redis store, or None for memory only.
        fail: "open" (fall back to the in-process limiter) or "closed" (refuse with 503).
        ipv6_prefix: IPv6 clients in one /prefix network share a bucket.
        account_rules: pattern to rate, keyed by the accounts a request names (the
            `username`, `email`, `login`, `user` or `account` fields of its body) instead of
            the client.
    """

    def __init__(
        self,
        rules: Mapping[str, str] | None,
        *,
        account_rules: Mapping[str, str] | None = None,
        store: RedisStore | None = None,
        fail: RateLimitFail = "open",
        ipv6_prefix: int = DEFAULT_IPV6_PREFIX,
        memory_max_keys: int = MEMORY_MAX_KEYS,
        keys: Mapping[str, str | KeySource] | None = None,
    ) -> None:
        self.defaults = rules is None
        self._keys: dict[str, KeySource] = {}
        for pattern, source in (keys or {}).items():
            self.key_by(pattern, source)
        self.rules: dict[str, str] = dict(DEFAULT_RATE_LIMITS if rules is None else rules)
        self._methods = WRITE_METHODS if self.defaults else None
        self.table = compile_rules(self.rules, default_methods=self._methods)
        self.accounts = compile_rules(account_rules or {})
        self.account_rules = dict(account_rules or {})
        self.discovered: list[AuthRoute] = []
        self.templates: frozenset[str] = frozenset()  # the app's route templates, when read
        self.memory = MemoryBackend(memory_max_keys)
        self._refusals: BoundedLRU[str, tuple[float, Decision]] = BoundedLRU(REFUSALS_KEPT)
        self.redis = RedisBackend(store) if store is not None else None
        self.fail = fail
        self.ipv6_prefix = ipv6_prefix
        self.refused = 0
        self.refused_by: dict[str, int] = {}  # rule pattern -> 429s (bounded by the rules)

    def key_by(self, pattern: str, source: str | KeySource) -> None:
        """Charge the rule of `pattern` to what `source` names (`"header:X-Api-Key"`, or a
        callable taking the ASGI scope) instead of the client address."""
        split_methods(pattern)
        found = parse_key_source(source) if isinstance(source, str) else source
        self._keys[normalize_path(split_methods(pattern)[1]).lower()] = found

    def identity(self, rule: Rule, scope: Any, client: str) -> str:
        """Whom a request is charged to under `rule`: its key source's answer, else `client`."""
        if not self._keys:
            return client
        source = self._keys.get(normalize_path(rule.pattern).lower())
        if source is None:
            return client
        try:
            key = source(scope)
        except Exception:
            key = None
        return client if not key else "k:" + str(key)[:MAX_KEY_BYTES]

    def rule_for(self, method: str, path: str) -> Rule | None:
        """The per-client rule covering this request (method upper-cased), or None."""
        return lookup(self.table, method, path) if ENFORCEMENT.on else None

    def account_rule_for(self, method: str, path: str) -> Rule | None:
        """The per-account rule covering this request, or None."""
        return lookup(self.accounts, method, path) if ENFORCEMENT.on else None

    async def hit(
        self, rule: Rule, identity: str | Sequence[str], kind: str = "ip"
    ) -> Decision | None:
        """Spend one request of each identity's budget, all or nothing; None means "refuse:
        the store is unavailable and the policy is closed"."""
        identities = [identity] if isinstance(identity, str) else list(identity)
        keys = [bucket_key(rule.pattern, kind, ident) for ident in identities]
        tag = keys[0] if len(keys) == 1 else bucket_key(rule.pattern, kind, "")
        if self.redis is not None:
            try:
                decision = await self.redis.hit(keys, rule, tag)
            except StoreUnavailable:
                if self.fail == "closed":
                    return None
                still = self._still_refused(tag)
                if still is not None:
                    return still
            else:
                if not decision.allowed:
                    until = time.monotonic() + decision.retry_after_s
                    self._refusals.set(tag, (until, decision))
                return decision
        return await self.memory.hit(keys, rule)

    def _still_refused(self, tag: str) -> Decision | None:
        """A refusal Redis gave this identity that has not run out yet: while Redis cannot
        answer (a blip, an outage), a client over its shared budget stays refused instead of
        starting afresh in this process's memory."""
        found = self._refusals.get(tag)
        if found is None:
            return None
        left = found[0] - time.monotonic()
        if left <= 0:
            self._refusals.pop(tag)
            return None
        seconds = max(1, math.ceil(left))
        return found[1]._replace(reset_s=seconds, retry_after_s=seconds)

    def discover(self, templates: Iterable[str]) -> list[AuthRoute]:
        """Read the app's route templates; returns those that look like auth.

        With the built-in rules, each gets the built-in rate of its kind (state-changing
        methods only), in addition to the built-in path patterns. With rules of your own,
        nothing is added: `report()` names the auth routes they leave out.
        """
        paths = list(templates)
        self.templates = frozenset(paths)
        routes = auth_routes(paths)
        self.discovered = routes
        if self.defaults:
            rules = dict(DEFAULT_RATE_LIMITS)
            taken = {normalize_path(p).lower() for p in rules}
            for route in routes:
                key = normalize_path(route.pattern).lower()
                if key not in taken:
                    taken.add(key)
                    rules[route.pattern] = KIND_RATES[route.kind]
            self.rules = rules
            self.table = compile_rules(rules, default_methods=self._methods)
        return routes

    def report(self, templates: Iterable[str]) -> None:
        """Log, once at start-up, which app routes are limited and at what rate, and warn when
        the limits protect none of them or leave an auth-looking route out."""
        paths = list(templates)
        if not paths:
            _log.info(
                "ratelimit.routes_unreadable",
                detail="the app's route table could not be read; the rules apply as patterns",
                rules=self.rules,
            )
            return
        covered = {p: self._rule_of(p) for p in paths}
        protected = [{"route": p, "rate": self.rules[spec]} for p, spec in covered.items() if spec]
        if protected:
            store = (
                "redis: every worker and instance shares each budget"
                if self.redis is not None
                else "memory: each worker process keeps its own budgets; set redis_url to share"
            )
            _log.info("ratelimit.protected", routes=protected, store=store)
        if self.defaults and not protected:
            _log.warning(
                "ratelimit.no_route_protected",
                detail="none of the app's routes looks like login, sign-up, password reset, "
                "token or webhook; name yours in rate_limits",
                routes=len(paths),
            )
        if not self.defaults:
            used = {spec for spec in covered.values() if spec}
            for spec in self.rules:
                if spec not in used:
                    _log.warning("ratelimit.rule_covers_no_route", rule=spec, rate=self.rules[spec])
            left_out = [r.template for r in auth_routes(paths) if not covered.get(r.template)]
            if left_out:
                _log.warning(
                    "ratelimit.auth_route_unprotected",
                    detail="these routes look like auth but no rule in rate_limits covers them",
                    routes=left_out,
                )

    def _rule_of(self, template: str) -> str | None:
        """The rule spec covering a route template, or None."""
        sample = "/".join("x" if s.startswith("{") else s for s in template.split("/")) or "/"
        found = self.table.match(sample)
        if found is None:
            return None
        rule = found[1][1]
        for spec in self.rules:
            if split_methods(spec)[1] == rule.pattern:
                return spec
        return None
