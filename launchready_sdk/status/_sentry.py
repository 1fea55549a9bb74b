"""The hand-off to Sentry: nothing leaves before the SDK's redaction has run over it.

Nothing here imports `sentry_sdk`: it is used only when the app imported and initialised it
itself. Then two things happen:

- A gate is chained after the client's own `before_send` and `before_send_transaction` (the
  app's hooks run first, the gate last, so what they add is redacted too). On every event,
  Sentry's own included, it drops what the status page never shows (frame locals, the query
  string, cookies, request bodies, the environment), runs the redactor over the rest, and
  drops the whole event if any of that fails.
- Each error the tracker captures is passed to `sentry_sdk.capture_exception` with the
  fingerprint, the route template and the request id. When one of Sentry's own integrations
  already reported that exception, Sentry's de-duplication drops the second report, and the
  gate adds the same fingerprint and request id to the first.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

from launchready_sdk.context import current
from launchready_sdk.logs import get_logger
from launchready_sdk.status._traceback import Redact, chain_of, fingerprint

_log = get_logger("launchready.status")
_GATED = "_launchready_gate"
_HOOKS = ("before_send", "before_send_transaction")
_REQUEST_KEPT = ("method", "url", "headers")
Event = dict[str, Any]
Hook = Callable[[Event, dict[str, Any]], Event | None]


def _client() -> Any:
    """The initialised Sentry client, or None (never imports sentry_sdk)."""
    sentry = sys.modules.get("sentry_sdk")
    if sentry is None:
        return None
    try:
        client = sentry.get_client()
        return client if client.is_active() else None
    except Exception:
        return None


def install_gate(redact: Redact) -> bool:
    """Chain the redacting gate into the active Sentry client's hooks; True when one is active."""
    client = _client()
    if client is None:
        return False
    options = client.options
    for hook in _HOOKS:
        if hook not in options:  # a hook this version of sentry-sdk does not have
            continue
        previous = options.get(hook)
        if getattr(previous, _GATED, False):
            continue
        options[hook] = _gate(previous, redact)
    return True


def _gate(previous: Hook | None, redact: Redact) -> Hook:
    def gate(event: Event, hint: dict[str, Any]) -> Event | None:
        if previous is not None:
            event = previous(event, hint)  # type: ignore[assignment]
            if event is None:
                return None
        try:
            return redact_event(event, hint, redact)
        except Exception:
            _log.warning("status.sentry_event_dropped", detail="redaction failed")
            return None

    setattr(gate, _GATED, True)
    return gate


def redact_event(event: Event, hint: dict[str, Any], redact: Redact) -> Event:
    """A Sentry event stripped of locals, query strings, cookies and bodies, then redacted."""
    for value in (event.get("exception") or {}).get("values") or ():
        for frame in (value.get("stacktrace") or {}).get("frames") or ():
            frame.pop("vars", None)
    for thread in (event.get("threads") or {}).get("values") or ():
        for frame in (thread.get("stacktrace") or {}).get("frames") or ():
            frame.pop("vars", None)
    request = event.get("request")
    if isinstance(request, dict):
        url = str(request.get("url") or "").partition("?")[0]
        kept = {k: request[k] for k in _REQUEST_KEPT if k in request}
        if url:
            kept["url"] = url
        event["request"] = kept
    tags = event.setdefault("tags", {})
    ctx = current()
    if ctx is not None and isinstance(tags, dict):
        tags.setdefault("request_id", ctx.request_id)
        if ctx.route:
            tags.setdefault("route", ctx.route)
    exc_info = hint.get("exc_info")
    if exc_info and exc_info[1] is not None and not event.get("fingerprint"):
        last = chain_of(exc_info[1], redact)[-1]
        event["fingerprint"] = [fingerprint(last.type, last.frames)]
    redacted = redact(event)
    if not isinstance(redacted, dict):
        raise TypeError("the redacted event is not a mapping")
    return redacted


def hand_off(
    exc: BaseException,
    fingerprint_: str,
    route: str | None,
    request_id: str | None,
    redact: Redact,
) -> None:
    """Report a captured exception to the active Sentry client, if there is one (gated)."""
    if not install_gate(redact):
        return
    sentry = sys.modules["sentry_sdk"]
    tags = {k: v for k, v in (("route", route), ("request_id", request_id)) if v}
    sentry.capture_exception(exc, fingerprint=[fingerprint_], tags=tags)
