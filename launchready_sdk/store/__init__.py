"""Shared state: one Redis client per process behind a breaker, and bounded in-memory stores.

`RedisStore.execute(...)` is the one boundary where Redis errors are translated: a connection error,
a timeout, a `READONLY`/`LOADING`/auth error all become `StoreUnavailable`, and the breaker opens.
While it is open, `execute` fails at once without I/O, so no request waits on a dead Redis; after
`cooldown_s` one call is let through as a probe, and its success closes the breaker. An outage
logs one warning and its end one info line, never a line per request.

Each command is bounded by a short timeout (`redis_timeout_s`, 50 ms by default) that fails
only that command, and the client never retries on its own: callers decide what a failure
means (fail open, fail closed, fall back to memory). The breaker opens on an outage (failures
with no success in between for half a second, or half the calls of the last five seconds),
not on one late reply. Opening a connection has its own timeout (`redis_connect_timeout_s`).

Topologies (`_url` parses the URLs): one server (`redis://`, `rediss://`, `unix://`), a
Sentinel-managed master (`redis+sentinel://`, discovery in `_sentinel`) and a Redis Cluster
(`redis+cluster://`, routing in `_cluster`).
"""

from __future__ import annotations

from launchready_sdk.store._cluster import ClusterClient, key_slot
from launchready_sdk.store._memory import BoundedLRU
from launchready_sdk.store._redis import (
    DEFAULT_CONNECT_TIMEOUT_S,
    DEFAULT_COOLDOWN_S,
    DEFAULT_PREFIX,
    DEFAULT_TIMEOUT_S,
    Breaker,
    Prepared,
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
from launchready_sdk.store._url import EXAMPLES, RedisURL, parse_url, redacted

__all__ = [
    "DEFAULT_CONNECT_TIMEOUT_S",
    "DEFAULT_COOLDOWN_S",
    "DEFAULT_PREFIX",
    "DEFAULT_TIMEOUT_S",
    "EXAMPLES",
    "Arg",
    "BoundedLRU",
    "Breaker",
    "ClusterClient",
    "Prepared",
    "RedisReplyError",
    "RedisStore",
    "RedisURL",
    "RespClient",
    "Script",
    "encode_command",
    "key_slot",
    "parse_redis_url",
    "parse_url",
    "redacted",
]
