"""The token-gated status page and error tracking.

With `status_token` set, `GET <status_path>` is one server-rendered page and
`<status_path>.json` the same data: per route template its requests, 5xx rate, 4xx, p50/p95/p99
against its budget with an over-budget mark, how many requests went over, and a small chart of
this worker's p95 per minute; readiness checks with their age; cache hit ratios; rate-limit
refusals per rule; Redis and outbound breakers; the slowest recent requests; recent errors.
With Redis the figures are the fleet's (every worker sharing it), otherwise "this worker only".

The page is a view over what the SDK already keeps: latency histograms, cache and limiter
counters, readiness verdicts. Requests pay one comparison (is this one slower than the
smallest budget?) and an exception its capture; the page pays for the rest when it is viewed.
Memory is bounded: 200 error groups, 50 slow requests, the tracker's route cap.

Error tracking: an exception that escapes the app (and, under Django, one a view raised and
Django turned into a 500) is grouped by a fingerprint of its type and the app's innermost
frames, with its count, first and last seen, route template, last request id and a redacted
traceback in which frames of the standard library, packages and the SDK are folded. With
Redis, groups are merged across workers. With `sentry-sdk` initialised by the app, each
captured error is handed to it and every Sentry event passes the SDK's redaction first.

Security stance:

- Closed by default: without `status_token` nothing is mounted and the path is whatever the app
  answers (a plain 404). A token under 32 characters, with spaces or non-ASCII characters, or
  too repetitive, is a `SettingsError` naming the variable, never echoing the value.
- Credentials: `Authorization: Bearer <token>`, compared as SHA-256 digests with
  `hmac.compare_digest`; or a session cookie from the login form: HttpOnly, Secure,
  SameSite=Strict, scoped to the status path, 15 minutes, holding an HMAC-signed expiry and
  nonce, never the token. A query string naming a token is refused with 400 unchecked (it would
  land in access logs and Referer headers). Form posts from another site are refused.
- Failed attempts are counted per client (trusted-proxy address, IPv6 per /64) by the SDK's
  rate limiter, shared through Redis and kept in memory while Redis is down: 10 a minute and
  100 an hour, then 429 until the budget allows, without checking the credential. Another
  client's failures never lock you out.
- Shown: route templates, methods from a fixed list, statuses, durations, request ids, exception
  types, redacted messages and source lines. Never shown: paths, query values, headers,
  cookies, bodies, local variables.
- Responses: `Cache-Control: no-store`, `X-Robots-Tag: noindex`, `Referrer-Policy: no-referrer`,
  `X-Frame-Options: DENY`, and a CSP allowing only the page's own stylesheet (by hash): no
  script, no external resource, `frame-ancestors 'none'`. The paths are exempt from the rate
  limits, the cache, redirects and latency figures, and are access-logged at debug level;
  failed attempts log a warning.

Limits, candidly:

- Redaction is the log redactor's: a secret in prose ("my password is hunter2") or under an
  innocent name is not found (see `launchready_sdk.redaction`). Only the first 4 KiB of a message
  are read and at most 1,000 characters shown; a traceback keeps the first 10 and last 30 frames
  of each of at most 3 chained exceptions, cut to 8,000 characters.
- The chart is this worker's per-minute p95 even in the fleet view; cache, limiter and outbound
  counters are since each worker's start; readiness is this worker's latest verdict (refreshed
  in the background when older than 15 s). The fleet view lags by up to one flush interval.
- Under Django, exceptions are captured through `got_request_exception`, so only those Django
  turns into 500s; a middleware that swallows exceptions hides them.
"""

from __future__ import annotations

from launchready_sdk.status._auth import (
    FAILED_ATTEMPTS_RATE,
    MIN_TOKEN_LENGTH,
    SESSION_COOKIE,
    SESSION_TTL_S,
    TOKEN_EXAMPLE,
    Credentials,
    check_token,
)
from launchready_sdk.status._endpoint import StatusEndpoint
from launchready_sdk.status._errors import ErrorGroup, ErrorTracker
from launchready_sdk.status._page import CSP, render_login, render_page
from launchready_sdk.status._sentry import install_gate, redact_event
from launchready_sdk.status._slow import SlowRequests
from launchready_sdk.status._status import DEFAULT_STATUS_PATH, Status

__all__ = [
    "CSP",
    "DEFAULT_STATUS_PATH",
    "FAILED_ATTEMPTS_RATE",
    "MIN_TOKEN_LENGTH",
    "SESSION_COOKIE",
    "SESSION_TTL_S",
    "TOKEN_EXAMPLE",
    "Credentials",
    "ErrorGroup",
    "ErrorTracker",
    "SlowRequests",
    "Status",
    "StatusEndpoint",
    "check_token",
    "install_gate",
    "redact_event",
    "render_login",
    "render_page",
]
