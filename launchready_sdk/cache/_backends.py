"""Cache storage: the `Backend` protocol, the in-process store and Redis (each operation one
round trip)."""

from __future__ import annotations

import secrets
import time
from collections import OrderedDict
from collections.abc import Sequence
from typing import NamedTuple, Protocol

from launchready_sdk.cache._entry import Entry, decode_entry, encode_entry
from launchready_sdk.cache._rules import MAX_LIFETIME_S
from launchready_sdk.errors import StoreUnavailable
from launchready_sdk.store import Arg, RedisStore, Script

DEFAULT_MEMORY_MAX_BYTES = 64 * 1024 * 1024
GENERATION_TTL_MS = 2 * MAX_LIFETIME_S * 1000
MEMORY_MAX_GENERATIONS = 100_000

# Generations of KEYS[2..] as "g1,g2,..." ('0' for a key never bumped).
_GENERATIONS_LUA = """
local parts = {}
if #KEYS > 1 then
  local g = redis.call('MGET', unpack(KEYS, 2))
  for i = 1, #KEYS - 1 do parts[i] = g[i] or '0' end
end
local gens = table.concat(parts, ',')
"""
# KEYS: entry, generations... Returns {payload or nil, pttl, generations}: the entry only if it
# was stored under the current generations.
LOOKUP = Script(
    _GENERATIONS_LUA
    + """
local e = redis.call('GET', KEYS[1])
if e and string.sub(e, 1, #gens + 1) == gens .. '|' then
  return {string.sub(e, #gens + 2), redis.call('PTTL', KEYS[1]), gens}
end
return {false, 0, gens}
"""
)
# KEYS: entry, generations... ARGV: generations read before the origin call, payload, px.
STORE = Script(
    _GENERATIONS_LUA
    + """
if gens ~= ARGV[1] then return 0 end
redis.call('SET', KEYS[1], gens .. '|' .. ARGV[2], 'PX', ARGV[3])
return 1
"""
)
BUMP = Script(
    """
for i = 1, #KEYS do
  redis.call('INCR', KEYS[i])
  redis.call('PEXPIRE', KEYS[i], ARGV[1])
end
return #KEYS
"""
)
UNLOCK = Script(
    """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""
)


class Found(NamedTuple):
    """A lookup: the valid entry (or None), the generations read, the entry's age in ms."""

    entry: Entry | None
    generations: str
    age_ms: int


class Backend(Protocol):
    """Storage for entries, generation counters and fill locks."""

    def name(self, *parts: str) -> str: ...

    async def lookup(self, key: str, generations: Sequence[str]) -> Found: ...

    async def store(
        self, key: str, entry: Entry, generations: Sequence[str], read: str
    ) -> bool: ...

    async def bump(self, generations: Sequence[str]) -> None: ...

    async def lock(self, key: str, lease_ms: int) -> str | None: ...

    async def unlock(self, key: str, token: str) -> None: ...


class MemoryBackend:
    """Entries in one process, LRU-bounded by bytes; generation counters in a dict."""

    def __init__(self, max_bytes: int = DEFAULT_MEMORY_MAX_BYTES) -> None:
        self.max_bytes = max_bytes
        self.bytes = 0
        self._entries: OrderedDict[str, tuple[float, str, Entry, int]] = OrderedDict()
        self._generations: dict[str, int] = {}
        self._epoch = 0

    def name(self, *parts: str) -> str:
        return ":".join(parts)

    def _read(self, generations: Sequence[str]) -> str:
        return ",".join([str(self._gen(name)) for name in generations])

    def _gen(self, name: str) -> int:
        return self._epoch if name == "all" else self._generations.get(name, 0)

    async def lookup(self, key: str, generations: Sequence[str]) -> Found:
        read = self._read(generations)
        item = self._entries.get(key)
        if item is None:
            return Found(None, read, 0)
        stored_at, stored_read, entry, _ = item
        age_ms = int((time.monotonic() - stored_at) * 1000)
        if stored_read != read or age_ms >= entry.lifetime_ms:
            self._drop(key)
            return Found(None, read, 0)
        self._entries.move_to_end(key)
        return Found(entry, read, age_ms)

    async def store(self, key: str, entry: Entry, generations: Sequence[str], read: str) -> bool:
        if self._read(generations) != read:
            return False
        size = len(entry.body) + 64 * (len(entry.headers) + 4)
        if size > self.max_bytes:
            return False
        self._drop(key)
        self._entries[key] = (time.monotonic(), read, entry, size)
        self.bytes += size
        while self.bytes > self.max_bytes:
            self._drop(next(iter(self._entries)))
        return True

    def _drop(self, key: str) -> None:
        item = self._entries.pop(key, None)
        if item is not None:
            self.bytes -= item[3]

    async def bump(self, generations: Sequence[str]) -> None:
        for name in generations:
            if name == "all":
                self._epoch += 1
            else:
                self._generations[name] = self._generations.get(name, 0) + 1
        if len(self._generations) > MEMORY_MAX_GENERATIONS:
            self._generations.clear()  # forgetting counters is safe only with a new epoch
            self._epoch += 1

    async def lock(self, key: str, lease_ms: int) -> str | None:
        return "local"

    async def unlock(self, key: str, token: str) -> None:
        return None


class RedisBackend:
    """Entries, counters and fill locks in Redis, each operation one round trip.

    Every key carries the hash tag `{<prefix>:cache}`: a lookup reads its entry and the
    generation counters in one script, so on a Redis Cluster they must share a slot. The
    price, candidly: on a cluster one service's cache lives on one shard.
    """

    def __init__(self, store: RedisStore) -> None:
        self.redis = store
        self._tag = "{" + store.prefix + ":cache}"

    def name(self, *parts: str) -> str:
        return ":".join((self._tag, *parts))

    async def lookup(self, key: str, generations: Sequence[str]) -> Found:
        reply = await self.redis.run_script(LOOKUP, [key, *generations], [])
        try:
            payload, pttl, raw = reply
            read = raw.decode()
        except (TypeError, ValueError, AttributeError):  # not the script's reply: an outage
            raise StoreUnavailable("unexpected reply to the cache lookup") from None
        if payload is None:
            return Found(None, read, 0)
        entry = decode_entry(payload)
        if entry is None or pttl < 0:
            return Found(None, read, 0)
        return Found(entry, read, max(0, entry.lifetime_ms - pttl))

    async def store(self, key: str, entry: Entry, generations: Sequence[str], read: str) -> bool:
        args: list[Arg] = [read, encode_entry(entry), entry.lifetime_ms]
        return bool(await self.redis.run_script(STORE, [key, *generations], args))

    async def bump(self, generations: Sequence[str]) -> None:
        await self.redis.run_script(BUMP, list(generations), [GENERATION_TTL_MS])

    async def lock(self, key: str, lease_ms: int) -> str | None:
        token = secrets.token_hex(8)
        reply = await self.redis.execute("SET", key + ":lock", token, "NX", "PX", lease_ms)
        return token if reply is not None else None

    async def unlock(self, key: str, token: str) -> None:
        await self.redis.run_script(UNLOCK, [key + ":lock"], [token])
