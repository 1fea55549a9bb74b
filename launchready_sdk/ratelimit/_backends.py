"""Backends: GCRA (a token bucket kept as one "theoretical arrival time" per key) in this
process's memory or in one Redis script; both answer `await backend.hit(key, rule)`."""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from typing import NamedTuple, Protocol

from launchready_sdk.errors import StoreUnavailable
from launchready_sdk.ratelimit._rules import Rate, Rule
from launchready_sdk.store import Arg, BoundedLRU, Prepared, RedisStore, Script

MEMORY_MAX_KEYS = 100_000
PREPARED_CALLS_KEPT = 4096

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


class Decision(NamedTuple):
    """The limiter's answer: allowed or not, and the values of the response headers."""

    allowed: bool
    limit: int
    remaining: int
    reset_s: int
    retry_after_s: int
    window_s: int = 0
    policy: str = ""


class Backend(Protocol):
    """Where budgets live.

    `hit(keys, rule)` spends one request of every key's budget under `rule` (one key may be
    passed as a string), all or nothing:
    the request is allowed only when each key has room for it under each of the rule's
    rates, and then each is charged. One key per identity (a client, an account).
    """

    async def hit(
        self, keys: str | Sequence[str], rule: Rule, tag: str | None = None
    ) -> Decision: ...


class MemoryBackend:
    """GCRA over a bounded LRU of keys, timed by this process's monotonic clock."""

    def __init__(self, max_keys: int = MEMORY_MAX_KEYS) -> None:
        self._tats: BoundedLRU[str, list[float]] = BoundedLRU(max_keys)

    def __len__(self) -> int:
        return len(self._tats)

    async def hit(self, keys: str | Sequence[str], rule: Rule, tag: str | None = None) -> Decision:
        if isinstance(keys, str):
            keys = (keys,)
        if len(keys) == 1 and len(rule.rates) == 1:
            return self._hit_one(keys[0], rule.rates[0], rule.pattern)
        now = time.monotonic()
        rates = rule.rates
        planned: list[tuple[str, list[float]]] = []
        worst, worst_rate = 1e-9, rates[0]
        tightest: tuple[int, float, Rate] | None = None  # remaining, reset, rate
        for key in keys:
            tats = self._tats.get(key) or [0.0] * len(rates)
            new_tats = [max(tat, now) + r.interval_s for tat, r in zip(tats, rates, strict=True)]
            for t, rate in zip(new_tats, rates, strict=True):
                over = t - now - rate.period_s
                if over > worst:
                    worst, worst_rate = over, rate
                left = int((rate.period_s - (t - now)) / rate.interval_s + 1e-9)
                if tightest is None or left < tightest[0]:
                    tightest = (left, t - now, rate)
            planned.append((key, new_tats))
        if worst > 1e-9:
            seconds = _ceil(worst)
            rate = worst_rate
            return Decision(
                False, rate.amount, 0, seconds, seconds, int(rate.period_s), rule.pattern
            )
        for key, new_tats in planned:
            self._tats.set(key, new_tats)
        assert tightest is not None
        left, used, rate = tightest
        return Decision(
            True, rate.amount, max(left, 0), _ceil(used), 0, int(rate.period_s), rule.pattern
        )

    def _hit_one(self, key: str, rate: Rate, policy: str) -> Decision:
        """The common case of one key and one rate, without the per-rate lists."""
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


class RedisBackend:
    """GCRA in one Lua script per check, timed by the Redis clock; keys hashed under the
    store's prefix. Every key of one check shares a hash tag, so the script touches one slot."""

    def __init__(self, store: RedisStore) -> None:
        self.store = store
        # The encoded call of a (rule, identities) pair, reused while the same clients come
        # back (a client retrying, an attacker); cleared when full.
        self._calls: dict[tuple[str, ...], Prepared] = {}

    async def hit(self, keys: str | Sequence[str], rule: Rule, tag: str | None = None) -> Decision:
        if isinstance(keys, str):
            keys = (keys,)
        hash_tag = tag if tag is not None else keys[0]
        memo = (rule.pattern, rule.text, hash_tag, *keys)
        call = self._calls.get(memo)
        if call is None:
            call = self._prepare(keys, rule, hash_tag)
            if len(self._calls) >= PREPARED_CALLS_KEPT:
                self._calls.clear()
            self._calls[memo] = call
        reply = await self.store.run_prepared(call)
        try:
            allowed, index, remaining, reset_us, retry_us = (int(v) for v in reply)
        except (TypeError, ValueError):  # not the script's reply (a proxy, a RESP3-only server)
            raise StoreUnavailable("unexpected reply to the rate-limit script") from None
        rate = rule.rates[(int(index) - 1) % len(rule.rates)]
        window, reset_s = int(rate.period_s), _ceil(int(reset_us) / 1e6)
        if allowed:
            return Decision(True, rate.amount, int(remaining), reset_s, 0, window, rule.pattern)
        retry_s = _ceil(int(retry_us) / 1e6)
        return Decision(False, rate.amount, 0, reset_s, retry_s, window, rule.pattern)

    def _prepare(self, keys: Sequence[str], rule: Rule, hash_tag: str) -> Prepared:
        names: list[str] = []
        args: list[Arg] = []
        for key in keys:
            for i, rate in enumerate(rule.rates):
                name = str(i) if key == hash_tag else f"{key}:{i}"
                names.append(self.store.key("rl", f"{{{hash_tag}}}", name))
                args += [round(rate.period_s * 1e6), round(rate.interval_s * 1e6)]
        return GCRA.prepare(names, args)


def _ceil(seconds: float) -> int:
    """Whole seconds, at least 1, for `Retry-After` and `RateLimit-Reset`."""
    return max(1, math.ceil(seconds - 1e-9))
