"""Shared state: one Redis client per process behind a breaker, and bounded in-memory stores.

`RedisStore.execute(...)` is the one boundary where Redis errors are translated: a connection error,
a timeout, a `READONLY`/`LOADING`/auth error all become `StoreUnavailable`, and the breaker opens.
While it is open, `execute` fails at once without I/O, so no request waits on a dead Redis; after
`cooldown_s` one call is let through as a probe, and its success closes the breaker. An outage
logs one warning and its end one info line, never a line per request.

Each command is bounded by a short socket timeout (`redis_timeout_s`, 50 ms by default) and the
client never retries on its own: callers decide what a failure means (fail open, fail closed,
fall back to memory).
"""

from __future__ import annotations

from launchready_sdk.store._memory import BoundedLRU
from launchready_sdk.store._redis import (
    DEFAULT_COOLDOWN_S,
    DEFAULT_PREFIX,
    DEFAULT_TIMEOUT_S,
    Breaker,
    RedisStore,
    Script,
)
from launchready_sdk.store._resp import (
    Arg,
    RedisReplyError,
    RespClient,
    encode_command,
    parse_redis_url,
)

__all__ = [
    "DEFAULT_COOLDOWN_S",
    "DEFAULT_PREFIX",
    "DEFAULT_TIMEOUT_S",
    "Arg",
    "BoundedLRU",
    "Breaker",
    "RedisReplyError",
    "RedisStore",
    "RespClient",
    "Script",
    "encode_command",
    "parse_redis_url",
]
