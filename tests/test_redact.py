"""Tests for launchready_sdk.redaction.

Secret-looking fixtures are assembled at run time (prefix + generated body) so that no literal
credential is committed; card numbers get their Luhn digit from a helper.
"""

from __future__ import annotations

import copy
import datetime
import decimal
import importlib
import json
import random
import re
import string
import uuid
from collections.abc import Callable
from typing import Any

import orjson
import pytest
import structlog
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from launchready_sdk.errors import SettingsError
from launchready_sdk.redaction import DEFAULT_REDACTOR, Redactor, prefilter, redact

redact_module = importlib.import_module("launchready_sdk.redaction")
# A redactor with a user pattern scans every string in full: the reference the shortcuts
# (`prefilter`, the processor's plain copy) are checked against.
FULL_SCAN = [("never", "QQQ_never_matches_QQQ")]


def luhn(number: str) -> bool:
    """The Luhn check, written out independently of the package."""
    total = 0
    for i, ch in enumerate(reversed(number)):
        d = int(ch) * (2 if i % 2 else 1)
        total += d - 9 if d > 9 else d
    return total % 10 == 0


RNG = random.Random(20240501)
ALNUM = string.ascii_letters + string.digits
MARKER = re.compile(r"\[REDACTED(?::[a-z0-9_.\-]+)?\]")
HYPOTHESIS = settings(deadline=None, suppress_health_check=[HealthCheck.too_slow])


def body(n: int, alphabet: str = ALNUM, rng: random.Random = RNG) -> str:
    """A random body that always mixes letters and digits, like a real token."""
    chars = [rng.choice(alphabet) for _ in range(n)]
    letters = [c for c in alphabet if c.isalpha()] or list(alphabet)
    digits = [c for c in alphabet if c.isdigit()] or list(alphabet)
    chars[0], chars[-1] = rng.choice(letters), rng.choice(digits)
    return "".join(chars)


def luhn_complete(prefix: str, length: int, rng: random.Random = RNG) -> str:
    """A Luhn-valid number of `length` digits starting with `prefix`."""
    digits = prefix + "".join(rng.choice(string.digits) for _ in range(length - len(prefix) - 1))
    for check in string.digits:
        candidate = digits + check
        if luhn(candidate):
            return candidate
    raise AssertionError("unreachable")


def luhn_invalid(prefix: str, length: int) -> str:
    valid = luhn_complete(prefix, length)
    return valid[:-1] + str((int(valid[-1]) + 1) % 10)


def jwt() -> str:
    header = "ey" + "J" + body(20, ALNUM + "_-")
    payload = "ey" + "J" + body(40, ALNUM + "_-")
    return f"{header}.{payload}.{body(43, ALNUM + '_-')}"


# rule name -> builder of a fresh, format-valid fake
TOKENS: dict[str, Callable[[], str]] = {
    "aws_access_key": lambda: "AK" + "IA" + body(16, "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"),
    "aws_access_key ASIA": lambda: "AS" + "IA" + body(16, "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"),
    "stripe_key": lambda: "sk" + "_live_" + body(24),
    "stripe_key test": lambda: "sk" + "_test_" + body(24),
    "stripe_key restricted": lambda: "rk" + "_live_" + body(24),
    "stripe_webhook_secret": lambda: "wh" + "sec_" + body(32),
    "stripe_client_secret": lambda: "pi_" + body(14) + "_sec" + "ret_" + body(24),
    "github_token": lambda: "gh" + "p_" + body(36),
    "github_token oauth": lambda: "gh" + "o_" + body(36),
    "github_token user": lambda: "gh" + "u_" + body(36),
    "github_token server": lambda: "gh" + "s_" + body(36),
    "github_token refresh": lambda: "gh" + "r_" + body(36),
    "github_token fine-grained": lambda: "github" + "_pat_" + body(82, ALNUM + "_"),
    "gitlab_token": lambda: "gl" + "pat-" + body(20),
    "slack_token": lambda: "xo" + "xb-" + "1234567890-1234567890-" + body(24),
    "slack_token user": lambda: "xo" + "xp-" + "1234567890-1234567890-" + body(24),
    "slack_webhook": lambda: (
        "https://hooks.slack.com/services/T0"
        + body(8, string.ascii_uppercase + string.digits)
        + "/B0"
        + body(8, string.ascii_uppercase + string.digits)
        + "/"
        + body(24)
    ),
    "google_api_key": lambda: "AI" + "za" + body(35, ALNUM + "_-"),
    "sendgrid_key": lambda: "SG" + "." + body(22) + "." + body(43),
    "openai_key": lambda: "sk" + "-proj-" + body(60) + "T3Blbk" + "FJ" + body(60),
    "openai_key legacy": lambda: "sk" + "-" + body(48),
    "anthropic_key": lambda: "sk" + "-ant-api03-" + body(93, ALNUM + "_-") + "AA",
    "npm_token": lambda: "np" + "m_" + body(36),
    "pypi_token": lambda: "py" + "pi-AgEIcHlwaS5vcmc" + body(60),
    "twilio_key": lambda: "S" + "K" + body(32, "0123456789abcdef"),
    "password_hash": lambda: "$2" + "b$12$" + body(53, ALNUM + "./"),
    "password_hash argon2": lambda: (
        "$argon2"
        + "id$v=19$m=65536,t=3,p=4$"
        + body(22, ALNUM + "+/")
        + "$"
        + body(43, ALNUM + "+/")
    ),
    "password_hash scrypt": lambda: (
        "scr" + "ypt$16384$8$1$" + body(22, ALNUM + "_-") + "$" + body(86, ALNUM + "_-")
    ),
    "password_hash django_scrypt": lambda: (
        "scr" + "ypt$16384$" + body(22) + "$8$1$" + body(88, ALNUM + "+/=")
    ),
    "password_hash django_pbkdf2": lambda: (
        "pbk" + "df2_sha256$870000$" + body(22) + "$" + body(44, ALNUM + "+/=")
    ),
    "password_hash sha512crypt": lambda: (
        "$6" + "$" + body(16, ALNUM + "./") + "$" + body(86, ALNUM + "./")
    ),
    "jwt": jwt,
    "private_key": lambda: (
        "-----BEGIN RSA PRIVATE KEY-----\n"
        + body(64)
        + "\n"
        + body(64)
        + "\n-----END RSA PRIVATE KEY-----"
    ),
    "private_key escaped": lambda: (
        "-----BEGIN PRIVATE KEY-----\\n" + body(64) + "\\n-----END PRIVATE KEY-----\\n"
    ),
    "bearer": lambda: "Bearer " + body(30, ALNUM + "-._~"),
    "basic_auth": lambda: "Basic " + body(22) + "==",
}


