"""Where alerts go: a generic JSON webhook, a Slack incoming webhook, email over SMTP.

The webhook gets `POST` JSON `{"event": "down"|"up", "target": URL, "reason": str, "since":
ISO-8601, "failures": N}` (`up` adds `"duration_s"`), with an `Idempotency-Key` header that is
the same for every try of the same alert, and, when a secret is set, `X-LaunchReady-Signature:
t=<unix time>,v1=<hex HMAC-SHA256 of "<t>.<body>">`. Slack gets `{"text": ...}` (so do
Mattermost, Rocket.Chat, and Discord at its webhook URL + `/slack`). Email is one plain-text
message per alert through the SMTP server an app already sends its order mail with.

`deliver(channel, alert)` tries a channel up to `ATTEMPTS` times, each within
`ATTEMPT_TIMEOUT_S`, all within `SEND_DEADLINE_S`, and logs every failure; a refusal that
retrying cannot fix (a 4xx other than 408/425/429, a rejected login) stops at once. The runner
delivers to every channel concurrently, so a channel that hangs or refuses delays or silences
no other, and an alert a channel missed is tried again at the target's next check.

Security stance: a channel is logged by its kind and host only (`webhook hooks.example`),
never by its URL, which usually is the credential. Webhooks do not follow redirects. An SMTP
password is sent only over TLS (STARTTLS or `smtps://`), except to a loopback server.

Limits, candidly: a receiver that took an alert but answered late gets it again on the next
try (the `Idempotency-Key` lets it drop the copy); email is sent with the stdlib's smtplib in a
worker thread, which lingers up to `ATTEMPT_TIMEOUT_S` after a give-up.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime
import email.message
import email.utils
import hashlib
import hmac
import ipaddress
import smtplib
import ssl
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Protocol
from urllib.parse import unquote, urlsplit

import httpx
import orjson

from launchready_sdk.cli.probe._check import describe_error, no_cookies, user_agent
from launchready_sdk.cli.probe._targets import ConfigError, check_url
from launchready_sdk.logs import get_logger

ATTEMPTS = 3
ATTEMPT_TIMEOUT_S = 5.0
SEND_DEADLINE_S = 15.0
BACKOFF_S = (0.5, 1.0)
_RETRYABLE = frozenset((408, 425, 429))

_log = get_logger("launchready.probe")


@dataclasses.dataclass(frozen=True)
class Alert:
    """One `down` or `up` for one incident."""

    event: str  # "down" | "up"
    target: str  # the URL as written
    name: str
    reason: str
    since: float  # epoch seconds
    failures: int
    incident_id: str
    duration_s: float | None = None

    def payload(self) -> dict[str, Any]:
        """The webhook's JSON body."""
        body: dict[str, Any] = {
            "event": self.event,
            "target": self.target,
            "reason": self.reason,
            "since": iso(self.since),
            "failures": self.failures,
        }
        if self.event == "up":
            body["duration_s"] = self.duration_s
        return body

    def subject(self) -> str:
        if self.event == "down":
            return f"DOWN {self.name}: {self.reason}"
        return f"UP {self.name} after {human_duration(self.duration_s or 0.0)}"

    def text(self) -> str:
        """One paragraph for people (Slack, email)."""
        who = self.name if self.name == self.target else f"{self.name} ({self.target})"
        since = iso(self.since)
        if self.event == "down":
            return (
                f"DOWN: {who}: {self.reason}. {self.failures} failed checks in a row, "
                f"since {since}."
            )
        took = human_duration(self.duration_s or 0.0)
        return f"UP: {who} answers again, after {took} down (since {since}; was: {self.reason})."


def iso(epoch: float) -> str:
    """ISO-8601 UTC with its offset, to the second."""
    moment = datetime.datetime.fromtimestamp(epoch, datetime.UTC)
    return moment.isoformat(timespec="seconds")


