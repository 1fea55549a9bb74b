"""Django integration: settings from `settings.LAUNCHREADY`, route templates from the resolver,
query timing through `connection.execute_wrapper`, a database readiness check, and error pages
that never carry a debug page.

The one-line way, in your project's `asgi.py`:

    import os
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "mysite.settings")
    from launchready_sdk.django import launchready_django
    application = launchready_django()

and, in `settings.py`, any `Settings` field as a key (the environment's `LAUNCHREADY_*`
variables fill in the fields the dict leaves out, exactly as for `Settings.from_env(**dict)`):

    LAUNCHREADY = {"service_name": "shop", "cache_routes": {"/products/{id}": 60}}

`launchready_django(application=None)` sets Django up, builds a `DjangoLaunchReady` from that
dict, makes sure `LaunchReadyDjangoMiddleware` runs first in `MIDDLEWARE` (it is inserted when
missing), and returns the SDK's ASGI stack around Django's handler. In a view, the instance is
`get_launchready()`: `get_launchready().http_client_sync()` in a sync view,
`get_launchready().http_client()` in an async one, `await get_launchready().cache.invalidate(...)`.

`LaunchReady(settings).wrap(get_asgi_application())` keeps working as for any ASGI app (request
IDs, logs, limits, cache, health); `instrument_django(lr)` adds the Django parts to such an
instance, and the middleware entry adds route templates and safe error pages. What differs
from `DjangoLaunchReady.wrap`: the `DjangoBridge` layer it adds. Django refuses the ASGI
lifespan protocol, so without it the SDK's start-up and shutdown hooks (fleet latency flushes,
closing Redis) do not run; and Django finishes a request (closing the response and its
database connections) after sending the last body chunk, so without it a client's immediate
retry of an idempotent POST can find the first attempt still in progress (409).

What each part does:

- **Settings.** `settings_from_django()` reads the `LAUNCHREADY` dict; a bad value raises
  `SettingsError` naming `LAUNCHREADY["field"]` (or the `LAUNCHREADY_FIELD` variable it came
  from), an unknown key too, with the closest known field.
- **Route templates.** The middleware turns `request.resolver_match.route`, which spans included
  URLconfs, into the SDK's `{name}` style (`api/products/<int:pk>/` → `/api/products/{pk}/`;
  regex routes' named groups likewise) and leaves it in the ASGI scope under
  `launchready.route`, where the latency layer and the access log read it. Requests no route
  matched share the `<unmatched>` bucket. Labels come from the URLconf, never from the path.
- **Queries.** Every connection Django opens gets an execute wrapper (on the
  `connection_created` signal) that times each statement with `time.perf_counter` into the
  SDK's `QueryStats`: per-fingerprint p95 against `db_query_budget_ms`, the slow-query log, the
  per-request N+1 warning and `db_queries`/`db_ms` on the access line, as for SQLAlchemy.
  Parameters are never read. `django.db.backends` is held at INFO, because its DEBUG lines
  carry the parameter values.
- **Readiness.** `/readyz` gets a `db` check: a fresh connection to the default database runs
  `SELECT 1` in a worker thread (never on the event loop) and is closed; a check still stuck
  from an earlier probe fails the next one at once instead of piling up threads.
- **Error pages.** A Django HTML error page becomes an `application/problem+json` body with
  the request id: always for a 5xx (as the SDK's own last-resort 500), and for a 4xx when
  `DEBUG` is on (the debug pages show settings, SQL and the URLconf) or the client did not ask
  for HTML, so a browser on a site with `DEBUG = False` still gets the site's own 404 and 403
  templates. Responses a view built with another content type (JSON bodies) are left alone.
- **Logs.** The SDK routes `django`, `django.request`, `django.server`, `django.security.*` and
  `django.db.backends` through its redacting processors (with `request_id`, also in sync views:
  asgiref copies the request's context into the worker thread). That removes Django's
  `mail_admins` handler: tracebacks are not emailed, they are logged, redacted.
- **Sync views.** `lr.http_client_sync()` serves them. `@cached` takes async functions (use it
  in async views); `cached_sync` gives sync functions called from sync views the same cache,
  running the cache's I/O on the server's event loop through asgiref. Called anywhere else
  (a management command, a test without a server) it calls the function uncached.

Limits, candidly: the route template is what the URLconf declares, so `re_path` patterns with
unnamed groups or character classes keep those parts as written; `LaunchReadyDjangoMiddleware`
must sit before any middleware that answers on its own for those answers to be converted;
queries on connections opened before `instrument_django` ran (in other threads) are not timed
until those connections reconnect.
"""

