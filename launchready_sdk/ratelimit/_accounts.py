"""The accounts a login request names, read as leniently as the frameworks read them.

Every field a per-account rule looks at counts, not only the first one found: with
`{"username": "decoy", "email": victim}` both `decoy` and the victim's address are charged, so
a decoy field never moves the budget elsewhere. Bodies are read the way the apps behind the SDK
read them: JSON with a byte-order mark, `NaN`, lone surrogates or UTF-16 (as `json.loads`
accepts them), URL-encoded and multipart forms (FastAPI's `OAuth2PasswordRequestForm` takes
both), and bodies sent as `text/plain` or with no content type at all (a Django view calling
`json.loads(request.body)` accepts those).
"""

from __future__ import annotations

import json
import urllib.parse
from collections.abc import Iterator, Mapping
from typing import Any

import orjson

ACCOUNT_FIELDS = ("username", "email", "login", "user", "account")
MAX_ACCOUNTS = 4  # distinct accounts charged per request
_MAX_FIELDS = 200
_MAX_VALUE = 512


def accounts_of(content_type: bytes, body: bytes) -> list[str]:
    """The distinct accounts (case-folded, stripped) a body names, at most `MAX_ACCOUNTS`."""
    found: dict[str, None] = {}
    for value in _account_values(_fields(content_type, body)):
        text = value.strip().casefold()[:_MAX_VALUE]
        if text:
            found.setdefault(text)
            if len(found) >= MAX_ACCOUNTS:
                break
    return list(found)


def _account_values(fields: Mapping[str, Any]) -> Iterator[str]:
    for name in ACCOUNT_FIELDS:
        value = fields.get(name)
        if isinstance(value, Mapping):  # `{"user": {"email": ...}}`
            yield from _account_values(value)
            continue
        items = value if isinstance(value, list) else [value]
        for item in items[:MAX_ACCOUNTS]:
            if isinstance(item, str):
                yield item
            elif isinstance(item, int) and not isinstance(item, bool):
                yield str(item)


def _fields(content_type: bytes, body: bytes) -> Mapping[str, Any]:
    kind = content_type.split(b";", 1)[0].strip().lower()
    if kind == b"multipart/form-data":
        return _multipart(content_type, body)
    if kind == b"application/x-www-form-urlencoded":
        return _urlencoded(body)
    if kind == b"application/json" or kind.endswith(b"+json"):
        return _json(body)
    # text/plain, no content type, anything else: what the body looks like.
    start = body.lstrip(b"\xef\xbb\xbf \t\r\n")[:1]
    if start in (b"{", b"[") or body[:2] in (b"\xff\xfe", b"\xfe\xff"):
        return _json(body)
    return _urlencoded(body) if b"=" in body else {}


def _json(body: bytes) -> Mapping[str, Any]:
    try:
        parsed = orjson.loads(body)
    except orjson.JSONDecodeError:
        parsed = _lenient_json(body)
    return parsed if isinstance(parsed, dict) else {}


def _lenient_json(body: bytes) -> Any:
    """What `json.loads` (which Starlette, FastAPI and Django views use) makes of the body."""
    if body.startswith(b"\xef\xbb\xbf"):
        body = body[3:]
    try:
        return json.loads(body)
    except (ValueError, RecursionError):
        return None


def _urlencoded(body: bytes) -> Mapping[str, Any]:
    text = body.decode("utf-8", "replace")
    fields: dict[str, list[str]] = {}
    try:
        pairs = urllib.parse.parse_qsl(text, keep_blank_values=True, max_num_fields=_MAX_FIELDS)
    except ValueError:
        return {}
    for key, value in pairs:
        fields.setdefault(key, []).append(value)
    return fields


def _multipart(content_type: bytes, body: bytes) -> Mapping[str, Any]:
    """The text fields of a `multipart/form-data` body named like an account field."""
    boundary = _boundary(content_type)
    if boundary is None:
        return {}
    fields: dict[str, list[str]] = {}
    for part in body.split(b"--" + boundary)[1 : _MAX_FIELDS + 1]:
        head, sep, value = part.partition(b"\r\n\r\n")
        if not sep:
            head, sep, value = part.partition(b"\n\n")
        name = _part_name(head)
        if name in ACCOUNT_FIELDS:
            text = value.removesuffix(b"\r\n").removesuffix(b"\n").decode("utf-8", "replace")
            fields.setdefault(name, []).append(text)
    return fields


def _boundary(content_type: bytes) -> bytes | None:
    for param in content_type.split(b";")[1:]:
        key, _, value = param.strip().partition(b"=")
        if key.strip().lower() == b"boundary":
            value = value.strip().strip(b'"')
            return value if 0 < len(value) <= 200 else None
    return None


def _part_name(head: bytes) -> str | None:
    for line in head.splitlines():
        key, _, value = line.partition(b":")
        if key.strip().lower() != b"content-disposition":
            continue
        for param in value.split(b";")[1:]:
            pkey, _, pvalue = param.strip().partition(b"=")
            if pkey.strip().lower() == b"name":
                return pvalue.strip().strip(b'"').decode("utf-8", "replace")
    return None