def rule_of(name: str) -> str:
    return name.split()[0]


# --------------------------------------------------------------------------------------------
# Token formats in free text
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(TOKENS))
@pytest.mark.parametrize("key", ["msg", "detail", "event"])
def test_token_format_is_redacted_in_free_text_under_innocent_key(name: str, key: str) -> None:
    """Every supported token format is caught anywhere in free text, whatever the key."""
    secret = TOKENS[name]()
    out = redact({key: f"retrying upstream with {secret} now (attempt 2)"})
    assert isinstance(out, dict)
    assert secret not in out[key]
    assert f"[REDACTED:{rule_of(name)}]" in out[key]
    assert out[key].startswith("retrying upstream with ")


@pytest.mark.parametrize("name", sorted(TOKENS))
def test_marker_never_contains_the_matched_text(name: str) -> None:
    """Markers name the rule only; no part of the secret's random body survives."""
    secret = TOKENS[name]()
    out = str(redact(f"token {secret} end"))
    core = max(re.split(r"[^A-Za-z0-9]", secret), key=len)
    assert core not in out
    for marker in MARKER.findall(out):
        assert core not in marker


def test_token_inside_a_longer_word_is_not_taken_for_a_stripe_key() -> None:
    """A prefix glued to a preceding word (`task_test_...`) is not a Stripe key."""
    text = "ta" + "sk_test_" + body(24)
    assert redact(text) == text


def test_stripe_publishable_key_and_object_ids_survive() -> None:
    """Publishable keys and object IDs are identifiers, not secrets."""
    text = f"pk_live_{body(24)} cus_{body(14)} pi_{body(14)}"
    assert redact(text) == text


def test_bearer_and_basic_in_prose_survive() -> None:
    """English after `bearer`/`basic` is not a credential."""
    text = "the bearer of bad news; bearer tokens expire. Basic authentication is off."
    assert redact(text) == text


def test_authorization_header_line_keeps_the_scheme() -> None:
    """`Authorization: Token x` keeps the scheme word and hides the credential."""
    out = redact("Authorization: Token abc123 and X-Api-Key: k3y")
    assert out == "Authorization: Token [REDACTED:authorization] and X-Api-Key: [REDACTED:api_key]"


def test_curl_command_header_is_redacted() -> None:
    """A bearer token inside a quoted curl header is caught."""
    token = body(40)
    out = str(redact(f'curl -H "Authorization: Bearer {token}" https://api.example.com'))
    assert token not in out
    assert "https://api.example.com" in out


# --------------------------------------------------------------------------------------------
# Key rules
# --------------------------------------------------------------------------------------------

SENSITIVE_KEYS = [
    "password",
    "Password",
    "PASSWORD",
    "passwd",
    "pwd",
    "pass",
    "passphrase",
    "new_password",
    "old_password",
    "password_confirmation",
    "secret",
    "client_secret",
    "clientSecret",
    "app_secret",
    "secret_key",
    "SECRET_KEY",
    "api_key",
    "apiKey",
    "API-KEY",
    "x-api-key",
    "X-Api-Key",
    "api.key",
    "APIKey",
    "access_token",
    "accessToken",
    "refresh_token",
    "id_token",
    "auth_token",
    "token",
    "authorization",
    "Proxy-Authorization",
    "auth",
    "cookie",
    "Set-Cookie",
    "set_cookie",
    "sessionid",
    "session_id",
    "session",
    "session_token",
    "csrftoken",
    "x-csrf-token",
    "XSRF-TOKEN",
    "private_key",
    "privateKey",
    "AWS_SECRET_ACCESS_KEY",
    "aws_session_token",
    "stripe_key",
    "webhook_secret",
    "stripe_signature",
    "signature",
    "X-Amz-Signature",
    "X-Amz-Credential",
    "credentials",
    "jwt",
    "otp",
    "totp_secret",
    "mfa_code",
    "pin",
    "cvv",
    "cvc",
    "card_number",
    "cc_number",
    "credit_card",
    "ssn",
    "PGPASSWORD",
    "connect.sid",
    "pass%77ord",
    "\uff50\uff41\uff53\uff53\uff57\uff4f\uff52\uff44",  # full-width "password"
    "\u017fecret",  # long s
    "pass\u200bword",
]
SAFE_KEYS = [
    "author_id",
    "authored_by",
    "max_tokens",
    "prompt_tokens",
    "tokens_used",
    "token_count",
    "tokens_per_second",
    "primary_key",
    "cache_key",
    "idempotency_key",
    "public_key",
    "keyword",
    "key",
    "processor",
    "session_count",
    "session_duration_ms",
    "has_password",
    "password_changed_at",
    "password_reset_requested",
    "max_password_length",
    "auth_method",
    "auth_type",
    "is_authenticated",
    "csrf_enabled",
    "cookie_consent",
    "credentials_expired",
    "token_type",
    "secretary",
    "monkey",
    "compass",
    "bypass",
    "private_key_id",
    "request_id",
    "user_id",
    "email",
    "status_code",
    "code",
    "account_sid",
]


@pytest.mark.parametrize("key", SENSITIVE_KEYS)
def test_sensitive_key_hides_its_value(key: str) -> None:
    """Values under sensitive keys, in any spelling, are replaced by a marker."""
    out = redact({key: "value-1234", "other": "kept"})
    assert isinstance(out, dict)
    assert MARKER.fullmatch(out[key]), out
    assert out["other"] == "kept"


@pytest.mark.parametrize("key", SAFE_KEYS)
def test_key_that_only_looks_sensitive_keeps_its_value(key: str) -> None:
    """Keys about secrets, counters and ordinary words are not redacted."""
    assert redact({key: "value-1234"}) == {key: "value-1234"}


