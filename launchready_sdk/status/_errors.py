"""`ErrorTracker`: unhandled exceptions grouped by fingerprint, bounded, shared through Redis."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import orjson

from launchready_sdk.context import RequestContext
from launchready_sdk.errors import StoreUnavailable
from launchready_sdk.latency import KNOWN_METHODS, UNMATCHED
from launchready_sdk.logs import get_logger
from launchready_sdk.status._traceback import Link, Redact, chain_of, fingerprint, format_chain
from launchready_sdk.store import RedisStore, Script

_log = get_logger("launchready.status")

DEFAULT_MAX_GROUPS = 200  # per process
FLEET_MAX_GROUPS = 500  # in Redis, across the fleet
FLEET_TTL_S = 7 * 86400
SHOWN_GROUPS = 100

# Merge this worker's groups into the fleet's: counts are kept per worker and replaced (not
# added), so a write that timed out but landed is never counted twice; the newest occurrence's
# details win; the index keeps the FLEET_MAX_GROUPS most recently seen groups.
_MERGE = Script(
    """
local worker, max, ttl = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])
for i = 4, #ARGV, 2 do
  local fp, new = ARGV[i], cjson.decode(ARGV[i + 1])
  local counts = {}
  local raw = redis.call('HGET', KEYS[1], fp)
  if raw then
    local old = cjson.decode(raw)
    counts = old.counts or {}
    if old.first_seen < new.first_seen then new.first_seen = old.first_seen end
    if old.last_seen > new.last_seen then
      for _, k in ipairs({'message', 'route', 'method', 'request_id', 'traceback', 'last_seen'}) do
        new[k] = old[k]
      end
    end
  end
  counts[worker] = new.count
  local n, folded = 0, 0
  for k, v in pairs(counts) do n = n + 1 end
  if n > 64 then
    for k, v in pairs(counts) do
      if k ~= worker and k ~= '_' then folded = folded + v; counts[k] = nil end
    end
    counts['_'] = (counts['_'] or 0) + folded
  end
  new.count = nil
  new.counts = counts
  redis.call('HSET', KEYS[1], fp, cjson.encode(new))
  redis.call('ZADD', KEYS[2], new.last_seen, fp)
end
local extra = redis.call('ZCARD', KEYS[2]) - max
if extra > 0 then
  local gone = redis.call('ZRANGE', KEYS[2], 0, extra - 1)
  redis.call('ZREMRANGEBYRANK', KEYS[2], 0, extra - 1)
  redis.call('HDEL', KEYS[1], unpack(gone))
end
redis.call('EXPIRE', KEYS[1], ttl)
redis.call('EXPIRE', KEYS[2], ttl)
return 1
"""
)


@dataclass(slots=True)
class ErrorGroup:
    """One fingerprint's occurrences in this process."""

    fingerprint: str
    type: str
    message: str
    first_seen: float
    last_seen: float
    chain: tuple[Link, ...]
    count: int = 0
    method: str | None = None
    route: str | None = None
    request_id: str | None = None
    ctx: RequestContext | None = None  # until its route template is known (end of request)
    text: str | None = None  # the formatted traceback, made when first needed
    dirty: bool = True

    def settle(self) -> None:
        """Take the route template from the finished request and drop the context."""
        ctx = self.ctx
        if ctx is not None and ctx.route is not None:
            self.route, self.ctx = ctx.route, None

    def record(self, redact: Redact) -> dict[str, Any]:
        """The group as the status page shows it."""
        self.settle()
        if self.text is None:
            self.text = format_chain(self.chain, redact)
        return {
            "fingerprint": self.fingerprint,
            "type": self.type,
            "message": self.message,
            "count": self.count,
            "first_seen": self.first_seen,
            "last_seen": self.last_seen,
            "method": self.method,
            "route": self.route or UNMATCHED,
            "request_id": self.request_id,
            "traceback": self.text,
        }


