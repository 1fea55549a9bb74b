"""Auth routes found in the app's own route table, wherever they live.

With the built-in limits (`rate_limits=None`), every route whose template looks like login,
sign-in, token, sign-up, password reset, magic link, one-time code or webhook gets the
built-in rate of its kind, at any depth and under any prefix: `/api/v1/login/access-token`,
`/accounts/password_reset/`, `/admin/login/`. A route looks like one when one of its path
segments, split into words at `-`, `_` and `.`, is exactly one of the phrases below, so
`/login-history` and `/tokens/{id}/usage-report` are not taken for a login form or a token
endpoint (a webhook segment only needs the word `webhook`). The start-up report lists what
was matched, so a wrong match is visible and a rule in `rate_limits` corrects it.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import NamedTuple

from launchready_sdk.patterns import validate_pattern

# The built-in rate of each kind of auth route.
KIND_RATES: Mapping[str, str] = {
    "login": "10/minute;100/hour",
    "token": "20/minute;200/hour",
    "signup": "5/minute;50/hour",
    "password": "3/minute;10/hour",
    "magic_link": "3/minute;10/hour",
    "otp": "5/minute;50/hour",
    "webhook": "600/minute",
}

_PHRASES: Mapping[tuple[str, ...], str] = {
    **dict.fromkeys(
        [
            ("login",),
            ("log", "in"),
            ("logon",),
            ("signin",),
            ("sign", "in"),
            ("authenticate",),
        ],
        "login",
    ),
    **dict.fromkeys(
        [
            ("token",),
            ("access", "token"),
            ("refresh",),
            ("refresh", "token"),
            ("jwt",),
            ("api", "token", "auth"),
            ("oauth2",),
            ("authorize",),
        ],
        "token",
    ),
    **dict.fromkeys(
        [("signup",), ("sign", "up"), ("register",), ("registration",), ("create", "account")],
        "signup",
    ),
    **dict.fromkeys(
        [
            ("password",),
            ("passwords",),
            ("password", "reset"),
            ("reset", "password"),
            ("forgot", "password"),
            ("forgot",),
            ("password", "forgot"),
            ("forgotten", "password"),
            ("password", "recovery"),
            ("recover", "password"),
            ("recover",),
            ("recovery",),
            ("lost", "password"),
            ("change", "password"),
            ("password", "change"),
            ("set", "password"),
            ("new", "password"),
        ],
        "password",
    ),
    **dict.fromkeys(
        [
            ("magic", "link"),
            ("magic",),
            ("magic", "login"),
            ("login", "link"),
            ("email", "link"),
            ("passwordless",),
        ],
        "magic_link",
    ),
    **dict.fromkeys(
        [
            ("otp",),
            ("2fa",),
            ("mfa",),
            ("totp",),
            ("two", "factor"),
            ("verify",),
            ("verify", "otp"),
            ("verify", "code"),
            ("verification",),
            ("confirm", "code"),
            ("sms", "code"),
            ("one", "time", "code"),
            ("challenge",),
        ],
        "otp",
    ),
}
_STRICTNESS = {
    kind: i
    for i, kind in enumerate(
        ("password", "magic_link", "signup", "otp", "login", "token", "webhook")
    )
}
_WORDS = re.compile(r"[a-z0-9]+")
_CONVERTOR = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)(?::[^{}]*)?\}")
_PATH_CONVERTOR = re.compile(r"\{[A-Za-z_][A-Za-z0-9_]*:path\}$")


class AuthRoute(NamedTuple):
    """An app route that looks like auth: its template, the pattern that covers it, its kind."""

    template: str
    pattern: str
    kind: str


def route_kind(template: str) -> str | None:
    """The kind of auth route a template looks like (`login`, `password`, ...), or None.

    When several segments match, the strictest kind wins, so `/auth/password/reset` is a
    password route and `/login/access-token` a login one; a webhook segment anywhere makes a
    webhook route, so a provider's callbacks are never throttled like a login form.
    """
    kind: str | None = None
    segments = [s for s in template.lower().split("/") if s]
    for at, segment in enumerate(segments):
        if segment.startswith("{"):
            continue
        words = tuple(_WORDS.findall(segment))
        if words == ("auth",) and at == len(segments) - 1:  # `POST /auth`, `/api/auth`; not
            words = ("login",)  # the admin's pages of Django's auth app (/admin/auth/user/)
        if "webhook" in words or "webhooks" in words:
            return "webhook"
        found = _PHRASES.get(words)
        if words == ("reset",) and "{token}" in template:  # Django's reset/<uidb64>/<token>/
            found = "password"
        if found is not None and (kind is None or _STRICTNESS[found] < _STRICTNESS[kind]):
            kind = found
    return kind


def template_pattern(template: str) -> str | None:
    """A route template as a pattern (`{id:int}` → `{id}`, a last `{p:path}` → `*`), or None."""
    text = _PATH_CONVERTOR.sub("*", template)
    text = _CONVERTOR.sub(r"{\1}", text)
    try:
        validate_pattern(text)
    except ValueError:
        return None
    return text


def auth_routes(templates: Iterable[str]) -> list[AuthRoute]:
    """The app's route templates that look like auth, each once, in route-table order."""
    found: dict[str, AuthRoute] = {}
    for template in templates:
        kind = route_kind(template)
        if kind is None:
            continue
        pattern = template_pattern(template)
        if pattern is not None and pattern not in found:
            found[pattern] = AuthRoute(template, pattern, kind)
    return list(found.values())