from __future__ import annotations

import asyncio
import dataclasses
import difflib
import functools
import logging
import os
import re
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any, ParamSpec, TextIO, TypeVar

from launchready_sdk.app import LaunchReady
from launchready_sdk.cache import Cache, cached
from launchready_sdk.context import current
from launchready_sdk.dbtiming import QueryStats, export_query_stats
from launchready_sdk.errors import LaunchReadyError, SettingsError
from launchready_sdk.responses import problem_body
from launchready_sdk.routing import SCOPE_ROUTE
from launchready_sdk.settings import Settings
from launchready_sdk.types import ASGIApp, Message, Receive, Scope, Send

P = ParamSpec("P")
R = TypeVar("R")

SETTING_NAME = "LAUNCHREADY"
MIDDLEWARE_PATH = "launchready_sdk.django.LaunchReadyDjangoMiddleware"
_PROBLEM_TYPE = "application/problem+json"
_SERVER_ERROR = "The server failed to handle this request."

__all__ = [
    "DjangoBridge",
    "DjangoLaunchReady",
    "LaunchReadyDjangoMiddleware",
    "cached_sync",
    "django_route_template",
    "get_launchready",
    "instrument_django",
    "launchready_django",
    "problem_response",
    "settings_from_django",
]


# --- settings ---------------------------------------------------------------------------------