def test_key_marker_names_the_category() -> None:
    """The marker of a key hit is the key's normalised category."""
    out = redact({"X-Api-Key": "a", "clientSecret": "b", "Set-Cookie": "c", "pwd": "d"})
    assert out == {
        "X-Api-Key": "[REDACTED:api_key]",
        "clientSecret": "[REDACTED:secret]",
        "Set-Cookie": "[REDACTED:cookie]",
        "pwd": "[REDACTED:password]",
    }


def test_flags_and_nulls_under_sensitive_keys_are_kept() -> None:
    """A bool or None cannot carry a secret; a number can (a PIN)."""
    out = redact({"password": True, "token": None, "pin": 1234, "secret": 1.5})
    assert out == {
        "password": True,
        "token": None,
        "pin": "[REDACTED:pin]",
        "secret": "[REDACTED:secret]",
    }


def test_container_under_sensitive_key_is_replaced_whole() -> None:
    """Everything under a sensitive key goes, nested structure included."""
    out = redact({"credentials": {"user": "jane", "password": "x"}, "ok": 1})
    assert out == {"credentials": "[REDACTED:credential]", "ok": 1}


def test_nested_sensitive_keys_are_found_at_any_depth() -> None:
    """Redaction is recursive (unlike Sentry's default)."""
    event = {"request": {"headers": {"Authorization": "Bearer x"}, "data": [{"token": "t"}]}}
    assert redact(event) == {
        "request": {
            "headers": {"Authorization": "[REDACTED:authorization]"},
            "data": [{"token": "[REDACTED:token]"}],
        }
    }


# --------------------------------------------------------------------------------------------
# Payment cards and look-alikes
# --------------------------------------------------------------------------------------------

CARDS = {
    "visa": ("4", 16),
    "visa13": ("4", 13),
    "mastercard": ("53", 16),
    "mastercard 2-series": ("2221", 16),
    "amex": ("37", 15),
    "discover": ("6011", 16),
    "discover 65": ("65", 16),
    "jcb": ("3530", 16),
    "diners": ("36", 14),
}


def grouped(number: str, sep: str) -> str:
    if len(number) == 15:
        return sep.join((number[:4], number[4:10], number[10:]))
    return sep.join(number[i : i + 4] for i in range(0, len(number), 4))


@pytest.mark.parametrize("issuer", sorted(CARDS))
@pytest.mark.parametrize("sep", ["", " ", "-"])
def test_card_numbers_are_redacted_plain_spaced_and_dashed(issuer: str, sep: str) -> None:
    """Issuer prefix + length + Luhn: redacted in every common layout."""
    number = luhn_complete(*CARDS[issuer])
    text = grouped(number, sep) if sep else number
    out = redact({"note": f"paid with {text} today"})
    assert out == {"note": "paid with [REDACTED:card] today"}


def test_card_number_as_int_is_redacted() -> None:
    """A card stored as a Python int is caught too."""
    number = int(luhn_complete("4", 16))
    assert redact({"n": number, "small": 42}) == {"n": "[REDACTED:card]", "small": 42}


LOOK_ALIKES = [
    "3f2b6c1e-9a4d-4c1b-8e2f-0a1b2c3d4e5f",
    "611AEE7D-1206-4E03-A2A6-97C238D982FD",
    "c10f7ebebd95e5bb8749430d3485370c",
    "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
    "9fceb02d0ae598e95dc970b74767f19372d61af8",
    "sha256:" + "a3" * 32,
    "ORD-2024-000123",
    "INV-000042",
    "SKU-AB12-XL",
    "$1,234.56",
    "EUR 4 111,11",
    "1718000000",
    "1718000000006",
    "150428427078522",
    "978-0-306-40615-7",
    "1Z999AA10123456784",
    "10.0.0.1",
    "db.internal:5432",
    "/users/{user_id}/tokens/{token_id}",
    "User authenticated",
    "invalid token",
    "Password is correct",
    "****1234",
    "-----BEGIN PUBLIC KEY-----\nMIIBIjANBgkq\n-----END PUBLIC KEY-----",
]


@pytest.mark.parametrize("text", LOOK_ALIKES)
def test_identifiers_numbers_and_prose_survive(text: str) -> None:
    """UUIDs, trace IDs, hashes, order IDs, prices, timestamps and prose are kept."""
    assert redact({"msg": text}) == {"msg": text}


def test_luhn_valid_epoch_milliseconds_survive() -> None:
    """A Luhn-valid 13-digit epoch in ms has no issuer prefix, so it is kept."""
    stamp = luhn_complete("17", 13)
    assert redact({"ts": int(stamp), "s": stamp}) == {"ts": int(stamp), "s": stamp}


def test_luhn_invalid_card_shaped_number_survives() -> None:
    """Issuer prefix and length alone are not enough."""
    number = luhn_invalid("4", 16)
    assert redact(number) == number
    assert redact(int(number)) == int(number)


def test_longer_digit_runs_are_not_cut_into_cards() -> None:
    """A card number inside a longer digit run is not matched."""
    text = luhn_complete("4", 16) + "123"
    assert redact(text) == text


# --------------------------------------------------------------------------------------------
# E-mail addresses
# --------------------------------------------------------------------------------------------


def test_email_domain_mode_keeps_the_domain() -> None:
    """The default hides the local part only."""
    assert redact("mail jane.doe+x@example.co.uk now") == "mail [REDACTED:email]@example.co.uk now"


def test_email_full_mode_hides_everything() -> None:
    """`email="full"` hides the whole address."""
    redactor = Redactor(email="full")
    assert redactor("to alice@example.com.") == "to [REDACTED:email]."


def test_email_off_mode_keeps_addresses() -> None:
    """`email="off"` keeps addresses as they are."""
    redactor = Redactor(email="off")
    assert redactor({"to": "alice@example.com"}) == {"to": "alice@example.com"}


def test_scp_style_git_remote_is_not_an_email() -> None:
    """`git@github.com:org/repo.git` is a remote, not an address."""
    assert redact("git@github.com:org/repo.git") == "git@github.com:org/repo.git"


