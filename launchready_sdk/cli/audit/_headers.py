"""Security headers and CORS, graded the way Mozilla's HTTP Observatory grades them.

The HTTPS page (the `--url`, or where its `http://` leads) is fetched once plainly and once with
an arbitrary `Origin`, plus a CORS preflight. Scoring follows the Observatory's header tests:
start at 100; CSP missing or report-only -25, `'unsafe-inline'` scripts (no nonce or hash) -20,
`'unsafe-eval'` -10, scripts from `*`, `http:`, `https:` or `data:` -20; a session cookie without
`Secure` -40 or without `HttpOnly` -30, another cookie without `Secure` -20; `X-Content-Type-
Options: nosniff` missing -5; framing unprotected (no `X-Frame-Options` and no CSP
`frame-ancestors`) -20; `Referrer-Policy` unsafe -5; HSTS missing -20 or under six months -10;
a reflected arbitrary origin with credentials -50. Bonuses (a strict CSP, framing protection, a
private referrer policy, all cookies `Secure`+`HttpOnly`+`SameSite`) count only from 90 up.
Grades: A+ from 100, A 90, A- 85, B+ 80, B 70, B- 65, C+ 60, C 50, C- 45, D+ 40, D 30, D- 25.

Findings: `hsts-missing` (missing or invalid: soon; under six months: later), one
`security-headers` row listing what failed with the grade (soon below B, later otherwise), and
`cors-wildcard-credentials` (blocker) when any origin is allowed with credentials.

Limits, candidly: one page is graded, not the site; the redirect and SRI tests of the
Observatory live elsewhere or not at all, so this grade can differ from the Observatory's by
those; CSP parsing is the directive-level reading, not a full CSP3 evaluator.
"""

from __future__ import annotations

import urllib.parse
from dataclasses import dataclass, field
from typing import Final

import httpx

from launchready_sdk.cli.audit._http import Fetcher, FetchError, Reply, with_scheme
from launchready_sdk.cli.audit._model import Options, PartResult

SIX_MONTHS_S: Final = 15_552_000
PROBE_ORIGIN: Final = "https://launchready-audit.invalid"
_GRADES: Final = (
    (100, "A+"),
    (90, "A"),
    (85, "A-"),
    (80, "B+"),
    (70, "B"),
    (65, "B-"),
    (60, "C+"),
    (50, "C"),
    (45, "C-"),
    (40, "D+"),
    (30, "D"),
    (25, "D-"),
)
_PRIVATE_REFERRERS: Final = frozenset(
    ("no-referrer", "same-origin", "strict-origin", "strict-origin-when-cross-origin")
)
_UNSAFE_REFERRERS: Final = frozenset(("unsafe-url", "no-referrer-when-downgrade"))
_SESSION_WORDS: Final = ("session", "sess", "sid", "auth", "token", "csrf", "xsrf", "login")


def grade(score: int) -> str:
    return next((letter for floor, letter in _GRADES if score >= floor), "F")


@dataclass
class Grading:
    score: int = 100
    bonus: int = 0
    failed: list[str] = field(default_factory=list)

    def fail(self, points: int, what: str) -> None:
        self.score -= points
        self.failed.append(what)

    def final(self) -> int:
        return max(0, self.score + (self.bonus if self.score >= 90 else 0))


def _csp(value: str) -> dict[str, list[str]]:
    directives: dict[str, list[str]] = {}
    for part in value.split(";"):
        words = part.split()
        if words:
            directives.setdefault(words[0].lower(), [w.lower() for w in words[1:]])
    return directives


def _grade_csp(headers: httpx.Headers, g: Grading) -> dict[str, list[str]]:
    value = headers.get("content-security-policy")
    if value is None:
        if headers.get("content-security-policy-report-only"):
            g.fail(25, "Content-Security-Policy only in report-only mode")
        else:
            g.fail(25, "no Content-Security-Policy")
        return {}
    csp = _csp(value)
    scripts = csp.get("script-src", csp.get("default-src"))
    if scripts is None:
        g.fail(20, "CSP sets neither script-src nor default-src")
        return csp
    trusted = any(s.startswith(("'nonce-", "'sha256-", "'sha384-", "'sha512-")) for s in scripts)
    if "'unsafe-inline'" in scripts and not trusted:
        g.fail(20, "CSP allows inline scripts ('unsafe-inline')")
    elif any(s in ("*", "http:", "https:", "data:") for s in scripts):
        g.fail(20, "CSP allows scripts from any host (*, http:, https: or data:)")
    elif "'unsafe-eval'" in scripts:
        g.fail(10, "CSP allows 'unsafe-eval'")
    else:
        g.bonus += 10 if csp.get("default-src") == ["'none'"] else 5
    return csp


def _grade_cookies(headers: httpx.Headers, g: Grading) -> None:
    cookies = headers.get_list("set-cookie")
    if not cookies:
        return
    good = True
    for cookie in cookies:
        name, _, rest = cookie.partition("=")
        attrs = {a.strip().split("=", 1)[0].lower() for a in rest.split(";")[1:]}
        session = any(w in name.lower() for w in _SESSION_WORDS)
        if "secure" not in attrs:
            g.fail(40 if session else 20, f"cookie {name.strip()} without Secure")
        if session and "httponly" not in attrs:
            g.fail(30, f"session cookie {name.strip()} without HttpOnly")
        good = good and {"secure", "httponly", "samesite"} <= attrs
    if good:
        g.bonus += 5


