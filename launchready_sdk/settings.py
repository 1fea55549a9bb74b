"""Settings: one frozen dataclass, validated when it is built.

`Settings(...)` validates every field in `__post_init__`, so a bad value fails at start-up with a
`SettingsError` naming the field, never at the first request. `Settings.from_env()` reads
`LAUNCHREADY_<FIELD>` variables (the environment is read there and nowhere else) and names the
variable in its errors. Lists are written `,`- or `;`-separated; mappings as `pattern=value`
pairs separated by `;` (`LAUNCHREADY_RATE_LIMITS="/login=5/minute;/webhooks/*=300/minute"`).
"""

from __future__ import annotations

import dataclasses
import math
import os
from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import Any, Literal

from launchready_sdk.errors import SettingsError

DEFAULT_SERVICE_NAME = "app"
DEFAULT_LATENCY_BUDGET_MS = 500.0
DEFAULT_OUTBOUND_TIMEOUT_S = 5.0
DEFAULT_OUTBOUND_DEADLINE_S = 15.0
DEFAULT_OUTBOUND_ATTEMPTS = 3
DEFAULT_READINESS_TIMEOUT_S = 1.0
DEFAULT_REDIS_TIMEOUT_S = 0.05
DEFAULT_REDIS_COOLDOWN_S = 2.0
MAX_READINESS_TIMEOUT_S = 2.0
DEFAULT_REDIS_PREFIX = "launchready"
DEFAULT_IPV6_PREFIX = 64
DEFAULT_IDEMPOTENCY_TTL_S = 86400
DEFAULT_LATENCY_WINDOW_S = 300
DEFAULT_LATENCY_MAX_ROUTES = 500
DEFAULT_LATENCY_FLUSH_INTERVAL_S = 10.0
DEFAULT_DB_QUERY_BUDGET_MS = 100.0
DEFAULT_DB_N_PLUS_ONE_THRESHOLD = 20
DEFAULT_CACHE_MAX_BODY_BYTES = 1024 * 1024
DEFAULT_CACHE_MEMORY_MAX_BYTES = 64 * 1024 * 1024
DEFAULT_CACHE_SWR_S = 10
DEFAULT_CACHE_SIE_S = 300
DEFAULT_CACHE_CREDENTIAL_HEADERS = ("x-api-key", "x-auth-token", "x-access-token")
MAX_CACHE_TTL_S = 15 * 86400
ENV_PREFIX = "LAUNCHREADY_"

LogFormat = Literal["json", "console"]
FailPolicy = Literal["open", "closed"]
EmailPolicy = Literal["domain", "full", "off"]
_LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


def _frozen_map(value: Mapping[str, Any]) -> Mapping[str, Any]:
    return MappingProxyType(dict(value))