# --------------------------------------------------------------------------------------------
# Shapes: headers, pairs, JSON, forms, URLs, bytes
# --------------------------------------------------------------------------------------------


def test_asgi_header_tuples_are_redacted_by_name_and_stay_bytes() -> None:
    """ASGI `scope["headers"]` keeps names and bytes, hides sensitive values."""
    headers = [
        (b"host", b"example.com"),
        (b"authorization", b"Bearer " + body(30).encode()),
        (b"cookie", b"sessionid=abc"),
        (b"x-api-key", b"k3y"),
    ]
    assert redact(headers) == [
        (b"host", b"example.com"),
        (b"authorization", b"[REDACTED:authorization]"),
        (b"cookie", b"[REDACTED:cookie]"),
        (b"x-api-key", b"[REDACTED:api_key]"),
    ]


def test_name_value_pairs_are_redacted_by_name() -> None:
    """`[("password", x)]`, `[["token", x]]` and `{"name": ..., "value": ...}` lists."""
    event = {
        "pairs": [("password", "x"), ("user", "jane")],
        "lists": [["token", "t"], ["page", "2"]],
        "params": [{"name": "X-Api-Key", "value": "v"}, {"name": "q", "value": "shoes"}],
        "kv": {"key": "api_key", "value": "v2"},
    }
    assert redact(event) == {
        "pairs": [("password", "[REDACTED:password]"), ("user", "jane")],
        "lists": [["token", "[REDACTED:token]"], ["page", "2"]],
        "params": [
            {"name": "X-Api-Key", "value": "[REDACTED:api_key]"},
            {"name": "q", "value": "shoes"},
        ],
        "kv": {"key": "api_key", "value": "[REDACTED:api_key]"},
    }


def test_plain_two_item_list_of_words_is_not_a_pair() -> None:
    """`scopes=["token", "openid"]` is a list, not a name/value pair."""
    assert redact({"scopes": ["token", "openid"]}) == {"scopes": ["token", "openid"]}


def test_json_document_in_a_string_is_decoded_redacted_and_reencoded() -> None:
    """A JSON body held as text is walked like a dict."""
    body_text = json.dumps({"user": "bob", "password": "hunter2", "items": [1, 2]})
    out = redact({"body": body_text})
    assert isinstance(out, dict)
    assert json.loads(out["body"]) == {
        "user": "bob",
        "password": "[REDACTED:password]",
        "items": [1, 2],
    }


def test_json_twice_encoded_is_redacted() -> None:
    """JSON inside JSON inside a string is reached."""
    inner = json.dumps({"token": "abc"})
    out = redact(json.dumps({"payload": inner}))
    assert "abc" not in str(out)


def test_clean_json_string_is_returned_unchanged() -> None:
    """Nothing to redact: the original text, spacing included, is kept."""
    text = '{"a": 1,  "b": [true, null]}'
    assert redact(text) == text


def test_json_fragment_in_free_text_is_redacted() -> None:
    """Quoted pairs are found even when the text is not valid JSON."""
    out = redact('body={"password": "x", "user": "y"')
    assert out == 'body={"password": "[REDACTED:password]", "user": "y"'


def test_form_and_query_strings_are_redacted_by_key() -> None:
    """`a=1&password=...&token=...`, percent-encoded keys and separators included."""
    out = redact("a=1&password=secret&token=x&pass%77ord=y&next=%2Fhome")
    assert out == (
        "a=1&password=[REDACTED:password]&token=[REDACTED:token]"
        "&pass%77ord=[REDACTED:password]&next=%2Fhome"
    )
    assert redact("password%3Dsecret%26x%3D1") == "password%3D[REDACTED:password]"


def test_sensitive_query_parameters_inside_urls_are_redacted() -> None:
    """Tokens and signatures in a URL's query string are hidden, the rest kept."""
    url = "https://api.example.com/cb?state=abc&access_token=xyz&X-Amz-Signature=ff00&page=2"
    assert redact(url) == (
        "https://api.example.com/cb?state=abc&access_token=[REDACTED:token]"
        "&X-Amz-Signature=[REDACTED:signature]&page=2"
    )


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        (
            "postgresql://app:" + "FAKE" + "pass0000@db.internal:5432/app",
            "postgresql://app:[REDACTED:password]@db.internal:5432/app",
        ),
        (
            "redis://:" + "FAKE" + "pass0000@cache:6379/0",
            "redis://:[REDACTED:password]@cache:6379/0",
        ),
        (
            "amqp://guest:p@ss:w0rd@rabbit.internal:5672/vhost?heartbeat=30",
            "amqp://guest:[REDACTED:password]@rabbit.internal:5672/vhost?heartbeat=30",
        ),
    ],
)
def test_url_userinfo_password_is_hidden_host_and_port_kept(url: str, expected: str) -> None:
    """Scheme, user, host, port and path survive; the password does not."""
    assert redact({"dsn": f"connecting to {url}"}) == {"dsn": f"connecting to {expected}"}


def test_object_repr_with_password_is_redacted() -> None:
    """Unknown objects become their redacted repr."""

    class Credentials:
        def __repr__(self) -> str:
            return "Credentials(username='jane', password='" + "FAKE" + "pass0000')"

    out = redact({"detail": Credentials()})
    assert out == {"detail": "Credentials(username='jane', password='[REDACTED:password]')"}


def test_exception_with_url_is_redacted() -> None:
    """An exception value is rendered and scanned like text."""
    exc = ValueError("GET https://api.example.com/v1?api_key=abc123 failed")
    out = str(redact({"error": exc}))
    assert "abc123" not in out
    assert "ValueError" in out


def test_safe_objects_are_kept_as_they_are() -> None:
    """Dates, UUIDs and decimals pass through unchanged (same objects)."""
    values = [datetime.datetime(2024, 5, 1), uuid.uuid4(), decimal.Decimal("1.5")]
    out = redact(values)
    assert isinstance(out, list)
    assert all(a is b for a, b in zip(out, values, strict=True))


def test_bytes_stay_bytes_and_undecodable_bytes_survive() -> None:
    """`bytes` in, `bytes` out; invalid UTF-8 is preserved when nothing matched."""
    raw = b"\xff\xfe plain \x80"
    assert redact(raw) is raw
    secret = ("gh" + "p_" + body(36)).encode()
    out = redact(b"\xff token " + secret)
    assert out == b"\xff token [REDACTED:github_token]"


