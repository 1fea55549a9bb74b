"""Redaction of secrets and personal data in log events and any other value.

`redact(value)` returns a redacted deep copy of `value`; `Redactor(...)` builds a configured
instance, and `Redactor.processor` is a structlog processor. Place it after the processors that
add or format data (`merge_contextvars`, `format_exc_info`, `TimeStamper`) and just before the
renderer, and in `ProcessorFormatter.foreign_pre_chain` so stdlib and server logs pass through it.
Nothing that emits (a Sentry or file processor) should run before it.

What it walks: mappings (keys kept, values redacted), lists, tuples, sets (returned as lists),
`bytes` (returned as `bytes`, decoded as UTF-8 losslessly), ASGI header tuples and other name/value
pairs (`[(b"authorization", b"...")]`, `[{"name": "X-Api-Key", "value": "..."}]`), JSON documents
held in strings (re-serialised compactly when something was redacted), and free text.

Three families of rules, each marked `[REDACTED:<rule>]`; a marker never contains matched text:

- Keys. A key is split into lowercase words at `_ - . space` and camelCase boundaries (after
  percent-decoding and NFKC), so `X-Api-Key`, `clientSecret`, `AWS_SECRET_ACCESS_KEY` and
  `pass%77ord` match but `author_id`, `max_tokens`, `primary_key` and `keyword` do not. Keys that
  describe a secret (`has_password`, `password_changed_at`, `token_count`, `auth_method`) are
  spared by prefix and suffix lists. The marker names the key's category: password, secret,
  token, api_key, access_key, private_key, key, authorization, credential, cookie, session,
  signature, jwt, csrf, card, ssn, pin, otp or code. A `None` or bool under a sensitive key is
  kept (it cannot carry a secret); any other value, containers included, is replaced whole.
- Token formats, found anywhere in text: AWS key IDs, Stripe secret and restricted keys, webhook
  and client secrets, GitHub, GitLab, Slack (tokens and webhook URLs), Google, SendGrid, OpenAI,
  Anthropic, npm, PyPI and Twilio keys, JWTs, PEM private keys, bcrypt hashes, `Bearer` and
  `Basic` credentials, URL passwords (`scheme://user:[REDACTED:password]@host:port` keeps the
  rest), and `key=value`, `key: value` and `"key": "value"` pairs whose key is sensitive,
  including form bodies, query strings, percent-encoded keys and `%3D` separators.
- Personal data: payment card numbers (issuer prefix, length and Luhn checked; plain, spaced,
  dashed or as an `int`) and e-mail addresses (`email="domain"` keeps the domain, `"full"` hides
  it all, `"off"` keeps it).

Security stance: a false positive costs a debugging detail, a false negative leaks a credential,
so ambiguous cases are redacted. `redact` never raises: anything that fails inside becomes
`[REDACTED:error]`. Input is never mutated, and the result is stable: text is rescanned until a
pass changes nothing, so `redact(redact(x)) == redact(x)`.

Speed: every token pattern starts with a literal and runs only after a substring test finds its
prefix; key verdicts and clean strings (at most 4,096 of up to 256 characters, per instance) are
cached. In `processor`, an event whose keys are known safe and whose new strings are IDs,
timestamps or lowercase paths is copied after a handful of C-level tests.

Limits, candidly:

- Detection is by format and by key name. A password written into prose ("my password is
  hunter2"), an opaque token under an innocent key, OAuth `code=` parameters, DSNs without a
  scheme (`user:pass@tcp(db)`), URL passwords holding a raw `[`, `]` or quote, names, addresses,
  phone numbers, IP addresses and IBANs are not found. Dict keys are kept, even a secret key.
- Stripe publishable keys (`pk_`), Sentry DSN public keys, UUIDs, trace IDs, hashes and other
  hex strings are kept on purpose: they are identifiers, not credentials. A 40-character AWS
  secret access key is found only next to its key name, since it has no prefix. A token glued to
  a preceding letter or digit (`xghp_...`) is not taken for one.
- Card numbers need an issuer prefix, a valid length and a Luhn check, so 13-digit epoch
  milliseconds and most numeric IDs survive; about one Luhn-valid ID in ten that happens to start
  like a card (for instance a 16-digit ID starting with 4) is still redacted.
- Unknown objects are replaced by their redacted `repr()`, which is what a JSON renderer would
  have written; dates, times, UUIDs, decimals, enums, paths and IP addresses are kept as they are.
- Past `max_depth` nested containers (a JSON document in a string counts as one level) a value
  becomes `[REDACTED:depth]`, a container met again inside itself becomes `[REDACTED:cycle]`,
  and text past `max_string` characters is cut near a space and ends with `[REDACTED:oversize]`.
  A 1 MB string dense with sensitive `key: value` pairs can still take about a second.
- `extra_patterns` run on Python's backtracking `re`. Patterns with nested unbounded quantifiers
  such as `(a+)+` are refused at start-up and patterns only see 16 KiB windows of text, but a
  slow pattern can still stall the thread that logs: start each pattern with a literal prefix and
  keep its repetitions bounded.
"""

from __future__ import annotations

import datetime
import decimal
import enum
import functools
import importlib
import ipaddress
import pathlib
import re
import unicodedata
import urllib.parse
import uuid
from collections.abc import Iterable, Mapping, MutableMapping
from typing import Any, Final, Literal

import orjson

from launchready_sdk.errors import SettingsError

__all__ = ["DEFAULT_REDACTOR", "Redactor", "redact"]

EmailMode = Literal["domain", "full", "off"]


def _marker(rule: str) -> str:
    return f"[REDACTED:{rule}]"


DEPTH_MARKER: Final = _marker("depth")
CYCLE_MARKER: Final = _marker("cycle")
ERROR_MARKER: Final = _marker("error")
OVERSIZE_MARKER: Final = _marker("oversize")
_CARD_MARKER: Final = _marker("card")
_EMAIL_MARKER: Final = _marker("email")
_MARKER_RE: Final = re.compile(r"\[REDACTED(?::[a-z0-9_.\-]{1,64})?\]")

_MAX_DEPTH_LIMIT: Final = 256
_MIN_STRING_LIMIT: Final = 1024
_CLEAN_CACHE_SIZE: Final = 4096
_CLEAN_MAX_LEN: Final = 256
_MIN_SECRET: Final = 5  # the shortest text a built-in rule can change (`pwd=x`)
_KEY_CACHE_SIZE: Final = 4096
_EXTRA_WINDOW: Final = 16_384
_EXTRA_OVERLAP: Final = 512
_MISSING: Final = object()
_CARD_MIN: Final = 10**12
_MAX_PASSES: Final = 4