@dataclasses.dataclass(frozen=True, kw_only=True)
class Settings:
    """Everything the SDK can be told. Every field has a `LAUNCHREADY_<FIELD>` variable."""

    service_name: str = DEFAULT_SERVICE_NAME
    redis_url: str | None = None
    redis_prefix: str = DEFAULT_REDIS_PREFIX
    trusted_proxies: tuple[str, ...] = ()
    trust_request_id: bool = False
    rate_limits: Mapping[str, str] | None = None
    rate_limit_fail: FailPolicy = "open"
    rate_limit_ipv6_prefix: int = DEFAULT_IPV6_PREFIX
    rate_limit_accounts: Mapping[str, str] = dataclasses.field(default_factory=dict)
    rate_limit_headers: Literal["separate", "structured"] = "separate"
    cache_routes: Mapping[str, int] = dataclasses.field(default_factory=dict)
    idempotent_routes: tuple[str, ...] = ()
    idempotency_ttl_s: int = DEFAULT_IDEMPOTENCY_TTL_S
    idempotency_fail: Literal["proceed", "refuse"] = "proceed"
    cache_version: str = ""
    cache_max_body_bytes: int = DEFAULT_CACHE_MAX_BODY_BYTES
    cache_memory_max_bytes: int = DEFAULT_CACHE_MEMORY_MAX_BYTES
    cache_stale_while_revalidate_s: int = DEFAULT_CACHE_SWR_S
    cache_stale_if_error_s: int = DEFAULT_CACHE_SIE_S
    cache_credential_headers: tuple[str, ...] = DEFAULT_CACHE_CREDENTIAL_HEADERS
    latency_budget_ms: float = DEFAULT_LATENCY_BUDGET_MS
    latency_budgets: Mapping[str, float] = dataclasses.field(default_factory=dict)
    latency_window_s: int = DEFAULT_LATENCY_WINDOW_S
    latency_max_routes: int = DEFAULT_LATENCY_MAX_ROUTES
    latency_flush_interval_s: float = DEFAULT_LATENCY_FLUSH_INTERVAL_S
    otel_exporter: Literal["none", "console", "otlp"] | None = None
    db_query_budget_ms: float = DEFAULT_DB_QUERY_BUDGET_MS
    db_slow_query_ms: float | None = None
    db_n_plus_one_threshold: int = DEFAULT_DB_N_PLUS_ONE_THRESHOLD
    outbound_timeout_s: float = DEFAULT_OUTBOUND_TIMEOUT_S
    outbound_deadline_s: float = DEFAULT_OUTBOUND_DEADLINE_S
    outbound_attempts: int = DEFAULT_OUTBOUND_ATTEMPTS
    log_format: LogFormat = "json"
    log_level: str = "INFO"
    configure_logging: bool = True
    access_log: bool = True
    redact_email: EmailPolicy = "domain"
    redact_keys: tuple[str, ...] = ()
    health_path: str = "/healthz"
    ready_path: str = "/readyz"
    metrics_path: str = "/metrics"
    readiness_timeout_s: float = DEFAULT_READINESS_TIMEOUT_S
    redis_timeout_s: float = DEFAULT_REDIS_TIMEOUT_S
    redis_cooldown_s: float = DEFAULT_REDIS_COOLDOWN_S

    def __post_init__(self) -> None:
        for name, check in _CHECKS.items():
            value = check(name, getattr(self, name))
            object.__setattr__(self, name, value)
        if self.outbound_timeout_s > self.outbound_deadline_s:
            raise SettingsError(
                "outbound_timeout_s",
                f"one attempt ({self.outbound_timeout_s} s) cannot outlast the whole call's "
                f"deadline outbound_deadline_s ({self.outbound_deadline_s} s)",
                "outbound_timeout_s=5, outbound_deadline_s=15",
            )
        paths = (self.health_path, self.ready_path, self.metrics_path)
        if len(set(paths)) != len(paths):
            raise SettingsError("health_path", f"endpoint paths must differ, got {paths}")

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
                values[field.name] = _PARSERS.get(field.name, _parse_str)(raw)
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


def _env_example(variable: str, exc: SettingsError) -> str | None:
    return f'{variable}="{exc.example}"' if exc.example else None


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


def _parse_int(raw: str) -> int:
    try:
        return int(raw.strip())
    except ValueError:
        raise SettingsError("", f"expected a whole number, got {raw!r}", "3") from None


def _parse_pairs(raw: str, example: str) -> dict[str, str]:
    """`a=1;b=2` -> {a: 1, b: 2}; an item without `=` continues the previous value.

    So `/login=5/minute;100/hour` gives `{"/login": "5/minute;100/hour"}`.
    """
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


def _parse_rate_limits(raw: str) -> dict[str, str] | None:
    if raw.strip().lower() in ("default", "none"):
        return None
    return _parse_pairs(raw, "/login=5/minute;/webhooks/*=300/minute")


def _parse_cache_routes(raw: str) -> dict[str, Any]:
    return dict(_parse_pairs(raw, "/products=30;/products/{id}=60"))


def _parse_budgets(raw: str) -> dict[str, Any]:
    return dict(_parse_pairs(raw, "GET /products/{id}=300;/admin/*=2000"))


def _parse_optional_number(raw: str) -> float | None:
    return _parse_number(raw) if raw.strip() else None


_PARSERS: dict[str, Callable[[str], Any]] = {
    "redis_url": _parse_optional_str,
    "trusted_proxies": _parse_list,
    "redact_keys": _parse_list,
    "trust_request_id": _parse_bool,
    "configure_logging": _parse_bool,
    "access_log": _parse_bool,
    "rate_limits": _parse_rate_limits,
    "cache_routes": _parse_cache_routes,
    "rate_limit_accounts": _parse_rate_limits,
    "latency_budget_ms": _parse_number,
    "outbound_timeout_s": _parse_number,
    "outbound_deadline_s": _parse_number,
    "readiness_timeout_s": _parse_number,
    "redis_timeout_s": _parse_number,
    "redis_cooldown_s": _parse_number,
    "outbound_attempts": _parse_int,
    "rate_limit_ipv6_prefix": _parse_int,
    "cache_max_body_bytes": _parse_int,
    "cache_memory_max_bytes": _parse_int,
    "cache_stale_while_revalidate_s": _parse_int,
    "cache_stale_if_error_s": _parse_int,
    "cache_credential_headers": _parse_list,
    "idempotent_routes": _parse_list,
    "idempotency_ttl_s": _parse_int,
    "latency_budgets": _parse_budgets,
    "latency_window_s": _parse_int,
    "latency_max_routes": _parse_int,
    "latency_flush_interval_s": _parse_number,
    "otel_exporter": _parse_optional_str,
    "db_query_budget_ms": _parse_number,
    "db_slow_query_ms": _parse_optional_number,
    "db_n_plus_one_threshold": _parse_int,
}