def test_sets_become_lists() -> None:
    """Sets are returned as lists, their members redacted."""
    out = redact({"tags": {"password=x"}})
    assert out == {"tags": ["password=[REDACTED:password]"]}


def test_str_subclass_is_treated_as_text() -> None:
    """A str subclass is scanned as text, not as its repr."""

    class Name(str):
        pass

    assert redact(Name("password=x")) == "password=[REDACTED:password]"


# --------------------------------------------------------------------------------------------
# Invariants
# --------------------------------------------------------------------------------------------


def sample_event() -> dict[str, Any]:
    return {
        "event": "login failed",
        "user": {"email": "jane@example.com", "password": "x", "roles": ["a", "b"]},
        "headers": [(b"authorization", b"Bearer abcdef123456")],
        "body": '{"token": "t0k3n", "n": 1}',
        "query": "a=1&api_key=zzz",
        "card": luhn_complete("4", 16),
        "dsn": "postgres://u:pw@db:5432/x",
        "msg": "using " + TOKENS["github_token"](),
    }


def test_input_is_never_mutated() -> None:
    """The caller's nested objects are left exactly as they were."""
    event = sample_event()
    before = copy.deepcopy(event)
    redact(event)
    DEFAULT_REDACTOR.processor(None, "info", event)
    assert event == before


def test_redaction_is_idempotent_on_the_corpus() -> None:
    """Redacting twice gives the same result as redacting once."""
    corpus: list[Any] = [sample_event(), *LOOK_ALIKES, *(build() for build in TOKENS.values())]
    for item in corpus:
        once = redact(item)
        assert redact(once) == once


@pytest.mark.parametrize(
    "text",
    [
        '://password=password"u:p@h',
        "e@x.ioe@x.io",
        "://u:p@h4111 1111 1111 1111@",
        "4111 1111 1111 1111sk" + "_live_passwordpassword",
        "AK" + "IAIOSFODNN7EXAMPL" + "E4111 1111 1111 1111",
    ],
)
def test_idempotent_where_one_marker_changes_a_neighbours_context(text: str) -> None:
    """Cases found by Hypothesis: a second pass finds nothing new."""
    once = redact(text)
    assert redact(once) == once


def test_idempotent_with_user_patterns_next_to_an_email() -> None:
    """A user marker right after an address does not reveal a new address on the next pass."""
    redactor = Redactor(extra_patterns=[("caps", "[A-Z]{4,}")])
    once = redactor("e@x.ioIOSFODNN7EXAMPLE")
    assert redactor(once) == once


def test_deep_nesting_is_cut_without_recursion_error() -> None:
    """10,000 levels of nesting end in a depth marker, not a RecursionError."""
    deep: Any = "password=x"
    for i in range(10_000):
        deep = {"level": deep} if i % 2 else [deep]
    out = redact(deep)
    text = json.dumps(out)
    assert "[REDACTED:depth]" in text
    assert "password=x" not in text


def test_deep_nesting_inside_json_text_does_not_raise() -> None:
    """A 10,000-deep JSON document in a string is handled (as text)."""
    text = "[" * 10_000 + '"password=x"' + "]" * 10_000
    out = redact(text)
    assert isinstance(out, str)
    assert "password=x" not in out


def test_five_megabyte_string_completes_and_is_cut() -> None:
    """A 5 MB string returns a string no longer than `max_string`, its head still redacted."""
    secret = "gh" + "p_" + body(36)
    text = f"start {secret} " + "lorem ipsum dolor " * 300_000
    out = redact(text)
    assert isinstance(out, str)
    assert len(out) <= 1_000_000
    assert secret not in out
    assert out.endswith("[REDACTED:oversize]")
    assert redact(out) == out


def test_huge_single_token_without_spaces_completes() -> None:
    """Several MB of one unbroken word are bounded too."""
    out = redact("=" * 2_000_000 + "a" * 3_000_000)
    assert isinstance(out, str)
    assert len(out) <= 1_000_000


def test_cycles_end_in_a_marker() -> None:
    """A container that contains itself does not loop forever."""
    loop: list[Any] = ["token=x"]
    loop.append(loop)
    mapping: dict[str, Any] = {"name": "a"}
    mapping["self"] = mapping
    assert redact(loop) == ["token=[REDACTED:token]", "[REDACTED:cycle]"]
    assert redact(mapping) == {"name": "a", "self": "[REDACTED:cycle]"}


def test_shared_but_acyclic_objects_are_not_cycles() -> None:
    """The same list twice side by side is redacted twice, not marked as a cycle."""
    shared = ["x"]
    assert redact({"a": shared, "b": shared}) == {"a": ["x"], "b": ["x"]}


def test_broken_objects_never_raise() -> None:
    """A repr that raises, or a mapping that fails to iterate, becomes a marker."""

    class BadRepr:
        def __repr__(self) -> str:
            raise RuntimeError("boom")

    class BadMapping(dict[str, str]):
        def items(self) -> Any:
            raise RuntimeError("boom")

    assert redact({"x": BadRepr()}) == {"x": "[REDACTED:unrepresentable]"}
    assert redact({"x": BadMapping(a="b")}) == {"x": "[REDACTED:error]"}


# --------------------------------------------------------------------------------------------
# Configuration
# --------------------------------------------------------------------------------------------


def test_extra_keys_are_matched_word_by_word() -> None:
    """`extra_keys=["dob"]` also hides `user_dob` and `DOB`."""
    redactor = Redactor(extra_keys=["dob", "customer name"])
    out = redactor({"dob": "1990-01-31", "user_dob": "x", "DOB": "y", "customerName": "z"})
    assert out == {
        "dob": "[REDACTED:dob]",
        "user_dob": "[REDACTED:dob]",
        "DOB": "[REDACTED:dob]",
        "customerName": "[REDACTED:customer_name]",
    }