def settings_from_django(environ: Mapping[str, str] | None = None) -> Settings:
    """`Settings` from the `LAUNCHREADY` dict of Django's settings, the environment filling in.

    A dict key wins over its `LAUNCHREADY_*` variable. Errors name `LAUNCHREADY["field"]` when
    the dict holds the bad value, the variable when the environment does.
    """
    from django.conf import settings as django_settings

    raw = getattr(django_settings, SETTING_NAME, None)
    if raw is None:
        raw = {}
    if not isinstance(raw, Mapping):
        raise SettingsError(
            SETTING_NAME,
            f"expected a dict of launchready Settings fields, got {type(raw).__name__}",
            '{"service_name": "shop"}',
        )
    known = [field.name for field in dataclasses.fields(Settings)]
    for key in raw:
        if key not in known:
            close = difflib.get_close_matches(str(key), known, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise SettingsError(_dict_key(key), f"not a launchready setting{hint}")
    try:
        return Settings.from_env(environ, **raw)
    except SettingsError as exc:
        if exc.name in raw:
            raise SettingsError(_dict_key(exc.name), exc.problem, exc.example) from None
        raise


def _dict_key(key: object) -> str:
    return f"{SETTING_NAME}[{key!r}]".replace("'", '"')


# --- the instance -----------------------------------------------------------------------------

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
            _quiet_query_log()
        inner = app if isinstance(app, DjangoBridge) else DjangoBridge(app)
        return super().wrap(inner)


def launchready_django(
    application: ASGIApp | None = None,
    *,
    settings: Settings | None = None,
    log_stream: TextIO | None = None,
) -> ASGIApp:
    """Django's ASGI application inside the SDK, configured from `settings.LAUNCHREADY`.

    Args:
        application: Django's ASGI handler; by default `get_asgi_application()`.
        settings: use these instead of the `LAUNCHREADY` dict.
        log_stream: where log lines go (stdout by default).
    """
    lr = DjangoLaunchReady(settings, log_stream=log_stream)
    if application is None:
        ensure_middleware()
        from django.core.asgi import get_asgi_application

        application = get_asgi_application()
    return lr.wrap(application)


def _setup_django() -> None:
    from django.apps import apps

    if not apps.ready:
        import django

        django.setup(set_prefix=False)


def ensure_middleware(handler: object = None) -> None:
    """Put `LaunchReadyDjangoMiddleware` first in `MIDDLEWARE` unless it is listed already.

    When `handler` is a Django handler that loaded its middleware already, it reloads them.
    """
    from django.conf import settings as django_settings

    current_list = list(getattr(django_settings, "MIDDLEWARE", None) or [])
    if MIDDLEWARE_PATH in current_list:
        return
    django_settings.MIDDLEWARE = [MIDDLEWARE_PATH, *current_list]
    load = getattr(handler, "load_middleware", None)
    if callable(load):
        load(is_async=True)


def instrument_django(lr: LaunchReady, *, database: str = "default") -> QueryStats:
    """Give `lr` Django's parts: query timing, a `db` readiness check, quiet query debug logs.

    Also makes `lr` the instance `get_launchready()` returns. Calling it again with another
    instance moves the timing to that instance's figures.
    """
    global _active
    from django.conf import settings as django_settings
    from django.db import connections
    from django.db.backends.signals import connection_created

    _active = lr
    _TIMER.stats = lr.db_stats
    connection_created.connect(_TIMER.attach, dispatch_uid="launchready.query_timer", weak=False)
    for connection in connections.all(initialized_only=True):
        _TIMER.attach(None, connection)
    export_query_stats(lr.db_stats, lr.latency)
    if database in getattr(django_settings, "DATABASES", {}):
        lr.add_health_check("db", DatabaseCheck(database))
    if lr.settings.configure_logging:
        _quiet_query_log()
    return lr.db_stats


def _quiet_query_log() -> None:
    # Django's query debug lines interpolate the parameter values into the SQL.
    logger = logging.getLogger("django.db.backends")
    if logger.level < logging.INFO:
        logger.setLevel(logging.INFO)


# --- the bridge to Django's handler ---------------------------------------------------------


class DjangoBridge:
    """The layer between the SDK's stack and Django's ASGI handler.

    - It answers the ASGI lifespan protocol, which Django refuses; the SDK's request-context
      layer runs its start-up and shutdown hooks when the app reports them complete.
    - It ends each response when Django is done with the request: Django sends the last body
      chunk, then closes the response and runs `request_finished` (closing database
      connections) in a worker thread. The last chunk is held until then, so the layers above
      (idempotency records, latency, the access log) see the request end when it really ends,
      and a client's immediate retry cannot find its first attempt still running.

    `routes` lists the URLconf's templates for the SDK's start-up reports.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
            return
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        last: Message | None = None

        async def send_holding_last(message: Message) -> None:
            nonlocal last
            if message["type"] == "http.response.body" and not message.get("more_body", False):
                last = message
                return
            await send(message)

        try:
            await self.app(scope, receive, send_holding_last)
        finally:
            if last is not None:
                await send(last)

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return

    @property
    def routes(self) -> list[_Route]:
        try:
            from django.urls import get_resolver

            return [_Route(path) for path in _walk_urlconf(get_resolver().url_patterns, "")]
        except Exception:  # a broken URLconf must not break a start-up report
            return []


@dataclasses.dataclass(frozen=True)
class _Route:
    path: str
    endpoint: object = None


def _walk_urlconf(patterns: Iterable[Any], prefix: str, depth: int = 0) -> Iterator[str]:
    if depth > 16:
        return
    for entry in patterns:
        route = prefix + _strip_start(str(entry.pattern), bool(prefix))
        children = getattr(entry, "url_patterns", None)
        if children is not None:
            yield from _walk_urlconf(children, route, depth + 1)
        else:
            yield django_route_template(route)


def _strip_start(route: str, inner: bool) -> str:
    return route[1:] if inner and route.startswith("^") else route


# --- route templates --------------------------------------------------------------------------

_PATH_PARAM = re.compile(r"<(?:[^<>:]+:)?(\w+)>")
_REGEX_UNESCAPE = re.compile(r"\\([./\-_~])")


@functools.lru_cache(maxsize=2048)
def django_route_template(route: str) -> str:
    """A Django route (`products/<int:pk>/`, `^a/(?P<slug>[-\\w]+)/$`) in `{name}` style."""
    text = _regex_groups(route) if "(" in route else route
    text = _PATH_PARAM.sub(r"{\1}", text)
    text = text.replace("\\A", "").replace("\\Z", "")
    text = text.replace("^", "").replace("$", "")
    text = _REGEX_UNESCAPE.sub(r"\1", text)
    return "/" + text.lstrip("/")


def _regex_groups(route: str) -> str:
    """Replace each top-level group: `(?P<name>...)` by `{name}`, unnamed ones by `{argN}`."""
    out: list[str] = []
    depth = 0
    start_name: str | None = None
    unnamed = 0
    i = 0
    while i < len(route):
        ch = route[i]
        if ch == "\\" and i + 1 < len(route):
            if depth == 0:
                out.append(route[i : i + 2])
            i += 2
            continue
        if ch == "(":
            if depth == 0:
                named = re.match(r"\(\?P<(\w+)>", route[i:])
                if named:
                    start_name = named.group(1)
                elif route.startswith("(?:", i) or not route.startswith("(?", i):
                    unnamed += 1
                    start_name = f"arg{unnamed}"
                else:
                    start_name = None  # a look-around or flag group: dropped
            depth += 1
        elif ch == ")" and depth:
            depth -= 1
            if depth == 0 and start_name is not None:
                out.append("{" + start_name + "}")
        elif depth == 0:
            out.append(ch)
        i += 1
    return "".join(out)


# --- the middleware ---------------------------------------------------------------------------


class LaunchReadyDjangoMiddleware:
    """Names the route for the SDK's figures and turns Django's HTML error pages into problems.

    Put it first in `MIDDLEWARE` (`launchready_django()` does). It works in sync and async
    stacks and costs a dictionary write per request.
    """

    sync_capable = True
    async_capable = True

    def __init__(self, get_response: Callable[[Any], Any]) -> None:
        from asgiref.sync import iscoroutinefunction, markcoroutinefunction

        self.get_response = get_response
        self.is_async = iscoroutinefunction(get_response)
        if self.is_async:
            markcoroutinefunction(self)

    def __call__(self, request: Any) -> Any:
        if self.is_async:
            return self._acall(request)
        return _finish(request, self.get_response(request))

    async def _acall(self, request: Any) -> Any:
        return _finish(request, await self.get_response(request))


def _finish(request: Any, response: Any) -> Any:
    scope = getattr(request, "scope", None)
    match = getattr(request, "resolver_match", None)
    if scope is not None and match is not None:
        route = getattr(match, "route", None)
        if isinstance(route, str):
            scope[SCOPE_ROUTE] = django_route_template(route)
    if response.status_code >= 400 and _is_error_page(request, response):
        return _problem_for(response)
    return response


def _is_error_page(request: Any, response: Any) -> bool:
    if getattr(response, "streaming", False):
        return False
    content_type = str(response.get("Content-Type", "")).lower()
    if content_type and not content_type.startswith("text/html"):
        return False
    from django.conf import settings as django_settings

    if response.status_code >= 500 or getattr(django_settings, "DEBUG", False):
        return True
    accept = str(request.META.get("HTTP_ACCEPT", "")).lower()
    return "text/html" not in accept and "application/xhtml" not in accept


def _problem_for(response: Any) -> Any:
    status = response.status_code
    detail = _SERVER_ERROR if status >= 500 else None
    problem = problem_response(status, detail)
    # Django logged the page it made; the replacement must not be logged a second time.
    problem._has_been_logged = getattr(response, "_has_been_logged", False)
    for header in ("Allow", "Retry-After", "WWW-Authenticate"):
        if response.has_header(header):
            problem[header] = response[header]
    return problem


def problem_response(status: int, detail: str | None = None) -> Any:
    """An `application/problem+json` `HttpResponse` with the current request id."""
    from django.http import HttpResponse

    ctx = current()
    body = problem_body(status, detail, ctx.request_id if ctx is not None else None)
    response = HttpResponse(body, status=status, content_type=_PROBLEM_TYPE)
    response["Cache-Control"] = "no-store"
    return response


# --- query timing -----------------------------------------------------------------------------


class _QueryTimer:
    """The execute wrapper put on every Django connection: times each statement."""

    def __init__(self) -> None:
        self.stats: QueryStats | None = None

    def attach(self, sender: object, connection: Any, **_: Any) -> None:
        wrappers = getattr(connection, "execute_wrappers", None)
        if isinstance(wrappers, list) and self not in wrappers:
            wrappers.append(self)

    def __call__(
        self,
        execute: Callable[..., Any],
        sql: str,
        params: Any,
        many: bool,
        context: Mapping[str, Any],
    ) -> Any:
        stats = self.stats
        if stats is None:
            return execute(sql, params, many, context)
        start = time.perf_counter()
        try:
            result = execute(sql, params, many, context)
        except Exception:
            stats.record(sql, time.perf_counter() - start, failed=True)
            raise
        stats.record(sql, time.perf_counter() - start)
        return result


_TIMER = _QueryTimer()


class DatabaseCheck:
    """A readiness check: `SELECT 1` on a fresh connection to `alias`, in a worker thread.

    The connection is closed after each check, and its statement is not timed. A check that
    is still running (a database that accepts and never answers) makes the next one fail at
    once, so stuck threads never pile up.
    """

    def __init__(self, alias: str = "default") -> None:
        self.alias = alias
        self._busy = threading.Lock()

    async def __call__(self) -> None:
        if not self._busy.acquire(blocking=False):
            raise DatabaseCheckBusy(self.alias)
        try:
            future = asyncio.get_running_loop().run_in_executor(None, self._ping)
        except BaseException:
            self._busy.release()
            raise
        await future

    def _ping(self) -> None:
        try:
            from django.db import connections

            connection = connections.create_connection(self.alias)
            try:
                connection.ensure_connection()
                cursor = connection.connection.cursor()
                try:
                    cursor.execute("SELECT 1")
                    cursor.fetchone()
                finally:
                    cursor.close()
            finally:
                connection.close()
        finally:
            self._busy.release()


class DatabaseCheckBusy(LaunchReadyError):
    """The previous readiness check of this database has not finished."""


# --- @cached for sync functions ---------------------------------------------------------------


def cached_sync(
    ttl: int,
    *,
    tags: Iterable[str] = (),
    key: Callable[..., str] | None = None,
    cache: Cache | None = None,
) -> Callable[[Callable[P, R]], Callable[P, R]]:
    """`@cached` for a sync function called from sync Django views served over ASGI.

    The lookup and the store run on the server's event loop (asgiref's `async_to_sync`); the
    function itself runs in the calling thread, so it keeps its database connection. Outside
    a server's worker thread the function is called directly, uncached. Arguments as for
    `@cached`.
    """
    from asgiref.sync import async_to_sync, sync_to_async

    def decorate(fn: Callable[P, R]) -> Callable[P, R]:
        @cached(ttl, tags=tags, key=key, cache=cache)
        @functools.wraps(fn)
        async def run(*args: Any, **kwargs: Any) -> Any:
            return await sync_to_async(fn)(*args, **kwargs)

        @functools.wraps(fn)
        def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
            if not _in_server_thread():
                return fn(*args, **kwargs)
            result: R = async_to_sync(run)(*args, **kwargs)
            return result

        return wrapper

    return decorate


def _in_server_thread() -> bool:
    """True in a thread asgiref's `sync_to_async` started from this process's running loop."""
    from asgiref.sync import SyncToAsync

    try:
        asyncio.get_running_loop()
        return False  # on the loop itself: async_to_sync cannot run here
    except RuntimeError:
        pass
    local = SyncToAsync.threadlocal
    loop = getattr(local, "main_event_loop", None)
    return (
        loop is not None
        and getattr(local, "main_event_loop_pid", None) == os.getpid()
        and not loop.is_closed()
        and loop.is_running()
    )
