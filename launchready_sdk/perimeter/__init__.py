"""The security perimeter: security headers, trusted hosts, redirects, hidden admin paths.

Three parts, each usable alone as a pure ASGI middleware with keyword arguments; where
`LaunchReady.wrap` puts them is written in `launchready_sdk/app.py`'s docstring, and only
there:

- `SecurityHeaders` / `SecurityHeadersMiddleware` (`_headers.py`): nosniff, X-Frame-Options,
  Referrer-Policy, Cross-Origin-Opener-Policy, Permissions-Policy, the
  Content-Security-Policy (per route, in report-only mode, with a per-request nonce that
  `csp_nonce(request)` reads), and HSTS on HTTPS only. The app's own header always wins.
- `RedirectStage` / `RedirectMiddleware` (`_redirects.py`): `allowed_hosts` (400 for any
  other host), then one redirect stage: the legacy 301 map, plain HTTP to HTTPS on the same
  host, then the canonical host. GET/HEAD get 301, other methods 308. Webhooks, auth
  callbacks and the SDK's endpoints are never redirected.
- `AdminGuardMiddleware` (`_admin.py`): admin paths only from allowed networks; everyone else
  gets the app's own 404.

`_csp.py` checks policies (a bad one is a `ValueError` at start-up) and renders them; `_hosts.py`
parses and normalises host names. Each module's docstring states its security stance and
limits.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from launchready_sdk.perimeter._admin import NOT_FOUND_PATH, AdminGuardMiddleware, check_networks
from launchready_sdk.perimeter._csp import (
    SCOPE_CSP_NONCE,
    CspNonce,
    Policy,
    check_policy,
    csp_nonce,
    parse_policy,
)
from launchready_sdk.perimeter._headers import (
    DEFAULT_CSP,
    DEFAULT_HEADERS,
    DEFAULT_HSTS_MAX_AGE_S,
    DOCS_POLICY,
    SecurityHeaders,
    SecurityHeadersMiddleware,
    docs_policies,
)
from launchready_sdk.perimeter._hosts import (
    HostList,
    check_canonical_host,
    check_host_entry,
    parse_host,
)
from launchready_sdk.perimeter._redirects import (
    ALWAYS_EXEMPT,
    DEFAULT_REDIRECT_EXEMPT,
    RedirectMap,
    RedirectMiddleware,
    RedirectStage,
    host_name,
    safe_path,
)

__all__ = [
    "ALWAYS_EXEMPT",
    "DEFAULT_CSP",
    "DEFAULT_HEADERS",
    "DEFAULT_HSTS_MAX_AGE_S",
    "DEFAULT_REDIRECT_EXEMPT",
    "DOCS_POLICY",
    "NOT_FOUND_PATH",
    "SCOPE_CSP_NONCE",
    "AdminGuardMiddleware",
    "CspNonce",
    "HostList",
    "Policy",
    "RedirectMap",
    "RedirectMiddleware",
    "RedirectStage",
    "SecurityHeaders",
    "SecurityHeadersMiddleware",
    "check_canonical_host",
    "check_host_entry",
    "check_networks",
    "check_policy",
    "check_redirects",
    "csp_nonce",
    "docs_policies",
    "host_name",
    "parse_host",
    "parse_policy",
    "safe_path",
]


def check_redirects(
    redirects: Mapping[str, str],
    *,
    allowed_hosts: Iterable[str] = (),
    canonical_host: str | None = None,
    https_redirect: bool = False,
) -> RedirectMap:
    """The legacy map checked against the hosts it may point at; ValueError for a bad entry,
    a target off the allowed hosts, a downgrade to `http://` or a loop."""
    canonical = check_canonical_host(canonical_host)
    name = host_name(canonical) if canonical is not None else None
    entries = list(allowed_hosts)
    if entries and name is not None:
        entries.append(name)
    return RedirectMap(redirects, own_hosts=HostList(entries), canonical=name, https=https_redirect)