def test_extra_patterns_are_applied_and_idempotent() -> None:
    """User formats are marked with their rule name and never match inside a marker."""
    redactor = Redactor(
        extra_patterns=[("Acme Key", r"acme_[A-Za-z0-9]{16}"), ("caps", "[A-Z]{5,}")]
    )
    secret = "acme_" + body(16)
    out = redactor(f"key {secret} and SHOUTING and password=x")
    assert out == "key [REDACTED:acme_key] and [REDACTED:caps] and password=[REDACTED:password]"
    assert redactor(out) == out


def test_extra_patterns_reach_text_beyond_one_window() -> None:
    """Long text is scanned by user patterns window by window."""
    redactor = Redactor(extra_patterns=[("acme", r"acme_[0-9]{8}")])
    text = "x " * 20_000 + "acme_12345678 " + "y " * 20_000
    out = str(redactor(text))
    assert "acme_12345678" not in out
    assert "[REDACTED:acme]" in out


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"extra_patterns": [("bad", r"(a+)+$")]}, "extra_patterns"),
        ({"extra_patterns": [("bad", r"(?:\w*\d)*x")]}, "extra_patterns"),
        ({"extra_patterns": [("bad", r"[unclosed")]}, "extra_patterns"),
        ({"extra_patterns": [("empty", r"a*")]}, "extra_patterns"),
        ({"extra_patterns": [("!!!", r"abc")]}, "extra_patterns"),
        ({"extra_keys": ["--"]}, "extra_keys"),
        ({"email": "partial"}, "email"),
        ({"max_depth": 0}, "max_depth"),
        ({"max_depth": 10_000}, "max_depth"),
        ({"max_string": 10}, "max_string"),
    ],
)
def test_bad_settings_are_refused_naming_the_field(kwargs: dict[str, Any], field: str) -> None:
    """Slow or invalid patterns and out-of-range limits fail at construction."""
    with pytest.raises(SettingsError) as info:
        Redactor(**kwargs)
    assert info.value.name == field


def test_bounded_nested_repetition_is_accepted() -> None:
    """`(?:[0-9]{1,3}\\.){3}` repeats a bounded group: allowed."""
    redactor = Redactor(extra_patterns=[("ip", r"10\.(?:[0-9]{1,3}\.){2}[0-9]{1,3}")])
    assert redactor("from 10.1.2.3") == "from [REDACTED:ip]"


def test_public_api_is_pinned() -> None:
    """The module exports exactly the documented names."""
    assert sorted(redact_module.__all__) == ["DEFAULT_REDACTOR", "Redactor", "redact"]


# --------------------------------------------------------------------------------------------
# structlog processor
# --------------------------------------------------------------------------------------------


def access_event(request_id: str, path: str) -> dict[str, Any]:
    return {
        "event": "request.finished",
        "method": "GET",
        "route": "/users/{user_id}/orders",
        "path": path,
        "status": 200,
        "duration_ms": 12.5,
        "bytes": 512,
        "client_ip": "203.0.113.7",
        "request_id": request_id,
        "level": "info",
        "timestamp": "2026-11-28T02:15:00.123456Z",
    }


def test_processor_returns_a_copy_and_leaves_the_event_alone() -> None:
    """The processor returns a new dict, even when nothing was redacted."""
    redactor = Redactor()
    event = access_event(str(uuid.uuid4()), "/users/1/orders")
    for _ in range(3):
        out = redactor.processor(None, "info", event)
        assert out == event
        assert out is not event


def test_processor_redacts_in_a_real_structlog_chain() -> None:
    """Placed before the renderer, no secret reaches the rendered line."""
    secret = TOKENS["stripe_key"]()
    logger = structlog.wrap_logger(
        structlog.testing.ReturnLogger(),
        processors=[
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            Redactor().processor,
            structlog.processors.JSONRenderer(serializer=orjson.dumps),
        ],
    )
    line = logger.info("charge", api_key="k", note=f"using {secret}", card=luhn_complete("4", 16))
    rendered = orjson.loads(line)
    assert rendered["api_key"] == "[REDACTED:api_key]"
    assert rendered["note"] == "using [REDACTED:stripe_key]"
    assert rendered["card"] == "[REDACTED:card]"
    assert rendered["level"] == "info"


def test_processor_fast_path_still_catches_secrets_in_repeated_events() -> None:
    """After many clean events, a secret in the same shape of event is still caught."""
    redactor = Redactor()
    for i in range(50):
        redactor.processor(None, "info", access_event(str(uuid.uuid4()), f"/users/{i}/orders"))
    event = access_event(str(uuid.uuid4()), "/reset?token=abc123")
    assert redactor.processor(None, "info", event)["path"] == "/reset?token=[REDACTED:token]"
    event = access_event("4111-1111-1111-1111", "/x")
    assert redactor.processor(None, "info", event)["request_id"] == "[REDACTED:card]"


def test_processor_never_raises() -> None:
    """Odd values in an event dict still produce an event dict."""

    class Weird:
        def __repr__(self) -> str:
            raise RuntimeError("boom")

    out = Redactor().processor(None, "info", {"event": "x", "w": Weird(), "n": 2**200})
    assert out == {"event": "x", "w": "[REDACTED:unrepresentable]", "n": 2**200}


# --------------------------------------------------------------------------------------------
# Properties
# --------------------------------------------------------------------------------------------

json_scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False)
    | st.text(max_size=40)
    | st.sampled_from(["password=x", "token: t", "a@b.co", "4111 1111 1111 1111", "Bearer abc123"])
)
keys = st.text(max_size=12) | st.sampled_from(["password", "token", "name", "value", "x-api-key"])
json_values = st.recursive(
    json_scalars,
    lambda children: (
        st.lists(children, max_size=5)
        | st.dictionaries(keys, children, max_size=5)
        | st.tuples(st.sampled_from(["password", "host", b"cookie"]), children)
    ),
    max_leaves=25,
)


@HYPOTHESIS
@given(json_values)
def test_property_never_raises_and_is_idempotent(value: Any) -> None:
    """Arbitrary JSON-like values: no exception, and a second pass changes nothing."""
    once = redact(value)
    assert redact(once) == once


@HYPOTHESIS
@given(json_values)
def test_property_does_not_mutate(value: Any) -> None:
    """Arbitrary JSON-like values are left untouched."""
    before = copy.deepcopy(value)
    redact(value)
    assert value == before