# ---------------------------------------------------------------------------------------------
# Key rules
# ---------------------------------------------------------------------------------------------

_WORD_RE: Final = re.compile(r"[A-Z]+[0-9]*(?![a-z])|[A-Z]?[a-z]+[0-9]*|[0-9]+")


def _words(text: str) -> frozenset[str]:
    return frozenset(text.split())


_TERMS: Final[dict[str, str]] = {
    **dict.fromkeys(
        ("password", "passwords", "passwd", "pwd", "passphrase", "passcode"), "password"
    ),
    **dict.fromkeys(("secret", "secrets", "clientsecret"), "secret"),
    **dict.fromkeys(("token", "accesstoken", "refreshtoken", "authtoken", "idtoken"), "token"),
    "apikey": "api_key",
    "accesskey": "access_key",
    "privatekey": "private_key",
    "secretkey": "secret",
    **dict.fromkeys(("auth", "authorization", "bearer"), "authorization"),
    **dict.fromkeys(("credential", "credentials", "cred", "creds"), "credential"),
    **dict.fromkeys(("cookie", "cookies", "setcookie"), "cookie"),
    **dict.fromkeys(("session", "sessionid", "sessid", "jsessionid", "phpsessid"), "session"),
    **dict.fromkeys(("signature", "sig"), "signature"),
    "jwt": "jwt",
    **dict.fromkeys(("csrf", "xsrf", "csrftoken", "xsrftoken"), "csrf"),
    **dict.fromkeys(("cvv", "cvc", "cvv2", "cvc2", "pan", "creditcard", "cardnumber"), "card"),
    "ssn": "ssn",
    "pin": "pin",
    **dict.fromkeys(("otp", "totp", "hotp"), "otp"),
}
# A word that ends a compound written without separators (`PGPASSWORD`, `csrftoken`).
_COMPOUND_SUFFIXES: Final = (
    ("password", "password"),
    ("passwd", "password"),
    ("pwd", "password"),
    ("secret", "secret"),
    ("token", "token"),
    ("apikey", "api_key"),
    ("accesskey", "access_key"),
    ("privatekey", "private_key"),
    ("secretkey", "secret"),
    ("sessionid", "session"),
    ("cookie", "cookie"),
    ("credentials", "credential"),
)
_TOKENS_QUALIFIERS: Final = _words(
    "access refresh auth api id bearer oauth oauth2 session csrf xsrf github slack"
)
_CODE_QUALIFIERS: Final = _words(
    "mfa otp totp 2fa sms auth oauth verification verify recovery backup reset security "
    "confirmation activation magic login"
)
_KEY_CATEGORIES: Final = {"api": "api_key", "access": "access_key", "private": "private_key"}
_BENIGN_KEY_QUALIFIERS: Final = _words(
    "primary foreign unique composite natural surrogate candidate sort partition range hash "
    "shard sharding routing cache idempotency dedup dedupe lookup object bucket s3 map dict "
    "row column table index search translation i18n message group event config setting "
    "settings env field attr attribute option query request response lock ratelimit limit "
    "throttle job task queue stream topic kafka redis storage file metric feature flag label "
    "tag public publishable cursor order"
)
_BENIGN_PREFIXES: Final = _words(
    "has have is was were should can must need needs require requires use uses allow allows "
    "enable enabled disable disabled supports num max min total count"
)
_BENIGN_SUFFIXES: Final = _words(
    "at on ts time date timestamp count counts num enabled disabled required length len size "
    "type types kind ids changed change expired expires expiry expiration in ttl age policy "
    "strength hint requested attempts attempt retries tries failures errors error version "
    "format algorithm alg method methods mode scheme name names field fields path file "
    "filename dir url uri endpoint provider providers source status valid validity present "
    "exists used usage limit limits duration ms sec secs seconds timeout ratio rate score "
    "percent pct consent banner location label description prefix last4 brand issuer "
    "country fingerprint month year strategy backend level scope scopes audience"
)
_ID_SENSITIVE: Final = frozenset(("session", "csrf", "xsrf"))


@functools.lru_cache(maxsize=_KEY_CACHE_SIZE)
def _key_words(key: str) -> tuple[str, ...]:
    """The lowercase words of a key: `X-Api-Key` -> ("x", "api", "key")."""
    if "%" in key:
        key = urllib.parse.unquote(key)
    if not key.isascii():
        key = unicodedata.normalize("NFKC", key)
        key = "".join(c for c in key if unicodedata.category(c) != "Cf")
    return tuple(word.lower() for word in _WORD_RE.findall(key))


def _word_category(words: tuple[str, ...], i: int) -> str | None:
    """The category that `words[i]` gives the key, in the context of its neighbours."""
    word = words[i]
    prev = words[i - 1] if i else ""
    category = _TERMS.get(word)
    if category is not None:
        return category
    if word in ("key", "keys"):
        if not prev or prev in _BENIGN_KEY_QUALIFIERS:
            return None  # a bare `key`, `cache_key`, `primary_key`
        return _KEY_CATEGORIES.get(prev, "key")
    if word == "pass":
        return "password" if i == len(words) - 1 else None
    if word == "sid":
        return "session" if len(words) == 1 or prev == "connect" else None
    if word == "tokens":
        return "token" if prev in _TOKENS_QUALIFIERS else None
    if word in ("code", "codes"):
        return "code" if prev in _CODE_QUALIFIERS else None
    if word in ("number", "num", "no", "nr"):
        return "card" if prev in ("card", "cc") else None
    if (prev, word) in (("credit", "card"), ("social", "security")):
        return "card" if word == "card" else "ssn"
    return _compound_category(word)


def _compound_category(word: str) -> str | None:
    if word.startswith(("password", "passwd")):
        return "password"
    for suffix, category in _COMPOUND_SUFFIXES:
        if word.endswith(suffix) and len(word) > len(suffix):
            return category
    return None


def _is_exempt(words: tuple[str, ...]) -> bool:
    """Whether a key names a fact about a secret (`has_password`, `token_count`), not a secret."""
    if len(words) < 2:
        return False
    if words[0] in _BENIGN_PREFIXES:
        return True
    last = words[-1]
    if last == "id":
        return not _ID_SENSITIVE.intersection(words)
    return last in _BENIGN_SUFFIXES


