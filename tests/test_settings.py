"""Settings: validation at construction, environment parsing, errors that name the variable."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from launchready_sdk import Settings, SettingsError


def test_defaults_are_valid_and_in_memory() -> None:
    """The embedded defaults build without any environment and use no Redis."""
    settings = Settings()
    assert settings.redis_url is None
    assert settings.latency_budget_ms == 500
    assert settings.rate_limit_fail == "open"
    assert settings.log_format == "json"


def test_settings_are_frozen() -> None:
    """A Settings object cannot be changed after it is built."""
    settings = Settings()
    with pytest.raises(dataclasses.FrozenInstanceError):
        settings.service_name = "other"  # type: ignore[misc]


def test_every_field_has_an_environment_variable() -> None:
    """Each field is read from LAUNCHREADY_<FIELD>."""
    env = {
        "LAUNCHREADY_SERVICE_NAME": "shop",
        "LAUNCHREADY_REDIS_URL": "redis://127.0.0.1:6379/1",
        "LAUNCHREADY_REDIS_PREFIX": "lr",
        "LAUNCHREADY_TRUSTED_PROXIES": "10.0.0.0/8,127.0.0.1",
        "LAUNCHREADY_TRUST_REQUEST_ID": "true",
        "LAUNCHREADY_RATE_LIMITS": "/login=5/minute;100/hour;/webhooks/*=300/minute",
        "LAUNCHREADY_RATE_LIMIT_FAIL": "closed",
        "LAUNCHREADY_RATE_LIMIT_IPV6_PREFIX": "56",
        "LAUNCHREADY_RATE_LIMIT_ACCOUNTS": "POST /login=10/hour",
        "LAUNCHREADY_RATE_LIMIT_HEADERS": "structured",
        "LAUNCHREADY_RATE_LIMIT_KEYS": "/api/*=header:X-Api-Key",
        "LAUNCHREADY_CACHE_VERSION": "v42",
        "LAUNCHREADY_IDEMPOTENT_ROUTES": "/checkout;/orders/{id}/pay",
        "LAUNCHREADY_IDEMPOTENCY_TTL_S": "3600",
        "LAUNCHREADY_IDEMPOTENCY_FAIL": "proceed",
        "LAUNCHREADY_CACHE_MAX_BODY_BYTES": "2048",
        "LAUNCHREADY_CACHE_MEMORY_MAX_BYTES": "4096",
        "LAUNCHREADY_CACHE_STALE_WHILE_REVALIDATE_S": "0",
        "LAUNCHREADY_CACHE_STALE_IF_ERROR_S": "60",
        "LAUNCHREADY_CACHE_CREDENTIAL_HEADERS": "x-api-key;x-partner",
        "LAUNCHREADY_LATENCY_BUDGETS": "GET /products/{id}=300;/admin/*=2000",
        "LAUNCHREADY_LATENCY_WINDOW_S": "600",
        "LAUNCHREADY_LATENCY_MAX_ROUTES": "100",
        "LAUNCHREADY_LATENCY_FLUSH_INTERVAL_S": "5",
        "LAUNCHREADY_OTEL_EXPORTER": "console",
        "LAUNCHREADY_DB_QUERY_BUDGET_MS": "80",
        "LAUNCHREADY_DB_SLOW_QUERY_MS": "250",
        "LAUNCHREADY_DB_N_PLUS_ONE_THRESHOLD": "10",
        "LAUNCHREADY_LOOP_STALL_MS": "250",
        "LAUNCHREADY_CACHE_ROUTES": "/products=30;/products/{id}=60",
        "LAUNCHREADY_LATENCY_BUDGET_MS": "250",
        "LAUNCHREADY_OUTBOUND_TIMEOUT_S": "2.5",
        "LAUNCHREADY_OUTBOUND_DEADLINE_S": "10",
        "LAUNCHREADY_OUTBOUND_ATTEMPTS": "4",
        "LAUNCHREADY_LOG_FORMAT": "console",
        "LAUNCHREADY_LOG_LEVEL": "debug",
        "LAUNCHREADY_CONFIGURE_LOGGING": "no",
        "LAUNCHREADY_ACCESS_LOG": "0",
        "LAUNCHREADY_REDACT_EMAIL": "full",
        "LAUNCHREADY_REDACT_KEYS": "partner_code;x-shop-key",
        "LAUNCHREADY_HEALTH_PATH": "/livez",
        "LAUNCHREADY_READY_PATH": "/ready",
        "LAUNCHREADY_METRICS_PATH": "/prom",
        "LAUNCHREADY_METRICS_ALLOW": "10.0.0.0/8;192.168.1.5",
        "LAUNCHREADY_METRICS_TOKEN": "m" * 40,
        "LAUNCHREADY_METRICS_CACHE_S": "2.5",
        "LAUNCHREADY_METRICS_DIR": "/run/shop-metrics",
        "LAUNCHREADY_READINESS_TIMEOUT_S": "0.5",
        "LAUNCHREADY_REDIS_TIMEOUT_S": "0.1",
        "LAUNCHREADY_REDIS_COOLDOWN_S": "3",
        "LAUNCHREADY_REDIS_CONNECT_TIMEOUT_S": "2",
        "LAUNCHREADY_CONFIGURE_CACHE": "false",
        "LAUNCHREADY_STATUS_TOKEN": "Zq3-" + "x7Lk9PwN2mB8vRt5YcHs4JdFg6Ae1Uo0",
        "LAUNCHREADY_STATUS_PATH": "/ops/status/",
        "LAUNCHREADY_STATUS_SENTRY": "off",
        "LAUNCHREADY_SECURITY_HEADERS": "false",
        "LAUNCHREADY_HSTS_MAX_AGE_S": "15552000",
        "LAUNCHREADY_CSP": "default-src 'self'; script-src 'self' 'nonce-{nonce}'",
        "LAUNCHREADY_CSP_ROUTES": '{"/embed/*": "default-src https:; frame-ancestors *"}',
        "LAUNCHREADY_CSP_REPORT_ONLY": "true",
        "LAUNCHREADY_HTTPS_REDIRECT": "true",
        "LAUNCHREADY_CANONICAL_HOST": "WWW.Shop.Example",
        "LAUNCHREADY_ALLOWED_HOSTS": "shop.example;*.shop.example",
        "LAUNCHREADY_REDIRECTS": "/old/{id}=/new/{id};/blog/*=https://blog.shop.example/*",
        "LAUNCHREADY_REDIRECT_EXEMPT": "/webhooks/*;/sso/return",
        "LAUNCHREADY_ADMIN_PATHS": "/admin/*",
        "LAUNCHREADY_ADMIN_ALLOW": "10.0.0.0/8,192.0.2.7",
    }
    names = {f"LAUNCHREADY_{f.name.upper()}" for f in dataclasses.fields(Settings)}
    assert names == set(env), "the test covers every field"
    s = Settings.from_env(env)
    assert s.service_name == "shop"
    assert s.trusted_proxies == ("10.0.0.0/8", "127.0.0.1")
    assert s.trust_request_id is True
    assert dict(s.rate_limits or {}) == {
        "/login": "5/minute;100/hour",
        "/webhooks/*": "300/minute",
    }
    assert dict(s.cache_routes) == {"/products": 30, "/products/{id}": 60}
    assert (s.outbound_timeout_s, s.outbound_deadline_s, s.outbound_attempts) == (2.5, 10.0, 4)
    assert s.log_level == "DEBUG"
    assert s.configure_logging is False
    assert s.access_log is False
    assert s.redact_keys == ("partner_code", "x-shop-key")
    assert (s.health_path, s.ready_path, s.metrics_path) == ("/livez", "/ready", "/prom")
    assert (s.status_path, s.status_sentry) == ("/ops/status", False)
    assert (s.security_headers, s.hsts_max_age_s, s.csp_report_only) == (False, 15552000, True)
    assert s.csp == "default-src 'self'; script-src 'self' 'nonce-{nonce}'"
    assert dict(s.csp_routes) == {"/embed/*": "default-src https:; frame-ancestors *"}
    assert (s.https_redirect, s.canonical_host) == (True, "www.shop.example")
    assert s.allowed_hosts == ("shop.example", "*.shop.example")
    assert dict(s.redirects) == {"/old/{id}": "/new/{id}", "/blog/*": "https://blog.shop.example/*"}
    assert s.redirect_exempt == ("/webhooks/*", "/sso/return")
    assert (s.admin_paths, s.admin_allow) == (("/admin/*",), ("10.0.0.0/8", "192.0.2.7"))
    assert s.loop_stall_ms == 250.0
    assert s.metrics_allow == ("10.0.0.0/8", "192.168.1.5")
    assert (s.metrics_token, s.metrics_cache_s) == ("m" * 40, 2.5)
    assert s.metrics_dir == "/run/shop-metrics"
    assert s.idempotency_fail == "proceed"


def test_an_empty_loop_stall_turns_the_monitor_off() -> None:
    """`LAUNCHREADY_LOOP_STALL_MS=""` is None: no event-loop monitor."""
    assert Settings.from_env({"LAUNCHREADY_LOOP_STALL_MS": ""}).loop_stall_ms is None
    assert Settings().loop_stall_ms == 100.0


def test_from_env_ignores_unrelated_variables_and_takes_overrides() -> None:
    """Only LAUNCHREADY_* is read; keyword overrides win over the environment."""
    s = Settings.from_env({"REDIS_URL": "x", "LAUNCHREADY_SERVICE_NAME": "a"}, service_name="b")
    assert s.service_name == "b"
    assert s.redis_url is None


@pytest.mark.parametrize(
    ("variable", "value", "shows"),
    [
        ("LAUNCHREADY_RATE_LIMITS", "/login=lots", "/login=5/minute"),
        ("LAUNCHREADY_RATE_LIMITS", "login=5/minute", "/login=5/minute"),
        ("LAUNCHREADY_RATE_LIMITS", "5/minute", "/login=5/minute"),
        ("LAUNCHREADY_RATE_LIMITS", "/login=0/minute", "/login=5/minute"),
        ("LAUNCHREADY_TRUSTED_PROXIES", "10.0.0.0/33", "10.0.0.0/8"),
        ("LAUNCHREADY_TRUSTED_PROXIES", "proxy.internal", "10.0.0.0/8"),
        ("LAUNCHREADY_LATENCY_BUDGET_MS", "-5", "500"),
        ("LAUNCHREADY_LATENCY_BUDGET_MS", "fast", "1.5"),
        ("LAUNCHREADY_LATENCY_BUDGET_MS", "nan", "500"),
        ("LAUNCHREADY_RATE_LIMIT_FAIL", "maybe", "open"),
        ("LAUNCHREADY_LOG_FORMAT", "xml", "json"),
        ("LAUNCHREADY_LOG_LEVEL", "LOUD", "INFO"),
        ("LAUNCHREADY_CACHE_ROUTES", "/products=-1", "/products=30"),
        ("LAUNCHREADY_CACHE_ROUTES", "/products=1.5", "/products=30"),
        ("LAUNCHREADY_CACHE_ROUTES", "/products/{id=30", "/products=30"),
        ("LAUNCHREADY_OUTBOUND_ATTEMPTS", "0", "3"),
        ("LAUNCHREADY_OUTBOUND_ATTEMPTS", "three", "3"),
        ("LAUNCHREADY_REDIS_URL", "http://127.0.0.1:6379", "redis://127.0.0.1:6379/0"),
        ("LAUNCHREADY_REDIS_URL", "redis+sentinel://s1:26379", "/mymaster/0"),
        ("LAUNCHREADY_REDIS_CONNECT_TIMEOUT_S", "0", "1"),
        ("LAUNCHREADY_METRICS_ALLOW", "prometheus.internal", "10.0.0.0/8"),
        ("LAUNCHREADY_METRICS_TOKEN", "short", "token_urlsafe"),
        ("LAUNCHREADY_METRICS_CACHE_S", "120", "1"),
        ("LAUNCHREADY_METRICS_DIR", "relative/dir", "/run/shop-metrics"),
        ("LAUNCHREADY_ACCESS_LOG", "perhaps", "true"),
        ("LAUNCHREADY_READINESS_TIMEOUT_S", "30", "1"),
        ("LAUNCHREADY_HEALTH_PATH", "healthz", "/healthz"),
        ("LAUNCHREADY_RATE_LIMIT_IPV6_PREFIX", "8", "64"),
        ("LAUNCHREADY_LOOP_STALL_MS", "0", "100"),
        ("LAUNCHREADY_LOOP_STALL_MS", "slow", "1.5"),
        ("LAUNCHREADY_RATE_LIMITS", "G3T /login=5/minute", "/login=5/minute"),
        ("LAUNCHREADY_LATENCY_BUDGETS", "/products=fast", "GET /products/{id}=300"),
        ("LAUNCHREADY_LATENCY_WINDOW_S", "90", "300"),
        ("LAUNCHREADY_OTEL_EXPORTER", "jaeger", "none"),
        ("LAUNCHREADY_IDEMPOTENT_ROUTES", "checkout", "/checkout;/orders/{id}/pay"),
        ("LAUNCHREADY_IDEMPOTENCY_FAIL", "maybe", "proceed"),
    ],
)
def test_bad_environment_value_names_variable_and_example(
    variable: str, value: str, shows: str
) -> None:
    """A malformed variable raises SettingsError naming it and showing a good value."""
    with pytest.raises(SettingsError) as info:
        Settings.from_env({variable: value})
    message = str(info.value)
    assert message.startswith(variable + ":")
    assert shows in message
    assert info.value.name == variable


@pytest.mark.parametrize(
    "kwargs",
    [
        {"trusted_proxies": ("not-an-ip",)},
        {"trusted_proxies": "10.0.0.0/8,999.1.1.1"},
        {"latency_budget_ms": 0},
        {"latency_budget_ms": True},
        {"outbound_timeout_s": 20.0, "outbound_deadline_s": 15.0},
        {"outbound_attempts": 1.5},
        {"rate_limits": {"/login": "lots"}},
        {"rate_limits": ["/login"]},
        {"rate_limit_fail": "sometimes"},
        {"cache_routes": {"/products": 0}},
        {"cache_routes": {"/a*b": 10}},
        {"log_format": "yaml"},
        {"redis_url": "localhost:6379"},
        {"service_name": ""},
        {"health_path": "/same", "ready_path": "/same"},
        {"redis_timeout_s": -1},
        {"rate_limits": {"/login": "5/minute", "/LOGIN/": "9/minute"}},
        {"cache_routes": {"/products": 5, "//products": 9}},
    ],
)
def test_bad_value_is_rejected_at_construction(kwargs: dict[str, object]) -> None:
    """Invalid values fail when Settings is built, never at the first request."""
    with pytest.raises(SettingsError) as info:
        Settings(**kwargs)  # type: ignore[arg-type]
    assert info.value.name in {*kwargs, "health_path"}


def test_redis_url_error_does_not_echo_credentials() -> None:
    """A malformed Redis URL's error message does not repeat its password."""
    with pytest.raises(SettingsError) as info:
        Settings(redis_url="http://user:s3cretpw@redis.internal:6379")
    assert "s3cretpw" not in str(info.value)