def human_duration(seconds: float) -> str:
    total = round(seconds)
    hours, rest = divmod(total, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h{minutes:02d}m"
    return f"{minutes}m{secs:02d}s" if minutes else f"{secs}s"


class ChannelError(Exception):
    """A try failed; `permanent` when trying again cannot help."""

    def __init__(self, message: str, *, permanent: bool = False) -> None:
        super().__init__(message)
        self.permanent = permanent


class Channel(Protocol):
    id: str  # stable, opaque: what the state records as "sent"
    label: str  # safe to log

    async def send(self, alert: Alert) -> None: ...


def _channel_id(kind: str, secret: str) -> str:
    return f"{kind}-{hashlib.sha256(secret.encode()).hexdigest()[:16]}"


def _host_label(kind: str, url: str) -> str:
    parts = urlsplit(url)
    host = parts.hostname or "?"
    return f"{kind} {host}:{parts.port}" if parts.port else f"{kind} {host}"


class _HttpChannel:
    kind = "webhook"

    def __init__(self, url: str, client: httpx.AsyncClient) -> None:
        self._url = url
        self._client = client
        self.id = _channel_id(self.kind, url)
        self.label = _host_label(self.kind, url)

    def body(self, alert: Alert) -> bytes:
        return orjson.dumps(alert.payload())

    def headers(self, alert: Alert, body: bytes) -> dict[str, str]:
        return {
            "Content-Type": "application/json",
            "Idempotency-Key": f"{alert.incident_id}-{alert.event}",
        }

    async def send(self, alert: Alert) -> None:
        body = self.body(alert)
        try:
            response = await self._client.post(
                self._url, content=body, headers=self.headers(alert, body)
            )
        except httpx.HTTPError as exc:
            raise ChannelError(describe_error(exc)) from None
        status = response.status_code
        if 200 <= status < 300:
            return
        retry = status >= 500 or status in _RETRYABLE
        raise ChannelError(f"HTTP {status}", permanent=not retry)


class WebhookChannel(_HttpChannel):
    """The generic JSON webhook, optionally signed."""

    def __init__(self, url: str, client: httpx.AsyncClient, secret: str | None = None) -> None:
        super().__init__(url, client)
        self._secret = secret.encode() if secret else None

    def headers(self, alert: Alert, body: bytes) -> dict[str, str]:
        headers = super().headers(alert, body)
        headers["X-LaunchReady-Event"] = alert.event
        if self._secret is not None:
            stamp = str(int(time.time()))
            mac = hmac.new(self._secret, stamp.encode() + b"." + body, hashlib.sha256)
            headers["X-LaunchReady-Signature"] = f"t={stamp},v1={mac.hexdigest()}"
        return headers


class SlackChannel(_HttpChannel):
    """A Slack incoming webhook (or any receiver of Slack's `{"text": ...}`)."""

    kind = "slack"

    def body(self, alert: Alert) -> bytes:
        return orjson.dumps({"text": alert.text()})


@dataclasses.dataclass(frozen=True)
class SmtpServer:
    """Where email goes: `smtp://[user:password@]host[:port]` (STARTTLS when offered, port
    587 by default) or `smtps://...` (TLS from the start, port 465)."""

    host: str
    port: int
    implicit_tls: bool
    username: str | None = None
    password: str | None = dataclasses.field(default=None, repr=False)

    @classmethod
    def parse(cls, url: str) -> SmtpServer:
        parts = urlsplit(url)
        if parts.scheme not in ("smtp", "smtps") or not parts.hostname:
            raise ConfigError(
                "--smtp-url: expected smtp://user:password@host:587 or smtps://host:465"
            )
        try:
            port = parts.port
        except ValueError:
            raise ConfigError("--smtp-url: the port is not a number from 1 to 65535") from None
        implicit = parts.scheme == "smtps"
        return cls(
            host=parts.hostname,
            port=port or (465 if implicit else 587),
            implicit_tls=implicit,
            username=unquote(parts.username) if parts.username else None,
            password=unquote(parts.password) if parts.password else None,
        )

    @property
    def loopback(self) -> bool:
        if self.host == "localhost":
            return True
        try:
            return ipaddress.ip_address(self.host).is_loopback
        except ValueError:
            return False


class EmailChannel:
    """Plain-text email through an SMTP server."""

    def __init__(
        self,
        server: SmtpServer,
        sender: str,
        recipients: Sequence[str],
        tls: ssl.SSLContext | None = None,
    ) -> None:
        self._server = server
        self._sender = sender
        self._recipients = list(recipients)
        self._tls = tls or ssl.create_default_context()
        self.id = _channel_id("email", f"{server.host}:{server.port}:{sorted(recipients)}")
        self.label = f"email {server.host}:{server.port} ({len(self._recipients)} recipients)"

    def message(self, alert: Alert) -> email.message.EmailMessage:
        msg = email.message.EmailMessage()
        msg["From"] = self._sender
        msg["To"] = ", ".join(self._recipients)
        msg["Subject"] = f"[launchready] {alert.subject()}"[:200]
        msg["Date"] = email.utils.formatdate(usegmt=True)
        domain = self._sender.rpartition("@")[2] or "launchready.invalid"
        msg["Message-ID"] = email.utils.make_msgid(f"{alert.incident_id}.{alert.event}", domain)
        lines = [alert.text(), "", orjson.dumps(alert.payload()).decode(), ""]
        msg.set_content("\n".join(lines))
        return msg

    async def send(self, alert: Alert) -> None:
        msg = self.message(alert)
        await asyncio.to_thread(self._send_blocking, msg)

    def _send_blocking(self, msg: email.message.EmailMessage) -> None:
        server = self._server
        try:
            smtp: smtplib.SMTP
            if server.implicit_tls:
                smtp = smtplib.SMTP_SSL(
                    server.host, server.port, timeout=ATTEMPT_TIMEOUT_S, context=self._tls
                )
            else:
                smtp = smtplib.SMTP(server.host, server.port, timeout=ATTEMPT_TIMEOUT_S)
            with smtp:
                smtp.ehlo()
                if not server.implicit_tls and smtp.has_extn("starttls"):
                    smtp.starttls(context=self._tls)
                    smtp.ehlo()
                    encrypted = True
                else:
                    encrypted = server.implicit_tls
                if server.username is not None:
                    if not encrypted and not server.loopback:
                        raise ChannelError(
                            "the server offers no STARTTLS; refusing to send the password in "
                            "clear (use smtps:// or a server with STARTTLS)",
                            permanent=True,
                        )
                    smtp.login(server.username, server.password or "")
                smtp.send_message(msg)
        except (smtplib.SMTPAuthenticationError, smtplib.SMTPRecipientsRefused) as exc:
            raise ChannelError(_smtp_reason(exc), permanent=True) from None
        except (smtplib.SMTPException, OSError, ssl.SSLError) as exc:
            raise ChannelError(_smtp_reason(exc)) from None


def _smtp_reason(exc: BaseException) -> str:
    if isinstance(exc, smtplib.SMTPResponseException):
        return f"SMTP {exc.smtp_code}"
    if isinstance(exc, smtplib.SMTPRecipientsRefused):
        return f"SMTP refused {len(exc.recipients)} recipients"
    if isinstance(exc, TimeoutError):
        return "SMTP server timed out"
    return describe_error(exc)


def check_channel_url(url: str, flag: str) -> str:
    """`url` when it is a usable webhook URL; `ConfigError` naming the flag, not the URL."""
    try:
        return check_url(url, flag)
    except ConfigError:
        raise ConfigError(
            f"{flag}: expected an http:// or https:// URL with a host "
            "(the value is not shown: it may hold a token)"
        ) from None


async def deliver(
    channel: Channel,
    alert: Alert,
    *,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> bool:
    """Send `alert` through `channel` with retries; True once it got through. Never raises."""
    deadline = clock() + SEND_DEADLINE_S
    fields = {"channel": channel.label, "alert": alert.event, "target": alert.name}
    for attempt in range(1, ATTEMPTS + 1):
        remaining = deadline - clock()
        started = clock()
        try:
            async with asyncio.timeout(min(ATTEMPT_TIMEOUT_S, remaining)):
                await channel.send(alert)
        except TimeoutError:
            error = ChannelError(f"no answer within {min(ATTEMPT_TIMEOUT_S, remaining):g} s")
        except ChannelError as exc:
            error = exc
        except Exception as exc:  # a channel's bug must not stop the others
            error = ChannelError(f"{type(exc).__name__}: {str(exc)[:200]}")
        else:
            took_ms = round((clock() - started) * 1000, 1)
            _log.info("probe.alert_sent", attempt=attempt, took_ms=took_ms, **fields)
            return True
        backoff = BACKOFF_S[min(attempt, len(BACKOFF_S)) - 1]
        retry = not error.permanent and attempt < ATTEMPTS and clock() + backoff + 0.1 < deadline
        _log.warning(
            "probe.alert_failed", attempt=attempt, error=str(error), will_retry=retry, **fields
        )
        if not retry:
            break
        await sleep(backoff)
    _log.error(
        "probe.alert_undelivered",
        consequence="tried again at the target's next check",
        **fields,
    )
    return False


def http_client(verify: ssl.SSLContext | bool) -> httpx.AsyncClient:
    """The client the webhook channels share: no redirects, no cookies kept, no proxies."""
    return httpx.AsyncClient(
        timeout=httpx.Timeout(ATTEMPT_TIMEOUT_S),
        follow_redirects=False,
        verify=verify,
        trust_env=False,
        cookies=no_cookies(),
        headers={"User-Agent": user_agent()},
    )