filler = st.text(alphabet=string.ascii_letters + string.digits + " .,:;!?()/-_=@#", max_size=60)


@HYPOTHESIS
@given(st.sampled_from(sorted(TOKENS)), filler, filler, st.randoms(use_true_random=False))
def test_property_embedded_secret_is_always_gone(
    name: str, before: str, after: str, rng: random.Random
) -> None:
    """A random secret between random words never survives, whatever surrounds it."""
    state = RNG.getstate()
    RNG.seed(rng.random())
    secret = TOKENS[name]()
    RNG.setstate(state)
    out = str(redact({"msg": f"{before} {secret} {after}"}))
    core = max(re.split(r"[^A-Za-z0-9]", secret), key=len)
    assert core not in out


event_values = st.dictionaries(
    st.sampled_from(["event", "path", "request_id", "method", "timestamp", "status", "note"]),
    st.none()
    | st.integers()
    | st.floats(allow_nan=False)
    | st.text(max_size=30)
    | st.from_regex(prefilter.SAFE_SHAPE, fullmatch=True)
    | st.sampled_from(["/users/1", "GET", "2026-11-28T02:15:00Z", luhn_complete("4", 16)]),
    max_size=7,
)


@HYPOTHESIS
@given(st.lists(event_values, min_size=1, max_size=6))
def test_property_processor_fast_path_equals_full_walk(events: list[dict[str, Any]]) -> None:
    """The processor's shortcut never returns anything the full walk would not."""
    fast, full = Redactor(), Redactor(extra_patterns=FULL_SCAN)
    for event in events:
        assert fast.processor(None, "info", event) == full(event)


@HYPOTHESIS
@given(st.from_regex(prefilter.SAFE_SHAPE, fullmatch=True))
def test_property_safe_shapes_are_left_alone(text: str) -> None:
    """Every string the shortcut trusts by shape is unchanged by the full scan."""
    assert Redactor(extra_patterns=FULL_SCAN)(text) == text


HINT_PIECES = [
    *"abcdefghijklmnopqrstuvwxyzTZASKGIJB0123456789-:./+,\n _=@%$'\"{[",
    *("sk-", "glpat-", "xox", "xapp-", "pypi-", "hooks.slack.com/services/", "eyJ", "SG."),
    *("AKIA", "ghp_", "k_live_", "Bearer ", "password=", "4111", "-----BEGIN"),
    *("</", "<password>", "--", "--token ", "mysql -p", ":AA", "/webhook", "hooks.", "MT"),
]
hint_text = st.lists(st.sampled_from(HINT_PIECES), max_size=40).map("".join)


@HYPOTHESIS
@given(hint_text)
def test_property_cheap_gates_only_skip_text_no_rule_changes(text: str) -> None:
    """When a shortcut says "nothing to do", the full scan agrees."""
    scanned = Redactor(extra_patterns=FULL_SCAN)(text)
    if prefilter.plain_classes(text) or (len(text) >= 5 and not prefilter.needs_scan(text)):
        assert scanned == text


# --------------------------------------------------------------------------------------------
# Structured validation errors and the gaps an adversarial review found
# --------------------------------------------------------------------------------------------

SECRET_PW = "Hunter2-very-secret-pw"
DISCORD = "MTk4NjIyNDgzNDcxOTI1MjQ4.Cl2FMQ.ZnCjm1XVW7vRze4b7Cq4se7kKWs"
TELEGRAM = "123456789:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw1"


def _pydantic_error() -> Any:
    import pydantic

    class Login(pydantic.BaseModel):
        email: str
        password: str = pydantic.Field(min_length=64)

    try:
        Login(email="a@example.com", password=SECRET_PW)
    except pydantic.ValidationError as exc:
        return exc
    raise AssertionError("unreachable")


def test_pydantic_errors_list_hides_a_secret_input() -> None:
    """`exc.errors()`: the rejected `input` under a `loc` naming a secret is masked."""
    errors = _pydantic_error().errors()
    out = redact({"errors": errors})
    assert SECRET_PW not in str(out)
    assert out["errors"][0]["loc"] == ("password",)  # type: ignore[index]
    assert out["errors"][0]["msg"] == errors[0]["msg"]  # type: ignore[index]


def test_pydantic_error_text_hides_a_secret_input_value() -> None:
    """`str(exc)` prints `input_value=...` under the field's line: masked for a secret field."""
    text = str(_pydantic_error())
    assert SECRET_PW in text
    out = str(redact(text))
    assert SECRET_PW not in out
    assert "input_value=[REDACTED:password]" in out
    kept = "1 validation error for M\nquantity\n  bad [type=x, input_value=-1, input_type=int]"
    assert redact(kept) == kept  # other fields keep their value for debugging


def test_fastapi_422_body_and_nested_locations_hide_secrets() -> None:
    """FastAPI's 422 body and nested locations (`body.user.password`) are masked the same way."""
    body = {
        "detail": [
            {"type": "string_too_short", "loc": ["body", "user", "password"], "msg": "short",
             "input": SECRET_PW, "ctx": {"min_length": 64}},
            {"type": "missing", "loc": ["body", "email"], "msg": "Field required", "input": {}},
        ]
    }  # fmt: skip
    out: Any = redact(body)
    assert SECRET_PW not in str(out)
    assert out["detail"][1] == body["detail"][1]


def test_validation_errors_never_reach_logs(log_stream: Any) -> None:
    """`log.warning(errors=...)`, `log.exception()` and stdlib `logger.exception()` hide it."""
    import logging

    from launchready_sdk import LaunchReady, Settings, get_logger

    LaunchReady(Settings(), log_stream=log_stream)
    exc = _pydantic_error()
    get_logger("t").warning("login.invalid", errors=exc.errors())
    try:
        raise exc
    except Exception:
        get_logger("t").exception("login.failed")
        logging.getLogger("t.std").exception("login failed")
    assert log_stream.getvalue().count("validation error") >= 2
    assert SECRET_PW not in log_stream.getvalue()


