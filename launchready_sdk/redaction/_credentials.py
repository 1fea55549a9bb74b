"""Credentials found by shape in free text: PEM keys, JWTs, URL passwords, `Bearer`/`Basic`
credentials, and the regexes and helpers for `key=value` pairs.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Final

from launchready_sdk.redaction._markers import MARKER_RE, marker_for

PEM_RE: Final = re.compile(
    r"-----BEGIN[A-Z0-9 ]{0,40}PRIVATE KEY(?: BLOCK)?-----.*?"
    r"(?:-----END[A-Z0-9 ]{0,40}PRIVATE KEY(?: BLOCK)?-----|\Z)",
    re.DOTALL,
)
# Possessive runs: each `eyJ...` run is read once, and `replace_jwt` keeps it unless the two
# dots of a JWT follow (otherwise `eyJeyJeyJ...` would be rescanned from every `eyJ`).
JWT_RE: Final = re.compile(
    r"eyJ[A-Za-z0-9_\-]{8,8192}+(\.[A-Za-z0-9_\-]{8,65536}+\.[A-Za-z0-9_\-]{0,8192}+)?",
    re.ASCII,
)
# RFC 3986 userinfo has no unencoded `[ ] " ' < >`; excluding them keeps markers out of it.
USERINFO_RE: Final = re.compile(r"""://([^\s/?#@:\[\]"'<>]{0,256}):([^\s/?#\[\]"'<>]{1,1024})@""")
BEARER_RE: Final = re.compile(r"([Bb]earer|BEARER)([ \t]{1,8})([A-Za-z0-9\-._~+/]{6,8192}=*)")
BASIC_RE: Final = re.compile(r"([Bb]asic|BASIC)([ \t]{1,8})([A-Za-z0-9+/]{6,8192}={0,2})")
# A separator and the key before it, searched in the reversed text so that the search starts
# from the separator (`=`, `:`, `%3D`): `"key"`, `\"key\"`, `'key'` or a bare key that starts
# (ends, reversed) with a letter, `_` or `%` and holds no `%3D` (the separator before it).
KV_REVERSED_RE: Final = re.compile(
    r"""(?P<sep>=|:|[Dd]3%)\s{0,3}"""
    r"""(?:"\\?(?P<dq>[^"\\\n]{1,64})"|'(?P<sq>[^'\\\n]{1,64})'"""
    r"""|(?P<bare>(?:(?![Dd]3%)[A-Za-z0-9_.%\-\[\]]){0,63}(?![Dd]3%)[A-Za-z_%]))"""
)
# After the separator: spaces, an optional auth scheme (kept), then the value (group 1 to 4:
# double-quoted, single-quoted, JSON-escaped or bare).
KV_VALUE_RE: Final = re.compile(
    r"""\s{0,3}(?:(?:[Bb]earer|[Bb]asic|[Tt]oken|[Dd]igest)\s{1,3})?"""
    r"""(?:"((?:[^"\\\n]|\\.){0,4096})"|'([^'\n]{0,4096})'|\\"((?:[^"\\]|\\[^"]){0,4096})\\"|"""
    r"""([^\s&,;"'<>]{1,4096}))"""
)
# Searched in the text with every digit turned into `0`, so that the search starts from a literal.
_UNKNOWN: Final = object()
SAFE_VALUES: Final = frozenset(("true", "false", "null", "none", ""))  # cannot hide a secret


def may_hold_pair(text: str) -> bool:
    """Whether `text` has a `=`, `%3D`, `: `, `":` or `':` that could follow a key."""
    if "=" in text or ("%" in text and "%3" in text):
        return True
    if ":" not in text:
        return False
    return ": " in text or ('"' in text and '":' in text) or ("'" in text and "':" in text)


def looks_like_credential(value: str) -> bool:
    """Whether the word after `Bearer`/`Basic` is a credential rather than English."""
    value = value.rstrip(".")
    if len(value) >= 24:
        return True
    return len(value) >= 6 and any(c.isdigit() or c in "-._~+/=" for c in value)


def replace_auth(m: re.Match[str]) -> str:
    value = m.group(3)
    if not looks_like_credential(value):
        return m.group()
    rule = "bearer" if m.group(1).lower() == "bearer" else "basic_auth"
    return f"{m.group(1)}{m.group(2)}{marker_for(rule)}"