# --- validators (field name, value) -> normalised value ---------------------------------------


def _check_name(name: str, value: object) -> str:
    if not isinstance(value, str) or not value.strip() or len(value) > 200:
        raise SettingsError(name, f"expected a non-empty name, got {value!r}", "shop")
    return value.strip()


def _check_redis_url(name: str, value: object) -> str | None:
    if value is None:
        return None
    schemes = ("redis://", "rediss://", "unix://")
    if not isinstance(value, str) or not value.startswith(schemes):
        shown = value.split("@")[-1] if isinstance(value, str) else value
        raise SettingsError(
            name,
            f"expected a redis://, rediss:// or unix:// URL, got {shown!r}",
            "redis://127.0.0.1:6379/0",
        )
    return value


def _check_proxies(name: str, value: object) -> tuple[str, ...]:
    items = _as_str_tuple(name, value, "10.0.0.0/8,127.0.0.1")
    from launchready_sdk.proxy import parse_networks

    for item in items:
        try:
            parse_networks([item])
        except ValueError:
            raise SettingsError(
                name, f"{item!r} is not an IP address or CIDR network", "10.0.0.0/8,127.0.0.1"
            ) from None
    return items


def _check_str_tuple(name: str, value: object) -> tuple[str, ...]:
    return _as_str_tuple(name, value, "api_key,x-partner-token")


def _as_str_tuple(name: str, value: object, example: str) -> tuple[str, ...]:
    if isinstance(value, str):
        value = _parse_list(value)
    if not isinstance(value, list | tuple | set | frozenset) or not all(
        isinstance(item, str) for item in value
    ):
        raise SettingsError(name, f"expected a list of strings, got {value!r}", example)
    return tuple(value)


def _check_bool(name: str, value: object) -> bool:
    if not isinstance(value, bool):
        raise SettingsError(name, f"expected True or False, got {value!r}", "True")
    return value


def _check_pattern(name: str, pattern: object, example: str) -> str:
    from launchready_sdk.patterns import validate_pattern

    if not isinstance(pattern, str):
        raise SettingsError(name, f"route pattern must be a string, got {pattern!r}", example)
    try:
        validate_pattern(pattern)
    except ValueError as exc:
        raise SettingsError(name, f"bad route pattern {pattern!r}: {exc}", example) from None
    return pattern


def _check_rate_limits(name: str, value: object) -> Mapping[str, str] | None:
    if value is None:
        return None
    example = "/login=5/minute"
    if not isinstance(value, Mapping):
        raise SettingsError(name, f"expected a mapping of pattern to rate, got {value!r}", example)
    from limits import parse_many

    for spec, rate in value.items():
        pattern = _strip_methods(name, spec, example)
        _check_pattern(name, pattern, example)
        try:
            parsed = parse_many(rate) if isinstance(rate, str) else None
        except ValueError:
            parsed = None
        if not parsed or any(item.amount < 1 for item in parsed):
            raise SettingsError(name, f"{pattern!r} has an unreadable rate {rate!r}", example)
    _check_distinct(name, [_strip_methods(name, spec, example) for spec in value], example)
    return _frozen_map(value)


def _check_distinct(name: str, patterns: list[object], example: str) -> None:
    """Two patterns that normalise to the same route (`/login`, `/LOGIN/`) are an error."""
    from launchready_sdk.patterns import PatternTable

    try:
        PatternTable(dict.fromkeys(patterns, True))  # type: ignore[arg-type]
    except ValueError as exc:
        raise SettingsError(name, str(exc), example) from None


def _check_account_limits(name: str, value: object) -> Mapping[str, str]:
    return _check_rate_limits(name, {} if value is None else value) or _frozen_map({})


def _strip_methods(name: str, spec: object, example: str) -> object:
    """`"GET,POST /search"` -> `"/search"`: a rule may name the methods it covers."""
    if not isinstance(spec, str):
        return spec
    head, sep, rest = spec.strip().partition(" ")
    if not sep or head.startswith("/"):
        return spec
    if not all(m.strip().isalpha() for m in head.split(",")):
        raise SettingsError(name, f"bad method list in {spec!r}", example)
    return rest.strip()