@functools.lru_cache(maxsize=_KEY_CACHE_SIZE)
def _classify_key(key: str) -> str | None:
    """The built-in category of a sensitive key, or None."""
    words = _key_words(key)
    for i in range(len(words)):
        category = _word_category(words, i)
        if category is not None:
            return None if _is_exempt(words) else category
    return None


# ---------------------------------------------------------------------------------------------
# Value rules
# ---------------------------------------------------------------------------------------------

_LEFT: Final = 1  # the match must not follow a letter or digit
_DIGIT: Final = 2  # the match must contain a digit


class _TokenRule:
    """A credential format: a literal-prefixed pattern run only when one of its hints occurs."""

    __slots__ = ("flags", "hints", "marker", "pattern")

    def __init__(self, rule: str, hints: tuple[str, ...], pattern: str, flags: int = 0) -> None:
        self.marker = _marker(rule)
        self.hints = hints
        self.pattern = re.compile(pattern, re.ASCII)
        self.flags = flags

    def apply(self, text: str) -> str:
        return self.pattern.sub(self._replace, text)

    def _replace(self, m: re.Match[str]) -> str:
        start = m.start()
        if self.flags & _LEFT and start and m.string[start - 1].isalnum():
            return m.group()
        if self.flags & _DIGIT and not any(c.isdigit() for c in m.group()):
            return m.group()
        return self.marker


_END: Final = r"(?![A-Za-z0-9])"
# Grouped by a character every hint of the group contains, so one test skips a whole group.
_UNDERSCORE_RULES: Final = (
    _TokenRule(
        "stripe_key",
        ("k_live_", "k_test_", "k_prod_"),
        rf"[rs]k_(?:live|test|prod)_[A-Za-z0-9]{{10,247}}{_END}",
        _LEFT,
    ),
    _TokenRule("stripe_webhook_secret", ("whsec_",), r"whsec_[A-Za-z0-9+/=]{20,256}", _LEFT),
    _TokenRule(
        "stripe_client_secret",
        ("_secret_",),
        r"(?:pi|seti|src)_[A-Za-z0-9]{8,64}_secret_[A-Za-z0-9]{8,128}",
        _LEFT,
    ),
    _TokenRule(
        "github_token",
        ("ghp_", "gho_", "ghu_", "ghs_", "ghr_"),
        rf"gh[pousr]_[A-Za-z0-9]{{30,255}}{_END}",
        _LEFT,
    ),
    _TokenRule("github_token", ("github_pat_",), r"github_pat_[A-Za-z0-9_]{22,255}", _LEFT),
    _TokenRule("npm_token", ("npm_",), rf"npm_[A-Za-z0-9]{{36}}{_END}", _LEFT),
)
_DASH_RULES: Final = (
    _TokenRule("gitlab_token", ("glpat-",), r"glpat-[A-Za-z0-9_\-]{20,64}", _LEFT),
    _TokenRule("slack_token", ("xox",), r"xox[abposre]-[A-Za-z0-9\-]{10,250}", _LEFT),
    _TokenRule("slack_token", ("xapp-",), r"xapp-[0-9]-[A-Za-z0-9\-]{10,250}", _LEFT),
    _TokenRule("anthropic_key", ("sk-ant-",), r"sk-ant-[A-Za-z0-9_\-]{20,300}", _LEFT),
    _TokenRule("openai_key", ("sk-",), r"sk-[A-Za-z0-9_\-]{20,300}", _LEFT | _DIGIT),
    _TokenRule("pypi_token", ("pypi-AgE",), r"pypi-AgE[A-Za-z0-9_\-]{40,8192}", _LEFT),
)
_CAPITAL_A_RULES: Final = (
    _TokenRule(
        "aws_access_key",
        ("AKIA", "ASIA", "ABIA", "ACCA"),
        rf"A(?:KIA|SIA|BIA|CCA)[A-Z2-7]{{16}}{_END}",
        _LEFT,
    ),
    _TokenRule("google_api_key", ("AIza",), rf"AIza[A-Za-z0-9_\-]{{35}}{_END}", _LEFT),
)
_CAPITAL_S_RULES: Final = (
    _TokenRule(
        "sendgrid_key", ("SG.",), r"SG\.[A-Za-z0-9_\-]{16,32}\.[A-Za-z0-9_\-]{16,64}", _LEFT
    ),
    _TokenRule("twilio_key", ("SK",), rf"SK[0-9a-fA-F]{{32}}{_END}", _LEFT),
)
_HASH_PART: Final = r"[A-Za-z0-9+/=._\-]"
# Password hashes: bcrypt, argon2, scrypt (Django's and `scrypt$n$r$p$salt$hash`), PBKDF2
# (Django's and passlib's) and SHA-crypt. Each field class excludes `$`, so a run is read once.
_DOLLAR_RULES: Final = (
    _TokenRule("password_hash", ("$2",), r"\$2[abxy]?\$[0-9]{2}\$[./A-Za-z0-9]{53}"),
    _TokenRule(
        "password_hash",
        ("$argon2",),
        rf"\$argon2(?:id|i|d)\$v=[0-9]{{1,3}}\$m=[0-9]{{1,10}},t=[0-9]{{1,10}},p=[0-9]{{1,4}}"
        rf"\${_HASH_PART}{{4,256}}\${_HASH_PART}{{16,512}}",
    ),
    _TokenRule(
        "password_hash",
        ("scrypt$", "pbkdf2"),
        rf"(?:\$?scrypt|\$?pbkdf2(?:[_\-]sha(?:1|256|512))?)\$(?:{_HASH_PART}{{1,256}}\$){{2,5}}"
        rf"{_HASH_PART}{{16,512}}",
        _LEFT,
    ),
    _TokenRule(
        "password_hash",
        ("$5$", "$6$"),
        r"\$[56]\$(?:rounds=[0-9]{1,10}\$)?[./A-Za-z0-9]{1,16}\$[./A-Za-z0-9]{43,86}",
    ),
)
_SLACK_WEBHOOK: Final = _TokenRule(
    "slack_webhook",
    ("hooks.slack.com",),
    r"hooks\.slack\.com/(?:services|workflows|triggers)/[A-Za-z0-9_/\-]{8,256}",
)


def _apply_rules(text: str, rules: tuple[_TokenRule, ...]) -> str:
    for rule in rules:
        for hint in rule.hints:
            if hint in text:
                text = rule.apply(text)
                break
    return text


