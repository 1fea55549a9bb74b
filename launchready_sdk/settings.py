"""Settings: one frozen dataclass whose every field is declared once.

Each field is one `setting(...)` declaration: its type (the annotation), its default (taken from
the component that owns the behaviour), how its `LAUNCHREADY_<FIELD>` variable is parsed, how a
value is checked, and a one-line doc. That declaration drives everything else: `Settings(...)`
validation in `__post_init__` (a bad value fails at start-up with a `SettingsError` naming the
field, never at the first request), `Settings.from_env()` (the environment is read there and
nowhere else, and errors name the variable), the Django `LAUNCHREADY` dict (its keys are the
fields), and the README's settings table (`reference_table()`; a test keeps them equal).

Lists are written `,`- or `;`-separated; mappings as `pattern=value` pairs separated by `;`
(`LAUNCHREADY_RATE_LIMITS="/login=5/minute;/webhooks/*=300/minute"`).
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import Any, Literal

from launchready_sdk import cache, dbtiming, health, idempotency, latency, outbound, ratelimit
from launchready_sdk import status as status_page
from launchready_sdk import store as redis_store
from launchready_sdk.errors import SettingsError
from launchready_sdk.loopmonitor import DEFAULT_STALL_MS as DEFAULT_LOOP_STALL_MS
from launchready_sdk.patterns import PatternTable, split_methods, validate_pattern
from launchready_sdk.perimeter import (
    DEFAULT_CSP,
    DEFAULT_HSTS_MAX_AGE_S,
    DEFAULT_REDIRECT_EXEMPT,
    check_canonical_host,
    check_host_entry,
    check_networks,
    check_policy,
    check_redirects,
)

DEFAULT_SERVICE_NAME = "app"
DEFAULT_METRICS_PATH = "/metrics"
ENV_PREFIX = "LAUNCHREADY_"

LogFormat = Literal["json", "console"]
EmailPolicy = Literal["domain", "full", "off"]
_LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")

Parser = Callable[[str], Any]
Check = Callable[[str, Any], Any]
_PAIRS_EXAMPLE = "/login=5/minute;/webhooks/*=300/minute"


def setting(
    default: Any = dataclasses.MISSING,
    *,
    parse: Parser,
    check: Check,
    doc: str,
    shown: str | None = None,
    factory: Callable[[], Any] | None = None,
) -> Any:
    """Declare a field: its default (or `factory`), variable parser, check and README line.

    `shown` is how the README shows the default when the value itself would not read well.
    """
    metadata = {"parse": parse, "check": check, "doc": doc, "shown": shown}
    if factory is not None:
        return dataclasses.field(default_factory=factory, metadata=metadata)
    return dataclasses.field(default=default, metadata=metadata)


# --- environment parsers (text -> python value; validation happens in Settings) -------------


def _parse_str(raw: str) -> str:
    return raw.strip()


def _parse_optional_str(raw: str) -> str | None:
    return raw.strip() or None


def _parse_list(raw: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in raw.replace(";", ",").split(",") if part.strip())


def _parse_bool(raw: str) -> bool:
    text = raw.strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off", ""):
        return False
    raise SettingsError("", f"expected true or false, got {raw!r}", "true")


def _parse_number(raw: str) -> float:
    try:
        return float(raw.strip())
    except ValueError:
        raise SettingsError("", f"expected a number, got {raw!r}", "1.5") from None


def _parse_optional_number(raw: str) -> float | None:
    return _parse_number(raw) if raw.strip() else None


def _parse_int(raw: str) -> int:
    try:
        return int(raw.strip())
    except ValueError:
        raise SettingsError("", f"expected a whole number, got {raw!r}", "3") from None


def _pairs(example: str) -> Parser:
    """`a=1;b=2` -> {a: 1, b: 2}; an item without `=` continues the previous value.

    So `/login=5/minute;100/hour` gives `{"/login": "5/minute;100/hour"}`.
    """

    def parse(raw: str) -> dict[str, str]:
        pairs: dict[str, str] = {}
        last: str | None = None
        for item in (part.strip() for part in raw.split(";")):
            if not item:
                continue
            key, sep, value = item.partition("=")
            if sep:
                last = key.strip()
                pairs[last] = value.strip()
            elif last is not None:
                pairs[last] += ";" + item
            else:
                raise SettingsError("", f"expected pattern=value pairs, got {item!r}", example)
        return pairs

    return parse


def _json_or_pairs(example: str) -> Parser:
    """A JSON object (`{"/embed/*": "default-src https:; frame-ancestors *"}`), needed when
    values hold `;` or `=`, or `pattern=value` pairs."""
    pairs = _pairs(example)

    def parse(raw: str) -> dict[str, str]:
        if not raw.strip().startswith("{"):
            parsed: dict[str, str] = pairs(raw)
            return parsed
        try:
            value = json.loads(raw)
        except ValueError:
            raise SettingsError("", "expected a JSON object of pattern to value", example) from None
        if not isinstance(value, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in value.items()
        ):
            raise SettingsError("", "expected a JSON object of strings", example)
        return dict(value)

    return parse


def _parse_rate_limits(raw: str) -> dict[str, str] | None:
    if raw.strip().lower() in ("default", "none"):
        return None
    pairs: dict[str, str] = _pairs(_PAIRS_EXAMPLE)(raw)
    return pairs


# --- checks (field name, value) -> normalised value -------------------------------------------


def _frozen_map(value: Mapping[str, Any]) -> Mapping[str, Any]:
    return MappingProxyType(dict(value))


def _check_name(name: str, value: object) -> str:
    if not isinstance(value, str) or not value.strip() or len(value) > 200:
        raise SettingsError(name, f"expected a non-empty name, got {value!r}", "shop")
    return value.strip()


def _check_redis_url(name: str, value: object) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise SettingsError(name, f"expected a Redis URL, got {type(value).__name__}",
                            redis_store.EXAMPLES["standalone"])  # fmt: skip
    try:
        parsed = redis_store.parse_url(value)
    except ValueError as exc:
        kind = next((k for k in ("sentinel", "cluster") if f"+{k}" in value), "standalone")
        problem = f"{exc} (in {redis_store.redacted(value)})"
        raise SettingsError(name, problem, redis_store.EXAMPLES[kind]) from None
    return value if parsed else None


def _str_tuple(example: str) -> Callable[[str, object], tuple[str, ...]]:
    def check(name: str, value: object) -> tuple[str, ...]:
        if isinstance(value, str):
            value = _parse_list(value)
        if not isinstance(value, list | tuple | set | frozenset) or not all(
            isinstance(item, str) for item in value
        ):
            raise SettingsError(name, f"expected a list of strings, got {value!r}", example)
        return tuple(value)

    return check


def _check_proxies(name: str, value: object) -> tuple[str, ...]:
    example = "10.0.0.0/8,127.0.0.1"
    items = _str_tuple(example)(name, value)
    from launchready_sdk.proxy import parse_networks

    for item in items:
        try:
            parse_networks([item])
        except ValueError:
            raise SettingsError(
                name, f"{item!r} is not an IP address or CIDR network", example
            ) from None
    return items


def _check_bool(name: str, value: object) -> bool:
    if not isinstance(value, bool):
        raise SettingsError(name, f"expected True or False, got {value!r}", "True")
    return value


def _check_pattern(name: str, pattern: object, example: str) -> str:
    if not isinstance(pattern, str):
        raise SettingsError(name, f"route pattern must be a string, got {pattern!r}", example)
    try:
        validate_pattern(pattern)
    except ValueError as exc:
        raise SettingsError(name, f"bad route pattern {pattern!r}: {exc}", example) from None
    return pattern


def _rule_pattern(name: str, spec: object, example: str) -> str:
    """The pattern of a `"[METHODS ]pattern"` key, checked."""
    if not isinstance(spec, str):
        raise SettingsError(name, f"route pattern must be a string, got {spec!r}", example)
    try:
        _, pattern = split_methods(spec)
    except ValueError as exc:
        raise SettingsError(name, str(exc), example) from None
    return _check_pattern(name, pattern, example)


def _check_distinct(name: str, patterns: list[str], example: str) -> None:
    """Two patterns that normalise to the same route (`/login`, `/LOGIN/`) are an error."""
    try:
        PatternTable(dict.fromkeys(patterns, True))
    except ValueError as exc:
        raise SettingsError(name, str(exc), example) from None


def _check_rate_limits(name: str, value: object) -> Mapping[str, str] | None:
    if value is None:
        return None
    example = "/login=5/minute"
    if not isinstance(value, Mapping):
        raise SettingsError(name, f"expected a mapping of pattern to rate, got {value!r}", example)
    for spec in value:
        _rule_pattern(name, spec, example)
    try:
        ratelimit.compile_rules(value)
    except ValueError as exc:
        raise SettingsError(name, str(exc), example) from None
    return _frozen_map(value)


def _check_account_limits(name: str, value: object) -> Mapping[str, str]:
    return _check_rate_limits(name, {} if value is None else value) or _frozen_map({})


def _check_rate_limit_keys(name: str, value: object) -> Mapping[str, str]:
    example = "/api/*=header:X-Api-Key"
    if not isinstance(value, Mapping):
        raise SettingsError(name, f"expected a mapping of pattern to key, got {value!r}", example)
    for spec, source in value.items():
        _rule_pattern(name, spec, example)
        try:
            ratelimit.parse_key_source(source) if isinstance(source, str) else None
        except ValueError as exc:
            raise SettingsError(name, f"{spec!r}: {exc}", example) from None
        if not isinstance(source, str):
            raise SettingsError(name, f"{spec!r} needs header:<name>, got {source!r}", example)
    return _frozen_map(value)


def _check_routes(name: str, value: object) -> tuple[str, ...]:
    example = "/checkout;/orders/{id}/pay"
    routes = _str_tuple(example)(name, value)
    for pattern in routes:
        _check_pattern(name, pattern, example)
    _check_distinct(name, list(routes), example)
    return routes


def _check_cache_routes(name: str, value: object) -> Mapping[str, int]:
    example = "/products=30"
    if not isinstance(value, Mapping):
        raise SettingsError(
            name, f"expected a mapping of pattern to seconds, got {value!r}", example
        )
    routes: dict[str, int] = {}
    for pattern, ttl in value.items():
        _check_pattern(name, pattern, example)
        try:
            seconds = int(ttl) if not isinstance(ttl, bool) else -1
        except (TypeError, ValueError):
            seconds = -1
        if not 1 <= seconds <= cache.MAX_LIFETIME_S or seconds != float(ttl):
            problem = f"{pattern!r} needs a TTL of whole seconds from 1 to {cache.MAX_LIFETIME_S}"
            raise SettingsError(name, f"{problem}, got {ttl!r}", example)
        routes[pattern] = seconds
    _check_distinct(name, list(routes), example)
    return _frozen_map(routes)


def _choice(*choices: str) -> Check:
    def check(name: str, value: object) -> object:
        if value not in choices:
            raise SettingsError(
                name, f"expected one of {', '.join(choices)}, got {value!r}", choices[0]
            )
        return value

    return check


def _check_level(name: str, value: object) -> str:
    level = value.upper() if isinstance(value, str) else value
    if level not in _LOG_LEVELS:
        raise SettingsError(
            name, f"expected one of {', '.join(_LOG_LEVELS)}, got {value!r}", "INFO"
        )
    return str(level)


def _positive(example: str, upper: float = math.inf) -> Check:
    def check(name: str, value: object) -> float:
        ok = isinstance(value, int | float) and not isinstance(value, bool)
        if not ok or not (0 < float(value) <= upper) or math.isnan(float(value)):  # type: ignore[arg-type]
            bound = f" and at most {upper}" if upper != math.inf else ""
            raise SettingsError(name, f"expected a number above 0{bound}, got {value!r}", example)
        return float(value)  # type: ignore[arg-type]

    return check


def _optional_positive(example: str) -> Check:
    positive = _positive(example)

    def check(name: str, value: object) -> float | None:
        return None if value is None else positive(name, value)

    return check


def _whole(example: str, low: int, high: int = 2**40) -> Callable[[str, object], int]:
    def check(name: str, value: object) -> int:
        if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
            bound = f"from {low} to {high}" if high < 2**40 else f">= {low}"
            raise SettingsError(name, f"expected a whole number {bound}, got {value!r}", example)
        return value

    return check


def _check_version(name: str, value: object) -> str:
    if not isinstance(value, str) or len(value) > 200:
        raise SettingsError(name, f"expected a short version string, got {value!r}", "2026.11.28")
    return value


def _check_budgets(name: str, value: object) -> Mapping[str, float]:
    example = "GET /products/{id}=300;/admin/*=2000"
    if not isinstance(value, Mapping):
        raise SettingsError(
            name, f"expected a mapping of route to milliseconds, got {value!r}", example
        )
    budgets: dict[str, float] = {}
    for spec, ms in value.items():
        _rule_pattern(name, spec, example)
        try:
            budget = float(ms)
        except (TypeError, ValueError):
            budget = -1.0
        if isinstance(ms, bool) or not budget > 0 or math.isinf(budget):
            raise SettingsError(name, f"{spec!r} needs a budget in ms above 0, got {ms!r}", example)
        budgets[spec] = budget
    return _frozen_map(budgets)


def _check_window(name: str, value: object) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 60 or value % 60:
        raise SettingsError(
            name, f"expected whole minutes in seconds (>= 60), got {value!r}", "300"
        )
    return value


def _check_otel(name: str, value: object) -> str | None:
    if value is None:
        return None
    return str(_choice("none", "console", "otlp")(name, value))


def _check_path(name: str, value: object) -> str:
    if not isinstance(value, str) or not value.startswith("/") or len(value) < 2 or " " in value:
        raise SettingsError(
            name, f"expected an absolute path such as /healthz, got {value!r}", "/healthz"
        )
    return value.rstrip("/") or value


def _check_metrics_token(name: str, value: object) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or len(value) < 32 or not value.isprintable() or " " in value:
        shown = f"{len(value)} characters" if isinstance(value, str) else type(value).__name__
        raise SettingsError(
            name, f"expected 32 or more visible characters, got {shown}",
            "the output of `python -c 'import secrets; print(secrets.token_urlsafe())'`",
        )  # fmt: skip
    return value


def _check_cache_s(name: str, value: object) -> float:
    ok = isinstance(value, int | float) and not isinstance(value, bool)
    if not ok or not 0 <= float(value) <= 60:  # type: ignore[arg-type]
        raise SettingsError(name, f"expected seconds from 0 to 60, got {value!r}", "1")
    return float(value)  # type: ignore[arg-type]


def _check_metrics_dir(name: str, value: object) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not value.startswith("/"):
        raise SettingsError(name, f"expected an absolute directory path, got {value!r}",
                            "/run/shop-metrics")  # fmt: skip
    return value


def _check_attempts(name: str, value: object) -> int:
    return _whole("3", 1, 10)(name, value)


def _check_status_token(name: str, value: object) -> str | None:
    if value is None:
        return None
    try:
        status_page.check_token(value)
    except ValueError as exc:
        raise SettingsError(name, str(exc), status_page.TOKEN_EXAMPLE) from None
    return str(value)


def _patterns(example: str) -> Check:
    def check(name: str, value: object) -> tuple[str, ...]:
        patterns = _str_tuple(example)(name, value)
        for pattern in patterns:
            _check_pattern(name, pattern, example)
        _check_distinct(name, list(patterns), example)
        return patterns

    return check


def _check_csp(name: str, value: object) -> str:
    example = "default-src 'self'; img-src 'self' data:"
    try:
        return check_policy(value)  # type: ignore[arg-type]
    except (ValueError, TypeError) as exc:
        raise SettingsError(name, str(exc), example) from None


def _check_csp_routes(name: str, value: object) -> Mapping[str, str]:
    example = '{"/embed/*": "default-src \'self\'; frame-ancestors *"}'
    if not isinstance(value, Mapping):
        problem = f"expected a mapping of pattern to policy, got {value!r}"
        raise SettingsError(name, problem, example)
    routes = {_check_pattern(name, p, example): _check_csp(name, v) for p, v in value.items()}
    _check_distinct(name, list(routes), example)
    return _frozen_map(routes)


def _check_hosts(name: str, value: object) -> tuple[str, ...]:
    example = "shop.example,*.shop.example"
    try:
        return tuple(check_host_entry(h) for h in _str_tuple(example)(name, value))
    except ValueError as exc:
        raise SettingsError(name, str(exc), example) from None


def _check_canonical_host(name: str, value: object) -> str | None:
    try:
        return check_canonical_host(value)
    except ValueError as exc:
        raise SettingsError(name, str(exc), "www.shop.example") from None


def _check_redirects(name: str, value: object) -> Mapping[str, str]:
    example = "/old/{id}=/new/{id}"
    if not isinstance(value, Mapping):
        raise SettingsError(name, f"expected a mapping of old to new URL, got {value!r}", example)
    try:
        check_redirects(value)
    except ValueError as exc:
        raise SettingsError(name, str(exc), example) from None
    return _frozen_map(value)


def _check_networks(name: str, value: object) -> tuple[str, ...]:
    example = "10.0.0.0/8,192.0.2.7"
    items = _str_tuple(example)(name, value)
    try:
        check_networks(items)
    except ValueError as exc:
        raise SettingsError(name, str(exc), example) from None
    return items


# --- the settings -------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True, kw_only=True)
class Settings:
    """Everything the SDK can be told. Every field has a `LAUNCHREADY_<FIELD>` variable."""

    service_name: str = setting(
        DEFAULT_SERVICE_NAME, parse=_parse_str, check=_check_name,
        doc="names the service in Redis keys",
    )  # fmt: skip
    redis_url: str | None = setting(
        None, parse=_parse_optional_str, check=_check_redis_url,
        doc="`redis://host:6379/0` for state shared by every worker (also `rediss://`, "
        "`redis+sentinel://`, `redis+cluster://`); none = in memory",
    )  # fmt: skip
    redis_prefix: str = setting(
        redis_store.DEFAULT_PREFIX, parse=_parse_str, check=_check_name,
        doc="prefix of every Redis key the SDK writes",
    )  # fmt: skip
    trusted_proxies: tuple[str, ...] = setting(
        (), parse=_parse_list, check=_check_proxies,
        doc="CIDRs whose forwarding headers and request IDs are believed",
    )  # fmt: skip
    trust_request_id: bool = setting(
        False, parse=_parse_bool, check=_check_bool,
        doc="believe a well-formed `X-Request-ID` from any client, not only from trusted proxies",
    )  # fmt: skip
    rate_limits: Mapping[str, str] | None = setting(
        None, parse=_parse_rate_limits, check=_check_rate_limits, shown="built-in",
        doc='`{pattern: "5/minute"}`; `{}` turns limiting off',
    )  # fmt: skip
    rate_limit_fail: ratelimit.RateLimitFail = setting(
        "open", parse=_parse_str, check=_choice("open", "closed"),
        doc="`open` or `closed`: limited routes while Redis is down",
    )  # fmt: skip
    rate_limit_ipv6_prefix: int = setting(
        ratelimit.DEFAULT_IPV6_PREFIX, parse=_parse_int, check=_whole("64", 16, 128),
        doc="IPv6 clients in one such network share a bucket",
    )  # fmt: skip
    rate_limit_accounts: Mapping[str, str] = setting(
        parse=_parse_rate_limits, check=_check_account_limits, factory=dict,
        doc="`{pattern: rate}` budgets per account named in a login body",
    )  # fmt: skip
    rate_limit_keys: Mapping[str, str] = setting(
        parse=_pairs("/api/*=header:X-Api-Key"), check=_check_rate_limit_keys, factory=dict,
        doc="`{pattern: \"header:X-Api-Key\"}`: a rule charged per header value (hashed), not "
        "per address",
    )  # fmt: skip
    rate_limit_headers: Literal["separate", "structured"] = setting(
        "separate", parse=_parse_str, check=_choice("separate", "structured"),
        doc="`separate` `RateLimit-Limit`/`-Remaining`/`-Reset`, or the IETF draft's "
        "`structured` `RateLimit-Policy` and `RateLimit` fields",
    )  # fmt: skip
    cache_routes: Mapping[str, int] = setting(
        parse=_pairs("/products=30;/products/{id}=60"), check=_check_cache_routes,
        factory=dict, doc="`{pattern: ttl_seconds}` for GET/HEAD responses",
    )  # fmt: skip
    cache_version: str = setting(
        "", parse=_parse_str, check=_check_version, shown="empty",
        doc="your deploy version; entries of another version are never served",
    )  # fmt: skip
    cache_max_body_bytes: int = setting(
        cache.DEFAULT_MAX_BODY_BYTES, parse=_parse_int, check=_whole("1048576", 1),
        shown="1 MiB", doc="largest response the cache stores",
    )  # fmt: skip
    cache_memory_max_bytes: int = setting(
        cache.DEFAULT_MEMORY_MAX_BYTES, parse=_parse_int, check=_whole("67108864", 1024),
        shown="64 MiB", doc="bound of the in-memory cache store",
    )  # fmt: skip
    cache_stale_while_revalidate_s: int = setting(
        cache.DEFAULT_STALE_WHILE_REVALIDATE_S, parse=_parse_int, check=_whole("10", 0),
        doc="how long a route serves STALE while one refresh runs",
    )  # fmt: skip
    cache_stale_if_error_s: int = setting(
        cache.DEFAULT_STALE_IF_ERROR_S, parse=_parse_int, check=_whole("300", 0),
        doc="how long a route serves its old entry when the app fails",
    )  # fmt: skip
    cache_credential_headers: tuple[str, ...] = setting(
        cache.DEFAULT_CREDENTIAL_HEADERS, parse=_parse_list,
        check=_str_tuple("x-api-key;x-auth-token"),
        doc='request headers that mean "credentials" (besides `Authorization` and `Cookie`)',
    )  # fmt: skip
    idempotent_routes: tuple[str, ...] = setting(
        (), parse=_parse_list, check=_check_routes,
        doc="POST routes guarded by `Idempotency-Key`",
    )  # fmt: skip
    idempotency_ttl_s: int = setting(
        idempotency.DEFAULT_TTL_S, parse=_parse_int, check=_whole("86400", 1),
        doc="how long a response is kept for replay",
    )  # fmt: skip
    idempotency_fail: idempotency.IdempotencyFail = setting(
        idempotency.DEFAULT_FAIL, parse=_parse_str, check=_choice("refuse", "proceed"),
        doc="`refuse` (503 with `Retry-After`) or `proceed` unprotected: idempotent routes "
        "while Redis is down",
    )  # fmt: skip
    latency_budget_ms: float = setting(
        latency.DEFAULT_BUDGET_MS, parse=_parse_number, check=_positive("500"),
        doc="per-route p95 budget",
    )  # fmt: skip
    latency_budgets: Mapping[str, float] = setting(
        parse=_pairs("GET /products/{id}=300;/admin/*=2000"), check=_check_budgets,
        factory=dict, doc="per-route overrides: `GET /products/{id}=300;/admin/*=2000`",
    )  # fmt: skip
    latency_window_s: int = setting(
        latency.DEFAULT_WINDOW_S, parse=_parse_int, check=_check_window,
        doc="rolling window of the percentiles (whole minutes)",
    )  # fmt: skip
    latency_max_routes: int = setting(
        latency.DEFAULT_MAX_ROUTES, parse=_parse_int, check=_whole("500", 1),
        doc="route templates kept before new ones share `<overflow>`",
    )  # fmt: skip
    latency_flush_interval_s: float = setting(
        latency.DEFAULT_FLUSH_INTERVAL_S, parse=_parse_number, check=_positive("10"),
        doc="how often a worker flushes its figures to Redis for the fleet view",
    )  # fmt: skip
    otel_exporter: Literal["none", "console", "otlp"] | None = setting(
        None, parse=_parse_optional_str, check=_check_otel,
        doc="`none`, `console` or `otlp` (none follows `OTEL_TRACES_EXPORTER`)",
    )  # fmt: skip
    db_query_budget_ms: float = setting(
        dbtiming.DEFAULT_QUERY_BUDGET_MS, parse=_parse_number, check=_positive("100"),
        doc="p95 budget of each SQL statement",
    )  # fmt: skip
    db_slow_query_ms: float | None = setting(
        None, parse=_parse_optional_number, check=_optional_positive("250"),
        shown="the budget", doc="a statement slower than this is logged",
    )  # fmt: skip
    db_n_plus_one_threshold: int = setting(
        dbtiming.DEFAULT_N_PLUS_ONE_THRESHOLD, parse=_parse_int, check=_whole("20", 1),
        doc="statements of one shape in one request that log an N+1 warning",
    )  # fmt: skip
    loop_stall_ms: float | None = setting(
        DEFAULT_LOOP_STALL_MS, parse=_parse_optional_number,
        check=_optional_positive("100"),
        doc="an event-loop stall this long is logged once, with the routes in flight and the "
        "stack that blocked; empty turns the monitor off",
    )  # fmt: skip
    outbound_timeout_s: float = setting(
        outbound.DEFAULT_TIMEOUT_S, parse=_parse_number, check=_positive("5"),
        doc="one attempt of an outbound call",
    )  # fmt: skip
    outbound_deadline_s: float = setting(
        outbound.DEFAULT_DEADLINE_S, parse=_parse_number, check=_positive("15"),
        doc="the whole outbound call, retries and backoff included",
    )  # fmt: skip
    outbound_attempts: int = setting(
        outbound.DEFAULT_ATTEMPTS, parse=_parse_int, check=_check_attempts,
        doc="attempts of an outbound call, the first included (1 to 10)",
    )  # fmt: skip
    log_format: LogFormat = setting(
        "json", parse=_parse_str, check=_choice("json", "console"),
        doc="`json` or `console`",
    )  # fmt: skip
    log_level: str = setting(
        "INFO", parse=_parse_str, check=_check_level,
        doc="level for the SDK's and the stdlib's loggers",
    )  # fmt: skip
    configure_logging: bool = setting(
        True, parse=_parse_bool, check=_check_bool,
        doc="`false` leaves the process's logging configuration to you",
    )  # fmt: skip
    access_log: bool = setting(
        True, parse=_parse_bool, check=_check_bool,
        doc="one line per request (the server's own access log is then quieted)",
    )  # fmt: skip
    redact_email: EmailPolicy = setting(
        "domain", parse=_parse_str, check=_choice("domain", "full", "off"),
        doc="`domain` keeps `@example.com`, `full` hides the whole address, `off` keeps it",
    )  # fmt: skip
    redact_keys: tuple[str, ...] = setting(
        (), parse=_parse_list, check=_str_tuple("api_key,x-partner-token"),
        doc="extra key names whose values are always redacted",
    )  # fmt: skip
    health_path: str = setting(
        health.DEFAULT_HEALTH_PATH, parse=_parse_str, check=_check_path,
        doc="liveness endpoint",
    )  # fmt: skip
    ready_path: str = setting(
        health.DEFAULT_READY_PATH, parse=_parse_str, check=_check_path,
        doc="readiness endpoint",
    )  # fmt: skip
    metrics_path: str = setting(
        DEFAULT_METRICS_PATH, parse=_parse_str, check=_check_path,
        doc="Prometheus endpoint",
    )  # fmt: skip
    metrics_allow: tuple[str, ...] = setting(
        (), parse=_parse_list, check=_check_proxies,
        doc="CIDRs whose clients (the trusted-proxy address) may read `/metrics`; with "
        "`metrics_token` either admits; neither = anyone",
    )  # fmt: skip
    metrics_token: str | None = setting(
        None, parse=_parse_optional_str, check=_check_metrics_token,
        doc="a bearer token (32+ characters) that admits a scraper to `/metrics`",
    )  # fmt: skip
    metrics_cache_s: float = setting(
        latency.DEFAULT_METRICS_CACHE_S, parse=_parse_number, check=_check_cache_s,
        doc="how long a rendered `/metrics` text is reused (0 = render every scrape)",
    )  # fmt: skip
    metrics_dir: str | None = setting(
        None, parse=_parse_optional_str, check=_check_metrics_dir, shown="automatic",
        doc="directory where the workers behind one port exchange figures for `/metrics` "
        "(one per instance, emptied at deploy; keeps exited workers' counts)",
    )  # fmt: skip
    readiness_timeout_s: float = setting(
        health.DEFAULT_TIMEOUT_S, parse=_parse_number,
        check=_positive("1", health.MAX_TIMEOUT_S),
        doc=f"per-check timeout and deadline of `/readyz` (at most {health.MAX_TIMEOUT_S:g} s)",
    )  # fmt: skip
    redis_timeout_s: float = setting(
        redis_store.DEFAULT_TIMEOUT_S, parse=_parse_number, check=_positive("0.05", 5.0),
        doc="command timeout for Redis (a late reply fails only its own command)",
    )  # fmt: skip
    redis_connect_timeout_s: float = setting(
        redis_store.DEFAULT_CONNECT_TIMEOUT_S, parse=_parse_number, check=_positive("1", 30.0),
        doc="timeout of opening a Redis connection (TLS, AUTH and Sentinel discovery included)",
    )  # fmt: skip
    redis_cooldown_s: float = setting(
        redis_store.DEFAULT_COOLDOWN_S, parse=_parse_number, check=_positive("2"),
        doc="how long the Redis breaker stays open before probing",
    )  # fmt: skip
    configure_cache: bool = setting(
        True, parse=_parse_bool, check=_check_bool,
        doc="make this instance's cache the one `@cached` functions use by default",
    )  # fmt: skip
    status_token: str | None = setting(
        None, parse=_parse_optional_str, check=_check_status_token,
        doc=f"bearer token of the status page (>= {status_page.MIN_TOKEN_LENGTH} characters); "
        "none = no status page, its path is a plain 404",
    )  # fmt: skip
    status_path: str = setting(
        status_page.DEFAULT_STATUS_PATH, parse=_parse_str, check=_check_path,
        doc="the status page; `<path>.json` gives the same data",
    )  # fmt: skip
    status_sentry: bool = setting(
        True, parse=_parse_bool, check=_check_bool,
        doc="with the status page on, hand errors to `sentry-sdk` when it is initialised "
        "(every Sentry event redacted first)",
    )  # fmt: skip
    security_headers: bool = setting(
        True, parse=_parse_bool, check=_check_bool,
        doc="nosniff, `X-Frame-Options: DENY`, `Referrer-Policy`, COOP and `Permissions-Policy` "
        "on every response the app leaves them off",
    )  # fmt: skip
    hsts_max_age_s: int = setting(
        DEFAULT_HSTS_MAX_AGE_S, parse=_parse_int, check=_whole("31536000", 0),
        doc="`Strict-Transport-Security` lifetime, sent only over HTTPS; 0 sends none",
    )  # fmt: skip
    csp: str = setting(
        DEFAULT_CSP, parse=_parse_str, check=_check_csp,
        doc="the `Content-Security-Policy`; `'nonce-{nonce}'` stands for the request's nonce; "
        "empty sends none",
    )  # fmt: skip
    csp_routes: Mapping[str, str] = setting(
        parse=_json_or_pairs('{"/embed/*": "default-src https:; frame-ancestors *"}'),
        check=_check_csp_routes, factory=dict,
        doc='`{pattern: policy}`, `""` for no CSP there (a JSON object in the environment)',
    )  # fmt: skip
    csp_report_only: bool = setting(
        False, parse=_parse_bool, check=_check_bool,
        doc="send the policy as `Content-Security-Policy-Report-Only`",
    )  # fmt: skip
    https_redirect: bool = setting(
        False, parse=_parse_bool, check=_check_bool,
        doc="plain-HTTP requests go to `https://` on the same host (301; 308 for non-GET)",
    )  # fmt: skip
    canonical_host: str | None = setting(
        None, parse=_parse_optional_str, check=_check_canonical_host,
        doc="`www.shop.example`: requests for other hosts are redirected to it",
    )  # fmt: skip
    allowed_hosts: tuple[str, ...] = setting(
        (), parse=_parse_list, check=_check_hosts,
        doc="`shop.example`, `*.shop.example`: any other `Host` gets 400; none = any host",
    )  # fmt: skip
    redirects: Mapping[str, str] = setting(
        parse=_json_or_pairs("/old/{id}=/new/{id}"), check=_check_redirects, factory=dict,
        doc="legacy URLs, `{old pattern: new path or URL}`, 301 with the query kept",
    )  # fmt: skip
    redirect_exempt: tuple[str, ...] = setting(
        DEFAULT_REDIRECT_EXEMPT, parse=_parse_list,
        check=_patterns("/webhooks/*;/auth/callback"),
        doc="patterns no redirect ever touches (webhooks, auth callbacks)",
    )  # fmt: skip
    admin_paths: tuple[str, ...] = setting(
        (), parse=_parse_list, check=_patterns("/admin/*"),
        doc="patterns only `admin_allow` clients reach; others get the app's 404",
    )  # fmt: skip
    admin_allow: tuple[str, ...] = setting(
        (), parse=_parse_list, check=_check_networks,
        doc="CIDRs allowed to reach `admin_paths` (none = nobody)",
    )  # fmt: skip

    def __post_init__(self) -> None:
        for field in dataclasses.fields(self):
            check: Check = field.metadata["check"]
            object.__setattr__(self, field.name, check(field.name, getattr(self, field.name)))
        outbound.validate_outbound(
            self.outbound_timeout_s, self.outbound_deadline_s, self.outbound_attempts
        )
        paths = (self.health_path, self.ready_path, self.metrics_path)
        if len(set(paths)) != len(paths):
            raise SettingsError("health_path", f"endpoint paths must differ, got {paths}")
        if self.status_path in paths or self.status_path + ".json" in paths:
            raise SettingsError("status_path", f"must differ from {paths}", "/_launchready/status")
        _check_perimeter(self)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
        """Build settings from `LAUNCHREADY_*` variables; `overrides` win over the environment."""
        env = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        for field in dataclasses.fields(cls):
            variable = ENV_PREFIX + field.name.upper()
            raw = env.get(variable)
            if raw is None or field.name in overrides:
                continue
            try:
                values[field.name] = field.metadata["parse"](raw)
            except SettingsError as exc:
                raise SettingsError(variable, exc.problem, _env_example(variable, exc)) from None
        values.update(overrides)
        try:
            return cls(**values)
        except SettingsError as exc:
            if exc.name in overrides:
                raise
            variable = ENV_PREFIX + exc.name.upper()
            raise SettingsError(variable, exc.problem, _env_example(variable, exc)) from None


def _check_perimeter(s: Settings) -> None:
    """The legacy map against the hosts and scheme it redirects to (loops, downgrades)."""
    try:
        check_redirects(
            s.redirects,
            allowed_hosts=s.allowed_hosts,
            canonical_host=s.canonical_host,
            https_redirect=s.https_redirect,
        )
    except ValueError as exc:
        raise SettingsError("redirects", str(exc), "/old/{id}=/new/{id}") from None


def _env_example(variable: str, exc: SettingsError) -> str | None:
    return f'{variable}="{exc.example}"' if exc.example else None


def reference() -> list[tuple[str, str, str]]:
    """`(field, default as shown, doc)` for every field, in declaration order."""
    rows = []
    for field in dataclasses.fields(Settings):
        shown = field.metadata["shown"]
        if shown is None:
            factory = field.default_factory
            shown = _show(field.default if factory is dataclasses.MISSING else factory())
        rows.append((field.name, shown, field.metadata["doc"]))
    return rows


def reference_table() -> str:
    """The README's settings table, rendered from the declarations."""
    lines = ["| field | default | meaning |", "|---|---|---|"]
    lines += [f"| `{name}` | {shown} | {doc} |" for name, shown, doc in reference()]
    return "\n".join(lines)


def _show(value: object) -> str:
    if value is None or value == () or value == {}:
        return "none"
    if isinstance(value, bool):
        return f"`{str(value).lower()}`"
    if isinstance(value, float) and value.is_integer():
        return f"`{int(value)}`"
    if isinstance(value, tuple):
        return "`" + ";".join(value) + "`"
    return f"`{value}`"
