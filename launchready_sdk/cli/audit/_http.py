"""HTTP for the site checks: one request at a time, never following redirects, through the
run's resolver and CA.

With `--resolver`, the host of each URL is looked up there and the request goes to that
address with the original `Host` header and TLS server name, so certificates are checked
against the host name. Connections are not reused: each request may carry another name.
"""

from __future__ import annotations

import dataclasses
import ssl
import urllib.parse
from typing import Final

import httpx

from launchready_sdk.cli.audit._dns import Lookup, LookupFailed
from launchready_sdk.cli.audit._model import Options, PartResult

MAX_BODY: Final = 2_000_000
USER_AGENT: Final = "launchready-audit"


class FetchError(Exception):
    """The request got no HTTP answer; the message says why (refused, timeout, TLS, DNS)."""


@dataclasses.dataclass(frozen=True)
class Reply:
    status: int
    headers: httpx.Headers
    url: str
    body: bytes = b""

    @property
    def location(self) -> str | None:
        raw = self.headers.get("location")
        return urllib.parse.urljoin(self.url, raw) if raw else None


def tls_context(options: Options) -> ssl.SSLContext:
    if options.ca_file is not None:
        return ssl.create_default_context(cafile=str(options.ca_file))
    return ssl.create_default_context()


def default_port(scheme: str) -> int:
    return 443 if scheme == "https" else 80


def with_scheme(url: str, scheme: str) -> str:
    """`url` with another scheme, keeping the port when it names one."""
    parts = urllib.parse.urlsplit(url)
    return urllib.parse.urlunsplit((scheme, parts.netloc, parts.path or "/", parts.query, ""))


def origin(url: str) -> str:
    parts = urllib.parse.urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


class Fetcher:
    """Sends single requests; `lookup` (when `--resolver` is given) resolves their hosts."""

    @classmethod
    def for_part(cls, options: Options, result: PartResult) -> tuple[str, Fetcher] | None:
        """`--url` and a fetcher for one part of the audit, or None (the reason noted as
        skipped). Raises ValueError when `--url` is missing."""
        if options.url is None:
            raise ValueError("--url is required")
        try:
            return options.url, cls(options)
        except LookupFailed as exc:
            result.skipped.append(str(exc))
            return None

    def __init__(self, options: Options) -> None:
        self.lookup = Lookup(options) if options.resolver is not None else None
        self.client = httpx.Client(
            verify=tls_context(options),
            timeout=httpx.Timeout(options.timeout_s),
            follow_redirects=False,
            trust_env=False,
            limits=httpx.Limits(max_keepalive_connections=0),
            headers={"User-Agent": USER_AGENT},
        )

    def close(self) -> None:
        self.client.close()

    def fetch(
        self,
        method: str,
        url: str,
        headers: dict[str, str] | None = None,
        content: bytes | None = None,
        read_body: bool = False,
    ) -> Reply:
        parts = urllib.parse.urlsplit(url)
        host = parts.hostname or ""
        target, send = url, dict(headers or {})
        extensions: dict[str, str] = {}
        if self.lookup is not None:
            try:
                addresses = self.lookup.addresses(host)
            except LookupFailed as exc:
                raise FetchError(str(exc)) from exc
            if not addresses:
                raise FetchError(f"{host} does not resolve")
            address = addresses[0]
            if address != host:
                netloc = f"[{address}]" if ":" in address else address
                if parts.port is not None:
                    netloc += f":{parts.port}"
                target = urllib.parse.urlunsplit(parts._replace(netloc=netloc))
                send["Host"] = parts.netloc.rsplit("@", 1)[-1]
                if parts.scheme == "https":
                    extensions["sni_hostname"] = host
        try:
            with self.client.stream(
                method, target, headers=send, content=content, extensions=extensions
            ) as response:
                body = b""
                if read_body:
                    for chunk in response.iter_bytes():
                        body += chunk
                        if len(body) > MAX_BODY:
                            break
                return Reply(response.status_code, response.headers, url, body)
        except httpx.ConnectTimeout as exc:
            raise FetchError(f"{parts.netloc}: no connection within the timeout") from exc
        except httpx.TimeoutException as exc:
            raise FetchError(f"{parts.netloc}: no answer within the timeout") from exc
        except httpx.ConnectError as exc:
            raise FetchError(f"{parts.netloc}: {_reason(exc)}") from exc
        except httpx.HTTPError as exc:
            raise FetchError(f"{parts.netloc}: {type(exc).__name__}: {_reason(exc)}") from exc


def _reason(exc: Exception) -> str:
    cause: BaseException | None = exc
    while cause is not None:
        if isinstance(cause, ssl.SSLCertVerificationError):
            return f"certificate not trusted ({cause.verify_message})"
        cause = cause.__cause__ or cause.__context__
    text = str(exc) or type(exc).__name__
    return text.splitlines()[0][:200]
