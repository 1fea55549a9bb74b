"""What both transports do to an httpx request and its response around the retry loop: the call a
redirect hop continues, the headers an outbound request carries, httpx's per-operation timeouts,
and the verdict on a response."""

from __future__ import annotations

import math
import time
from typing import Final

import httpx

from launchready_sdk.context import get_request_id
from launchready_sdk.outbound._breaker import breaker_failure
from launchready_sdk.outbound._errors import MAYBE_SENT, NOT_SENT, ResponseTooLarge
from launchready_sdk.outbound._policy import (
    BREAKER_STATUSES,
    KEYED_METHODS,
    OutboundPolicy,
    parse_retry_after,
)
from launchready_sdk.outbound._recorder import OutboundRecorder
from launchready_sdk.outbound._retry import Attempt, Retrying
from launchready_sdk.outbound._urls import host_name, min_timeout, origin, strip_credentials

_CALL_KEY: Final = "launchready.outbound_call"
_EXPIRE: Final = (httpx.TransportError,)
_RETRY_ON_SENT: Final = NOT_SENT + MAYBE_SENT


class Call:
    """One logical call: its deadline, which redirect hops share, and the request it began with."""

    __slots__ = ("deadline", "request")

    def __init__(self, request: httpx.Request, deadline_s: float | None) -> None:
        self.deadline = math.inf if deadline_s is None else time.monotonic() + deadline_s
        self.request = request


def begin(request: httpx.Request, policy: OutboundPolicy, recorder: OutboundRecorder) -> Retrying:
    """The attempts of `request`: a new call, or the next hop of a redirected one, which keeps
    the call's deadline and loses its credentials when it moves to another origin."""
    call = request.extensions.get(_CALL_KEY)
    if not isinstance(call, Call) or call.request is request:
        call = Call(request, policy.deadline_s)
        request.extensions[_CALL_KEY] = call
    elif origin(request.url) != origin(call.request.url):
        strip_credentials(request.headers)
    request_id = get_request_id()
    if request_id is not None and "x-request-id" not in request.headers:
        request.headers["X-Request-ID"] = request_id
    return Retrying(
        policy,
        recorder.host(host_name(request.url), policy),
        retry_on=_RETRY_ON_SENT if idempotent(request, policy) else NOT_SENT,
        counts=breaker_failure,
        deadline=call.deadline,
        replayable=isinstance(request.stream, httpx.ByteStream),
        expire=_EXPIRE,
        method=request.method,
        url=request.url,
    )


def idempotent(request: httpx.Request, policy: OutboundPolicy) -> bool:
    """Whether sending `request` twice does no harm: a retried method, or a keyed POST/PATCH."""
    method = request.method
    if method in policy.retry_methods:
        return True
    return method in KEYED_METHODS and "idempotency-key" in request.headers


def set_timeouts(request: httpx.Request, policy: OutboundPolicy, budget: float) -> None:
    """httpx's per-operation timeouts, no longer than this attempt's budget."""
    given = request.extensions.get("timeout") or {}
    connect = min(policy.connect_timeout_s, budget)
    request.extensions["timeout"] = {
        "connect": min_timeout(given.get("connect"), connect),
        "read": min_timeout(given.get("read"), budget),
        "write": min_timeout(given.get("write"), budget),
        "pool": min_timeout(given.get("pool"), budget),
    }


def judge(
    attempt: Attempt, request: httpx.Request, response: httpx.Response, policy: OutboundPolicy
) -> bool:
    """Report `response` to its attempt. True when it stands; False when it is discarded, for
    another attempt or because it ends the call (its declared length is over
    `max_response_bytes`)."""
    status = response.status_code
    attempt.count(status in BREAKER_STATUSES, error=status >= 500)
    headers = response.headers
    if (
        status in policy.retry_statuses
        and idempotent(request, policy)
        and headers.get("stripe-should-retry") != "false"
    ):
        retry_after = parse_retry_after(headers.get("retry-after"))
        if attempt.retry(str(status), retry_after, discard=response):
            return False
    limit = policy.max_response_bytes
    length = headers.get("content-length")
    if limit is not None and length is not None and length.isdigit() and int(length) > limit:
        attempt.fail(ResponseTooLarge(limit, host=attempt.retrying.host.name), discard=response)
        return False
    return True
