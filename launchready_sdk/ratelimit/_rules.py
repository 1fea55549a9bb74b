"""Rules: rates in `limits` notation, the default rule set, and the table requests meet."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import NamedTuple

from launchready_sdk.patterns import PatternTable, split_methods

# Rules in force with `rate_limits=None`: tight on password reset, generous on webhooks so a
# provider's retry burst is not refused. Keyed per client address.
DEFAULT_RATE_LIMITS: Mapping[str, str] = {
    "/login": "10/minute;100/hour",
    "/signin": "10/minute;100/hour",
    "/sign-in": "10/minute;100/hour",
    "/api/login": "10/minute;100/hour",
    "/auth/*": "20/minute;200/hour",
    "/api/auth/*": "20/minute;200/hour",
    "/token": "20/minute;200/hour",
    "/oauth/token": "20/minute;200/hour",
    "/api/token": "20/minute;200/hour",
    "/signup": "5/minute;50/hour",
    "/sign-up": "5/minute;50/hour",
    "/register": "5/minute;50/hour",
    "/api/signup": "5/minute;50/hour",
    "/api/register": "5/minute;50/hour",
    "/password-reset": "3/minute;10/hour",
    "/password/reset": "3/minute;10/hour",
    "/reset-password": "3/minute;10/hour",
    "/forgot-password": "3/minute;10/hour",
    "/api/password-reset": "3/minute;10/hour",
    "/webhooks/*": "600/minute",
    "/webhook/*": "600/minute",
    "/api/webhooks/*": "600/minute",
}
# The methods the built-in and discovered rules count: the ones that change state. Showing a
# login form (GET) never spends the login budget.
WRITE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})


class Rate(NamedTuple):
    """One rate of a rule: `amount` requests per `period_s`, one every `interval_s`."""

    amount: int
    period_s: float
    interval_s: float


@dataclass(frozen=True, slots=True)
class Rule:
    """A pattern, the rates it enforces (all of them at once) and the text they came from."""

    pattern: str
    rates: tuple[Rate, ...]
    text: str


def parse_rule(pattern: str, text: str) -> Rule:
    """A rule from `limits` notation (`"5/minute;100 per hour"`).

    Raises:
        ValueError: naming the pattern when the rate cannot be read or admits nothing.
    """
    from limits import parse_many

    try:
        items = parse_many(text) if isinstance(text, str) else []
    except ValueError:
        items = []
    rates = tuple(
        Rate(item.amount, float(item.get_expiry()), float(item.get_expiry()) / max(item.amount, 1))
        for item in items
    )
    if not rates or any(rate.amount < 1 for rate in rates):
        raise ValueError(f"{pattern!r} has an unreadable rate {text!r}")
    return Rule(pattern, rates, text)


RuleTable = PatternTable[tuple[frozenset[str] | None, Rule]]


def compile_rules(
    rules: Mapping[str, str], *, default_methods: frozenset[str] | None = None
) -> RuleTable:
    """The table of `{"[METHODS ]pattern": rate}` rules.

    A rule that names no methods counts `default_methods` (None: every method but OPTIONS).
    A rule that counts GET counts HEAD too: frameworks run the GET handler for a HEAD.

    Raises:
        ValueError: a bad method list, pattern or rate, or two patterns for the same route.
    """
    parsed: dict[str, tuple[frozenset[str] | None, Rule]] = {}
    for spec, text in rules.items():
        if not isinstance(spec, str):
            raise ValueError(f"route pattern must be a string, got {spec!r}")
        methods, pattern = split_methods(spec)
        if methods is None:
            methods = default_methods
        if methods is not None and "GET" in methods:
            methods = methods | {"HEAD"}
        parsed[pattern] = (methods, parse_rule(pattern, text))
    return PatternTable(parsed)


def lookup(table: RuleTable, method: str, path: str) -> Rule | None:
    """The rule of `table` covering this request (method upper-cased), or None."""
    if method == "OPTIONS" or not table:
        return None
    found = table.match(path)
    if found is None:
        return None
    methods, rule = found[1]
    if methods is not None and method not in methods:
        return None
    return rule