_PEM_RE: Final = re.compile(
    r"-----BEGIN[A-Z0-9 ]{0,40}PRIVATE KEY(?: BLOCK)?-----.*?"
    r"(?:-----END[A-Z0-9 ]{0,40}PRIVATE KEY(?: BLOCK)?-----|\Z)",
    re.DOTALL,
)
# Possessive runs: each `eyJ...` run is read once, and `_replace_jwt` keeps it unless the two
# dots of a JWT follow (otherwise `eyJeyJeyJ...` would be rescanned from every `eyJ`).
_JWT_RE: Final = re.compile(
    r"eyJ[A-Za-z0-9_\-]{8,8192}+(\.[A-Za-z0-9_\-]{8,65536}+\.[A-Za-z0-9_\-]{0,8192}+)?",
    re.ASCII,
)
# RFC 3986 userinfo has no unencoded `[ ] " ' < >`; excluding them keeps markers out of it.
_USERINFO_RE: Final = re.compile(r"""://([^\s/?#@:\[\]"'<>]{0,256}):([^\s/?#\[\]"'<>]{1,1024})@""")
_BEARER_RE: Final = re.compile(r"([Bb]earer|BEARER)([ \t]{1,8})([A-Za-z0-9\-._~+/]{6,8192}=*)")
_BASIC_RE: Final = re.compile(r"([Bb]asic|BASIC)([ \t]{1,8})([A-Za-z0-9+/]{6,8192}={0,2})")
# A separator and the key before it, searched in the reversed text so that the search starts
# from the separator (`=`, `:`, `%3D`): `"key"`, `\"key\"`, `'key'` or a bare key that starts
# (ends, reversed) with a letter, `_` or `%` and holds no `%3D` (the separator before it).
_KV_REVERSED_RE: Final = re.compile(
    r"""(?P<sep>=|:|[Dd]3%)\s{0,3}"""
    r"""(?:"\\?(?P<dq>[^"\\\n]{1,64})"|'(?P<sq>[^'\\\n]{1,64})'"""
    r"""|(?P<bare>(?:(?![Dd]3%)[A-Za-z0-9_.%\-]){0,63}(?![Dd]3%)[A-Za-z_%]))"""
)
# After the separator: spaces, an optional auth scheme (kept), then the value (group 1 to 4:
# double-quoted, single-quoted, JSON-escaped or bare).
_KV_VALUE_RE: Final = re.compile(
    r"""\s{0,3}(?:(?:[Bb]earer|[Bb]asic|[Tt]oken|[Dd]igest)\s{1,3})?"""
    r"""(?:"((?:[^"\\\n]|\\.){0,4096})"|'([^'\n]{0,4096})'|\\"((?:[^"\\]|\\[^"]){0,4096})\\"|"""
    r"""([^\s&,;"'<>]{1,4096}))"""
)
# Searched in the text with every digit turned into `0`, so that the search starts from a literal.
_CARD_RE: Final = re.compile(r"0000(?:0{9,15}|(?P<sep>[ \-])0{4,6}(?:(?P=sep)0{1,6}){1,3})")
_CARD_SHAPE: Final = bytes.maketrans(b"0123456789", b"0000000000")
_CARD_SHAPE_STR: Final = str.maketrans("0123456789", "0000000000")
_EMAIL_DOMAIN_RE: Final = re.compile(
    r"@((?:[A-Za-z0-9\-]{1,63}\.){1,8}[A-Za-z]{2,63})(?![A-Za-z0-9\-])", re.ASCII
)
_EMAIL_LOCAL_RE: Final = re.compile(r"[A-Za-z0-9_.%+\-]{1,64}\Z", re.ASCII)
_SAFE_VALUES: Final = frozenset(("true", "false", "null", "none", ""))  # cannot hide a secret
_SAFE_TYPES: Final = (
    datetime.date,
    datetime.time,
    datetime.timedelta,
    uuid.UUID,
    decimal.Decimal,
    enum.Enum,
    pathlib.PurePath,
    ipaddress.IPv4Address,
    ipaddress.IPv6Address,
    ipaddress.IPv4Network,
    ipaddress.IPv6Network,
)


def _may_hold_pair(text: str) -> bool:
    """Whether `text` has a `=`, `%3D`, `: `, `":` or `':` that could follow a key."""
    if "=" in text or ("%" in text and "%3" in text):
        return True
    if ":" not in text:
        return False
    return ": " in text or ('"' in text and '":' in text) or ("'" in text and "':" in text)


def _looks_like_credential(value: str) -> bool:
    """Whether the word after `Bearer`/`Basic` is a credential rather than English."""
    value = value.rstrip(".")
    if len(value) >= 24:
        return True
    return len(value) >= 6 and any(c.isdigit() or c in "-._~+/=" for c in value)


def _replace_auth(m: re.Match[str]) -> str:
    value = m.group(3)
    if not _looks_like_credential(value):
        return m.group()
    rule = "bearer" if m.group(1).lower() == "bearer" else "basic_auth"
    return f"{m.group(1)}{m.group(2)}{_marker(rule)}"


def _replace_jwt(m: re.Match[str]) -> str:
    return m.group() if m.group(1) is None else _marker("jwt")


def _replace_userinfo(m: re.Match[str]) -> str:
    if _MARKER_RE.fullmatch(m.group(2)):
        return m.group()
    return f"://{m.group(1)}:{_marker('password')}@"


def _luhn(digits: str) -> bool:
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = ord(ch) - 48
        if i & 1:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


def _issuer_fits(d: str) -> bool:
    """Whether the digits start like a card of their issuer and have one of its lengths."""
    n, head = len(d), int(d[:4])
    if d[0] == "4":
        return n in (13, 16, 19)
    if 5100 <= head <= 5599 or 2221 <= head <= 2720:
        return n == 16
    if d[:2] in ("34", "37"):
        return n == 15
    if 3528 <= head <= 3589 or head == 6011 or 6440 <= head <= 6499 or d[:2] in ("62", "65"):
        return 16 <= n <= 19
    if 3000 <= head <= 3059 or d[:2] in ("36", "38", "39"):
        return 14 <= n <= 19
    return False


def _is_card(digits: str) -> bool:
    return 13 <= len(digits) <= 19 and _issuer_fits(digits) and _luhn(digits)


def _redact_cards(text: str) -> str:
    """Card numbers replaced: an issuer prefix, a valid length and a Luhn check are required."""
    raw = text.encode("utf-8", "surrogatepass")
    if len(raw) == len(text):
        shape = raw.translate(_CARD_SHAPE).decode("latin-1")
    else:
        shape = text.translate(_CARD_SHAPE_STR)
    spans: list[tuple[int, int, str]] = []
    for m in _CARD_RE.finditer(shape):
        start, end = m.span()
        if (start and text[start - 1].isdigit()) or (end < len(text) and text[end].isdigit()):
            continue
        if _is_card(text[start:end].replace(" ", "").replace("-", "")):
            spans.append((start, end, _CARD_MARKER))
    return _splice(text, spans) if spans else text


