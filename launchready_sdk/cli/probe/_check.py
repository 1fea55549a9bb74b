"""One HTTP check of one target, bounded in time and in bytes, with a reason when it fails.

A check fails on a connection error (DNS, refused, reset, TLS), on no answer within the
timeout (the whole check: connect, TLS, redirects, headers and the body read, not each read),
on a status the target does not accept (default: >= 400), on more than `MAX_REDIRECTS`
redirects, on expected text missing from the first `MAX_BODY_BYTES` of the body, and on a
latency over the target's limit. Each check opens a fresh connection, so it proves the whole
path a new visitor takes (DNS, TCP, TLS handshake, HTTP), not a connection kept from before.

Security stance: the body is read only when the target expects text, and never past
`MAX_BODY_BYTES`; the probe asks for an uncompressed body and inflates gzip/deflate itself with
the same bound, so a compression bomb cannot grow in memory. Reasons carry no header values
and no URLs. TLS certificates are verified (against `--ca-file` when given).

Limits, candidly: text in a body compressed with anything but gzip or deflate is not searched
(the check fails and says so); the latency is measured to the end of the headers, or of the
bounded body read when text is expected.
"""

from __future__ import annotations

import asyncio
import http.cookiejar
import socket
import ssl
import time
import zlib
from collections.abc import Callable
from importlib.metadata import PackageNotFoundError, version

import httpx

from launchready_sdk.cli.probe._state import Outcome
from launchready_sdk.cli.probe._targets import Target

MAX_REDIRECTS = 5
MAX_BODY_BYTES = 1024 * 1024


def user_agent() -> str:
    try:
        return f"launchready-probe/{version('launchready-sdk')}"
    except PackageNotFoundError:
        return "launchready-probe"


def no_cookies() -> http.cookiejar.CookieJar:
    """A cookie jar that keeps nothing: each check is a first visit."""
    return http.cookiejar.CookieJar(http.cookiejar.DefaultCookiePolicy(allowed_domains=[]))


def tls_verify(ca_file: str | None) -> ssl.SSLContext | bool:
    """The TLS verification the checks and channels use: default CAs, or `ca_file`'s."""
    if ca_file is None:
        return True
    return ssl.create_default_context(cafile=ca_file)


class Checker:
    """Runs checks through one httpx client with fresh connections and no pool limit."""

    def __init__(
        self,
        timeout_s: float,
        *,
        verify: ssl.SSLContext | bool = True,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
    ) -> None:
        self.timeout_s = timeout_s
        self._clock = clock
        self._wall = wall
        self._client = httpx.AsyncClient(
            timeout=httpx.Timeout(timeout_s),
            limits=httpx.Limits(max_connections=None, max_keepalive_connections=0),
            max_redirects=MAX_REDIRECTS,
            verify=verify,
            trust_env=False,
            cookies=no_cookies(),
            headers={"User-Agent": user_agent(), "Accept-Encoding": "identity"},
        )

    async def check(self, target: Target) -> Outcome:
        """Check `target` once; never raises (every error is a failed outcome)."""
        started_wall, started = self._wall(), self._clock()
        status: int | None = None
        try:
            async with asyncio.timeout(self.timeout_s):
                status, reason = await self._request(target)
        except TimeoutError:
            reason = f"no answer within {self.timeout_s:g} s"
        except httpx.TooManyRedirects:
            reason = f"more than {MAX_REDIRECTS} redirects (a redirect loop?)"
        except httpx.HTTPError as exc:
            reason = describe_error(exc)
        except Exception as exc:  # below httpx's translation (OSError, ssl, invalid URL)
            reason = describe_error(exc)
        ended = self._clock()
        latency_ms = round((ended - started) * 1000, 1)
        limit = target.max_latency_ms
        if reason is None and limit is not None and latency_ms > limit:
            reason = f"slow: {latency_ms:g} ms, over {target.max_latency_ms:g} ms"
        return Outcome(
            ok=reason is None,
            reason=reason or "",
            started=started,
            ended=ended,
            started_wall=started_wall,
            status=status,
            latency_ms=latency_ms,
        )

    async def _request(self, target: Target) -> tuple[int, str | None]:
        async with self._client.stream(
            target.method,
            target.request_url,
            headers=list(target.headers),
            content=target.body,
            follow_redirects=target.follow_redirects,
        ) as response:
            status = response.status_code
            if not target.accepts(status):
                wanted = "/".join(map(str, target.status)) if target.status else "below 400"
                return status, f"HTTP {status}, expected {wanted}"
            if target.text is None:
                return status, None
            return status, await _find_text(response, target.text)

    async def aclose(self) -> None:
        await self._client.aclose()


async def _find_text(response: httpx.Response, text: str) -> str | None:
    """None when `text` is in the first `MAX_BODY_BYTES` of the (decoded) body; else why not."""
    encoding = response.headers.get("content-encoding", "identity").strip().lower()
    inflater: zlib._Decompress | None = None
    if encoding in ("gzip", "x-gzip"):
        inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
    elif encoding == "deflate":
        inflater = zlib.decompressobj()
    elif encoding not in ("identity", ""):
        return f"expected text not searched: the body is {encoding}-compressed"
    body = bytearray()
    async for chunk in response.aiter_raw():
        if inflater is not None:
            try:
                chunk = inflater.decompress(chunk, MAX_BODY_BYTES - len(body))
            except zlib.error:
                return f"the {encoding} body does not inflate"
        body += chunk[: MAX_BODY_BYTES - len(body)]
        if len(body) >= MAX_BODY_BYTES:
            break
    decoded = bytes(body).decode(response.charset_encoding or "utf-8", errors="replace")
    if text in decoded:
        return None
    if len(body) >= MAX_BODY_BYTES:
        return f"expected text not in the first {MAX_BODY_BYTES // 1024 // 1024} MiB of the body"
    return "expected text not in the body"


def describe_error(exc: BaseException) -> str:
    """A short reason for a failed request: the cause a person would look for first."""
    for cause in _chain(exc):
        if isinstance(cause, ssl.SSLCertVerificationError):
            return f"TLS: {cause.verify_message or 'certificate verify failed'}"
        if isinstance(cause, ssl.SSLError):
            return f"TLS: {cause.reason or cause.strerror or type(cause).__name__}"
        if isinstance(cause, ConnectionRefusedError):
            return "connection refused"
        if isinstance(cause, ConnectionResetError):
            return "connection reset"
        if isinstance(cause, socket.gaierror):
            return "DNS: the host name does not resolve"
    if isinstance(exc, httpx.ConnectTimeout):
        return "connect timeout"
    if isinstance(exc, httpx.TimeoutException):
        return "timeout"
    if isinstance(exc, httpx.RemoteProtocolError):
        return "the server closed the connection or broke HTTP"
    if isinstance(exc, httpx.ConnectError):
        return f"cannot connect: {str(exc)[:200] or 'connection failed'}"
    return f"{type(exc).__name__}: {str(exc)[:200]}"


def _chain(exc: BaseException) -> list[BaseException]:
    seen: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and len(seen) < 10 and current not in seen:
        seen.append(current)
        current = current.__cause__ or current.__context__
    return seen
