"""Secrets in source text, found with the redactor's own rules: `find_secrets(text)`.

`find_secrets` returns where each credential sits (`SecretMatch(rule, start, end)`), so that a
scanner (`launchready audit`) and the log redactor share one catalogue: the provider token
formats of `_tokens`, PEM private keys, JWTs, URL passwords and `Bearer`/`Basic` credentials of
`_credentials`, and `key=value` pairs whose key `_keys` classifies as sensitive. A scanner needs
two things more than the redactor, and they live here:

- Source assignments: `API_KEY: str = "..."`, `apiKey := "..."`, `api_key => '...'`, which the
  redactor's pair rule does not read (a type annotation sits between the name and the value).
- False-positive filters. Logs are redacted when in doubt; a scanner that cries wolf gets
  silenced. Values under a secret-looking name must look like a secret: at least 8
  characters, not a placeholder (`changeme`, `<your-key>`, `${VAR}`, `xxxx`, `example`), not
  code (`os.environ[`, `get_token()`, `settings.SECRET`), not a bare lowercase word or
  identifier, not words joined by separators (`hunter2-sync`, `long enough pw`), not a path,
  URL, UUID or password hash, and with enough variety (Shannon entropy of at least 3 bits per
  character and two character classes). Names of runtime values (`session`, `signature`,
  `csrf`, `cookie`) and paths (`/token`) are not secret names here. Token formats are dropped
  when their body is a placeholder (`EXAMPLE`, `xxxx`, a run like `abcdefgh` or `12345678`,
  four distinct characters or fewer). URL passwords
  that are well-known defaults (`postgres`, `password`, the user name again) are dropped.

The rule of a match is the redactor's (`aws_access_key`, `stripe_key`, `private_key`, `jwt`,
`bearer`, `basic_auth`, `password` for a URL password) or, for an assignment or pair, the
category of its key (`password`, `secret`, `token`, `api_key`, ...).

Security stance: the text never leaves the process and nothing is verified against a provider.
`preview(secret)` is the only form a secret should be shown in: a short head and the length.

Limits, candidly:

- Password hashes (bcrypt, argon2, PBKDF2, ...) are redacted in logs but not reported here: a
  hash is not a credential. Card numbers and e-mail addresses are personal data, not secrets.
- The filters trade recall for precision: a weak password (`hunter2`), a secret under an innocent
  name (`value = "..."`), a secret split across string concatenations and one encoded in
  base64 are not found. A 40-character AWS secret access key is found only next to its name.
- JWTs are reported wherever they appear, test fixtures included: a signed token is a credential
  until it expires, and whether it has is not checked.
"""

from __future__ import annotations

import base64
import binascii
import math
import re
from collections import Counter
from typing import Final, NamedTuple

from launchready_sdk.redaction._credentials import (
    BASIC_RE,
    BEARER_RE,
    JWT_RE,
    PEM_RE,
    USERINFO_RE,
    looks_like_credential,
    may_hold_pair,
    sensitive_pairs,
)
from launchready_sdk.redaction._keys import classify_key
from launchready_sdk.redaction._tokens import (
    CAPITAL_A_RULES,
    CAPITAL_S_RULES,
    DASH_RULES,
    DOLLAR_RULES,
    SLACK_WEBHOOK,
    UNDERSCORE_RULES,
)

__all__ = [
    "SecretMatch",
    "credential_name",
    "entropy",
    "find_secrets",
    "preview",
    "secret_like",
]

# Grouped as the redactor groups them: one substring test skips a whole group.
_TOKEN_GROUPS: Final = (
    ("-", DASH_RULES),
    ("_", UNDERSCORE_RULES),
    ("A", CAPITAL_A_RULES),
    ("S", CAPITAL_S_RULES),
    ("hooks.slack.com", (SLACK_WEBHOOK,)),
)
# The redactor's provider formats (password hashes left out: not credentials).
_TOKEN_RULES: Final = tuple(rule for _, rules in _TOKEN_GROUPS for rule in rules)