def test_marshmallow_and_django_form_errors_hide_secrets() -> None:
    """Other structured-error libraries: marshmallow's data and Django's form data."""
    import marshmallow

    class LoginSchema(marshmallow.Schema):
        email = marshmallow.fields.Email(required=True)
        password = marshmallow.fields.String(validate=marshmallow.validate.Length(min=64))

    try:
        LoginSchema().load({"email": "nope", "password": SECRET_PW})
    except marshmallow.ValidationError as exc:
        out = redact({"messages": exc.messages, "data": exc.data, "valid": exc.valid_data})
    assert SECRET_PW not in str(out)
    form = {"data": {"username": "bob", "password": SECRET_PW}, "errors": {"password": ["short"]}}
    assert SECRET_PW not in str(redact(form))


@pytest.mark.parametrize(
    ("text", "secret"),
    [
        (f"Authorization: Bot {DISCORD}", "ZnCjm1X"),
        (DISCORD, "ZnCjm1X"),
        (f"GET https://api.telegram.org/bot{TELEGRAM}/x", "AAHdq"),
        ("https://contoso.webhook.office.com/webhookb2/a1b2-c3@d4e5/IncomingWebhook/f6/g7", "a1b2"),
        ("https://outlook.office.com/webhook/a1b2c3d4-e5f6/IncomingWebhook/abcd/efgh", "a1b2c3"),
        ("https://discord.com/api/webhooks/123456789012345678/aBcDeFgHiJkLmNoPqRsTuVwX", "aBcDeF"),
        ("GET /login?user[password]=Hunter2xyz&next=/", "Hunter2xyz"),
        ("GET /login?user%5Bpassword%5D=Hunter2xyz&next=/", "Hunter2xyz"),
        ("Authorization: ApiKey k3y-Abc123-Secret", "Abc123"),
        ("authorization=SSWS 00QCjAl4MlV-WPXM-secret", "00QCjAl4"),
        ("Authorization: Negotiate YIIGhgYJKoZIhvcSAQICAQBuggZ1", "YIIGhgYJ"),
        ('{"pw": "Hunter2xyz"}', "Hunter2xyz"),
        ('{"refresh": "r3fresh-Tok3n-value"}', "r3fresh"),
        ('{"private": "pr1vate-key-material"}', "pr1vate"),
        ("client_assertion=eyJhbGciOi.payload-part.sig", "payload-part"),
        ('{"security_answer": "Fluffy the cat"}', "Fluffy"),
        ("Cookie: theme=dark; sid=abc123def; csrftoken=zzz999", "abc123def"),
        ("Cookie: theme=dark; sid=abc123def; csrftoken=zzz999", "dark"),
        ("<password>Hunter2xyz</password>", "Hunter2xyz"),
        ('<apiKey kind="live">k3yM4terial</apiKey>', "k3yM4terial"),
        ("deploy --password Hunter2xyz --user bob", "Hunter2xyz"),
        ("mysqldump -uroot -pHunter2xyz shop > dump.sql", "Hunter2xyz"),
    ],
)
def test_review_gaps_are_redacted(text: str, secret: str) -> None:
    """Each shape the adversarial review printed in full is now masked."""
    assert secret in text
    assert secret not in str(redact(text))
    assert secret not in str(redact({"line": text}))


@pytest.mark.parametrize(
    "text",
    [
        '{"refresh_interval": "30s", "private_repo": "yes", "assertion_count": "3"}',
        "mysql -uroot -p shop",
        "run --verbose --user bob",
        "<user>bob</user>",
        "Authorization header missing",
    ],
)
def test_review_gap_neighbours_survive(text: str) -> None:
    """What sits next to those shapes and holds no secret is kept."""
    assert redact(text) == text


@HYPOTHESIS
@given(
    st.sampled_from(sorted(CARDS)),
    st.lists(st.integers(min_value=1, max_value=8), min_size=1, max_size=8),
    st.lists(st.sampled_from([" ", "-", "  ", "--", " - "[:2]]), min_size=8, max_size=8),
)
def test_property_cards_in_any_grouping_are_redacted(
    issuer: str, sizes: list[int], seps: list[str]
) -> None:
    """A Luhn-valid card number split into any groups by spaces or dashes is redacted."""
    number = luhn_complete(*CARDS[issuer])
    parts, at = [], 0
    for size in sizes:
        if at >= len(number):
            break
        parts.append(number[at : at + size])
        at += size
    if at < len(number):
        parts.append(number[at:])
    text = parts[0] + "".join(sep + part for sep, part in zip(seps, parts[1:], strict=False))
    out = str(redact({"note": f"paid with {text} today"}))
    assert number not in out.replace(" ", "").replace("-", "")
    assert "[REDACTED:card]" in out


@pytest.mark.parametrize(
    "text",
    [
        "+1 415-555-0134",
        "+44 20 7946 0958",
        "+86 138 0013 8000",
        "call 0800 123 4567 or 0800-765-4321",
        "2026-11-28 12:00:00",
        "2026-11-28T12:00:00.123456+00:00 1718000000006",
        "order 2024-000123-0042 shipped",
        "ORD-2024-000123",
    ],
)
def test_phone_numbers_timestamps_and_order_numbers_survive(text: str) -> None:
    """Look-alikes of grouped card numbers are kept."""
    assert redact({"msg": text}) == {"msg": text}


def test_a_card_followed_by_its_cvv_is_found_and_a_digit_uuid_is_kept() -> None:
    """`4111 1111 1111 1111 123` loses the card (the CVV group after it is kept); an all-digit
    UUID is never cut into a card."""
    card = luhn_complete("4", 16)
    spaced = " ".join(card[i : i + 4] for i in range(0, 16, 4))
    # One CVV in ten makes the 19 digits a valid 4-4-4-4-3 card of their own, which is
    # redacted whole; pick one that does not.
    cvv = next(c for c in ("123", "124", "125") if not luhn(card + c))
    assert redact(f"card {spaced} {cvv} exp 12") == f"card [REDACTED:card] {cvv} exp 12"
    tail = next(t for t in (f"12{d}" for d in string.digits) if luhn(card + t))
    assert redact(f"card {spaced} {tail}") == "card [REDACTED:card]"
    uuid_digits = f"{card[:8]}-{card[8:12]}-{card[12:16]}-1234-567890123456"
    assert redact(uuid_digits) == uuid_digits