class ErrorTracker:
    """Groups unhandled exceptions by fingerprint: count, first and last seen, route, last
    request id and a redacted traceback. At most `max_groups` groups (the least recently seen
    go first); `dropped` counts groups evicted. `capture` never raises.

    Args:
        redact: the redactor every message and source line goes through.
        store: Redis, to share groups with the fleet (None: this process only).
        worker_id: this process's name in the fleet's counts.
        max_groups: groups kept in memory.
        on_capture: called with each captured exception and its group (the Sentry hand-off).
    """

    def __init__(
        self,
        *,
        redact: Redact,
        store: RedisStore | None = None,
        worker_id: str = "worker",
        max_groups: int = DEFAULT_MAX_GROUPS,
        on_capture: Callable[[BaseException, ErrorGroup], None] | None = None,
    ) -> None:
        self.redact = redact
        self.store = store
        self.worker_id = worker_id
        self.max_groups = max_groups
        self.on_capture = on_capture
        self.groups: dict[str, ErrorGroup] = {}
        self.captured = 0
        self.dropped = 0
        self.failed = 0

    def capture(
        self,
        exc: BaseException,
        ctx: RequestContext | None = None,
        *,
        route: str | None = None,
    ) -> ErrorGroup | None:
        """Count one unhandled exception (`ctx` is its request; `route` its template if known)."""
        try:
            if getattr(exc, "_launchready_seen", False):
                return None  # already captured (Django's signal, then the ASGI layer)
            with contextlib.suppress(Exception):
                exc._launchready_seen = True  # type: ignore[attr-defined]
            group = self._capture(exc, ctx, route)
        except Exception:
            self.failed += 1
            _log.debug("status.capture_failed", exc_info=True)
            return None
        if self.on_capture is not None:
            try:
                self.on_capture(exc, group)
            except Exception:
                _log.debug("status.hand_off_failed", exc_info=True)
        return group

    def _capture(
        self, exc: BaseException, ctx: RequestContext | None, route: str | None
    ) -> ErrorGroup:
        now = time.time()
        chain = chain_of(exc, self.redact)
        last = chain[-1]
        fp = fingerprint(last.type, last.frames)
        group = self.groups.pop(fp, None)  # re-inserted last: the dict is in recency order
        if group is None:
            while len(self.groups) >= self.max_groups:
                self.groups.pop(next(iter(self.groups)))
                self.dropped += 1
            group = ErrorGroup(fp, last.type, last.message, now, now, chain)
        else:
            group.chain, group.message, group.text = chain, last.message, None
        self.groups[fp] = group
        group.count += 1
        group.last_seen = now
        group.dirty = True
        self.captured += 1
        if ctx is not None:
            group.method = ctx.method if ctx.method in KNOWN_METHODS else "OTHER"
            group.request_id = ctx.request_id
            group.route, group.ctx = route or ctx.route, None if route or ctx.route else ctx
        else:
            group.route, group.ctx = route, None
        return group

    def records(self) -> list[dict[str, Any]]:
        """This process's groups, most recently seen first."""
        return [g.record(self.redact) for g in reversed(list(self.groups.values()))][:SHOWN_GROUPS]

    # --- the fleet ---

    async def flush(self) -> None:
        """Merge the groups that changed since the last flush into the fleet's (Redis)."""
        store = self.store
        if store is None:
            return
        dirty = [g for g in list(self.groups.values()) if g.dirty]
        if not dirty:
            return
        args: list[Any] = [self.worker_id, FLEET_MAX_GROUPS, FLEET_TTL_S]
        for group in dirty:
            record = group.record(self.redact)
            args += [group.fingerprint, orjson.dumps(record)]
        keys = [store.key("status", "errors"), store.key("status", "errors", "index")]
        await store.run_script(_MERGE, keys, args)
        for group in dirty:
            group.dirty = False

    async def fleet_records(self) -> list[dict[str, Any]]:
        """Every worker's groups merged, most recently seen first (raises `StoreUnavailable`)."""
        store = self.store
        if store is None:
            raise StoreUnavailable("no Redis configured")
        reply = await store.execute("HGETALL", store.key("status", "errors"))
        items = list(reply or [])
        out = []
        for k in range(1, len(items), 2):
            try:
                record = orjson.loads(items[k])
                counts = record.pop("counts", {}) or {}
                record["count"] = int(sum(int(v) for v in counts.values()))
                out.append(record)
            except (ValueError, TypeError, AttributeError):
                continue
        out.sort(key=lambda r: float(r.get("last_seen") or 0), reverse=True)
        return out[:SHOWN_GROUPS]
