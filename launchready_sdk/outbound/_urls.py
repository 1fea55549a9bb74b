"""What the transports read from and do to a request's URL and headers: origin, host key,
credential stripping, per-operation timeouts and the redacted URL for logs."""

from __future__ import annotations

import re

import httpx

from launchready_sdk.redaction import redact

_CREDENTIAL_HEADER = re.compile(r"auth|cookie|token|secret|key|signature|session|password", re.I)


def origin(url: httpx.URL) -> tuple[str, str, int | None]:
    return url.scheme, url.host, url.port


def host_name(url: httpx.URL) -> str:
    port = url.port
    return f"{url.scheme}://{url.host}" if port is None else f"{url.scheme}://{url.host}:{port}"


def min_timeout(given: object, ours: float) -> float:
    return min(given, ours) if isinstance(given, (int, float)) else ours


def strip_credentials(headers: httpx.Headers) -> None:
    for name in [n for n in headers if _CREDENTIAL_HEADER.search(n)]:
        del headers[name]


def safe_url(url: httpx.URL) -> str:
    return str(redact(str(url.copy_with(username=None, password=None))))
