"""Key rules: which mapping keys, pair names and `key=value` keys are sensitive, and why.

A key is split into lowercase words and classified by the words and their neighbours; the
module-level verdicts are cached, and `KeyRules` adds a per-redactor cache and `extra_keys`.
"""

from __future__ import annotations

import functools
import re
import unicodedata
import urllib.parse
from typing import Final

from launchready_sdk.redaction._markers import marker_for

_KEY_CACHE_SIZE: Final = 4096
MISSING: Final = object()

_WORD_RE: Final = re.compile(r"[A-Z]+[0-9]*(?![a-z])|[A-Z]?[a-z]+[0-9]*|[0-9]+")


def _words(text: str) -> frozenset[str]:
    return frozenset(text.split())


_TERMS: Final[dict[str, str]] = {
    **dict.fromkeys(
        ("password", "passwords", "passwd", "pwd", "pw", "passphrase", "passcode"), "password"
    ),
    **dict.fromkeys(("secret", "secrets", "clientsecret"), "secret"),
    **dict.fromkeys(("token", "accesstoken", "refreshtoken", "authtoken", "idtoken"), "token"),
    "apikey": "api_key",
    "accesskey": "access_key",
    "privatekey": "private_key",
    "secretkey": "secret",
    **dict.fromkeys(("auth", "authorization", "bearer"), "authorization"),
    **dict.fromkeys(
        ("credential", "credentials", "cred", "creds", "assertion", "assertions"), "credential"
    ),
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
_ANSWER_QUALIFIERS: Final = _words("security secret recovery challenge")
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
def key_words(key: str) -> tuple[str, ...]:
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
    if word == "refresh":  # `{"refresh": <token>}`, `jwt_refresh`; not `refresh_interval`
        return "token" if i == len(words) - 1 else None
    if word == "private":  # a bare `private` member (JWK, key files); not `private_repo`
        return "private_key" if i == len(words) - 1 else None
    if word in ("answer", "answers"):
        return "password" if prev in _ANSWER_QUALIFIERS else None
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
def classify_key(key: str) -> str | None:
    """The built-in category of a sensitive key, or None."""
    words = key_words(key)
    for i in range(len(words)):
        category = _word_category(words, i)
        if category is not None:
            return None if _is_exempt(words) else category
    return None


class KeyRules:
    """The key methods of `Redactor`: verdicts cached per instance, then `extra_keys`."""

    _extra_keys: tuple[tuple[str, ...], ...]
    _keys: dict[object, str | None]
    _safe_keys: set[str]

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
        rule = classify_key(name)
        if rule is None and self._extra_keys:
            rule = self._extra_key_rule(key_words(name))
        if len(self._keys) >= _KEY_CACHE_SIZE:
            self._keys.clear()
            self._safe_keys.clear()
        self._keys[key] = rule
        if rule is None and type(key) is str:
            self._safe_keys.add(key)
        return rule

    def _uncached_key_rule(self, name: str) -> str | None:
        rule = classify_key.__wrapped__(name)
        if rule is None and self._extra_keys:
            rule = self._extra_key_rule(key_words.__wrapped__(name))
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
        marker = marker_for(rule)
        if isinstance(value, (bytes, bytearray)):
            return marker.encode()
        return marker
