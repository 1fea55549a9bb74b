"""`RedirectMiddleware`: trusted hosts, then one redirect stage (legacy map, HTTPS, canonical).

For each HTTP request, in this order:

1. The SDK's own endpoints (`/healthz`, `/readyz`, `/metrics`, ...) pass untouched, whatever
   the `Host`: monitors call them by IP.
2. Trusted hosts: with `allowed_hosts`, a request whose host (the `Host` header, or
   `X-Forwarded-Host` from a trusted proxy) is not on the list gets a 400 problem, before any
   URL is built from it.
3. Exemptions (`exempt` patterns, `/.well-known/acme-challenge/*` always): never redirected
   by any rule, since a payment provider counts a 3xx as a failed webhook delivery and an
   OAuth provider compares `redirect_uri` byte for byte.
4. One redirect, if any applies: a plain-HTTP request goes to `https://` on the same host
   (the legacy map applied in the same hop); an HTTPS request (or any request without
   `https_redirect`) for another host goes to `canonical_host`; a path in the legacy map goes
   to its new URL. Two hops at most (`http://apex` → `https://apex` → `https://www`), as the
   HTTP Observatory grades it. GET and HEAD get 301; every other method 308, so a POST stays
   a POST with its body.

Security stance: `Location` is always absolute (`https://host/path?query`), its host either a
host the lists vouch for (listed in `allowed_hosts`, the canonical host, or any syntactically
valid host when `allowed_hosts` is empty) or the canonical host; a host that is not vouched
for is never written (a plain-HTTP request for it goes to the canonical host, or gets a 400).
The path is the one the client sent, percent-encoded where needed, with every `//`
written `/%2F`, so `//evil.example`, `/\\evil.example` and `/%2F%2Fevil.example` stay paths on
this site even if something downstream shortens the URL. A 301 map is checked at start-up:
entries that point at themselves or chain into another entry are a `ValueError`.

Loops a server cannot see from its own settings are broken at run time: a plain-HTTP request
from an untrusted peer that says `X-Forwarded-Proto: https` (a TLS proxy missing from
`trusted_proxies`) is served, not redirected, with a warning naming the proxy; and a client
sent to the same URL more than 5 times in 10 s (a TLS proxy that sends no scheme at all) gets
a 508 problem and an error line saying how to fix the proxy, never an endless 301 chain.

Limits, candidly: the HTTPS redirect drops any port (`http://host:8080/` goes to
`https://host/`), as an HTTPS port cannot be guessed; a `Location` longer than 8,000 bytes
gets a 414 instead. The loop breaker is a heuristic keyed on the client address, URL, user
agent and cookies: a client that itself repeats one plain-HTTP request six times in 10 s meets it.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterable, Mapping
from typing import Any, NamedTuple
from urllib.parse import quote, urlsplit

from launchready_sdk.context import request_method, route_path
from launchready_sdk.logs import get_logger
from launchready_sdk.patterns import PatternTable, normalize_path, validate_pattern
from launchready_sdk.perimeter._hosts import HostList, check_canonical_host, parse_host
from launchready_sdk.proxy import ProxyResolver, normalize_ip
from launchready_sdk.responses import send_problem
from launchready_sdk.types import ASGIApp, Receive, Scope, Send

__all__ = ["RedirectMap", "RedirectMiddleware", "RedirectStage", "host_name", "safe_path"]

DEFAULT_REDIRECT_EXEMPT = ("/webhooks/*", "/callbacks/*", "/auth/callback", "/oauth/callback")
ALWAYS_EXEMPT = ("/.well-known/acme-challenge/*",)
MAX_LOCATION_BYTES = 8000
LOOP_LIMIT = 5
LOOP_WINDOW_S = 10.0
_LOOP_KEYS = 4096
_WARNED_HOSTS = 256
_MEMO_SIZE = 4096
_MAX_MEMO_PATH = 256
_LOG_EVERY_S = 60.0

REFUSE_HOST = "refuse-host"  # answers of `RedirectStage.check` besides a Location
CLOSE = "close"
_log = get_logger("launchready.perimeter")
_PATH_UNSAFE = re.compile(rb"[^A-Za-z0-9\-._~!$&'()*+,;=:@/%]")
_QUERY_UNSAFE = re.compile(rb"[^A-Za-z0-9\-._~!$&'()*+,;=:@/%?]")
_BAD_ESCAPE = re.compile(rb"%(?![0-9A-Fa-f]{2})")
_PLACEHOLDER = re.compile(r"\{([a-z_][a-z0-9_]*)\}", re.IGNORECASE)


def _escape(raw: bytes, unsafe: re.Pattern[bytes]) -> str:
    """Bytes as URL text: unsafe bytes percent-encoded, a stray `%` written `%25`."""
    text = unsafe.sub(lambda m: b"%%%02X" % m[0][0], raw)
    return _BAD_ESCAPE.sub(b"%25", text).decode("ascii")


def safe_path(raw: bytes) -> str:
    """A request path fit for an absolute `Location`: escaped, starting with one `/`, and
    without `//` anywhere (written `/%2F`), so no dot segment a browser resolves can bring a
    `//host` to the front."""
    text = _escape(raw, _PATH_UNSAFE)
    if not text.startswith("/"):
        text = "/" + text
    while "//" in text:
        text = text.replace("//", "/%2F")
    return text


# --- the legacy map ---------------------------------------------------------------------------


class _Rule(NamedTuple):
    source: str
    regex: re.Pattern[str]
    target: str  # a path (`/new/{id}`) or an absolute URL, maybe ending in `*`
    absolute: bool


class RedirectMap:
    """Legacy URLs and where they went: `{"/old/{id}": "/new/{id}", "/blog/*": "https://..."}`.

    `{name}` segments of the old pattern are carried into the new URL, a trailing `*` carries
    the rest of the path, and the request's query is kept (after the target's own, if any).

    Args:
        mapping: old pattern to new path or absolute URL.
        own_hosts: hosts this site answers for; an absolute target on another host must be
            on it when given (an empty list accepts any host).
        https: whether plain HTTP is redirected to HTTPS (an `http://` target would then
            downgrade, and is refused).

    Raises:
        ValueError: a bad pattern or target, a target on a foreign host, an entry that points
            at itself or at another entry (a chain or loop).
    """

    def __init__(
        self,
        mapping: Mapping[str, str] | None,
        *,
        own_hosts: HostList | None = None,
        canonical: str | None = None,
        https: bool = False,
    ) -> None:
        rules: dict[str, _Rule] = {}
        for source, target in (mapping or {}).items():
            rules[source] = _compile_rule(source, target, own_hosts, canonical, https)
        self.table: PatternTable[_Rule] = PatternTable(rules)
        self.rules = rules
        self._misses: dict[str, bool] = {}  # route paths no entry matches, bounded
        for rule in rules.values():
            self._refuse_chains(rule, own_hosts, canonical)

    def __bool__(self) -> bool:
        return bool(self.rules)

    def _refuse_chains(self, rule: _Rule, own: HostList | None, canonical: str | None) -> None:
        target = _sample(rule.target)
        if rule.absolute:
            parts = urlsplit(target)
            host = parse_host(parts.netloc)
            mine = host is not None and (
                (own is not None and own.listed(host[0]))
                or (canonical is not None and host[0] == canonical.split(":")[0])
            )
            if not mine:
                return
            target = parts.path or "/"
        found = self.table.match(normalize_path(target.split("?", 1)[0]))
        if found is None:
            return
        if found[1] is rule:
            raise ValueError(
                f"{rule.source!r} redirects to {rule.target!r}, which it matches itself: "
                "every request would be redirected forever"
            )
        raise ValueError(
            f"{rule.source!r} redirects to {rule.target!r}, which {found[0]!r} redirects "
            f"again (to {found[1].target!r}); point {rule.source!r} at the final URL"
        )

    def target(self, path: str) -> str | None:
        """The new URL (a path, or an absolute URL) for a request path, or None."""
        if path in self._misses:  # most requests: a path seen before, no entry for it
            return None
        normalized = normalize_path(path, decoded=True)
        found = self.table.match(normalized)
        if found is None:
            if len(path) <= _MAX_MEMO_PATH:
                if len(self._misses) >= _MEMO_SIZE:
                    self._misses.clear()
                self._misses[path] = True
            return None
        rule = found[1]
        matched = rule.regex.fullmatch(normalized)
        if matched is None:  # the table and the rule normalise alike; never expected
            return None
        values = matched.groupdict()
        rest = values.pop("_rest", None) or ""
        text = rule.target
        if text.endswith("*"):
            text = text[:-1].rstrip("/") + quote(rest, safe="/")
            if not text.split("://", 1)[-1].count("/") and rule.absolute:
                text += "/"
        for name, value in values.items():
            text = text.replace("{" + name + "}", quote(value, safe=""))
        return text or "/"


def _compile_rule(
    source: object, target: object, own: HostList | None, canonical: str | None, https: bool
) -> _Rule:
    if not isinstance(source, str):
        raise ValueError(f"an old URL pattern is a string, got {source!r}")
    validate_pattern(source)
    if not isinstance(target, str) or not target.strip():
        raise ValueError(f"{source!r}: the new URL must be a path or an https:// URL")
    target = target.strip()
    if any(ord(c) < 0x21 or ord(c) > 0x7E for c in target):
        raise ValueError(
            f"{source!r}: the new URL {target!r} holds spaces, control or non-ASCII characters; "
            "percent-encode them"
        )
    names = [m[1] for m in _PLACEHOLDER.finditer(source)]
    absolute = "://" in target
    if absolute:
        _check_absolute(source, target, own, canonical, https)
    elif not target.startswith("/") or target.startswith("//"):
        raise ValueError(
            f"{source!r}: the new URL {target!r} must start with one '/' or be an absolute "
            "https:// URL"
        )
    for name in _PLACEHOLDER.findall(target):
        if name not in names:
            raise ValueError(f"{source!r}: the new URL uses {{{name}}}, which the old one lacks")
    if "*" in target and not (target.endswith("*") and source.rstrip("/").endswith("*")):
        raise ValueError(
            f"{source!r}: the new URL may end in '*' (the rest of the path) only when the "
            "old pattern does"
        )
    return _Rule(source, _regex(source), target, absolute)


def _check_absolute(
    source: str, target: str, own: HostList | None, canonical: str | None, https: bool
) -> None:
    parts = urlsplit(target)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError(f"{source!r}: the new URL {target!r} must be an http(s):// URL")
    if parts.username is not None or parts.password is not None:
        raise ValueError(f"{source!r}: the new URL {target!r} must not carry credentials")
    host = parse_host(parts.netloc)
    if host is None:
        raise ValueError(f"{source!r}: the new URL {target!r} names no valid host")
    if parts.scheme == "http" and https:
        raise ValueError(
            f"{source!r}: {target!r} is plain HTTP while https_redirect is on: it would "
            "downgrade the request; write https://"
        )
    listed = own is not None and own.listed(host[0])
    if own and not listed and host[0] != canonical:
        raise ValueError(
            f"{source!r}: {target!r} is on {host[0]}, which is not in allowed_hosts; add it "
            "there to redirect to it"
        )


def _regex(pattern: str) -> re.Pattern[str]:
    """A regex over the normalised path, capturing `{name}` segments and the `*` rest."""
    key = normalize_path(pattern)
    parts = []
    for segment in key.split("/")[1:] if key != "/" else []:
        if segment == "*":
            parts.append("(?P<_rest>(?:/.*)?)")
        elif _PLACEHOLDER.fullmatch(segment):
            parts.append(f"/(?P<{segment[1:-1]}>[^/]+)")
        else:
            parts.append("/" + re.escape(segment))
    return re.compile("".join(parts) or "/", re.IGNORECASE | re.DOTALL)


def _sample(target: str) -> str:
    """A URL the target would produce, to look it up in the map."""
    text = target[:-1].rstrip("/") + "/sample/rest" if target.endswith("*") else target
    return _PLACEHOLDER.sub("sample", text)


# --- the middleware ---------------------------------------------------------------------------


class _LoopGuard:
    """Counts redirects of one client to one URL; more than `LOOP_LIMIT` in the window is a
    loop. Memory is bounded: the table is emptied when it holds `_LOOP_KEYS` entries."""

    def __init__(self) -> None:
        self._seen: dict[int, tuple[float, int]] = {}
        self._logged_at = -_LOG_EVERY_S

    def looping(self, key: int, now: float) -> bool:
        first, count = self._seen.get(key, (now, 0))
        if now - first > LOOP_WINDOW_S:
            first, count = now, 0
        if len(self._seen) >= _LOOP_KEYS:
            self._seen.clear()
        self._seen[key] = (first, count + 1)
        return count + 1 > LOOP_LIMIT

    def should_log(self, now: float) -> bool:
        if now - self._logged_at < _LOG_EVERY_S:
            return False
        self._logged_at = now
        return True


class RedirectStage:
    """Trusted hosts and the redirect stage (see the module docstring for the order):
    `check(scope)` says whether a request goes on (None) or what to answer, which
    `respond(scope, send, answer)` sends.

    `LaunchReady` hands this to its path dispatch, which checks every request before anything
    else; `RedirectMiddleware` is the same as a layer of its own.

    Args:
        allowed_hosts: `shop.example`, `*.shop.example`, IPs; empty allows any host.
        canonical_host: `www.shop.example` (a port may follow): other hosts redirect to it.
        https_redirect: send plain-HTTP requests to `https://` on the same host.
        redirects: the legacy map, `{old pattern: new path or URL}` (see `RedirectMap`).
        exempt: patterns never redirected (webhooks, OAuth callbacks).
        endpoints: exact paths passed through whatever their host (the SDK's endpoints).
        proxy: the trusted-proxy resolver; by default one trusting `trusted_proxies`.
        trusted_proxies: used when `proxy` is not given.

    Raises:
        ValueError: a bad host, pattern or map entry (see `RedirectMap`).
    """

    def __init__(
        self,
        *,
        allowed_hosts: Iterable[str] = (),
        canonical_host: str | None = None,
        https_redirect: bool = False,
        redirects: Mapping[str, str] | None = None,
        exempt: Iterable[str] = DEFAULT_REDIRECT_EXEMPT,
        endpoints: Iterable[str] = (),
        proxy: ProxyResolver | None = None,
        trusted_proxies: Iterable[str] = (),
    ) -> None:
        self.canonical = check_canonical_host(canonical_host)
        self._canonical_name = host_name(self.canonical) if self.canonical else None
        entries = list(allowed_hosts)
        if entries and self._canonical_name is not None:
            entries.append(self._canonical_name)
        self.hosts = HostList(entries)
        self.https = bool(https_redirect)
        self.map = RedirectMap(
            redirects, own_hosts=self.hosts, canonical=self._canonical_name, https=self.https
        )
        patterns = dict.fromkeys((*exempt, *ALWAYS_EXEMPT), True)
        self.exempt: PatternTable[bool] = PatternTable(patterns)
        self.endpoints = frozenset(endpoints)
        self._proxy = proxy if proxy is not None else ProxyResolver(trusted_proxies)
        self._redirecting = bool(self.https or self.canonical or self.map)
        self._loops = _LoopGuard()
        self._warned_hosts: set[str] = set()
        self._warned_peers: set[str] = set()

    def check(self, scope: Scope) -> str | None:
        """None when the request goes on; else the answer `respond` sends: a Location, ""
        (a redirect no valid host allows), `REFUSE_HOST` or `CLOSE` (a websocket)."""
        kind = scope["type"]
        if kind != "http":
            if kind == "websocket" and self.hosts and not self._allowed(scope):
                return CLOSE
            return None
        path = route_path(scope)
        if path in self.endpoints:
            return None
        host = parse_host(self._proxy.host(scope))
        if self.hosts and (host is None or not self.hosts.allows(host[0])):
            return REFUSE_HOST
        return self._decide(scope, path, host) if self._redirecting else None

    async def respond(self, scope: Scope, send: Send, answer: str) -> None:
        """Send what `check` decided."""
        if answer == CLOSE:
            await send({"type": "websocket.close", "code": 1008})
        elif answer == REFUSE_HOST:
            await self._refuse_host(scope, send)
        else:
            await self._redirect(scope, send, answer)

    def _allowed(self, scope: Scope) -> bool:
        host = parse_host(self._proxy.host(scope))
        return host is not None and self.hosts.allows(host[0])

    def _decide(self, scope: Scope, path: str, host: tuple[str, int | None] | None) -> str | None:
        """Where this request must go ("" when it needs a redirect no valid host allows), or
        None when it is served here."""
        scheme = self._proxy.scheme(scope)
        name = host[0] if host is not None else None
        upgrade = self.https and scheme == "http"
        move = self._canonical_name is not None and name != self._canonical_name
        legacy = self.map.target(path) if self.map else None
        if not (upgrade or move or legacy is not None) or self.exempt.match(path):
            return None
        if upgrade and self._says_https(scope):
            upgrade, scheme = False, "https"  # never send its client to http://
            if not (move or legacy is not None):
                return None
        return self._location(scope, scheme, host, upgrade, move, legacy) or ""

    async def _redirect(self, scope: Scope, send: Send, location: str) -> None:
        if not location:
            detail = "The request names no valid host to redirect to."
            await send_problem(send, 400, detail, scope=scope)
            return
        if len(location) > MAX_LOCATION_BYTES:
            await send_problem(send, 414, "The URL is too long to redirect.", scope=scope)
            return
        key = _loop_key(scope, self._proxy.client_ip(scope), location)
        if self._loops.looping(key, time.monotonic()):
            await self._refuse_loop(scope, send, location)
            return
        status = 301 if request_method(scope) in ("GET", "HEAD") else 308
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [(b"location", location.encode("ascii")), (b"content-length", b"0")],
            }
        )
        await send({"type": "http.response.body", "body": b""})

    def _location(
        self,
        scope: Scope,
        scheme: str,
        host: tuple[str, int | None] | None,
        upgrade: bool,
        move: bool,
        legacy: str | None,
    ) -> str | None:
        query = _escape(scope.get("query_string") or b"", _QUERY_UNSAFE)
        if legacy is not None and "://" in legacy:
            return _with_query(legacy, query)
        root = scope.get("root_path") or ""
        if legacy is not None:
            path, _, own_query = legacy.partition("?")
            target = safe_path((root + path).encode("utf-8", "surrogateescape"))
            target = _with_query(target + ("?" + own_query if own_query else ""), query)
        else:
            target = _with_query(_public_path(scope, root), query)
        if upgrade:
            if host is not None and self._vouched(host[0]):
                return f"https://{host[0]}{target}"
            return f"https://{self.canonical}{target}" if self.canonical else None
        if move:
            return f"{scheme}://{self.canonical}{target}"
        if host is None:
            return None
        netloc = host[0] if host[1] is None else f"{host[0]}:{host[1]}"
        return f"{scheme}://{netloc}{target}"

    def _vouched(self, name: str) -> bool:
        """A host that may appear in a Location as it is: listed, canonical, or any host when
        no list and no canonical host narrow it."""
        if name == self._canonical_name or self.hosts.listed(name):
            return True
        return not self.hosts and self.canonical is None

    def _says_https(self, scope: Scope) -> bool:
        """An untrusted peer claims HTTPS: a TLS proxy missing from `trusted_proxies`.

        Redirecting it would loop (the proxy sends the HTTPS request again as plain HTTP), so
        it is served; a client that forges the header only gets plain HTTP for itself.
        """
        if self._proxy.is_trusted_peer(scope):
            return False
        for name, value in scope.get("headers") or ():
            if name == b"x-forwarded-proto" and value.strip().lower().startswith(b"https"):
                break
            if name == b"forwarded" and b"proto=https" in value.lower():
                break
        else:
            return False
        peer = scope.get("client")
        address = (normalize_ip(str(peer[0])) or str(peer[0])) if peer else "unknown"
        if address not in self._warned_peers and len(self._warned_peers) < _WARNED_HOSTS:
            self._warned_peers.add(address)
            _log.warning(
                "perimeter.untrusted_https_proxy",
                peer=address,
                hint=f"{address} says the request came over HTTPS (X-Forwarded-Proto) but is "
                "not in trusted_proxies: it is served without the HTTPS redirect, which would "
                "loop; add the proxy to trusted_proxies",
            )
        return True

    async def _refuse_host(self, scope: Scope, send: Send) -> None:
        shown = (self._proxy.host(scope) or "(none or invalid)")[:100]
        if shown not in self._warned_hosts and len(self._warned_hosts) < _WARNED_HOSTS:
            self._warned_hosts.add(shown)
            _log.warning(
                "perimeter.host_refused",
                host=shown,
                hint="a Host not in allowed_hosts gets 400; add it if this site serves it",
            )
        detail = "The request names a host this site does not serve."
        await send_problem(send, 400, detail, scope=scope)

    async def _refuse_loop(self, scope: Scope, send: Send, location: str) -> None:
        if self._loops.should_log(time.monotonic()):
            _log.error(
                "perimeter.redirect_loop",
                location=location[:200],
                hint="the same client was redirected to the same URL over and over: a proxy "
                "in front probably terminates TLS (or rewrites the Host) without saying so. "
                "Have it send X-Forwarded-Proto and X-Forwarded-Host, and list it in "
                "trusted_proxies",
            )
        await send_problem(
            send,
            508,
            "Redirect loop: this request keeps coming back over plain HTTP after being sent "
            "to HTTPS.",
            scope=scope,
        )


class RedirectMiddleware(RedirectStage):
    """`RedirectStage` as a layer around `app`.

    Args:
        app: the ASGI app to wrap.
        **options: the keyword arguments of `RedirectStage`.
    """

    def __init__(self, app: ASGIApp, **options: Any) -> None:
        super().__init__(**options)
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        answer = self.check(scope)
        if answer is None:
            await self.app(scope, receive, send)
        else:
            await self.respond(scope, send, answer)


def host_name(canonical: str) -> str:
    """The host of `host[:port]` (IPv6 literals keep their brackets)."""
    if canonical.startswith("["):
        return canonical[: canonical.index("]") + 1]
    return canonical.split(":", 1)[0]


def _public_path(scope: Scope, root: str) -> str:
    raw = scope.get("raw_path")
    if not isinstance(raw, bytes | bytearray):
        return safe_path(quote(str(scope.get("path") or "/"), safe="/").encode("ascii"))
    raw = bytes(raw)
    if root and not raw.startswith(root.encode("utf-8", "surrogateescape")):
        raw = root.encode("utf-8", "surrogateescape") + raw
    return safe_path(raw)


def _with_query(target: str, query: str) -> str:
    if not query:
        return target
    return f"{target}&{query}" if "?" in target else f"{target}?{query}"


def _loop_key(scope: Scope, client: str | None, location: str) -> int:
    agent = cookie = b""
    for name, value in scope.get("headers") or ():
        if name == b"user-agent":
            agent = value
        elif name == b"cookie":
            cookie = value
    return hash((client, location, agent, cookie))