_MIN_GENERIC: Final = 8
_MAX_GENERIC: Final = 1024
_MIN_ENTROPY: Final = 3.0
_MIN_PEM_BODY: Final = 64
_MIN_SIGNATURE: Final = 16
# `NAME = "value"`, `NAME: type = 'value'`, `name := "value"`, `name => "value"`, `"name": "v"`.
_ASSIGNMENT_RE: Final = re.compile(
    r"""(?<![A-Za-z0-9_.\-])(?P<name>[A-Za-z_][A-Za-z0-9_.\-]{0,63})["']?[ \t]{0,3}"""
    r"""(?::[ \t]{0,3}[A-Za-z_][A-Za-z0-9_.\[\], |]{0,40}?[ \t]{0,3})?"""
    r"""(?::=|=>|\?\?=|\|\|=|=|:)[ \t]{0,3}[rbuf]{0,2}"""
    r"""(?P<q>["'`])(?P<value>[^"'`\\\n]{8,1024})(?P=q)"""
)
_PLACEHOLDER_RE: Final = re.compile(
    r"example|sample|placeholder|change[_\-. ]?(?:me|it|this)|your[_\-. ]|dummy|fake|redacted"
    r"|replace[_\-. ]?me|insert[_\-. ]|todo|fixme|xxxx|\*\*\*|\.\.\.|<[^>]*>|\{[^}]*\}|\$\(|%\(",
    re.IGNORECASE,
)
_CODE_RE: Final = re.compile(
    r"^[A-Za-z_]+(?:\.[A-Za-z_]+)+$|[()\[\]`]|^\$|^%|environ|getenv"
    r"|process\.env|^[a-z_][a-z0-9_]*$|^[A-Z_][A-Z0-9_]*$|^(?:/|\./|~/|https?://|file:)"
    r"|\\[nrt]"
)
_UUID_RE: Final = re.compile(
    r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$"
)
_RUNS: Final = ("abcdefgh", "bcdefghi", "12345678", "23456789", "01234567", "ABCDEFGH", "qwertyui")
_SEPARATORS_RE: Final = re.compile(r"[\s\-_.;,:/%+]+")
_WORD_RE: Final = re.compile(r"[a-z]+|[A-Z][a-z]+|[A-Z]{1,5}|[0-9]+")
# Key categories that name runtime values (a cookie, a signature, a card), not credentials.
_NOT_CREDENTIALS: Final = frozenset(
    ("cookie", "session", "signature", "csrf", "card", "ssn", "pin", "otp", "code")
)
_DEFAULT_PASSWORDS: Final = frozenset(
    (
        "password",
        "pass",
        "passwd",
        "pwd",
        "secret",
        "postgres",
        "mysql",
        "root",
        "admin",
        "guest",
        "test",
        "user",
        "redis",
        "rabbitmq",
        "changeme",
        "changeit",
        "example",
        "default",
        "sa",
    )
)


class SecretMatch(NamedTuple):
    """A credential found in text: its rule and its span (`text[start:end]` is the secret)."""

    rule: str
    start: int
    end: int


def entropy(value: str) -> float:
    """Shannon entropy of `value` in bits per character."""
    if not value:
        return 0.0
    n = len(value)
    return -sum(c / n * math.log2(c / n) for c in Counter(value).values())


