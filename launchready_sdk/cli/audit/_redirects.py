"""Redirects, by behaviour: what `http://` answers, hop by hop, and whether webhooks are
redirected.

The `--url` is requested with `http://` (on the URL's own port when it names one, else 80) and
each `Location` followed by hand, up to 10 hops. The HTTP Observatory's order is the target:
HTTPS on the same host first, then at most one more hop to the canonical host; permanent
redirects (301/308); never back to `http://`. Each `--webhook-path` is then POSTed (`{}`, no
signature) at the HTTPS origin (the `--url`'s, or where its `http://` leads): a 3xx there loses
the event, since providers do not follow redirects for webhooks (or turn the POST into a GET).

Severities: no redirect to HTTPS, a downgrade, or a loop is a blocker, as is a redirected
webhook; a first hop to another host, more than two hops, or a temporary redirect is "soon".
An `https://` URL whose `http://` does not answer at all is "soon" (people type the bare name).

Limits, candidly: only the one URL (and the webhook paths) are tried; a redirect a CDN
sends elsewhere in the world is not seen.
"""

from __future__ import annotations

import urllib.parse
from typing import Final

from launchready_sdk.cli.audit._http import Fetcher, FetchError, Reply, origin, with_scheme
from launchready_sdk.cli.audit._model import Options, PartResult

MAX_HOPS: Final = 10
_PERMANENT: Final = (301, 308)


def follow(fetcher: Fetcher, url: str, method: str = "GET") -> tuple[list[Reply], str]:
    """The replies of a redirect chain from `url`, and how it ended: "done", "loop",
    "too-many", "no-location" or the error that stopped it (the first fetch's error raises)."""
    replies: list[Reply] = []
    seen = {url}
    while True:
        try:
            reply = fetcher.fetch(method, url)
        except FetchError as exc:
            if not replies:
                raise
            return replies, f"error: {exc}"
        replies.append(reply)
        if not 300 <= reply.status < 400:
            return replies, "done"
        target = reply.location
        if target is None:
            return replies, "no-location"
        if target in seen:
            return replies, "loop"
        if len(replies) >= MAX_HOPS:
            return replies, "too-many"
        seen.add(target)
        url = target


def _urls(replies: list[Reply]) -> list[str]:
    """Every URL of the chain: each request's, and the last Location when it was not fetched."""
    urls = [r.url for r in replies]
    last = replies[-1].location
    if last and 300 <= replies[-1].status < 400:
        urls.append(last)
    return urls


def _chain_text(replies: list[Reply]) -> str:
    steps = [f"{r.url} -> {r.status}" for r in replies]
    last = replies[-1].location
    if last and 300 <= replies[-1].status < 400:
        steps.append(last)
    return "; ".join(steps)


def _judge(start: str, replies: list[Reply], end: str, result: PartResult) -> None:
    host = urllib.parse.urlsplit(start).hostname
    where = _chain_text(replies)
    first = replies[0]
    if not 300 <= first.status < 400:
        result.add(
            "https-redirect-missing",
            "blocker",
            f"{start} answers {first.status} instead of redirecting to https://",
            where,
            "Redirect every plain-HTTP request to https:// on the same host with a 301 "
            "(launchready: https_redirect=True behind a proxy listed in trusted_proxies, or at "
            "the proxy/CDN).",
        )
        return
    if end in ("loop", "too-many"):
        result.add(
            "redirect-chain",
            "blocker",
            f"{start} redirects forever ({end.replace('-', ' ')})",
            where,
            "Break the loop: usually the app redirects to https while the proxy talks to it over "
            "http and does not say so (X-Forwarded-Proto from a trusted proxy), or two "
            "canonical-host rules point at each other.",
        )
        return
    schemes = [urllib.parse.urlsplit(u).scheme for u in _urls(replies)]
    https_at = next((i for i, s in enumerate(schemes) if s == "https"), None)
    if https_at is None:
        result.add(
            "https-redirect-missing",
            "blocker",
            f"{start} never reaches https://",
            where,
            "Redirect plain HTTP to https:// on the same host, then serve the site there.",
        )
        return
    if "http" in schemes[https_at:]:
        result.add(
            "https-redirect-missing",
            "blocker",
            f"a redirect from {start} goes back to http://",
            where,
            "Make every Location absolute https:// (a proxy that does not pass the scheme makes "
            "the app build http:// URLs: trust its X-Forwarded-Proto).",
        )
    first_target = urllib.parse.urlsplit(first.location or "")
    if first_target.scheme != "https" or first_target.hostname != host:
        result.add(
            "redirect-chain",
            "soon",
            f"the first redirect from {start} does not go to https://{host}",
            where,
            f"Redirect http://{host} to https://{host} first, then to the canonical host: "
            "otherwise HSTS is never set for this host (the Observatory's order).",
        )
    hops = sum(300 <= r.status < 400 for r in replies)
    if hops > 2:
        result.add(
            "redirect-chain",
            "soon",
            f"{start} takes {hops} redirects to reach the page",
            where,
            "At most two: http -> https on the same host, then the canonical host. Every hop "
            "costs a round trip on a phone.",
        )
    temporary = sorted({r.status for r in replies if 300 <= r.status < 400} - set(_PERMANENT))
    if temporary:
        result.add(
            "redirect-temporary",
            "soon",
            f"redirects from {start} are temporary ({', '.join(map(str, temporary))})",
            where,
            "Use 301 (or 308 for other methods than GET): browsers and search engines cache "
            "permanent redirects, and keep re-asking on a 302.",
        )


def _webhooks(fetcher: Fetcher, base: str, options: Options, result: PartResult) -> None:
    for path in options.webhook_paths:
        url = base + path
        try:
            reply = fetcher.fetch(
                "POST", url, headers={"Content-Type": "application/json"}, content=b"{}"
            )
        except FetchError as exc:
            result.skipped.append(f"webhook POST {url}: {exc}")
            continue
        if 300 <= reply.status < 400:
            result.add(
                "webhook-redirected",
                "blocker",
                f"POST {path} is redirected ({reply.status} to {reply.location})",
                f"POST {url} -> {reply.status}",
                "Exempt webhook routes from every redirect (HTTPS, canonical host, trailing "
                "slash) and register the final URL with the provider: providers do not follow "
                "redirects, so these events are lost.",
            )
        else:
            result.notes.append(f"POST {path}: {reply.status}, not redirected")


def run(options: Options, deadline: float) -> PartResult:
    """The redirect and webhook checks of `--url`."""
    result = PartResult()
    opened = Fetcher.for_part(options, result)
    if opened is None:
        return result
    url, fetcher = opened
    try:
        start = with_scheme(url, "http")
        base = origin(url)
        try:
            replies, end = follow(fetcher, start)
        except FetchError as exc:
            if url.startswith("https:"):
                result.add(
                    "https-redirect-missing",
                    "soon",
                    f"nothing answers plain HTTP at {start}",
                    f"{start}: {exc}",
                    "Listen on port 80 and redirect to https:// (301): people type the bare "
                    "name, and browsers without HSTS try http:// first.",
                )
            else:
                result.skipped.append(f"redirects: {start} did not answer ({exc})")
        else:
            _judge(start, replies, end, result)
            if base.startswith("http:"):  # webhooks are registered at the HTTPS origin
                https = [u for u in _urls(replies) if u.startswith("https://")]
                base = origin(https[0]) if https else base
        _webhooks(fetcher, base, options, result)
    finally:
        fetcher.close()
    return result
