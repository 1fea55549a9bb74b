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

Under WSGI (`gunicorn mysite.wsgi`, sync or gthread workers), in `wsgi.py`:

    from launchready_sdk.django import launchready_django_wsgi
    application = launchready_django_wsgi()

(`launchready_django(get_wsgi_application())` is the same.) The same settings give the same
features; how the ASGI layers run under WSGI is in `launchready_sdk.wsgi`.

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

from launchready_sdk.django._bridge import DjangoBridge
from launchready_sdk.django._database import DatabaseCheck, DatabaseCheckBusy
from launchready_sdk.django._instance import (
    DjangoLaunchReady,
    get_launchready,
    instrument_django,
    launchready_django,
    launchready_django_wsgi,
)
from launchready_sdk.django._middleware import (
    MIDDLEWARE_PATH,
    LaunchReadyDjangoMiddleware,
    ensure_middleware,
    problem_response,
)
from launchready_sdk.django._routes import django_route_template
from launchready_sdk.django._settings import SETTING_NAME, settings_from_django
from launchready_sdk.django._sync import cached_sync

__all__ = [
    "MIDDLEWARE_PATH",
    "SETTING_NAME",
    "DatabaseCheck",
    "DatabaseCheckBusy",
    "DjangoBridge",
    "DjangoLaunchReady",
    "LaunchReadyDjangoMiddleware",
    "cached_sync",
    "django_route_template",
    "ensure_middleware",
    "get_launchready",
    "instrument_django",
    "launchready_django",
    "launchready_django_wsgi",
    "problem_response",
    "settings_from_django",
]