def _digit_count(text: str) -> int:
    return text.encode("utf-8", "surrogatepass").translate(_CARD_SHAPE).count(48)


def _is_timestamp(text: str) -> bool:
    """An ISO 8601 date-time (`2024-05-01T12:00:00.123456+00:00`); the caller checks length."""
    if text[10] not in "T " or text[13] != ":" or not text.isascii():
        return False
    try:
        datetime.datetime.fromisoformat(text)
    except ValueError:
        return False
    return True


def _is_uuid(text: str) -> bool:
    """A dashed hexadecimal UUID (`3f2b6c1e-9a4d-...`); the caller checks length and text[8]."""
    if text[13] != "-" or text[18] != "-" or text[23] != "-":
        return False
    digits = text.replace("-", "")
    if len(digits) != 32 or not digits.isalnum() or not digits.isascii():
        return False
    try:
        int(digits, 16)
    except ValueError:
        return False
    return True


_SAFE_SHAPE: Final = (
    r"(?:[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"
    r"|[0-9]{4}-[0-9]{2}-[0-9]{2}[T ][0-9]{2}:[0-9]{2}(?::[0-9]{2}(?:[.,][0-9]{1,9})?)?"
    r"(?:Z|[+\-][0-9]{2}(?::?[0-9]{2})?)?"
    r"|[0-9]{1,3}(?:\.[0-9]{1,3}){3}"
    r"|[/a-z{}]*(?:[0-9]{1,12}[/a-z{}]+)*[0-9]{0,12})"
)
# Lines that no rule can change: UUIDs, ISO timestamps, IPv4 addresses, and lowercase words or
# paths (no `-`, `_`, `.`, capitals or punctuation that a rule needs; digit runs of at most 12).
_SAFE_SHAPES: Final = re.compile(rf"{_SAFE_SHAPE}(?:\n{_SAFE_SHAPE})*")


def _class_table() -> bytes:
    table = bytearray(b"!" * 256)  # anything unlisted may start or belong to a rule
    for chars, cls in ((b"0123456789", b"0"), (b"abcdefTZ", b"h"), (b"-:./+,\n", None)):
        for c in chars:
            table[c] = c if cls is None else cls[0]
    for c in b"ghijklmnopqrstuvwyz":  # `x` stays `!`: it starts `xox` and `xapp-`
        table[c] = ord("a")
    return bytes(table)


_CLASSES: Final = _class_table()


def _plain_classes(text: str) -> bool:
    """A cheap proof that no rule matches: only lowercase but `x`, digits, `-:./+,`, newlines,
    `T` and `Z`.

    In that alphabet a rule needs a letter from g-z before a dash (`glpat-`, `sk-`, `pypi-`),
    `hooks.`, or a card-like digit run: PEM headers and every other prefix hold a capital, an
    `x` or a character outside the alphabet. UUIDs, ISO timestamps, IPv4 addresses and most
    lowercase paths pass.
    """
    try:
        shape = text.encode().translate(_CLASSES).decode("latin-1")
    except UnicodeEncodeError:  # a lone surrogate
        return False
    if "!" in shape or "a-" in shape or "0000000000000" in shape or "0000-0000" in shape:
        return False
    return "hooks." not in text


def _needs_scan(text: str) -> bool:
    """False only when no value rule can match `text`; substring tests only, no regex.

    Every rule of `_scan` needs one of the characters or words tested here. ISO timestamps and
    UUIDs are accepted by shape: they hold nothing a rule could match.
    """
    n = len(text)
    if n == 36 and text[8] == "-" and _is_uuid(text):
        return False
    if 19 <= n <= 32 and text[4] == "-" and _is_timestamp(text):
        return False
    if "=" in text or "@" in text or "_" in text or "%" in text or "$" in text:
        return True
    if text[0] in "{[" or ": " in text or '":' in text or "':" in text:
        return True
    if n < 13:
        return False
    if "-" in text:
        if "-----" in text or "glpat-" in text or "xox" in text or "xapp-" in text:
            return True
        if "sk-" in text or "pypi-" in text:
            return True
    if (" " in text or "\t" in text) and (
        "earer" in text or "EARER" in text or "asic" in text or "ASIC" in text
    ):
        return True
    if not text.islower():  # the remaining hints all hold a capital letter
        if "A" in text and ("IA" in text or "ACCA" in text or "AIza" in text):
            return True
        if "SG." in text or "SK" in text or "eyJ" in text:
            return True
    return "hooks.slack.com" in text or _digit_count(text) >= 13


def _cut_point(text: str, limit: int) -> int:
    """Where to cut `text` to at most `limit` characters: at a space, so no marker is split."""
    if len(text) <= limit:
        return len(text)
    space = text.rfind(" ", limit - 256, limit)
    return space if space > 0 else limit


def _splice(text: str, spans: list[tuple[int, int, str]]) -> str:
    """`text` with each (start, end, replacement) span applied; spans sorted, not overlapping."""
    parts: list[str] = []
    pos = 0
    for start, end, replacement in spans:
        parts.append(text[pos:start])
        parts.append(replacement)
        pos = end
    parts.append(text[pos:])
    return "".join(parts)


def _has_nested_repeat(pattern: str) -> bool:
    """Whether `pattern` repeats a group that itself repeats, the usual shape of ReDoS."""
    try:
        parser = importlib.import_module("re._parser")
        return _nested(parser.parse(pattern).data, parser, outer_max=1)
    except Exception:  # the private parser moved: the pattern is still compiled and used
        return False


def _nested(items: Any, parser: Any, outer_max: int) -> bool:
    """Walk a parsed pattern; True when an unbounded repeat sits inside another repeat."""
    repeats = (parser.MAX_REPEAT, parser.MIN_REPEAT, getattr(parser, "POSSESSIVE_REPEAT", -1))
    for op, av in items:
        if any(op is r for r in repeats):
            _low, high, sub = av
            if outer_max > 1 and high > 1 and parser.MAXREPEAT in (outer_max, high):
                return True
            if _nested(sub.data, parser, max(outer_max, high)):
                return True
        elif any(_nested(sub.data, parser, outer_max) for sub in _subpatterns(av, parser)):
            return True
    return False


