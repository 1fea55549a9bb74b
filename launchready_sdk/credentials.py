"""Which request headers carry credentials: one definition for the cache, idempotency and the
outbound client.

A header carries credentials when its name says so: `Authorization`, `Proxy-Authorization`,
`Cookie`, and any name with a word such as auth, token, key, secret, session, signature,
password or credential in it (`X-Api-Key`, `apikey`, `Api-Key`, `X-Session-Token`,
`X-User-Token`, `X-Auth`). A name is classified once and remembered. `Idempotency-Key` and the
browser's `Sec-*` headers are not credentials. Of a `Cookie` header, the cookies named that way
(`sessionid`, `session`, `connect.sid`, `PHPSESSID`, `remember_token`) identify a caller;
analytics and preference cookies do not.

Security stance: a false positive costs a cache hit (the request bypasses the cache) or makes
an idempotency record per credential instead of per address; a false negative serves one
user's response to another. Ambiguous names are credentials.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable
from typing import Final

__all__ = ["caller_credentials", "credential_headers", "is_credential_header"]

_NAMED: Final = re.compile(
    rb"auth|cookie|token|secret|key|signature|sess|password|passwd|credential|jwt|bearer"
    rb"|(?:^|[^a-z])sid(?:$|[^a-z])",
    re.IGNORECASE,
)
_NOT_CREDENTIALS: Final = frozenset({b"idempotency-key", b"keep-alive"})


@functools.lru_cache(maxsize=1024)
def is_credential_header(name: bytes) -> bool:
    """Whether a request header (by its lowercase name) carries credentials."""
    name = name.lower()
    if name in _NOT_CREDENTIALS or name.startswith(b"sec-"):
        return False
    return _NAMED.search(name) is not None


def credential_headers(
    headers: Iterable[tuple[bytes, bytes]], extra: frozenset[bytes] = frozenset()
) -> list[tuple[bytes, bytes]]:
    """The request's credential headers (names lowercased), in the order they came."""
    return [
        (name.lower(), value)
        for name, value in headers
        if name.lower() in extra or is_credential_header(name)
    ]


def caller_credentials(
    headers: Iterable[tuple[bytes, bytes]], extra: frozenset[bytes] = frozenset()
) -> list[bytes]:
    """What identifies the caller of a request: its credential headers and, of its cookies,
    those named like a session or token, as sorted `name=value` items (empty: anonymous)."""
    items: list[bytes] = []
    for name, value in credential_headers(headers, extra):
        if name == b"cookie":
            for cookie in value.split(b";"):
                cookie_name, sep, _ = cookie.strip().partition(b"=")
                if sep and is_credential_header(cookie_name):
                    items.append(b"cookie:" + cookie.strip())
        else:
            items.append(name + b"=" + value)
    return sorted(items)
