"""`Status`: the status page's parts (errors, slow requests, access) and the view they build."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Mapping
from typing import Any

import orjson

from launchready_sdk.context import ErrorLog, RequestContext
from launchready_sdk.errors import StoreUnavailable
from launchready_sdk.health import Readiness
from launchready_sdk.latency import DEFAULT_BUDGET_MIN_SAMPLES, LatencyTracker
from launchready_sdk.logs import get_logger
from launchready_sdk.periodic import Periodic
from launchready_sdk.ratelimit import RateLimiter
from launchready_sdk.status._auth import Credentials, Throttle
from launchready_sdk.status._errors import ErrorGroup, ErrorTracker
from launchready_sdk.status._sentry import hand_off, install_gate
from launchready_sdk.status._slow import SlowRequests, slow_record
from launchready_sdk.status._traceback import Redact
from launchready_sdk.status._view import (
    MinuteCharts,
    cache_entries,
    health_entries,
    iso,
    outbound_entries,
    refusal_entries,
    route_entries,
)
from launchready_sdk.store import RedisStore
from launchready_sdk.types import Scope

_log = get_logger("launchready.status")

DEFAULT_STATUS_PATH = "/_launchready/status"
HEALTH_STALE_S = 15.0  # an older readiness verdict is refreshed in the background
HEALTH_WAIT_S = 0.3  # how long a page waits for a first readiness verdict
WORKER_LIVE_S = 600.0  # workers that flushed within this count in the fleet view
WORKER_STALE_S = 3600.0  # workers silent for longer are removed from Redis
SLOW_SHOWN = 50


class Status:
    """What the status page shows and who may see it.

    Args:
        token: the bearer token (checked already: see `check_token`).
        path: where the page is (`<path>.json`, `<path>/login`, `<path>/logout` beside it).
        tracker: the latency figures (routes, budgets, the worker id).
        readiness: the readiness checks, whose latest verdict is shown.
        limiter: the rate limiter, whose refusals are shown.
        cache_stats: returns the cache's per-route counts.
        outbound_stats: returns the outbound per-host figures.
        store: Redis, for the fleet view and shared groups (None: this process).
        redact: the redactor everything shown goes through.
        client_ip: the trusted-proxy client address, for the throttle.
        floor_ms: the smallest latency budget of any route.
        sentry: hand errors to an initialised `sentry_sdk`.
        flush_interval_s: how often this worker's part is written to Redis.
        service: the service name shown in the title.
        version: the SDK version shown.
    """

    def __init__(
        self,
        *,
        token: str,
        path: str = DEFAULT_STATUS_PATH,
        tracker: LatencyTracker,
        readiness: Readiness,
        limiter: RateLimiter,
        cache_stats: Callable[[], Mapping[str, Mapping[str, int]]],
        outbound_stats: Callable[[], Mapping[str, Mapping[str, Any]]],
        store: RedisStore | None,
        redact: Redact,
        client_ip: Callable[[Scope], str | None],
        floor_ms: float,
        sentry: bool = True,
        flush_interval_s: float = 10.0,
        ipv6_prefix: int = 64,
        service: str = "app",
        version: str = "",
    ) -> None:
        self.path = path
        self.tracker = tracker
        self.readiness = readiness
        self.limiter = limiter
        self.cache_stats = cache_stats
        self.outbound_stats = outbound_stats
        self.store = store
        self.redact = redact
        self.sentry = sentry
        self.flush_interval_s = flush_interval_s
        self.service = service
        self.version = version
        self.credentials = Credentials(token)
        self.throttle = Throttle(store=store, client_ip=client_ip, ipv6_prefix=ipv6_prefix)
        self.errors = ErrorTracker(
            redact=redact,
            store=store,
            worker_id=tracker.worker_id,
            on_capture=self._hand_off if sentry else None,
        )
        self.slow = SlowRequests(tracker, floor_ms=floor_ms)
        self.charts = MinuteCharts(tracker)
        self.started = time.time()
        self._building: asyncio.Future[dict[str, Any]] | None = None
        self._health_task: asyncio.Task[Any] | None = None
        self._periodic = Periodic("launchready.status", flush_interval_s, self.flush)
        self._last_blob = b""

    @property
    def paths(self) -> dict[str, str]:
        """The paths the status layer answers, with and without a trailing slash, by kind."""
        kinds = {
            self.path: "page",
            self.path + ".json": "json",
            self.path + "/login": "login",
            self.path + "/logout": "logout",
        }
        return {**kinds, **{p + "/": k for p, k in kinds.items()}}

    # --- capture ---

    def error_hook(self, log: ErrorLog | None) -> ErrorLog:
        """The request-context layer's error hook: capture the exception, then `log` it."""
        capture = self.errors.capture

        def on_error(ctx: RequestContext, exc: BaseException) -> None:
            capture(exc, ctx)
            if log is not None:
                log(ctx, exc)

        return on_error

    def _hand_off(self, exc: BaseException, group: ErrorGroup) -> None:
        hand_off(exc, group.fingerprint, group.route, group.request_id, self.redact)

    # --- background work ---

    async def start(self) -> None:
        """Start the flush task (lifespan start-up); chain the Sentry gate if Sentry is on."""
        if self.sentry:
            install_gate(self.redact)
        if self.store is not None:
            await self._periodic.start()

    async def stop(self) -> None:
        """Stop the task and flush a last time (before Redis closes)."""
        await self._periodic.stop()

    async def flush(self) -> None:
        """Write this worker's error groups and its part of the fleet view to Redis."""
        store = self.store
        if store is None:
            return
        await self.errors.flush()
        blob = orjson.dumps(self._worker_part())
        if blob != self._last_blob:
            key = store.key("status", "workers")
            await store.execute("HSET", key, self.tracker.worker_id, blob)
            await store.execute("EXPIRE", key, int(WORKER_STALE_S * 24))
            self._last_blob = blob

    def _worker_part(self) -> dict[str, Any]:
        outbound = {
            host: {k: f.get(k) for k in ("calls", "errors", "breaker")}
            for host, f in self.outbound_stats().items()
        }
        return {
            "t": round(time.time(), 3),
            "started": self.started,
            "slow": [list(e) for e in self.slow.entries()],
            "cache": self.cache_stats(),
            "refused": self.limiter.refused,
            "refused_by": dict(self.limiter.refused_by),
            "outbound": outbound,
        }

    # --- the view ---

    async def view(self) -> dict[str, Any]:
        """The status data; page loads that arrive while one is being built share it."""
        if self._building is None:
            self._building = asyncio.ensure_future(self._build())
            self._building.add_done_callback(self._built)
        return await asyncio.shield(self._building)

    def _built(self, future: asyncio.Future[dict[str, Any]]) -> None:
        self._building = None

    async def _build(self) -> dict[str, Any]:
        unavailable: list[str] = []
        workers, fleet_errors, redis = await self._fleet()
        fleet = workers is not None
        try:
            snapshot, charts = await asyncio.to_thread(self._figures, fleet)
            routes = route_entries(snapshot, charts, DEFAULT_BUDGET_MIN_SAMPLES)
        except Exception:
            _log.warning("status.section_failed", section="routes", exc_info=True)
            routes, unavailable = {}, [*unavailable, "routes"]
        parts = workers if workers is not None else [self._worker_part()]
        view: dict[str, Any] = {
            "scope": "fleet" if fleet else "worker",
            "generated_at": iso(time.time()),
            "redis": redis,
            "routes": routes,
            "health": await self._section("health", self._health, unavailable),
            "errors": await self._section(
                "errors", lambda: self._errors(fleet_errors), unavailable
            ),
            "slow_requests": await self._section(
                "slow_requests", lambda: self._slow(parts), unavailable
            ),
            "service": self.service,
            "version": self.version,
            "uptime_s": round(time.time() - self.started, 1),
            "window_s": self.tracker.slots * 60,
            "workers": len(parts),
            "cache": await self._section(
                "cache", lambda: cache_entries(p.get("cache") or {} for p in parts), unavailable
            ),
            "rate_limits": await self._section(
                "rate_limits", lambda: refusal_entries(parts), unavailable
            ),
            "outbound": await self._section(
                "outbound",
                lambda: outbound_entries(p.get("outbound") or {} for p in parts),
                unavailable,
            ),
            "errors_dropped": self.errors.dropped,
            "unavailable": unavailable,
        }
        return view

    async def _section(self, name: str, build: Callable[[], Any], unavailable: list[str]) -> Any:
        """One section, built on its own: a failure empties that section, never the page."""
        try:
            result = build()
            if asyncio.iscoroutine(result):
                result = await result
            return result
        except Exception:
            _log.warning("status.section_failed", section=name, exc_info=True)
            unavailable.append(name)
            return [] if name in ("errors", "slow_requests") else {}

    async def _fleet(self) -> tuple[list[dict[str, Any]] | None, list[dict[str, Any]] | None, str]:
        """Every live worker's part and the fleet's error groups, or Nones while Redis is down."""
        store = self.store
        if store is None:
            return None, None, "none"
        try:  # while the breaker is open this fails at once, without I/O
            await self.flush()
            key = store.key("status", "workers")
            reply, errors = await asyncio.gather(
                store.execute("HGETALL", key), self.errors.fleet_records()
            )
        except StoreUnavailable:
            return None, None, "down"
        now = time.time()
        items = list(reply or [])
        live, stale = [], []
        for k in range(0, len(items) - 1, 2):
            try:
                part = orjson.loads(items[k + 1])
                age = now - float(part.get("t", 0))
            except (ValueError, TypeError, AttributeError):
                stale.append(items[k])
                continue
            if age > WORKER_STALE_S:
                stale.append(items[k])
            elif age <= WORKER_LIVE_S:
                live.append(part)
        if stale:
            with contextlib.suppress(StoreUnavailable):
                await store.execute("HDEL", key, *stale)
        return live, errors, "up"

    def _figures(self, fleet: bool) -> tuple[dict[str, Any], dict[str, list[float | None]]]:
        """The latency snapshot and chart points (run in a worker thread)."""
        return self.tracker.snapshot(fleet=fleet, since_start=False), self.charts.points()

    async def _health(self) -> dict[str, Any]:
        readiness = self.readiness
        verdict, age = readiness.last()
        if verdict is None and readiness.names:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(readiness.check()), HEALTH_WAIT_S)
            verdict, age = readiness.last()
        elif verdict is not None and age > HEALTH_STALE_S:
            running = self._health_task
            if running is None or running.done():  # refreshed for the next view
                self._health_task = asyncio.ensure_future(readiness.check())
        return health_entries(verdict, age)

    def _errors(self, fleet: list[dict[str, Any]] | None) -> list[dict[str, Any]]:
        records = fleet if fleet is not None else self.errors.records()
        out = []
        for record in records:
            out.append(
                {
                    "fingerprint": str(record.get("fingerprint")),
                    "type": str(record.get("type")),
                    "message": str(record.get("message")),
                    "count": int(record.get("count") or 0),
                    "first_seen": iso(record.get("first_seen")),
                    "last_seen": iso(record.get("last_seen")),
                    "route": record.get("route"),
                    "method": record.get("method"),
                    "request_id": record.get("request_id"),
                    "traceback": str(record.get("traceback") or ""),
                }
            )
        return out

    def _slow(self, parts: list[dict[str, Any]]) -> list[dict[str, Any]]:
        entries = [slow_record(e) for p in parts for e in (p.get("slow") or ())]
        entries.sort(key=lambda e: e["at"], reverse=True)
        for entry in entries:
            entry["at"] = iso(entry["at"])
        return entries[:SLOW_SHOWN]
