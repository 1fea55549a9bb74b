"""`DjangoLaunchReady`, `launchready_django()`, `get_launchready()`: the SDK set up for Django."""

from __future__ import annotations

import sys
from typing import Any, TextIO

from launchready_sdk.app import LaunchReady
from launchready_sdk.context import current
from launchready_sdk.dbtiming import QueryStats, export_query_stats
from launchready_sdk.django._bridge import DjangoBridge
from launchready_sdk.django._database import TIMER, DatabaseCheck, quiet_query_log
from launchready_sdk.django._middleware import ensure_middleware
from launchready_sdk.django._routes import django_route_template
from launchready_sdk.django._settings import settings_from_django
from launchready_sdk.errors import LaunchReadyError
from launchready_sdk.settings import Settings
from launchready_sdk.types import ASGIApp

_active: LaunchReady | None = None


def get_launchready() -> LaunchReady:
    """The `LaunchReady` serving this Django process (set by `launchready_django()`)."""
    if _active is None:
        raise LaunchReadyError(
            "no LaunchReady is serving Django yet: call launchready_django() in asgi.py "
            "(or instrument_django(lr) on your own instance)"
        )
    return _active


class DjangoLaunchReady(LaunchReady):
    """A `LaunchReady` set up for Django: settings from `LAUNCHREADY`, queries timed, `db` ready.

    Args:
        settings: what to do; `None` reads `settings_from_django()`.
        log_stream: where log lines go (stdout by default).
    """

    def __init__(self, settings: Settings | None = None, *, log_stream: TextIO | None = None):
        _setup_django()
        super().__init__(
            settings if settings is not None else settings_from_django(), log_stream=log_stream
        )
        instrument_django(self)

    @classmethod
    def from_django(cls, *, log_stream: TextIO | None = None) -> DjangoLaunchReady:
        """Build it from `settings.LAUNCHREADY` and the environment."""
        _setup_django()
        return cls(settings_from_django(), log_stream=log_stream)

    def wrap(self, app: ASGIApp) -> ASGIApp:
        """The SDK stack around Django's ASGI handler, with lifespan answered for Django."""
        ensure_middleware(app)
        if self.settings.configure_logging:
            quiet_query_log()
        inner = app if isinstance(app, DjangoBridge) else DjangoBridge(app)
        return super().wrap(inner)

    def wrap_wsgi(self, app: Any, *, inner: ASGIApp | None = None) -> Any:
        """The SDK around Django's WSGI handler (gunicorn sync or gthread workers); the
        path-specific layers run around it through `DjangoBridge`, as under ASGI."""
        from launchready_sdk.wsgi import WSGIAsASGI

        ensure_middleware(app)
        if self.settings.configure_logging:
            quiet_query_log()
        return super().wrap_wsgi(app, inner=inner or DjangoBridge(WSGIAsASGI(app)))


def launchready_django(
    application: Any = None,
    *,
    settings: Settings | None = None,
    log_stream: TextIO | None = None,
) -> Any:
    """Django's ASGI application inside the SDK, configured from `settings.LAUNCHREADY`.

    Given Django's WSGI handler (`get_wsgi_application()`), it returns the WSGI application
    instead, as `launchready_django_wsgi()` does.

    Args:
        application: Django's ASGI or WSGI handler; by default `get_asgi_application()`.
        settings: use these instead of the `LAUNCHREADY` dict.
        log_stream: where log lines go (stdout by default).
    """
    lr = DjangoLaunchReady(settings, log_stream=log_stream)
    from django.core.handlers.wsgi import WSGIHandler

    if isinstance(application, WSGIHandler):
        return lr.wrap_wsgi(application)
    if application is None:
        ensure_middleware()
        from django.core.asgi import get_asgi_application

        application = get_asgi_application()
    return lr.wrap(application)


def launchready_django_wsgi(
    application: Any = None,
    *,
    settings: Settings | None = None,
    log_stream: TextIO | None = None,
) -> Any:
    """Django's WSGI application inside the SDK, for `gunicorn project.wsgi` (sync or
    gthread workers): the same features from the same settings as under ASGI.

    Args:
        application: Django's WSGI handler; by default `get_wsgi_application()`.
        settings: use these instead of the `LAUNCHREADY` dict.
        log_stream: where log lines go (stdout by default).
    """
    lr = DjangoLaunchReady(settings, log_stream=log_stream)
    if application is None:
        ensure_middleware()
        from django.core.wsgi import get_wsgi_application

        application = get_wsgi_application()
    return lr.wrap_wsgi(application)


def _setup_django() -> None:
    from django.apps import apps

    if not apps.ready:
        import django

        django.setup(set_prefix=False)


def instrument_django(lr: LaunchReady, *, database: str = "default") -> QueryStats:
    """Give `lr` Django's parts: query timing, a `db` readiness check, quiet query debug logs.

    Also makes `lr` the instance `get_launchready()` returns. Calling it again with another
    instance moves the timing to that instance's figures.
    """
    global _active
    from django.conf import settings as django_settings
    from django.core.signals import got_request_exception
    from django.db import connections
    from django.db.backends.signals import connection_created

    _active = lr
    got_request_exception.connect(
        _capture_view_error, dispatch_uid="launchready.status_errors", weak=False
    )
    TIMER.stats = lr.db_stats
    connection_created.connect(TIMER.attach, dispatch_uid="launchready.query_timer", weak=False)
    for connection in connections.all(initialized_only=True):
        TIMER.attach(None, connection)
    export_query_stats(lr.db_stats, lr.latency)
    if database in getattr(django_settings, "DATABASES", {}):
        lr.add_health_check("db", DatabaseCheck(database))
    if lr.settings.configure_logging:
        quiet_query_log()
    return lr.db_stats


def _capture_view_error(sender: object, request: object = None, **_: object) -> None:
    """`got_request_exception`: a view's exception that Django turns into a 500 is captured
    for the status page (the exception is the one being handled)."""
    status = getattr(_active, "status", None)
    exc = sys.exc_info()[1]
    if status is None or exc is None:
        return
    route = None
    match = getattr(request, "resolver_match", None)
    if isinstance(getattr(match, "route", None), str):
        route = django_route_template(match.route)  # type: ignore[union-attr]
    status.errors.capture(exc, current(), route=route)
