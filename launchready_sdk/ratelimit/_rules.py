"""Rules: rates in `limits` notation, the default rule set, and the table requests meet."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, NamedTuple

from launchready_sdk.logs import get_logger
from launchready_sdk.patterns import PatternTable, split_methods

_log = get_logger("launchready.ratelimit")

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
# Methods that never drain a budget.
SAFE_METHODS = frozenset({"HEAD", "OPTIONS"})


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


def compile_rules(rules: Mapping[str, str]) -> RuleTable:
    """The table of `{"[METHODS ]pattern": rate}` rules.

    Raises:
        ValueError: a bad method list, pattern or rate, or two patterns for the same route.
    """
    parsed: dict[str, tuple[frozenset[str] | None, Rule]] = {}
    for spec, text in rules.items():
        if not isinstance(spec, str):
            raise ValueError(f"route pattern must be a string, got {spec!r}")
        methods, pattern = split_methods(spec)
        parsed[pattern] = (methods, parse_rule(pattern, text))
    return PatternTable(parsed)


def lookup(table: RuleTable, method: str, path: str) -> Rule | None:
    """The rule of `table` covering this request, or None."""
    if method in SAFE_METHODS or not table:
        return None
    found = table.match(path)
    if found is None:
        return None
    methods, rule = found[1]
    if methods is not None and method not in methods:
        return None
    return rule


def describe_rules(rules: Iterable[str], app_paths: Iterable[str]) -> dict[str, list[str]]:
    """For each rule, the app route templates it covers (for the start-up report)."""
    paths = list(app_paths)
    report: dict[str, list[str]] = {}
    for spec in rules:
        _, pattern = split_methods(spec)
        table: PatternTable[bool] = PatternTable({pattern: True})
        report[spec] = [p for p in paths if table.match(_sample_path(p)) is not None]
    return report


def log_rule_coverage(rules: Mapping[str, str], app: Any, *, defaults: bool) -> None:
    """Log each rule with the routes it covers; a configured rule covering nothing is a warning."""
    from launchready_sdk.routing import iter_route_paths

    for spec, covered in describe_rules(rules, iter_route_paths(app)).items():
        if covered:
            _log.info("ratelimit.rule", rule=spec, rate=rules[spec], routes=covered)
        elif not defaults:
            _log.warning("ratelimit.rule_covers_no_route", rule=spec, rate=rules[spec])


def _sample_path(route_path: str) -> str:
    """A concrete path for a route template: each `{param}` becomes one segment."""
    segments = ["x" if s.startswith("{") else s for s in route_path.split("/")]
    return "/".join(segments) or "/"