def test_trusted_proxies_accepts_a_comma_string() -> None:
    """A comma-separated string of proxies is accepted like a tuple."""
    assert Settings(trusted_proxies="10.0.0.0/8, ::1").trusted_proxies == ("10.0.0.0/8", "::1")  # type: ignore[arg-type]


def test_mappings_are_read_only() -> None:
    """rate_limits and cache_routes cannot be mutated through the settings."""
    s = Settings(rate_limits={"/login": "5/minute"}, cache_routes={"/products": 30})
    with pytest.raises(TypeError):
        s.cache_routes["/x"] = 1  # type: ignore[index]


def test_empty_rate_limits_turns_limiting_off_and_default_is_none() -> None:
    """`{}` and the environment's empty value are distinct from the default None."""
    assert Settings().rate_limits is None
    off = Settings(rate_limits={}).rate_limits
    assert off is not None
    assert dict(off) == {}
    assert Settings.from_env({"LAUNCHREADY_RATE_LIMITS": ""}).rate_limits == {}
    assert Settings.from_env({"LAUNCHREADY_RATE_LIMITS": "default"}).rate_limits is None


def test_the_readme_settings_table_is_the_declarations() -> None:
    """The README's settings table lists every field with its default and doc, as declared."""
    from launchready_sdk.settings import reference_table

    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    table = reference_table()
    assert table in readme, "README.md's settings table differs; paste:\n" + table


def test_every_field_is_declared_once_with_a_parser_check_and_doc() -> None:
    """Each field carries its environment parser, its check and a one-line doc."""
    for field in dataclasses.fields(Settings):
        assert callable(field.metadata["parse"]), field.name
        assert callable(field.metadata["check"]), field.name
        doc = field.metadata["doc"]
        assert doc, field.name
        assert "\n" not in doc, field.name
