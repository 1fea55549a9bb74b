"""`RateLimiter`: the rules, the backend they are kept in, and the failure policy."""

from __future__ import annotations

import functools
import hashlib
import ipaddress
from collections.abc import Mapping
from typing import Literal

from launchready_sdk.errors import StoreUnavailable
from launchready_sdk.ratelimit._backends import (
    MEMORY_MAX_KEYS,
    Decision,
    MemoryBackend,
    RedisBackend,
)
from launchready_sdk.ratelimit._rules import Rule, compile_rules, lookup
from launchready_sdk.store import RedisStore

DEFAULT_IPV6_PREFIX = 64
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
        fail: RateLimitFail = "open",
        ipv6_prefix: int = DEFAULT_IPV6_PREFIX,
        memory_max_keys: int = MEMORY_MAX_KEYS,
    ) -> None:
        self.table = compile_rules(rules)
        self.accounts = compile_rules(account_rules or {})
        self.memory = MemoryBackend(memory_max_keys)
        self.redis = RedisBackend(store) if store is not None else None
        self.fail = fail
        self.ipv6_prefix = ipv6_prefix
        self.refused = 0

    def rule_for(self, method: str, path: str) -> Rule | None:
        """The per-client rule covering this request, or None."""
        return lookup(self.table, method, path)

    def account_rule_for(self, method: str, path: str) -> Rule | None:
        """The per-account rule covering this request, or None."""
        return lookup(self.accounts, method, path)

    async def hit(self, rule: Rule, identity: str, kind: str = "ip") -> Decision | None:
        """Spend one request of `identity`'s budget; None means "refuse: store unavailable"."""
        key = bucket_key(rule.pattern, kind, identity)
        if self.redis is not None:
            try:
                return await self.redis.hit(key, rule)
            except StoreUnavailable:
                if self.fail == "closed":
                    return None
        return await self.memory.hit(key, rule)
