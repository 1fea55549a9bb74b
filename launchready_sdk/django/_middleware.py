"""`LaunchReadyDjangoMiddleware`: the route template into the scope, problem+json error pages.

An HTML error page becomes a problem+json body; everything else the response carried stays:
its cookies (a session saved by a view that answered 400 is still saved), `Vary`, `Allow`,
`Retry-After`, `WWW-Authenticate`, `Location` and any header of the app's own. Only the headers
that describe the replaced body are dropped (`Content-Type`, `Content-Length`, `ETag`, ...).
The problem is `Cache-Control: no-store` unless the response chose its own caching.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from launchready_sdk.context import current
from launchready_sdk.django._routes import django_route_template
from launchready_sdk.loopmonitor import serving
from launchready_sdk.perimeter import SCOPE_CSP_NONCE
from launchready_sdk.responses import HTML_TYPE, prefers_html, problem_body, problem_page
from launchready_sdk.routing import SCOPE_ROUTE

MIDDLEWARE_PATH = "launchready_sdk.django.LaunchReadyDjangoMiddleware"
_PROBLEM_TYPE = "application/problem+json"
_SERVER_ERROR = "The server failed to handle this request."
# Headers that describe the HTML body being replaced, not the response: never carried over.
_BODY_HEADERS = frozenset(
    {
        "content-type",
        "content-length",
        "content-encoding",
        "content-language",
        "content-location",
        "content-range",
        "content-disposition",
        "content-md5",
        "content-digest",
        "repr-digest",
        "digest",
        "etag",
        "last-modified",
        "transfer-encoding",
    }
)


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
        from django.core.handlers.wsgi import WSGIHandler

        load(is_async=not isinstance(handler, WSGIHandler))


class LaunchReadyDjangoMiddleware:
    """Names the route for the SDK's figures and turns Django's HTML error pages into problems.

    Put it first in `MIDDLEWARE` (`launchready_django()` does). It works in sync and async
    stacks and costs a dictionary write per request. It also gives templates the request's
    CSP nonce as `request.csp_nonce` when the route's policy uses one.
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
        _expose_nonce(request)
        if self.is_async:
            return self._acall(request)
        return _finish(request, self.get_response(request))

    async def _acall(self, request: Any) -> Any:
        # Django runs the view in a task of its own: the loop monitor learns it serves this
        # request, so a stall in the view is charged to the view's route.
        scope = getattr(request, "scope", None)
        done = serving(_RoutedScope(request, scope)) if scope is not None else None
        try:
            return _finish(request, await self.get_response(request))
        finally:
            if done is not None:
                done()


class _RoutedScope(dict[str, Any]):
    """The request's scope as the loop monitor reads it: with the route Django resolved
    before calling the view (the scope gets it only once the view has returned)."""

    def __init__(self, request: Any, scope: Any) -> None:
        super().__init__(scope)
        self._request = request

    def get(self, key: str, default: Any = None) -> Any:
        if key == SCOPE_ROUTE:
            route = getattr(getattr(self._request, "resolver_match", None), "route", None)
            if isinstance(route, str):
                return django_route_template(route)
        return super().get(key, default)


def _expose_nonce(request: Any) -> None:
    """`request.csp_nonce` for templates (`<script nonce="{{ request.csp_nonce }}">`), when
    the route's policy names the request's nonce and nothing else set that attribute."""
    # Under ASGI the nonce is in the scope; under WSGI in the environ (`META`).
    scope = getattr(request, "scope", None)
    if scope is None:
        scope = getattr(request, "META", None)
    nonce = scope.get(SCOPE_CSP_NONCE) if scope is not None else None
    if nonce is not None and not hasattr(request, "csp_nonce"):
        request.csp_nonce = nonce


def _finish(request: Any, response: Any) -> Any:
    # Under ASGI the route goes into the scope; under WSGI into the environ (`META`).
    scope = getattr(request, "scope", None)
    if scope is None:
        scope = getattr(request, "META", None)
    match = getattr(request, "resolver_match", None)
    if scope is not None and match is not None:
        route = getattr(match, "route", None)
        if isinstance(route, str):
            scope[SCOPE_ROUTE] = django_route_template(route)
    if response.status_code >= 400:
        debug = _debug()
        if _is_error_page(response, debug):
            accept = str(request.META.get("HTTP_ACCEPT", "")).encode("latin-1", "replace")
            if debug or (b"json" in accept.lower() and not prefers_html(accept)):
                return _problem_for(response, html=prefers_html(accept))
    return response


def _is_error_page(response: Any, debug: bool) -> bool:
    """A page Django made for an error: HTML, or with DEBUG on the plain-text traceback it
    shows clients that do not accept HTML (a view's JSON error body is left alone)."""
    if getattr(response, "streaming", False):
        return False
    content_type = str(response.get("Content-Type", "")).lower()
    if not content_type or content_type.startswith("text/html"):
        return True
    return debug and content_type.startswith("text/plain")


def _debug() -> bool:
    from django.conf import settings as django_settings

    return bool(getattr(django_settings, "DEBUG", False))


def _problem_for(response: Any, *, html: bool = False) -> Any:
    status = response.status_code
    detail = _SERVER_ERROR if status >= 500 else None
    problem = problem_response(status, detail, html=html)
    # Django logged the page it made; the replacement must not be logged a second time.
    problem._has_been_logged = getattr(response, "_has_been_logged", False)
    for name, value in response.items():
        if name.lower() not in _BODY_HEADERS:
            problem[name] = value
    problem.cookies = response.cookies
    return problem


def problem_response(status: int, detail: str | None = None, *, html: bool = False) -> Any:
    """An `application/problem+json` `HttpResponse` with the current request id (with
    `html=True`, the plain HTML page the SDK shows browsers)."""
    from django.http import HttpResponse

    ctx = current()
    request_id = ctx.request_id if ctx is not None else None
    if html:
        body, content_type = problem_page(status, detail, request_id), HTML_TYPE.decode()
    else:
        body, content_type = problem_body(status, detail, request_id), _PROBLEM_TYPE
    response = HttpResponse(body, status=status, content_type=content_type)
    response["Cache-Control"] = "no-store"
    return response
