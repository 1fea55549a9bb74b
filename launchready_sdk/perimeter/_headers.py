"""`SecurityHeadersMiddleware`: security headers on every response, scheme-aware.

On `http.response.start` it adds, unless the response already carries its own:
`X-Content-Type-Options: nosniff`, `X-Frame-Options: DENY`, `Referrer-Policy:
strict-origin-when-cross-origin`, `Cross-Origin-Opener-Policy: same-origin-allow-popups`,
a `Permissions-Policy` that turns off cameras, microphones, location and other device access,
the route's `Content-Security-Policy` (or `-Report-Only`), and, on requests that arrived over
HTTPS, `Strict-Transport-Security`. Every value is rendered once at start-up; a response costs
a look at its header names and one list extension.

Security stance:

- The app always wins: a header the response set is never replaced or duplicated (Django's
  `setdefault` semantics). An app's own `X-Frame-Options` also sets the SDK policy's
  `frame-ancestors` to match (`SAMEORIGIN` → `'self'`), since browsers obey `frame-ancestors`
  over `X-Frame-Options`; an app's own CSP with `frame-ancestors` drops the SDK's
  `X-Frame-Options`.
- HTTPS is the trusted-proxy scheme (`X-Forwarded-Proto` only from `trusted_proxies`). HSTS is
  sent only over HTTPS and never for `localhost` (Safari remembers it for every port);
  `upgrade-insecure-requests` only over HTTPS and never in report-only mode.
- Popups keep their opener (`same-origin-allow-popups`) because payment and sign-in popups
  (PayPal, Google) need it; `payment` is left to the browser default so a payment provider's
  wallet button in its iframe keeps working.

Limits, candidly: responses the server writes itself (uvicorn's 400 for a malformed request
line) never reach ASGI middleware and carry none of these headers.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any
from urllib.parse import urlsplit

from launchready_sdk.context import route_path
from launchready_sdk.patterns import PatternTable, normalize_path
from launchready_sdk.perimeter._csp import SCOPE_CSP_NONCE, CspNonce, Policy, parse_policy
from launchready_sdk.perimeter._hosts import parse_host
from launchready_sdk.proxy import ProxyResolver
from launchready_sdk.types import ASGIApp, Headers, Message, Receive, Scope, Send

__all__ = ["DEFAULT_HEADERS", "SecurityHeaders", "SecurityHeadersMiddleware", "docs_policies"]

DEFAULT_CSP = (
    "default-src 'self'; base-uri 'self'; form-action 'self'; frame-ancestors 'none'; "
    "object-src 'none'"
)
DEFAULT_HSTS_MAX_AGE_S = 31_536_000  # one year, what the HSTS preload list asks for
PERMISSIONS_POLICY = (
    "accelerometer=(), camera=(), display-capture=(), geolocation=(), "
    "gyroscope=(), hid=(), magnetometer=(), microphone=(), midi=(), serial=(), usb=()"
)
DEFAULT_HEADERS: tuple[tuple[str, str], ...] = (
    ("X-Content-Type-Options", "nosniff"),
    ("X-Frame-Options", "DENY"),
    ("Referrer-Policy", "strict-origin-when-cross-origin"),
    ("Cross-Origin-Opener-Policy", "same-origin-allow-popups"),
    ("Permissions-Policy", PERMISSIONS_POLICY),
)
# FastAPI's /docs (Swagger UI) and /redoc load their scripts and styles from jsDelivr and start
# with an inline script; the SDK's default policy would leave them blank.
DOCS_POLICY = (
    "default-src 'self'; script-src 'self' https://cdn.jsdelivr.net 'unsafe-inline'; "
    "style-src 'self' https://cdn.jsdelivr.net https://fonts.googleapis.com 'unsafe-inline'; "
    "font-src 'self' https://fonts.gstatic.com; "
    "img-src 'self' data: https://fastapi.tiangolo.com https://cdn.redoc.ly; "
    "worker-src 'self' blob:; base-uri 'self'; form-action 'self'; frame-ancestors 'none'; "
    "object-src 'none'"
)
_XFO = b"x-frame-options"
_MEMO_SIZE = 4096
_MAX_MEMO_PATH = 256
Header = tuple[bytes, bytes]
_CSP_NAMES = (b"content-security-policy", b"content-security-policy-report-only")
_LOCAL = frozenset({"localhost"})


class _Plan:
    """What one policy adds: the header block and its names, over HTTP and over HTTPS."""

    __slots__ = ("blocks", "names", "policy", "scheme_matters", "uses_nonce")

    def __init__(
        self, policy: Policy | None, static: Headers, csp_name: bytes, hsts: bytes | None
    ) -> None:
        self.policy = policy
        self.uses_nonce = policy is not None and policy.uses_nonce
        blocks: list[Headers] = []
        for secure in (False, True):
            block = list(static)
            if policy is not None:
                block.append((csp_name, policy.value(secure)))
            if secure and hsts is not None:
                block.append((b"strict-transport-security", hsts))
            blocks.append(block)
        self.blocks = (blocks[0], blocks[1])
        # An app's own X-Frame-Options matters even when the SDK sends none: it decides the
        # policy's frame-ancestors.
        extra = {_XFO} if policy is not None and policy.frames else set()
        self.names = (
            frozenset({n for n, _ in blocks[0]} | extra),
            frozenset({n for n, _ in blocks[1]} | extra),
        )
        self.scheme_matters = blocks[0] != blocks[1]


class SecurityHeaders:
    """The security headers of every response: `begin(scope)` as a request arrives,
    `finish(scope, state, headers)` as its response starts (see the module docstring).

    `LaunchReady` hands this to the request-context layer, which adds the headers to every
    response leaving it; `SecurityHeadersMiddleware` is the same as a layer of its own.

    Args:
        security_headers: nosniff, X-Frame-Options, Referrer-Policy, COOP, Permissions-Policy.
        headers: overrides of those (`{"Referrer-Policy": "no-referrer"}`; None drops one).
        csp: the policy, as a header value or a mapping of directives; "" or None for none.
        csp_routes: `{pattern: policy}` for some routes; "" there means no CSP on the route.
        csp_report_only: send `Content-Security-Policy-Report-Only` instead.
        hsts_max_age_s: HSTS lifetime on HTTPS responses; 0 sends no HSTS.
        hsts_include_subdomains: add `includeSubDomains` (on by default).
        hsts_preload: add `preload` (read hstspreload.org's requirements first).
        proxy: the trusted-proxy resolver for the scheme and host; by default one trusting
            `trusted_proxies`.
        trusted_proxies: used when `proxy` is not given.

    Raises:
        ValueError: a policy or pattern that `parse_policy` or `PatternTable` refuses.
    """

    def __init__(
        self,
        *,
        security_headers: bool = True,
        headers: Mapping[str, str | None] | None = None,
        csp: str | Mapping[str, Any] | None = DEFAULT_CSP,
        csp_routes: Mapping[str, str | Mapping[str, Any] | None] | None = None,
        csp_report_only: bool = False,
        hsts_max_age_s: int = DEFAULT_HSTS_MAX_AGE_S,
        hsts_include_subdomains: bool = True,
        hsts_preload: bool = False,
        proxy: ProxyResolver | None = None,
        trusted_proxies: Iterable[str] = (),
    ) -> None:
        self.csp_name = _CSP_NAMES[1] if csp_report_only else _CSP_NAMES[0]
        self.static = _static(security_headers, headers)
        self.hsts = _hsts(hsts_max_age_s, hsts_include_subdomains, hsts_preload)
        self._report_only = csp_report_only
        self.plan = self._plan(csp)
        self.routes: PatternTable[_Plan] | None = None
        if csp_routes:
            self.routes = PatternTable({p: self._plan(v) for p, v in csp_routes.items()})
        self._memo: dict[str, _Plan] = {}  # route path -> plan, bounded
        # One plan for every request, without a nonce: nothing to work out as it arrives.
        self._fixed = self.routes is None and not self.plan.uses_nonce
        proxy = proxy if proxy is not None else ProxyResolver(trusted_proxies)
        self._scheme: Callable[[Scope], str] = proxy.scheme
        self._host: Callable[[Scope], str | None] = proxy.host
        self._proxied = proxy.trusts_anyone

    def _plan(self, policy: str | Mapping[str, Any] | None) -> _Plan:
        compiled = None
        if policy is not None and (not isinstance(policy, str) or policy.strip()):
            compiled = Policy(parse_policy(policy), report_only=self._report_only)
        return _Plan(compiled, self.static, self.csp_name, self.hsts)

    def begin(self, scope: Scope) -> _Plan | tuple[_Plan, CspNonce]:
        """What this request's response will get: its route's plan, and its nonce when the
        policy uses one (put in the scope for templates, made only when read).

        With `finish`, this is how the request-context layer adds the headers without a
        layer of their own (`RequestContextMiddleware(response_headers=...)`).
        """
        plan = self.plan
        if self.routes is not None:
            path = route_path(scope)
            plan = self._memo.get(path) or self._route_plan(path)
        if plan.uses_nonce:
            nonce = scope[SCOPE_CSP_NONCE] = CspNonce()
            return plan, nonce
        return plan

    def finish(
        self, scope: Scope, state: _Plan | tuple[_Plan, CspNonce], headers: Headers
    ) -> Headers:
        """The response's headers with the plan's block added where the app set none.

        `headers` is a list the caller owns: it is extended in place and returned.
        """
        nonce: CspNonce | None = None
        if type(state) is tuple:
            plan, nonce = state
        else:
            plan = state  # type: ignore[assignment]
        secure = False
        if plan.scheme_matters and (self._proxied or scope.get("scheme") == "https"):
            secure = self._secure(scope)
        if nonce is None or not nonce.used:
            names = plan.names[secure]
            for name, _ in headers:
                if name.lower() in names:
                    break
            else:  # the common case: the app set none of them
                headers.extend(plan.blocks[secure])
                return headers
        present = {name.lower() for name, _ in headers}
        return self._merged(headers, present, plan, secure, nonce)

    def _route_plan(self, path: str) -> _Plan:
        found = self.routes.match(path) if self.routes is not None else None
        plan = self.plan if found is None else found[1]
        if len(path) <= _MAX_MEMO_PATH:
            if len(self._memo) >= _MEMO_SIZE:
                self._memo.clear()
            self._memo[path] = plan
        return plan

    def _secure(self, scope: Scope) -> bool:
        if self._scheme(scope) != "https":
            return False
        host = parse_host(self._host(scope))
        return host is None or not (host[0] in _LOCAL or host[0].endswith(".localhost"))

    def _merged(
        self,
        headers: Headers,
        present: set[bytes],
        plan: _Plan,
        secure: bool,
        nonce: CspNonce | None,
    ) -> Headers:
        out = headers
        frame: str | None = None
        app_frames = False
        for name, value in out:
            lowered = name.lower()
            if lowered == _XFO:
                frame = _frame_source(value)
            elif lowered in _CSP_NAMES and b"frame-ancestors" in value.lower():
                app_frames = True
        for name, value in plan.blocks[secure]:
            if name in present or (name == _XFO and app_frames):
                continue
            if name == self.csp_name and plan.policy is not None:
                value = plan.policy.value(secure, frame, nonce.value if nonce else None)
            out.append((name, value))
        return out


class SecurityHeadersMiddleware(SecurityHeaders):
    """`SecurityHeaders` as a layer: adds the headers to every HTTP response of `app`.

    Args:
        app: the ASGI app to wrap.
        **options: the keyword arguments of `SecurityHeaders`.
    """

    def __init__(self, app: ASGIApp, **options: Any) -> None:
        super().__init__(**options)
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        state = self.plan if self._fixed else self.begin(scope)
        finish = self.finish

        async def send_secured(message: Message) -> None:
            if message["type"] == "http.response.start":
                # A copy: an app may send one list of headers with every response.
                message["headers"] = finish(scope, state, list(message.get("headers") or ()))
            await send(message)

        await self.app(scope, receive, send_secured)


def _static(enabled: bool, overrides: Mapping[str, str | None] | None) -> Headers:
    values: dict[str, str | None] = {n.lower(): v for n, v in DEFAULT_HEADERS} if enabled else {}
    for name, value in (overrides or {}).items():
        if value is not None and not _printable(value):
            raise ValueError(f"header {name!r}: {value!r} holds control or non-ASCII characters")
        values[name.lower()] = value
    return [(n.encode("ascii"), v.encode("ascii")) for n, v in values.items() if v is not None]


def _hsts(max_age_s: int, subdomains: bool, preload: bool) -> bytes | None:
    if isinstance(max_age_s, bool) or not isinstance(max_age_s, int) or max_age_s < 0:
        raise ValueError(f"hsts_max_age_s must be whole seconds >= 0, got {max_age_s!r}")
    if max_age_s == 0:
        return None
    value = f"max-age={max_age_s}"
    if subdomains:
        value += "; includeSubDomains"
    if preload:
        value += "; preload"
    return value.encode("ascii")


def _printable(value: str) -> bool:
    return value.isascii() and all(0x20 <= ord(c) < 0x7F for c in value)


def _frame_source(value: bytes) -> str | None:
    """The `frame-ancestors` source that says what an app's X-Frame-Options says."""
    text = value.decode("latin-1").strip().lower()
    if text == "deny":
        return "'none'"
    if text == "sameorigin":
        return "'self'"
    if text.startswith("allow-from "):
        parts = urlsplit(text[len("allow-from ") :].strip())
        if parts.scheme in ("http", "https") and parse_host(parts.netloc) is not None:
            return f"{parts.scheme}://{parts.netloc}"
    return None


def docs_policies(app: Any, taken: Iterable[str] = ()) -> dict[str, str]:
    """`{path: DOCS_POLICY}` for a FastAPI app's docs pages, except paths already in `taken`.

    Reads `docs_url`, `redoc_url` and `swagger_ui_oauth2_redirect_url` (None when turned off).
    """
    keys = {normalize_path(p).lower() for p in taken}
    found: dict[str, str] = {}
    attributes = ["docs_url", "redoc_url"]
    if getattr(app, "docs_url", None):  # FastAPI serves the OAuth2 page only beside /docs
        attributes.append("swagger_ui_oauth2_redirect_url")
    for attribute in attributes:
        path = getattr(app, attribute, None)
        if not isinstance(path, str) or not path.startswith("/") or "{" in path or "*" in path:
            continue
        key = normalize_path(path).lower()
        if key not in keys:
            keys.add(key)
            found[path] = DOCS_POLICY
    return found