def preview(secret: str) -> str:
    """What may be shown of a secret: a head of at most 4 characters (a fifth of it) and its
    length, e.g. `sk_l… (32 chars)`."""
    head = secret[: min(4, len(secret) // 5)]
    return f"{head}… ({len(secret)} chars)"


def _fake_token(token: str) -> bool:
    """A provider-format match whose body is a placeholder (docs examples, `xxxx`, runs)."""
    if "EXAMPLE" in token or "example" in token or _PLACEHOLDER_RE.search(token):
        return True
    if any(run in token for run in _RUNS):
        return True
    tail = token[-16:]
    return len(set(tail)) <= 4


def _character_classes(value: str) -> int:
    return sum(
        (
            any(c.islower() for c in value),
            any(c.isupper() for c in value),
            any(c.isdigit() for c in value),
            any(not c.isalnum() for c in value),
        )
    )


def _readable(value: str) -> bool:
    """Words and numbers joined by separators (`hunter2-sync`, `long enough pw`, `x-api-key;
    x-partner`, `AWS access key ID`): prose, names or a demo value, not a generated secret."""
    parts = [p for p in _SEPARATORS_RE.split(value) if p]
    if len(parts) < 2:
        return False
    return sum(not _WORD_RE.fullmatch(p) for p in parts) <= 1


def _password_hash(value: str) -> bool:
    return any(rule.pattern.fullmatch(value) for rule in DOLLAR_RULES)


def secret_like(value: str) -> bool:
    """Whether a value assigned to a secret-looking name looks like a real secret."""
    raw = value.strip()
    value = raw.rstrip("})],;")  # a bare value read up to the end of a literal
    if not _MIN_GENERIC <= len(value) <= _MAX_GENERIC:
        return False
    for text in (raw, value):
        if _PLACEHOLDER_RE.search(text) or _CODE_RE.search(text) or _UUID_RE.match(text):
            return False
    if _readable(value) or _password_hash(value):
        return False
    if any(run in value for run in _RUNS) or len(set(value)) <= 4:
        return False
    return entropy(value) >= _MIN_ENTROPY and _character_classes(value) >= 2


def _pem_body_real(text: str) -> bool:
    parts = text.split("-----", 3)  # "", "BEGIN ... PRIVATE KEY", body, "END ..."
    body = parts[2] if len(parts) > 2 else ""
    return sum(c.isalnum() or c in "+/=" for c in body) >= _MIN_PEM_BODY


def _jwt_real(token: str) -> bool:
    """A decodable JSON header and a signature (an unsigned token grants nothing by itself)."""
    head, _, rest = token.partition(".")
    if len(rest.partition(".")[2]) < _MIN_SIGNATURE:
        return False
    try:
        raw = base64.urlsafe_b64decode(head + "=" * (-len(head) % 4))
    except (binascii.Error, ValueError):
        return False
    return raw.lstrip().startswith(b"{") and b'"' in raw


def _url_password_real(user: str, password: str) -> bool:
    low = password.lower()
    if low in _DEFAULT_PASSWORDS or password == user or _PLACEHOLDER_RE.search(password):
        return False
    return not (password.startswith(("$", "%", "{")) or len(set(password)) <= 2)


def _add(found: list[SecretMatch], match: SecretMatch) -> None:
    """Keep `match` unless an earlier (more specific) rule already covers part of its span."""
    for other in found:
        if match.start < other.end and other.start < match.end:
            return
    found.append(match)


def _formats(text: str, found: list[SecretMatch]) -> None:
    if "PRIVATE KEY" in text:
        for m in PEM_RE.finditer(text):
            if _pem_body_real(m.group()):
                _add(found, SecretMatch("private_key", m.start(), m.end()))
    if "eyJ" in text:
        for m in JWT_RE.finditer(text):
            if m.group(1) is not None and _jwt_real(m.group()):
                _add(found, SecretMatch("jwt", m.start(), m.end()))
    for marker, rules in _TOKEN_GROUPS:
        if marker not in text:
            continue
        for rule in rules:
            if any(hint in text for hint in rule.hints):
                for m in rule.pattern.finditer(text):
                    if rule.accepts(m) and not _fake_token(m.group()):
                        _add(found, SecretMatch(rule.rule, m.start(), m.end()))


def _credentials(text: str, found: list[SecretMatch]) -> None:
    if "@" in text and "://" in text:
        for m in USERINFO_RE.finditer(text):
            if _url_password_real(m.group(1), m.group(2)):
                _add(found, SecretMatch("password", m.start(2), m.end(2)))
    lower = text.lower()
    for word, pattern, rule in (("bearer", BEARER_RE, "bearer"), ("basic", BASIC_RE, "basic_auth")):
        if word in lower:
            for m in pattern.finditer(text):
                value = m.group(3)
                if looks_like_credential(value) and secret_like(value):
                    _add(found, SecretMatch(rule, m.start(3), m.end(3)))


def credential_name(name: str) -> str | None:
    """The category of a name that holds a credential (`DB_PASSWORD` -> `password`), or None;
    paths (`/token`) and names of runtime values (`session_id`, `signature`) are not."""
    if name.startswith("/"):
        return None
    rule = classify_key(name)
    if rule == "jwt":  # `JWT_SECRET = "..."` holds a signing secret, not a token
        return "secret"
    return None if rule in _NOT_CREDENTIALS else rule


def _assignments(text: str, found: list[SecretMatch]) -> None:
    if may_hold_pair(text):
        for start, end, rule in sensitive_pairs(text, credential_name):
            if secret_like(text[start:end]):
                _add(found, SecretMatch(rule, start, end))
    if "=" in text or ":" in text:
        for m in _ASSIGNMENT_RE.finditer(text):
            category = credential_name(m.group("name"))
            if category is not None and secret_like(m.group("value")):
                _add(found, SecretMatch(category, m.start("value"), m.end("value")))


def find_secrets(text: str) -> list[SecretMatch]:
    """The credentials in `text`, sorted by position; overlapping matches are reported once,
    under the most specific rule (formats, then URL and header credentials, then names)."""
    found: list[SecretMatch] = []
    _formats(text, found)
    _credentials(text, found)
    _assignments(text, found)
    return sorted(found, key=lambda m: (m.start, m.end))