def replace_jwt(m: re.Match[str]) -> str:
    return m.group() if m.group(1) is None else marker_for("jwt")


def replace_userinfo(m: re.Match[str]) -> str:
    if MARKER_RE.fullmatch(m.group(2)):
        return m.group()
    return f"://{m.group(1)}:{marker_for('password')}@"


# After an authorization key's scheme word (`Authorization: Bot <token>`): the credential.
AUTH_TOKEN_RE: Final = re.compile(r"[ \t]{1,3}([^\s&,;\"'<>]{4,8192})")
# A cookie header's bare value runs to the end of its line: every cookie in it is a secret.
COOKIE_REST_RE: Final = re.compile(r"[^\r\n\"'<>]{0,8192}")
# `<password>...</password>` and `<token type="x">...</token>`.
XML_ELEMENT_RE: Final = re.compile(
    r"<([A-Za-z_][A-Za-z0-9_.:\-]{0,63})(?:[ \t][^<>\n]{0,512})?>([^<\n]{1,8192})</\1[ \t]*>"
)
# `--password hunter2` (the `--password=x` form is a key=value pair).
CLI_FLAG_RE: Final = re.compile(
    r"(?<![A-Za-z0-9_\-])--([A-Za-z][A-Za-z0-9_\-]{1,63})[ \t]{1,8}(?!-)([^\s\"'&;|<>]{1,4096})"
)
# `mysql -uroot -phunter2 shop`: the password glued to `-p`.
MYSQL_PASSWORD_RE: Final = re.compile(
    r"\b(?:mysql|mysqldump|mysqladmin|mysqlimport|mysqlcheck|mysqlpump|mariadb)\b"
    r"[^\n]{0,1024}?[ \t]-p([^\s\-][^\s]{0,1023})"
)
# pydantic's `str(ValidationError)`: a location line, then the message with the rejected value.
PYDANTIC_VALUE_RE: Final = re.compile(r"input_value=(.{0,8192}?)(?=, input_type=)")
# The first word of an authorization value that is a scheme (`Bot`, `ApiKey`, `SSWS`,
# `Negotiate`, `AWS4-HMAC-SHA256`), not a credential.
AUTH_SCHEME_RE: Final = re.compile(r"[A-Za-z][A-Za-z\-]{0,39}|AWS4-HMAC-SHA[0-9]{3}")


def sensitive_pairs(
    text: str, rule_of: Callable[[str], object], known: Mapping[object, object] | None = None
) -> list[tuple[int, int, str]]:
    """(start, end, rule) of each value in `key=value`, `key: value` or `"key": "value"` pairs
    whose key `rule_of` gives a rule (None: not sensitive); `true`, `null`, `""` and markers
    are skipped. `known` holds verdicts already made (looked up first, inline).

    Separators and their keys are found in one search over the reversed text; only the
    pairs whose key is sensitive reach Python, then values are matched left to right.
    """
    n = len(text)
    spans: list[tuple[int, int, str]] = []
    pos = 0
    cache = known if known is not None else {}
    for m in reversed(list(KV_REVERSED_RE.finditer(text[::-1]))):
        key = m.group(m.lastindex or 0)[::-1]
        rule = cache.get(key, _UNKNOWN)
        if rule is _UNKNOWN:
            rule = rule_of(key)
        if rule is None or n - m.end(1) < pos:
            continue
        value = KV_VALUE_RE.match(text, n - m.start(1))
        if value is None:
            continue
        pos = value.end()
        group = value.lastindex or 0
        start, end = value.start(group), value.end(group)
        if group == 4 and rule == "authorization" and AUTH_SCHEME_RE.fullmatch(text, start, end):
            token = AUTH_TOKEN_RE.match(text, end)  # `Bot <token>`: the scheme is kept
            if token is not None:
                start, end = token.start(1), token.end(1)
                pos = end
        elif group == 4 and rule == "cookie":  # every cookie of the line, not the first
            rest = COOKIE_REST_RE.match(text, end)
            if rest is not None:
                end = pos = rest.end()
        inner = text[start:end]
        if inner.lower() not in SAFE_VALUES and not MARKER_RE.fullmatch(inner):
            spans.append((start, end, str(rule)))
    return spans
