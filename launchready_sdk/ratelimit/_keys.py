"""Key sources: whom a rule's budget belongs to, when not to the client address.

A rule keyed by a header (`rate_limit_keys={"/api/*": "header:X-Api-Key"}`) gives each value
of that header a budget of its own, hashed so no credential is kept; a callable
(`LaunchReady.rate_limit_key("/api/*")`) can name a user id. A request whose key is missing,
empty or longer than 256 bytes is charged to its client address, like a rule without a key
source, so leaving the header out is never a way around the limit.

Limits, candidly: a header that clients choose freely (an API key nobody has verified yet)
can be rotated to get fresh budgets; key on what your auth layer verified (a user id set by
your proxy), or keep an address rule beside it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from typing import Any

KeySource = Callable[[Any], "str | None"]  # (scope) -> key, or None for the address
MAX_KEY_BYTES = 256


def header_key(name: str) -> KeySource:
    """A key source reading one request header (its value hashed), None when it is unusable."""
    wanted = name.strip().lower().encode("latin-1")

    def key(scope: Any) -> str | None:
        for header, value in scope["headers"]:
            if header == wanted:
                value = value.strip()
                if not value or len(value) > MAX_KEY_BYTES:
                    return None
                return "h:" + hashlib.blake2b(value, digest_size=16).hexdigest()
        return None

    return key


def parse_key_source(text: str) -> KeySource:
    """A key source from its setting text: `header:X-Api-Key`.

    Raises:
        ValueError: saying what is expected.
    """
    kind, sep, name = text.partition(":")
    if kind.strip().lower() != "header" or not sep or not name.strip():
        raise ValueError(f"expected header:<name>, got {text!r}")
    if not all(c.isalnum() or c in "-_" for c in name.strip()):
        raise ValueError(f"{name.strip()!r} is not a header name")
    return header_key(name)
