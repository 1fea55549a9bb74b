"""`LaunchReady`: builds the ASGI stack from `Settings` and owns its stores and lifespan.

`LaunchReady(settings).wrap(app)` composes the enabled middlewares in one fixed order,
outermost first:

1. tracing             OpenTelemetry server spans, only when `otel_exporter` asks for them
2. request context     X-Request-ID, client address, access log, last-resort 500 problem+json;
                       its lifespan hooks start the SDK's background work at start-up and stop
                       it (and close Redis) at shutdown
   + security headers  nosniff, X-Frame-Options, Referrer-Policy, COOP, Permissions-Policy,
                       CSP and (over HTTPS) HSTS, added by the request-context layer to every
                       response leaving it that lacks them: its own last-resort 500 and all
                       below (the SDK's 400s, redirects, 404s, 429s, 503s, cache hits)
3. hosts and redirects the dispatch's gate, met by every request first: `allowed_hosts` (400
                       before any URL is built from the Host), then one redirect stage: legacy
                       301 map, HTTP to HTTPS on the same host, the canonical host; exempt
                       routes are never redirected, and the SDK's endpoints pass whatever
                       their Host
   (a request for a path none of 4-8 acts on goes from the gate straight to the app)
4. health              /healthz and /readyz, answered before anything below can refuse them;
                       readiness turns 503 when shutdown begins
5. metrics             serves /metrics (the timing itself is taken by the request-context
                       layer, which already has the duration, status and route template)
   status page         `status_path` and `.json` with `status_token` (see `status`): its own
                       token check and throttle, above the limiter and the cache
6. admin guard         `admin_paths` only from `admin_allow`; others get the app's own 404
7. rate limits         429 before the app runs or the body is read (only on ruled routes)
8. idempotency         POSTs with an Idempotency-Key on `idempotent_routes`: replay, 409, 422
9. cache               GET/HEAD of cache routes answered from the store; misses fill it
10. the app

Under a WSGI server (`wrap_wsgi`, Django's `launchready_django_wsgi`) the same layers run in
the same order: the request context and the gate in the worker thread, the path-specific
layers (4-9) on the thread's event loop for the paths they act on (see `launchready_sdk.wsgi`).

Because the request-context layer is outside the framework's own error handling, 404s, 405s,
the SDK's own 4xx/503s and unhandled 500s all carry the request ID and the security headers.
The headers and the gate ride on layers every request passes anyway (the request context and
the dispatch) rather than adding two layers of their own; `SecurityHeadersMiddleware` and
`RedirectMiddleware` are the same parts as layers, for use without `wrap`. Health, readiness and
metrics are answered above the limiter and the cache and are not timed. Other modules link
here rather than restate this order.

Where each part lives (packages keep their internals in `_name.py` modules):

    settings.py    Settings, one declaration per field     errors.py    the exception tree
    context.py     request context, IDs, access-log hook   proxy.py     trusted-proxy client
    patterns.py    path normalisation, route patterns      routing.py   route templates
    health.py      /healthz, /readyz                       ratelimit/   rules, backends, layer
    idempotency.py Idempotency-Key replay, once()          cache/       read cache, @cached
    latency/       histograms, budgets, fleet, /metrics    outbound/    resilient httpx
    breakdown.py   per-route SQL, outbound, blocked, bytes  loopmonitor.py  event-loop stalls
    redaction/     redact(), Redactor                      logs.py      structlog, access log
    telemetry.py   OpenTelemetry tracing                   dbtiming.py  SQL statement timing
    store/         Redis client, breaker, scripts, LRU     responses.py problem+json bodies
    body.py        capped request bodies                   django/      Django integration
    perimeter/     security headers, CSP, hosts, redirects, admin guard
    testing.py     switches for users' test suites         cli/         `launchready` command
    periodic.py    background steps between start-up and shutdown
    status/        status page, error tracking, slow requests
    wsgi/          the stack under WSGI servers            background.py  lr.background() jobs
    celery.py      request ids into Celery tasks
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterable
from typing import Any, Protocol, TextIO

import httpx

from launchready_sdk.background import BackgroundJobs
from launchready_sdk.breakdown import Breakdown
from launchready_sdk.cache import Cache, CacheMiddleware, set_default_cache
from launchready_sdk.context import (
    AccessLog,
    RequestContext,
    RequestContextMiddleware,
    route_path,
)
from launchready_sdk.dbtiming import QueryStats, instrument_sqlalchemy
from launchready_sdk.health import HealthMiddleware, Readiness
from launchready_sdk.idempotency import Idempotency, IdempotencyMiddleware, default_identity
from launchready_sdk.latency import LatencyTracker, MetricsEndpoint, WorkerShare
from launchready_sdk.logs import (
    AccessLogger,
    JsonLineWriter,
    adopt_foreign_loggers,
    build_redactor,
    configure_logging,
    get_logger,
)
from launchready_sdk.loopmonitor import LoopMonitor
from launchready_sdk.outbound import (
    OutboundPolicy,
    OutboundRecorder,
    http_client,
    http_client_sync,
)
from launchready_sdk.patterns import PatternTable
from launchready_sdk.perimeter import (
    AdminGuardMiddleware,
    RedirectStage,
    SecurityHeaders,
    docs_policies,
)
from launchready_sdk.proxy import ProxyResolver
from launchready_sdk.ratelimit import RateLimiter, RateLimitMiddleware
from launchready_sdk.routing import iter_route_paths
from launchready_sdk.settings import Settings
from launchready_sdk.status import Status, StatusEndpoint
from launchready_sdk.store import RedisStore
from launchready_sdk.telemetry import Telemetry, setup_telemetry
from launchready_sdk.types import ASGIApp, HealthCheck, Receive, Scope, Send

_log = get_logger("launchready.app")


class LaunchReady:
    """The SDK for one app: settings, stores, readiness checks and the middleware stack.

    Building one has two effects on the whole process, each of which a setting turns off:
    with `configure_logging` (the default) the root logger and structlog are configured to
    write the SDK's redacted JSON lines (see `logs.configure_logging`), and with
    `configure_cache` (the default) its cache becomes the one `@cached` functions use when
    given none. Nothing else is global: Redis connections, limits and figures belong to
    the instance.

    Args:
        settings: what to do; `None` reads `Settings.from_env()`.
        log_stream: where log lines go (stdout by default).
    """

    def __init__(self, settings: Settings | None = None, *, log_stream: TextIO | None = None):
        s = self.settings = settings if settings is not None else Settings.from_env()
        self.redactor = build_redactor(s)
        self._line_writer: JsonLineWriter | None = None
        if s.configure_logging:
            self._line_writer = configure_logging(s, stream=log_stream, redactor=self.redactor)
        self.proxy = ProxyResolver(s.trusted_proxies)
        self.readiness = Readiness(timeout_s=s.readiness_timeout_s)
        self.redis = self._redis_store()
        self.limiter = RateLimiter(
            s.rate_limits,
            keys=s.rate_limit_keys,
            account_rules=s.rate_limit_accounts,
            store=self.redis,
            fail=s.rate_limit_fail,
            ipv6_prefix=s.rate_limit_ipv6_prefix,
        )
        self.cache = self._cache()
        self.idempotency = Idempotency(
            store=self.redis, ttl_s=s.idempotency_ttl_s, fail=s.idempotency_fail
        )
        self.latency = self._latency_tracker()
        self.loop_monitor = LoopMonitor(stall_ms=s.loop_stall_ms) if s.loop_stall_ms else None
        self.breakdown = Breakdown(monitor=self.loop_monitor, max_routes=s.latency_max_routes)
        self.breakdown.export(self.latency)
        self.outbound_policy = OutboundPolicy.from_settings(s)
        self.outbound = OutboundRecorder()
        self.db_stats = QueryStats(
            budget_ms=s.db_query_budget_ms,
            slow_ms=s.db_slow_query_ms,
            n_plus_one_threshold=s.db_n_plus_one_threshold,
        )
        self.jobs = BackgroundJobs()
        if "celery" in sys.modules:  # the app sends tasks: carry request ids into them
            from launchready_sdk.celery import propagate_request_ids

            propagate_request_ids(keep_logging=False)
        self.latency.add_collector(
            "launchready_background_dropped",
            lambda: self.jobs.dropped,
            help="Background jobs dropped because the queue was full or shutting down",
        )
        self.telemetry: Telemetry | None = None
        self.app: ASGIApp | None = None
        self._dispatch: PathDispatch | None = None
        self._named_caller: Callable[[Scope], str | None] | None = None
        self._reported = False
        if self.latency.share is not None and self.limiter.redis is None:
            self.latency.on_workers.append(self._warn_split_budgets)
        # The SDK's own endpoints, with and without a trailing slash: never limited, cached,
        # timed nor access-logged at info level.
        self._endpoints = frozenset(_with_slash(s.health_path, s.ready_path, s.metrics_path))
        self.status = self._status()
        if self.status is not None:
            self._endpoints |= frozenset(self.status.paths)

    def _redis_store(self) -> RedisStore | None:
        s = self.settings
        if not s.redis_url:
            return None
        store = RedisStore(
            s.redis_url,
            timeout_s=s.redis_timeout_s,
            cooldown_s=s.redis_cooldown_s,
            connect_timeout_s=s.redis_connect_timeout_s,
            prefix=f"{s.redis_prefix}:{s.service_name}",
        )
        self.readiness.add("redis", store.ping)
        return store

    def _status(self) -> Status | None:
        """The status page and error tracking, only when a token is set (closed by default)."""
        s = self.settings
        if s.status_token is None:
            return None
        from importlib.metadata import PackageNotFoundError, version

        try:
            sdk_version = version("launchready-sdk")
        except PackageNotFoundError:
            sdk_version = "unknown"
        return Status(
            token=s.status_token,
            path=s.status_path,
            tracker=self.latency,
            readiness=self.readiness,
            limiter=self.limiter,
            cache_stats=self.cache.stats,
            outbound_stats=self.outbound.snapshot,
            store=self.redis,
            redact=self.redactor,
            client_ip=self.proxy.client_ip,
            floor_ms=min([s.latency_budget_ms, *s.latency_budgets.values()]),
            sentry=s.status_sentry,
            flush_interval_s=s.latency_flush_interval_s,
            ipv6_prefix=s.rate_limit_ipv6_prefix,
            service=s.service_name,
            version=sdk_version,
        )

    def _cache(self) -> Cache:
        s = self.settings
        cache = Cache(
            s.cache_routes,
            store=self.redis,
            host=self.proxy.host,
            scheme=self.proxy.scheme,
            version=s.cache_version,
            max_body_bytes=s.cache_max_body_bytes,
            memory_max_bytes=s.cache_memory_max_bytes,
            credential_headers=s.cache_credential_headers,
            stale_while_revalidate_s=s.cache_stale_while_revalidate_s,
            stale_if_error_s=s.cache_stale_if_error_s,
        )
        if s.configure_cache:
            set_default_cache(cache)
        return cache

    def _latency_tracker(self) -> LatencyTracker:
        s = self.settings
        tracker = LatencyTracker(
            budget_ms=s.latency_budget_ms,
            budgets=s.latency_budgets,
            window_s=s.latency_window_s,
            max_routes=s.latency_max_routes,
            store=self.redis,
            flush_interval_s=s.latency_flush_interval_s,
        )
        tracker.share = WorkerShare(s.service_name, s.metrics_dir)
        if self.redis is not None:
            breaker = self.redis.breaker
            tracker.add_collector(
                "launchready_redis_breaker_opened",
                lambda: breaker.opened,
                help="Times the Redis breaker opened (an outage, not a late reply)",
            )
        tracker.add_collector(
            "launchready_ratelimit_refused",
            lambda: self.limiter.refused,
            help="Requests refused with 429 by the rate limiter",
        )
        tracker.add_collector(
            "launchready_outbound_calls",
            lambda: self._outbound_samples("calls"),
            help="Outbound calls per host",
        )
        tracker.add_collector(
            "launchready_outbound_errors",
            lambda: self._outbound_samples("errors"),
            help="Outbound calls per host that failed",
        )
        tracker.add_collector(
            "launchready_cache_responses",
            self._cache_samples,
            help="Responses of cache routes by result (HIT, MISS, STALE, BYPASS)",
        )
        return tracker

    def _cache_samples(self) -> list[tuple[dict[str, str], int]]:
        return [
            ({"route": pattern, "result": result}, count)
            for pattern, counts in self.cache.stats().items()
            for result, count in counts.items()
        ]

    def _outbound_samples(self, field: str) -> list[tuple[dict[str, str], int]]:
        return [
            ({"host": host}, int(figures.get(field, 0)))
            for host, figures in self.outbound.snapshot().items()
        ]

    def _caller(self, scope: Scope) -> str:
        """Who sent a request, for idempotency records: the app's answer, else its
        credentials, else its address."""
        named = self._named_caller(scope) if self._named_caller is not None else None
        if named:
            return "app:" + named
        return default_identity(scope, self.proxy.client_ip)

    def rate_limit_key(
        self, pattern: str
    ) -> Callable[[Callable[[Scope], str | None]], Callable[[Scope], str | None]]:
        """Charge the rule of `pattern` to whom `fn(scope)` names (a user id, a tenant) instead
        of the client address; None (or an empty name) falls back to the address.

            @lr.rate_limit_key("/api/*")
            def by_user(scope): return scope.get("state", {}).get("user_id")
        """

        def register(fn: Callable[[Scope], str | None]) -> Callable[[Scope], str | None]:
            self.limiter.key_by(pattern, fn)
            return fn

        return register

    def limit(self, rate: str, *, key: str | Callable[[Scope], str | None] | None = None) -> Any:
        """A FastAPI dependency limiting the endpoint it sits on to `rate` (`limits` notation):
        `@app.post("/x", dependencies=[Depends(lr.limit("5/minute"))])`. See
        `launchready_sdk.ratelimit` for keys and headers."""
        from launchready_sdk.ratelimit._endpoint import EndpointLimit

        return EndpointLimit(
            self.limiter,
            rate,
            key=key,
            client_ip=self.proxy.client_ip,
            header_style=self.settings.rate_limit_headers,
        )

    def idempotency_caller(
        self, fn: Callable[[Scope], str | None]
    ) -> Callable[[Scope], str | None]:
        """Name the caller of a request for idempotency records (usable as a decorator).

        `fn(scope)` returns a stable id of the user (from a session store, a verified JWT's
        `sub`), or None to fall back to the credentials the request carries. A user id
        survives a token refresh; a hash of the token does not.
        """
        self._named_caller = fn
        return fn

    def background(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> bool:
        """Run `fn(*args, **kwargs)` (sync or async) after the current response is sent, with
        the request's id in its logs; False when the bounded queue is full. See
        `launchready_sdk.background`."""
        return self.jobs.submit(fn, *args, **kwargs)

    def add_health_check(self, name: str, check: HealthCheck) -> None:
        """Make `/readyz` depend on `check`, an async callable that raises when unhealthy."""
        self.readiness.add(name, check)

    def http_client(self, **httpx_kwargs: Any) -> httpx.AsyncClient:
        """An `httpx.AsyncClient` with the outbound policy: deadline, retries, breaker, IDs."""
        return http_client(self.outbound_policy, recorder=self.outbound, **httpx_kwargs)

    def http_client_sync(self, **httpx_kwargs: Any) -> httpx.Client:
        """The same policy for sync views: an `httpx.Client`."""
        return http_client_sync(self.outbound_policy, recorder=self.outbound, **httpx_kwargs)

    def instrument_sqlalchemy(self, engine: Any) -> QueryStats:
        """Time every statement of a (sync or async) SQLAlchemy engine; see `dbtiming`."""
        return instrument_sqlalchemy(engine, stats=self.db_stats, tracker=self.latency)

    def wrap(self, app: ASGIApp) -> ASGIApp:
        """Put the SDK's middleware stack around `app` (the order is in this module's doc).

        A Starlette or FastAPI app is returned as the same object, with the stack installed
        outside its own middleware (its error handler included), so `fastapi run`,
        `app.state`, `dependency_overrides` and `url_path_for` keep working and its 500s carry
        the request ID. Any other ASGI callable (Django's handler, a bare function) comes back
        wrapped.
        """
        s = self.settings
        self.app = app
        if s.configure_logging:
            # Building the app may have installed handlers of its own (Django's setup() puts
            # back its console and mail_admins handlers); take their lines back now, since a
            # server that does not speak lifespan never runs the start-up hook.
            adopt_foreign_loggers(access_log=s.access_log)
        if _builds_its_own_stack(app):
            installed: ASGIApp = self._install(app)
            return installed
        return self.stack(app)

    def wrap_wsgi(self, app: Any, *, inner: ASGIApp | None = None) -> Any:
        """Put the SDK around a WSGI app (gunicorn sync or gthread workers); see
        `launchready_sdk.wsgi`. `inner` is the app as the ASGI layers call it (by default
        the WSGI app adapted to ASGI)."""
        from launchready_sdk.wsgi import WSGIAsASGI, WSGIStack

        s = self.settings
        self.app = inner = inner if inner is not None else WSGIAsASGI(app)
        if s.configure_logging:
            adopt_foreign_loggers(access_log=s.access_log)
        self._dispatch = self._path_dispatch(inner)
        return WSGIStack(
            app,
            dispatch=self._dispatch,
            context=self._request_context(self._dispatch),
            startup=self.startup,
            shutdown=self.shutdown,
        )

    def _path_dispatch(self, inner: ASGIApp) -> PathDispatch:
        """The gate, then the path-specific layers around `inner` for the paths they act on."""
        layers, covers = self.path_layers(inner)
        dispatch = PathDispatch(
            layers,
            inner,
            covers,
            on_first=self._first_request,
            gate=self.redirect_stage(),
        )
        self._discover_routes()
        return dispatch

    def _install(self, app: Any) -> Any:
        """Make a Starlette app build its middleware stack inside the SDK's."""
        if getattr(app, "_launchready", None) is not None:
            _log.warning("launchready.already_installed", detail="wrap() was called twice")
            return app
        build = app.build_middleware_stack

        def build_with_launchready() -> ASGIApp:
            return self.stack(build())

        app.build_middleware_stack = build_with_launchready
        app.middleware_stack = None  # rebuilt, with the SDK outside, on the next call
        app._launchready = self
        self._discover_routes()
        return app

    def stack(self, inner: ASGIApp) -> ASGIApp:
        """The SDK's middleware stack around `inner` (what `wrap` returns for a plain ASGI
        app, and what a Starlette app builds around its own stack)."""
        s = self.settings
        stack: ASGIApp
        stack = self._dispatch = self._path_dispatch(inner)
        stack = self._request_context(stack)
        quiet = (s.health_path, s.ready_path, s.metrics_path)
        self.telemetry = setup_telemetry(
            s.otel_exporter, s.service_name, excluded_paths=quiet, redactor=self.redactor
        )
        return self.telemetry.wrap(stack) if self.telemetry is not None else stack

    def path_layers(self, inner: ASGIApp) -> tuple[ASGIApp, Callable[[str], bool]]:
        """The path-specific layers (health, metrics, limits, idempotency, cache) around
        `inner`, and the test of whether any of them acts on a route path."""
        s = self.settings
        stack: ASGIApp = inner
        tables: list[PatternTable[Any]] = []  # the routes the layers below act on
        if self.cache.routes:
            stack = CacheMiddleware(stack, cache=self.cache)
            tables.append(self.cache.table)
        if s.idempotent_routes:
            stack = idempotent = IdempotencyMiddleware(
                stack,
                idempotency=self.idempotency,
                routes=s.idempotent_routes,
                identity=self._caller,
            )
            tables.append(idempotent.table)
        if self.limiter.table or self.limiter.accounts:
            stack = RateLimitMiddleware(
                stack,
                limiter=self.limiter,
                client_ip=self.proxy.client_ip,
                header_style=s.rate_limit_headers,
            )
        if s.admin_paths:
            stack = guard = AdminGuardMiddleware(
                stack, paths=s.admin_paths, allow=s.admin_allow, client_ip=self.proxy.client_ip
            )
            tables.append(guard.table)
        stack = MetricsEndpoint(
            stack,
            tracker=self.latency,
            path=s.metrics_path,
            allow=s.metrics_allow,
            token=s.metrics_token,
            client_ip=self.proxy.client_ip,
            cache_s=s.metrics_cache_s,
            share=self.latency.share,
        )
        if self.status is not None:
            stack = StatusEndpoint(stack, status=self.status)
        stack = HealthMiddleware(
            stack, readiness=self.readiness, health_path=s.health_path, ready_path=s.ready_path
        )
        endpoints = self._endpoints
        limiter = self.limiter

        def covers(path: str) -> bool:
            return (
                path in endpoints
                or _covered(path, tables)
                or _covered(path, (limiter.table, limiter.accounts))
            )

        return stack, covers

    def redirect_stage(self) -> RedirectStage | None:
        """Trusted hosts and the redirect stage, when any of them is set."""
        s = self.settings
        if not (s.allowed_hosts or s.https_redirect or s.canonical_host or s.redirects):
            return None
        if s.https_redirect and not s.trusted_proxies:
            _log.info(
                "perimeter.https_redirect",
                detail="a request counts as HTTPS only when this server speaks TLS itself or a "
                "trusted proxy says so (X-Forwarded-Proto); trusted_proxies is empty",
            )
        if s.https_redirect and not (s.allowed_hosts or s.canonical_host):
            _log.warning(
                "perimeter.hosts_unchecked",
                hint="https_redirect writes the request's own Host into Location; set "
                "allowed_hosts (or canonical_host) so only your hosts are ever written",
            )
        return RedirectStage(
            allowed_hosts=s.allowed_hosts,
            canonical_host=s.canonical_host,
            https_redirect=s.https_redirect,
            redirects=s.redirects,
            exempt=s.redirect_exempt,
            endpoints=self._endpoints,
            proxy=self.proxy,
        )

    def security_headers(self) -> SecurityHeaders | None:
        """The security headers of every response, when any is on."""
        s = self.settings
        if not (s.security_headers or s.csp or s.csp_routes or s.hsts_max_age_s):
            return None
        routes = dict(s.csp_routes)
        if s.csp:
            routes = {**docs_policies(self.app, taken=routes), **routes}
        return SecurityHeaders(
            security_headers=s.security_headers,
            csp=s.csp,
            csp_routes=routes,
            csp_report_only=s.csp_report_only,
            hsts_max_age_s=s.hsts_max_age_s,
            proxy=self.proxy,
        )

    def _request_context(self, app: ASGIApp) -> RequestContextMiddleware:
        s = self.settings
        access = AccessLogger(
            quiet_paths=self._endpoints,
            enabled=s.access_log,
            writer=self._line_writer,
            redactor=self.redactor,
        )
        return RequestContextMiddleware(
            app,
            client_ip=self.proxy.client_ip,
            is_trusted_peer=self.proxy.is_trusted_peer,
            trust_request_id=s.trust_request_id,
            access_log=self._observer(access if s.access_log else None),
            error_log=access.error if self.status is None else self.status.error_hook(access.error),
            on_startup=self.startup,
            on_shutdown=self.shutdown,
            response_headers=self.security_headers(),
            in_flight=self.loop_monitor.in_flight if self.loop_monitor is not None else None,
        )

    def _observer(self, access: AccessLog | None) -> AccessLog:
        """After each response: record its latency, then write its access line.

        The latency figures are taken here, from the timing, status and route template the
        request-context layer already has (`LatencyTracker.observe`), not by a layer of their own.
        """
        exempt = self._endpoints
        record = self.latency.observe
        slow = self.status.slow if self.status is not None else None
        slow_s = slow.floor_s if slow is not None else float("inf")
        jobs = self.jobs
        account = self.breakdown.record

        def observe(ctx: RequestContext, status: int, sent: int, duration_s: float) -> None:
            if ctx.route_path not in exempt:
                record(ctx.method, ctx.route, status, duration_s)
                account(ctx, sent, duration_s)
                if duration_s > slow_s and slow is not None:  # over the smallest budget
                    slow.offer(ctx, status, duration_s)
            if access is not None:
                access(ctx, status, sent, duration_s)
            if ctx.jobs is not None:
                jobs.release(ctx)

        return observe

    async def startup(self) -> None:
        """Run at ASGI lifespan start-up (called by the wrapped app)."""
        if self.settings.configure_logging:
            adopt_foreign_loggers(access_log=self.settings.access_log)
        self._discover_routes(report=True)
        if self.loop_monitor is not None:
            self.loop_monitor.start()
        await self.latency.start()
        if self.status is not None:
            await self.status.start()

    def _first_request(self, scope: Scope) -> None:
        """At the first request (a server without lifespan events never calls `startup`):
        read the route table, start the loop monitor, and learn the address this worker
        serves, which names the directory where the workers behind it exchange figures."""
        self._discover_routes(report=True)
        if self.loop_monitor is not None:
            self.loop_monitor.start()
        if self.latency.share is not None:
            self.latency.share.bind(scope.get("server"))

    def _warn_split_budgets(self, workers: int) -> None:
        """Once, when several workers serve the port and the limits live in each one's memory:
        a client then gets up to that many times each rate. Said once, or never when no rule
        limits anything; then the workers are no longer counted for it."""
        if workers < 2:
            return
        self.latency.on_workers.remove(self._warn_split_budgets)
        if not (self.limiter.table or self.limiter.accounts):
            return
        _log.warning(
            "ratelimit.per_worker_budgets",
            workers=workers,
            detail=f"{workers} workers serve this port and each keeps its own rate-limit "
            f"budgets in memory: a client gets up to {workers} times each rate; set redis_url "
            "to share one budget",
        )

    def _discover_routes(self, *, report: bool = False) -> None:
        """Read the app's route table: the built-in limits reach its auth routes wherever they
        live. At `wrap()`, again at start-up (routes may be added in between), and at the first
        request when the server sends no lifespan events; the report is logged once."""
        if self.app is None:
            return
        try:
            templates = list(iter_route_paths(self.app))
            self.limiter.discover(templates)
        except Exception:  # a route table we cannot read: the rules apply as path patterns
            _log.warning("ratelimit.discovery_failed", exc_info=True)
            templates = []
        if self._dispatch is not None:
            self._dispatch.forget()
        if report and not self._reported:
            self._reported = True
            self.limiter.report(templates)

    async def shutdown(self) -> None:
        """Run at ASGI lifespan shutdown (readiness already answers 503): drain the background
        jobs, flush, close Redis."""
        await self.jobs.drain()
        await self.latency.stop()
        if self.status is not None:
            await self.status.stop()
        if self.loop_monitor is not None:
            self.loop_monitor.stop()
        await self.cache.aclose()
        if self.redis is not None:
            await self.redis.aclose()
        if self.telemetry is not None:
            self.telemetry.shutdown()


class Gate(Protocol):
    """What every request meets first in the dispatch: the perimeter's hosts and redirects."""

    def check(self, scope: Scope) -> str | None:
        """None when the request goes on; else an answer for `respond`."""

    async def respond(self, scope: Scope, send: Send, answer: str) -> None:
        """Send the answer."""


class PathDispatch:
    """Sends a request through the path-specific layers only when one of them acts on its path.

    Health, readiness, metrics, rate limits, idempotency and the cache each act on a few
    routes; a request for any other path goes straight to the app, skipping a layer call
    and a pattern lookup per layer. The decision is remembered per raw path in a bounded
    table (cleared when full; paths over 256 characters are never kept), so distinct paths
    from clients cannot grow memory by more than about a megabyte. Anything
    that is not an HTTP request (lifespan, websockets) goes through the layers.

    First, every request meets the `gate` when there is one (trusted hosts and the redirect
    stage): it may answer there, before any layer or the app.
    """

    def __init__(
        self,
        layers: ASGIApp,
        app: ASGIApp,
        covers: Callable[[str], bool],
        max_paths: int = 4096,
        on_first: Callable[[Scope], None] | None = None,
        gate: Gate | None = None,
    ) -> None:
        self.layers = layers
        self.app = app
        self.gate = gate
        self._covers = covers
        self._known: dict[str, bool] = {}
        self._max_paths = max_paths
        self._on_first = on_first

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self._on_first is not None and scope["type"] == "http":
            first, self._on_first = self._on_first, None
            first(scope)
        gate = self.gate
        if gate is not None:
            answer = gate.check(scope)
            if answer is not None:
                await gate.respond(scope, send, answer)
                return
        if scope["type"] == "http":
            path = route_path(scope)
            covered = self._known.get(path)
            if covered is None:
                covered = self._learn(path)
            if not covered:
                await self.app(scope, receive, send)
                return
        await self.layers(scope, receive, send)

    def covered(self, path: str, scope: Scope) -> bool:
        """Whether a request for the route path `path` (of `scope`) goes through the layers."""
        if self._on_first is not None:
            first, self._on_first = self._on_first, None
            first(scope)
        covered = self._known.get(path)
        return self._learn(path) if covered is None else covered

    @property
    def remembered(self) -> int:
        """How many paths the dispatch table holds now."""
        return len(self._known)

    def forget(self) -> None:
        """Empty the dispatch table."""
        self._known.clear()

    def _learn(self, path: str) -> bool:
        try:
            covered = bool(self._covers(path))
        except Exception:  # undecidable: let every layer look at it
            return True
        if len(path) > _MAX_REMEMBERED_PATH:  # decided again each time, never kept
            return covered
        if len(self._known) >= self._max_paths:
            self._known.clear()
        self._known[path] = covered
        return covered


_MAX_REMEMBERED_PATH = 256


def _builds_its_own_stack(app: object) -> bool:
    """A Starlette (or FastAPI) app: it builds its middleware stack at its first call."""
    return (
        callable(getattr(app, "build_middleware_stack", None))
        and hasattr(app, "middleware_stack")
        and hasattr(app, "router")
    )


def _covered(path: str, tables: Iterable[PatternTable[Any]]) -> bool:
    """Whether any table matches the path, as the layers match it (`PatternTable` normalises
    the path itself: case, trailing and repeated slashes, dot segments)."""
    return any(t and t.match(path) for t in tables)


def _with_slash(*paths: str) -> tuple[str, ...]:
    return tuple(p for path in paths for p in (path, path + "/"))


class LaunchReadyMiddleware:
    """`app.add_middleware(LaunchReadyMiddleware, settings=...)`: the same stack as `wrap`.

    Starlette places added middleware inside its own error handler, so an unhandled
    exception's 500 is written by Starlette without the request ID; `LaunchReady().wrap(app)`
    around the finished app covers those too.

    Args:
        app: the ASGI app to wrap.
        settings: what to do; `None` reads the environment.
        launchready: an existing `LaunchReady` to use instead of building one.
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        settings: Settings | None = None,
        launchready: LaunchReady | None = None,
    ) -> None:
        self.launchready = launchready if launchready is not None else LaunchReady(settings)
        self.app = self.launchready.wrap(app)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> Any:
        await self.app(scope, receive, send)