def _subpatterns(av: Any, parser: Any) -> list[Any]:
    if isinstance(av, parser.SubPattern):
        return [av]
    if isinstance(av, (list, tuple)):
        return [sub for item in av for sub in _subpatterns(item, parser)]
    return []


def _compile_extra(patterns: Iterable[tuple[str, str]]) -> tuple[tuple[str, re.Pattern[str]], ...]:
    compiled = []
    for name, source in patterns:
        rule = re.sub(r"[^a-z0-9_]", "_", str(name).lower()).strip("_")[:40]
        if not rule:
            raise SettingsError("extra_patterns", f"rule name {name!r} has no letters or digits")
        try:
            pattern = re.compile(source)
        except re.error as exc:
            raise SettingsError("extra_patterns", f"{rule}: invalid regex ({exc})") from exc
        if pattern.fullmatch(""):
            raise SettingsError("extra_patterns", f"{rule}: the pattern matches the empty string")
        if _has_nested_repeat(source):
            raise SettingsError(
                "extra_patterns",
                f"{rule}: a repeated group that repeats again can take exponential time",
                r"r'acme_[A-Za-z0-9]{32}'",
            )
        compiled.append((_marker(rule), pattern))
    return tuple(compiled)


# ---------------------------------------------------------------------------------------------
# The redactor
# ---------------------------------------------------------------------------------------------


