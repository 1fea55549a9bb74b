"""`LaunchReady`: builds the ASGI stack from `Settings` and owns its stores and lifespan.

`LaunchReady(settings).wrap(app)` composes the enabled middlewares in one fixed order,
outermost first:

1. request context     X-Request-ID, client address, access log, last-resort 500 problem+json;
                       its lifespan hooks re-adopt server loggers at start-up and close Redis
                       at shutdown
2. health              /healthz and /readyz, answered before anything below can refuse them;
                       readiness turns 503 when shutdown begins
3. rate limits         429 before the app runs or the body is read (only on ruled routes)
4. cache               GET/HEAD of cache routes answered from the store; misses fill it
5. the app

Because the request-context layer is outside the framework's own error handling, 404s, 405s,
the SDK's own 4xx/503s and unhandled 500s all carry the request ID.
"""

from __future__ import annotations

from typing import Any, TextIO

from launchready_sdk.cache import Cache, CacheMiddleware, set_default_cache
from launchready_sdk.context import RequestContextMiddleware
from launchready_sdk.health import HealthMiddleware, Readiness
from launchready_sdk.logs import (
    AccessLogger,
    JsonLineWriter,
    adopt_foreign_loggers,
    build_redactor,
    configure_logging,
)
from launchready_sdk.proxy import ProxyResolver
from launchready_sdk.ratelimit import (
    DEFAULT_RATE_LIMITS,
    RateLimiter,
    RateLimitMiddleware,
    log_rule_coverage,
)
from launchready_sdk.settings import Settings
from launchready_sdk.stores import RedisStore
from launchready_sdk.types import ASGIApp, HealthCheck, Receive, Scope, Send


class LaunchReady:
    """The SDK for one app: settings, stores, readiness checks and the middleware stack.

    Args:
        settings: what to do; `None` reads `Settings.from_env()`.
        log_stream: where log lines go (stdout by default).
    """

    def __init__(self, settings: Settings | None = None, *, log_stream: TextIO | None = None):
        self.settings = settings if settings is not None else Settings.from_env()
        self.redactor = build_redactor(self.settings)
        self._line_writer: JsonLineWriter | None = None
        if self.settings.configure_logging:
            self._line_writer = configure_logging(
                self.settings, stream=log_stream, redactor=self.redactor
            )
        self.proxy = ProxyResolver(self.settings.trusted_proxies)
        self.readiness = Readiness(timeout_s=self.settings.readiness_timeout_s)
        self.redis: RedisStore | None = None
        if self.settings.redis_url:
            self.redis = RedisStore(
                self.settings.redis_url,
                timeout_s=self.settings.redis_timeout_s,
                cooldown_s=self.settings.redis_cooldown_s,
                prefix=f"{self.settings.redis_prefix}:{self.settings.service_name}",
            )
            self.readiness.add("redis", self.redis.ping)
        rules = (
            DEFAULT_RATE_LIMITS if self.settings.rate_limits is None else self.settings.rate_limits
        )
        self.limiter = RateLimiter(
            rules,
            account_rules=self.settings.rate_limit_accounts,
            store=self.redis,
            fail=self.settings.rate_limit_fail,
            ipv6_prefix=self.settings.rate_limit_ipv6_prefix,
        )
        self.cache = Cache(
            self.settings.cache_routes,
            store=self.redis,
            host=self.proxy.host,
            scheme=self.proxy.scheme,
            version=self.settings.cache_version,
            max_body_bytes=self.settings.cache_max_body_bytes,
            memory_max_bytes=self.settings.cache_memory_max_bytes,
            credential_headers=self.settings.cache_credential_headers,
            stale_while_revalidate_s=self.settings.cache_stale_while_revalidate_s,
            stale_if_error_s=self.settings.cache_stale_if_error_s,
        )
        set_default_cache(self.cache)
        self.app: ASGIApp | None = None

    def add_health_check(self, name: str, check: HealthCheck) -> None:
        """Make `/readyz` depend on `check`, an async callable that raises when unhealthy."""
        self.readiness.add(name, check)

    def wrap(self, app: ASGIApp) -> ASGIApp:
        """Return `app` inside the SDK's middleware stack (the order is in this module's doc)."""
        s = self.settings
        self.app = app
        stack: ASGIApp = app
        if self.cache.routes:
            stack = CacheMiddleware(stack, cache=self.cache)
        if self.limiter.table or self.limiter.accounts:
            stack = RateLimitMiddleware(
                stack,
                limiter=self.limiter,
                client_ip=self.proxy.client_ip,
                header_style=s.rate_limit_headers,
            )
        stack = HealthMiddleware(
            stack, readiness=self.readiness, health_path=s.health_path, ready_path=s.ready_path
        )
        access = AccessLogger(
            quiet_paths=_with_slash(s.health_path, s.ready_path, s.metrics_path),
            enabled=s.access_log,
            writer=self._line_writer,
            redactor=self.redactor,
        )
        stack = RequestContextMiddleware(
            stack,
            client_ip=self.proxy.client_ip,
            is_trusted_peer=self.proxy.is_trusted_peer,
            trust_request_id=s.trust_request_id,
            access_log=access if s.access_log else None,
            error_log=access.error,
            on_startup=self.startup,
            on_shutdown=self.shutdown,
        )
        return stack

    async def startup(self) -> None:
        """Run at ASGI lifespan start-up (called by the wrapped app)."""
        if self.settings.configure_logging:
            adopt_foreign_loggers(access_log=self.settings.access_log)
        if self.app is not None and self.limiter.table:
            rules = self.settings.rate_limits
            log_rule_coverage(rules or DEFAULT_RATE_LIMITS, self.app, defaults=rules is None)

    async def shutdown(self) -> None:
        """Run at ASGI lifespan shutdown (readiness already answers 503): close Redis."""
        await self.cache.aclose()
        if self.redis is not None:
            await self.redis.aclose()


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
