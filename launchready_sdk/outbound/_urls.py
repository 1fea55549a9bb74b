"""What the transports read from and do to a request's URL and headers: origin, host key,
credential stripping, per-operation timeouts and the redacted URL for logs."""

from __future__ import annotations

import httpx

from launchready_sdk.credentials import is_credential_header
from launchready_sdk.redaction import redact


def origin(url: httpx.URL) -> tuple[str, str, int | None]:
    return url.scheme, url.host, url.port


def host_name(url: httpx.URL) -> str:
    port = url.port
    return f"{url.scheme}://{url.host}" if port is None else f"{url.scheme}://{url.host}:{port}"


def min_timeout(given: object, ours: float) -> float:
    return min(given, ours) if isinstance(given, (int, float)) else ours


def strip_credentials(headers: httpx.Headers) -> None:
    """Drop every header named like a credential (`credentials.is_credential_header`)."""
    for name in [n for n in headers if is_credential_header(n.lower().encode("latin-1"))]:
        del headers[name]


def safe_url(url: httpx.URL) -> str:
    return str(redact(str(url.copy_with(username=None, password=None))))