class Redactor:
    """A configured redactor; call it on any value, or use `processor` in a structlog chain.

    Args:
        extra_keys: more key names to redact, matched word by word (`"dob"` also matches
            `user_dob`), marked with the key's words joined by `_`.
        extra_patterns: `(rule_name, regex)` pairs for your own token formats, marked
            `[REDACTED:<rule_name>]`. Start each with a literal prefix; see the module notes.
        email: `"domain"` keeps the domain of an address, `"full"` hides it all, `"off"` keeps it.
        max_depth: containers nested deeper than this become `[REDACTED:depth]` (1 to 256).
        max_string: longer text is cut to this many characters, ending with `[REDACTED:oversize]`.
    """

    def __init__(
        self,
        *,
        extra_keys: Iterable[str] = (),
        extra_patterns: Iterable[tuple[str, str]] = (),
        email: EmailMode = "domain",
        max_depth: int = 32,
        max_string: int = 1_000_000,
    ) -> None:
        if email not in ("domain", "full", "off"):
            raise SettingsError("email", f"must be 'domain', 'full' or 'off', not {email!r}")
        if not 1 <= max_depth <= _MAX_DEPTH_LIMIT:
            raise SettingsError("max_depth", f"must be between 1 and {_MAX_DEPTH_LIMIT}", "32")
        if max_string < _MIN_STRING_LIMIT:
            raise SettingsError("max_string", f"must be at least {_MIN_STRING_LIMIT}", "1000000")
        self._extra_keys = tuple(self._key_phrase(key) for key in extra_keys)
        self._extra = _compile_extra(extra_patterns)
        self._email = email
        self._max_depth = max_depth
        self._max_string = max_string
        self._keys: dict[object, str | None] = {}
        self._safe_keys: set[str] = set()
        self._clean: dict[str, None] = {}
        self._short = 0 if self._extra else _MIN_SECRET

    @staticmethod
    def _key_phrase(key: str) -> tuple[str, ...]:
        words = _key_words(str(key))
        if not words:
            raise SettingsError("extra_keys", f"{key!r} has no letters or digits", "'dob'")
        return words

    def __call__(self, value: object) -> object:
        """A redacted deep copy of `value`; never raises."""
        try:
            return self._child(value, -1, set())
        except Exception:
            return ERROR_MARKER

    def processor(
        self, logger: object, method_name: str, event_dict: MutableMapping[str, Any]
    ) -> MutableMapping[str, Any]:
        """structlog processor: a redacted copy of `event_dict`; the original is not modified."""
        try:
            copy = self._plain_copy(event_dict)
            return copy if copy is not None else self._mapping(event_dict, 0, {id(event_dict)})
        except Exception:
            try:
                return dict.fromkeys(list(event_dict), ERROR_MARKER)
            except Exception:
                return {"event": ERROR_MARKER}

    def _plain_copy(self, event_dict: Mapping[str, Any]) -> dict[str, Any] | None:
        """A plain copy of an event no rule can change, or None when it needs the full walk.

        The fast path of every log line: keys already known safe, strings seen before (one
        lookup each), numbers, and new strings (request IDs, timestamps, paths) that pass
        `_plain_classes` or `_SAFE_SHAPES` together. Anything else takes the full walk.
        """
        if self._extra or "value" in event_dict or not self._safe_keys.issuperset(event_dict):
            return None
        clean = self._clean
        texts = []
        for value in event_dict.values():
            kind = type(value)
            if kind is str:
                if value not in clean:
                    texts.append(value)
            elif kind is int:
                if not -_CARD_MIN < value < _CARD_MIN:
                    return None
            elif not (kind is float or kind is bool or value is None):
                return None
        if texts:
            joined = "\n".join(texts)
            if len(joined) > self._max_string:
                return None
            if not (
                _plain_classes(joined)
                or _SAFE_SHAPES.fullmatch(joined)
                or all(self._text(text, 0) is text for text in texts)
            ):
                return None
        return dict(event_dict)

    # -- keys -------------------------------------------------------------------------------

    def _key_rule(self, key: object) -> str | None:
        """The rule of a mapping key or pair name (cached), or None when it is not sensitive."""
        if isinstance(key, str):
            name = str(key)
        elif isinstance(key, (bytes, bytearray)):
            name = bytes(key).decode("latin-1")
        else:
            return None
        if len(name) > 256 or type(key) is bytearray:  # too big to cache, or unhashable
            return self._uncached_key_rule(name)
        rule = _classify_key(name)
        if rule is None and self._extra_keys:
            rule = self._extra_key_rule(_key_words(name))
        if len(self._keys) >= _KEY_CACHE_SIZE:
            self._keys.clear()
            self._safe_keys.clear()
        self._keys[key] = rule
        if rule is None and type(key) is str:
            self._safe_keys.add(key)
        return rule

    def _uncached_key_rule(self, name: str) -> str | None:
        rule = _classify_key.__wrapped__(name)
        if rule is None and self._extra_keys:
            rule = self._extra_key_rule(_key_words.__wrapped__(name))
        return rule

    def _extra_key_rule(self, words: tuple[str, ...]) -> str | None:
        for phrase in self._extra_keys:
            n = len(phrase)
            if any(words[i : i + n] == phrase for i in range(len(words) - n + 1)):
                return "_".join(phrase)
        return None

    @staticmethod
    def _masked(rule: str, value: object) -> object:
        if value is None or value is True or value is False:
            return value
        marker = _marker(rule)
        if isinstance(value, (bytes, bytearray)):
            return marker.encode()
        return marker

    # -- structure --------------------------------------------------------------------------

    def _walk(self, value: object, depth: int, stack: set[int]) -> object:
        kind = type(value)
        if kind is str:
            return self._text(value, depth)  # type: ignore[arg-type]
        if kind is int:
            return self._int(value)  # type: ignore[arg-type]
        if value is None or kind is bool or kind is float:
            return value
        if depth >= self._max_depth:
            return DEPTH_MARKER
        if kind is dict:
            return self._mapping(value, depth, stack)  # type: ignore[arg-type]
        if kind is list or kind is tuple:
            return self._sequence(value, depth, stack)  # type: ignore[arg-type]
        try:
            return self._other(value, depth, stack)
        except Exception:
            return ERROR_MARKER

    def _mapping(self, mapping: Mapping[Any, Any], depth: int, stack: set[int]) -> dict[Any, Any]:
        out: dict[Any, Any] = {}
        keys, clean = self._keys, self._clean
        for key, value in mapping.items():
            rule = keys.get(key, _MISSING)
            if rule is _MISSING:
                rule = self._key_rule(key)
            if rule is not None:
                out[key] = self._masked(rule, value)  # type: ignore[arg-type]
                continue
            kind = type(value)
            if kind is str:
                short = len(value) < self._short
                out[key] = value if short or value in clean else self._text(value, depth)
            elif kind is int:
                out[key] = value if -_CARD_MIN < value < _CARD_MIN else self._int(value)
            elif kind is float or kind is bool or value is None:
                out[key] = value
            else:
                out[key] = self._child(value, depth, stack)
        if "value" in out and ("name" in out or "key" in out):
            self._mask_named_value(out)
        return out

    def _child(self, value: object, depth: int, stack: set[int]) -> object:
        """`_walk` of a container's element, guarding against cycles."""
        kind = type(value)
        if kind is str or kind is int or kind is float or kind is bool or value is None:
            return self._walk(value, depth, stack)
        ident = id(value)
        if ident in stack:
            return CYCLE_MARKER
        stack.add(ident)
        try:
            return self._walk(value, depth + 1, stack)
        finally:
            stack.discard(ident)

    def _mask_named_value(self, out: dict[Any, Any]) -> None:
        """`{"name": "X-Api-Key", "value": ...}`: mask the value when the name is sensitive."""
        name = out.get("name", out.get("key"))
        if isinstance(name, (str, bytes)):
            rule = self._key_rule(name)
            if rule is not None:
                out["value"] = self._masked(rule, out["value"])

    def _sequence(
        self, items: list[Any] | tuple[Any, ...], depth: int, stack: set[int]
    ) -> list[Any] | tuple[Any, ...]:
        if type(items) is tuple and len(items) == 2:
            pair = self._pair(items)
            if pair is not None:
                return pair
        if items and all(_is_pair(item) for item in items):
            out = [self._pair_or_child(item, depth, stack) for item in items]
        else:
            out = [self._child(item, depth, stack) for item in items]
        return tuple(out) if type(items) is tuple else out

    def _pair_or_child(self, item: Any, depth: int, stack: set[int]) -> object:
        pair = self._pair(item)
        return pair if pair is not None else self._child(item, depth, stack)

    def _pair(self, pair: list[Any] | tuple[Any, ...]) -> list[Any] | tuple[Any, ...] | None:
        """A `(name, value)` pair with its value masked when the name is sensitive, else None."""
        name, value = pair
        if not isinstance(name, (str, bytes)):
            return None
        rule = self._key_rule(name)
        if rule is None or value is None or isinstance(value, bool):
            return None
        masked = [name, self._masked(rule, value)]
        return tuple(masked) if type(pair) is tuple else masked

    def _other(self, value: object, depth: int, stack: set[int]) -> object:
        if isinstance(value, (bytes, bytearray)):
            return self._bytes(bytes(value), depth)
        if isinstance(value, Mapping):
            return self._mapping(value, depth, stack)
        if isinstance(value, (list, tuple, set, frozenset)):
            kind = tuple if isinstance(value, tuple) else list
            return self._sequence(kind(value), depth, stack)
        if isinstance(value, (float, *_SAFE_TYPES)):
            return value
        if isinstance(value, str):
            return self._text(str(value), depth)
        if isinstance(value, int):
            return self._int(int(value))
        return self._text(self._repr(value), depth)

    @staticmethod
    def _repr(value: object) -> str:
        hook = getattr(type(value), "__structlog__", None)
        try:
            return str(hook(value)) if callable(hook) else repr(value)
        except Exception:
            return _marker("unrepresentable")

    def _bytes(self, value: bytes, depth: int) -> object:
        text = value.decode("utf-8", "surrogateescape")
        result = self._text(text, depth)
        if result is text:
            return value
        return str(result).encode("utf-8", "surrogateescape")

    @staticmethod
    def _int(value: int) -> object:
        if value < _CARD_MIN or value >= 10**19:
            return value
        return _CARD_MARKER if _is_card(str(value)) else value

    # -- text -------------------------------------------------------------------------------

    def _text(self, text: str, depth: int) -> str:
        if text in self._clean:
            return text
        if len(text) > self._max_string:
            return self._oversize(text)
        n = len(text)
        if self._extra or n > _CLEAN_MAX_LEN or (n >= _MIN_SECRET and _needs_scan(text)):
            result = self._json_or_scan(text, depth)
            if result != text:
                return self._cut(result) if len(result) > self._max_string else result
        self._remember(text)
        return text

    def _remember(self, text: str) -> None:
        """Note a string that needs no redaction, so that seeing it again costs one lookup.

        JSON-looking strings are not noted: how deep they sit decides whether they are decoded.
        """
        if len(text) <= _CLEAN_MAX_LEN and text[:1] not in ("{", "["):
            if len(self._clean) >= _CLEAN_CACHE_SIZE:
                self._clean.clear()
            self._clean[text] = None

    def _json_or_scan(self, text: str, depth: int) -> str:
        if text[:1] in ("{", "[") and depth < self._max_depth:
            decoded = self._json_text(text, depth)
            if decoded is not None:
                return decoded
        return self._scan(text)

    def _oversize(self, text: str) -> str:
        """The redacted head of a string longer than `max_string`, marked as cut."""
        limit = self._max_string - len(OVERSIZE_MARKER) - 1
        return self._cut(self._scan(text[: _cut_point(text, limit)]))

    def _cut(self, text: str) -> str:
        """Already redacted text cut to `max_string`, at a space when there is one nearby."""
        limit = self._max_string - len(OVERSIZE_MARKER) - 1
        return f"{text[: _cut_point(text, limit)]} {OVERSIZE_MARKER}"

    def _json_text(self, text: str, depth: int) -> str | None:
        """A JSON document in a string, redacted and re-serialised; None when it is not JSON."""
        last = text.rstrip()[-1:]
        if last not in ("}", "]") or text.startswith("[REDACTED"):
            return None
        try:
            data = orjson.loads(text)
        except orjson.JSONDecodeError:
            return None
        if type(data) is not dict and type(data) is not list:
            return None
        redacted = self._walk(data, depth + 1, set())
        if redacted == data:
            return text
        return orjson.dumps(redacted).decode()

    def _scan(self, text: str) -> str:
        """`_scan_once` repeated until nothing changes, so that redaction is idempotent.

        A marker can change what a rule sees next to it (a word boundary, an e-mail's end);
        each pass only turns unmarked text into markers, so this ends after a pass or two.
        """
        for _ in range(_MAX_PASSES):
            scanned = self._scan_once(text)
            if scanned == text:
                break
            text = scanned
        return text

    def _scan_once(self, text: str) -> str:
        """Free text with every value rule applied; each rule runs only when its hint occurs.

        A one-character test (a fast memchr) guards each longer hint, since on long text every
        substring test costs a pass over it.
        """
        if "B" in text and "-----BEGIN" in text and "PRIVATE KEY" in text:
            text = _PEM_RE.sub(_marker("private_key"), text)
        if "J" in text and "eyJ" in text:
            text = _JWT_RE.sub(_replace_jwt, text)
        if "@" in text and "://" in text:
            text = _USERINFO_RE.sub(_replace_userinfo, text)
        text = self._auth_schemes(text)
        if len(text) >= 13:  # before the formats: a marker must not change their boundaries
            text = _redact_cards(text)
        text = self._formats(text)
        if _may_hold_pair(text):
            text = self._pairs(text)
        if "@" in text and self._email != "off":
            text = self._emails(text)
        if self._extra:
            text = self._apply_extra(text)
        return text

    @staticmethod
    def _auth_schemes(text: str) -> str:
        lower = text.lower()
        if "bearer" in lower:
            text = _BEARER_RE.sub(_replace_auth, text)
        if "basic" in lower:
            text = _BASIC_RE.sub(_replace_auth, text)
        return text

    @staticmethod
    def _formats(text: str) -> str:
        if "-" in text:
            text = _apply_rules(text, _DASH_RULES)
        if "_" in text:
            text = _apply_rules(text, _UNDERSCORE_RULES)
        if "A" in text:
            text = _apply_rules(text, _CAPITAL_A_RULES)
        if "S" in text:
            text = _apply_rules(text, _CAPITAL_S_RULES)
        if "$" in text:
            text = _apply_rules(text, _DOLLAR_RULES)
        if "hooks.slack.com" in text:
            text = _SLACK_WEBHOOK.apply(text)
        return text

    def _pairs(self, text: str) -> str:
        """`key=value`, `key: value` and `"key": "value"` with the value masked by key rule.

        Separators and their keys are found in one search over the reversed text; only the
        pairs whose key is sensitive reach Python, then values are matched left to right.
        """
        n, keys = len(text), self._keys
        spans: list[tuple[int, int, str]] = []
        pos = 0
        for m in reversed(list(_KV_REVERSED_RE.finditer(text[::-1]))):
            key = m.group(m.lastindex or 0)[::-1]
            rule = keys.get(key, _MISSING)
            if rule is _MISSING:
                rule = self._key_rule(key)
            if rule is None or n - m.end(1) < pos:
                continue
            value = _KV_VALUE_RE.match(text, n - m.start(1))
            if value is None:
                continue
            pos = value.end()
            group = value.lastindex or 0
            inner = value.group(group)
            if inner.lower() not in _SAFE_VALUES and not _MARKER_RE.fullmatch(inner):
                spans.append((value.start(group), value.end(group), _marker(str(rule))))
        return _splice(text, spans) if spans else text

    def _emails(self, text: str) -> str:
        """Addresses found from their `@`; the local part is read backwards from it."""
        keep_domain = self._email == "domain"
        spans: list[tuple[int, int, str]] = []
        pos = 0
        for m in _EMAIL_DOMAIN_RE.finditer(text):
            at, end = m.start(), m.end()
            local = _EMAIL_LOCAL_RE.search(text, max(pos, at - 64), at)
            if local is None or (text[end : end + 1] == ":" and text[end + 1 : end + 2].isalpha()):
                continue  # no local part, or an scp-style remote (`git@github.com:org/repo`)
            spans.append((local.start(), at if keep_domain else end, _EMAIL_MARKER))
            pos = at + 1 if keep_domain else end  # a kept domain may be the next local part
        return _splice(text, spans) if spans else text

    def _apply_extra(self, text: str) -> str:
        """User patterns, in windows of 16 KiB, never inside an existing marker."""
        for marker, pattern in self._extra:
            protected = [m.span() for m in _MARKER_RE.finditer(text)] if "[REDACTED" in text else []
            spans: list[tuple[int, int, str]] = []
            for offset in range(0, max(len(text), 1), _EXTRA_WINDOW - _EXTRA_OVERLAP):
                window_end = min(len(text), offset + _EXTRA_WINDOW)
                for m in pattern.finditer(text, offset, window_end):
                    start, end = m.span()
                    if end > start and not _overlaps(start, end, protected, spans):
                        spans.append((start, end, marker))
                if window_end == len(text):
                    break
            if spans:
                text = _splice(text, sorted(spans))
        return text


def _is_pair(item: object) -> bool:
    kind = type(item)
    return (kind is tuple or kind is list) and len(item) == 2 and isinstance(item[0], (str, bytes))  # type: ignore[arg-type,index]


def _overlaps(
    start: int, end: int, protected: list[tuple[int, int]], spans: list[tuple[int, int, str]]
) -> bool:
    if any(start < p_end and p_start < end for p_start, p_end in protected):
        return True
    return any(start < s_end and s_start < end for s_start, s_end, _ in spans)


DEFAULT_REDACTOR: Final = Redactor()


def redact(value: object) -> object:
    """A redacted deep copy of `value` with the default rules (see the module docstring)."""
    return DEFAULT_REDACTOR(value)