def _grade_rest(headers: httpx.Headers, csp: dict[str, list[str]], g: Grading) -> None:
    if (headers.get("x-content-type-options") or "").strip().lower() != "nosniff":
        g.fail(5, "no X-Content-Type-Options: nosniff")
    xfo = (headers.get("x-frame-options") or "").strip().upper()
    if "frame-ancestors" in csp or xfo in ("DENY", "SAMEORIGIN"):
        g.bonus += 5
    else:
        g.fail(20, "framing not restricted (no X-Frame-Options, no CSP frame-ancestors)")
    referrer = (headers.get("referrer-policy") or "").split(",")[-1].strip().lower()
    if referrer in _PRIVATE_REFERRERS:
        g.bonus += 5
    elif referrer in _UNSAFE_REFERRERS:
        g.fail(5, f"Referrer-Policy {referrer} leaks full URLs")


def _hsts(page: Reply, g: Grading, result: PartResult) -> None:
    value = page.headers.get("strict-transport-security")
    where = f"GET {page.url} -> {page.status}"
    if value is None or "," in value:
        g.fail(20, "no Strict-Transport-Security" if value is None else "HSTS set twice")
        result.add(
            "hsts-missing",
            "soon",
            f"{page.url} sends no valid Strict-Transport-Security header",
            where,
            "Send Strict-Transport-Security: max-age=31536000 on HTTPS responses (launchready "
            "sends it by default): without it, the first http:// visit can be intercepted.",
        )
        return
    max_age = 0
    for part in value.split(";"):
        key, _, raw = part.strip().partition("=")
        if key.lower() == "max-age" and raw.strip().strip('"').isdigit():
            max_age = int(raw.strip().strip('"'))
    if max_age < SIX_MONTHS_S:
        g.fail(10, f"HSTS max-age {max_age} s is under six months")
        result.add(
            "hsts-missing",
            "later",
            f"{page.url} sets HSTS for only {max_age} s",
            where,
            "Raise max-age to at least 15552000 (six months); 31536000 is usual.",
        )


def _cors(fetcher: Fetcher, url: str, g: Grading, result: PartResult) -> None:
    probes = [
        ("GET", {"Origin": PROBE_ORIGIN}),
        ("OPTIONS", {"Origin": PROBE_ORIGIN, "Access-Control-Request-Method": "POST"}),
    ]
    for method, headers in probes:
        try:
            reply = fetcher.fetch(method, url, headers=headers)
        except FetchError:
            continue
        allowed = (reply.headers.get("access-control-allow-origin") or "").strip()
        credentials = (reply.headers.get("access-control-allow-credentials") or "").lower()
        if allowed in (PROBE_ORIGIN, "*") and credentials.strip() == "true":
            g.fail(50, "any origin may make credentialed requests")
            result.add(
                "cors-wildcard-credentials",
                "blocker",
                f"{url} lets any origin make credentialed requests ({method} with Origin "
                f"{PROBE_ORIGIN} got Access-Control-Allow-Origin: {allowed} and "
                "Access-Control-Allow-Credentials: true)",
                f"{method} {url}",
                'List your own front-end origins in allow_origins (never "*" or a catch-all '
                "regex) when allow_credentials=True: otherwise any site a logged-in customer "
                "visits can read their orders and act as them.",
            )
            return
        if allowed == PROBE_ORIGIN:
            result.add(
                "cors-wildcard-credentials",
                "later",
                f"{url} reflects any Origin (without credentials)",
                f"{method} {url}",
                "Allow only your own origins; a reflected origin without credentials exposes "
                "only public data, but it is one flag away from the blocker.",
            )
            return


def _https_page(fetcher: Fetcher, url: str) -> str | None:
    """The HTTPS page to grade: the URL itself, or where its http:// redirect leads."""
    if urllib.parse.urlsplit(url).scheme == "https":
        return url
    first = fetcher.fetch("GET", with_scheme(url, "http"))
    target = first.location or ""
    return target if 300 <= first.status < 400 and target.startswith("https://") else None


def _grade(page: Reply, g: Grading, result: PartResult) -> None:
    _hsts(page, g, result)
    csp = _grade_csp(page.headers, g)
    _grade_cookies(page.headers, g)
    _grade_rest(page.headers, csp, g)
    score = g.final()
    others = [f for f in g.failed if "Strict-Transport" not in f and "HSTS" not in f]
    text = f"grade {grade(score)} ({score}/100, the HTTP Observatory's header tests)"
    if others:
        result.add(
            "security-headers",
            "soon" if score < 70 else "later",
            f"{page.url}: {text}; " + "; ".join(others),
            f"GET {page.url} -> {page.status}",
            "Send the missing headers on every response (launchready's security_headers=True "
            "and csp do); keep inline scripts out of the CSP, or use nonces.",
        )
    else:
        result.notes.append(f"{page.url}: {text}")


def run(options: Options, deadline: float) -> PartResult:
    """The header and CORS checks of `--url`."""
    result = PartResult()
    opened = Fetcher.for_part(options, result)
    if opened is None:
        return result
    url, fetcher = opened
    try:
        https = _https_page(fetcher, url)
        g = Grading()
        if https is None:
            result.skipped.append(
                f"{url} does not lead to https://: headers are not graded on plain "
                "HTTP (HSTS is ignored there); CORS is checked on it"
            )
        _cors(fetcher, https or url, g, result)
        if https is not None:
            _grade(fetcher.fetch("GET", https), g, result)
    except FetchError as exc:
        result.skipped.append(f"headers: {exc}")
    finally:
        fetcher.close()
    return result