def _check_routes(name: str, value: object) -> tuple[str, ...]:
    example = "/checkout;/orders/{id}/pay"
    routes = _as_str_tuple(name, value, example)
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
        if not 1 <= seconds <= MAX_CACHE_TTL_S or seconds != float(ttl):
            problem = f"{pattern!r} needs a TTL of whole seconds from 1 to {MAX_CACHE_TTL_S}"
            raise SettingsError(name, f"{problem}, got {ttl!r}", example)
        routes[pattern] = seconds
    _check_distinct(name, list(routes), example)
    return _frozen_map(routes)


def _choice(*choices: str) -> Callable[[str, object], Any]:
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


def _positive(example: str, upper: float = math.inf) -> Callable[[str, object], float]:
    def check(name: str, value: object) -> float:
        ok = isinstance(value, int | float) and not isinstance(value, bool)
        if not ok or not (0 < float(value) <= upper) or math.isnan(float(value)):  # type: ignore[arg-type]
            bound = f" and at most {upper}" if upper != math.inf else ""
            raise SettingsError(name, f"expected a number above 0{bound}, got {value!r}", example)
        return float(value)  # type: ignore[arg-type]

    return check


def _check_attempts(name: str, value: object) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= 10:
        raise SettingsError(name, f"expected a whole number from 1 to 10, got {value!r}", "3")
    return value


def _check_ipv6_prefix(name: str, value: object) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not 16 <= value <= 128:
        raise SettingsError(name, f"expected a prefix length from 16 to 128, got {value!r}", "64")
    return value


def _whole(example: str, low: int, high: int = 2**40) -> Callable[[str, object], int]:
    def check(name: str, value: object) -> int:
        if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
            raise SettingsError(name, f"expected a whole number >= {low}, got {value!r}", example)
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
        pattern = _strip_methods(name, spec, example)
        _check_pattern(name, pattern, example)
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


def _check_optional_positive(name: str, value: object) -> float | None:
    return None if value is None else _positive("250")(name, value)


def _check_path(name: str, value: object) -> str:
    if not isinstance(value, str) or not value.startswith("/") or len(value) < 2 or " " in value:
        raise SettingsError(
            name, f"expected an absolute path such as /healthz, got {value!r}", "/healthz"
        )
    return value.rstrip("/") or value


_CHECKS: dict[str, Callable[[str, Any], Any]] = {
    "service_name": _check_name,
    "redis_url": _check_redis_url,
    "redis_prefix": _check_name,
    "trusted_proxies": _check_proxies,
    "trust_request_id": _check_bool,
    "rate_limits": _check_rate_limits,
    "rate_limit_fail": _choice("open", "closed"),
    "rate_limit_ipv6_prefix": _check_ipv6_prefix,
    "rate_limit_accounts": _check_account_limits,
    "rate_limit_headers": _choice("separate", "structured"),
    "cache_routes": _check_cache_routes,
    "cache_version": _check_version,
    "idempotent_routes": _check_routes,
    "idempotency_ttl_s": _whole("86400", 1),
    "idempotency_fail": _choice("proceed", "refuse"),
    "cache_max_body_bytes": _whole("1048576", 1),
    "cache_memory_max_bytes": _whole("67108864", 1024),
    "cache_stale_while_revalidate_s": _whole("10", 0),
    "cache_stale_if_error_s": _whole("300", 0),
    "cache_credential_headers": _check_str_tuple,
    "latency_budget_ms": _positive("500"),
    "latency_budgets": _check_budgets,
    "latency_window_s": _check_window,
    "latency_max_routes": _whole("500", 1),
    "latency_flush_interval_s": _positive("10"),
    "otel_exporter": _check_otel,
    "db_query_budget_ms": _positive("100"),
    "db_slow_query_ms": _check_optional_positive,
    "db_n_plus_one_threshold": _whole("20", 1),
    "outbound_timeout_s": _positive("5"),
    "outbound_deadline_s": _positive("15"),
    "outbound_attempts": _check_attempts,
    "log_format": _choice("json", "console"),
    "log_level": _check_level,
    "configure_logging": _check_bool,
    "access_log": _check_bool,
    "redact_email": _choice("domain", "full", "off"),
    "redact_keys": _check_str_tuple,
    "health_path": _check_path,
    "ready_path": _check_path,
    "metrics_path": _check_path,
    "readiness_timeout_s": _positive("1", MAX_READINESS_TIMEOUT_S),
    "redis_timeout_s": _positive("0.05", 5.0),
    "redis_cooldown_s": _positive("2"),
}
