"""`AdminGuardMiddleware`: admin paths answer only clients from the allowed networks.

Everyone else gets exactly the answer a path that does not exist gets: the request is passed
on to the app for `/_launchready/not-found` (no query, same method), so the app's own 404
page, status and headers come back and a scanner cannot tell an admin path from an unknown
one. Each refusal is logged (`perimeter.admin_denied`, with the path and client address, and
the request id like every line of the request).

Security stance: the client is the trusted-proxy client address (`ProxyResolver.client_ip`),
so a spoofed `X-Forwarded-For` from an untrusted peer changes nothing. A request without a
client address (a unix socket) is refused. An empty allow-list admits nobody. The guard runs
before the app and before its authentication: it is a second lock, not a replacement for
one (renaming `/admin` is not a lock at all).

Limits, candidly: "the same 404" is whatever the app answers for the probe path; an app with a
catch-all route answers that instead, which is what it answers for any unknown path too.
"""

from __future__ import annotations

import functools
import ipaddress
from collections.abc import Callable, Iterable

from launchready_sdk.context import SCOPE_PATH, route_path
from launchready_sdk.logs import get_logger
from launchready_sdk.patterns import PatternTable
from launchready_sdk.proxy import ProxyResolver, parse_networks
from launchready_sdk.routing import SCOPE_ROUTE
from launchready_sdk.types import ASGIApp, Receive, Scope, Send

__all__ = ["NOT_FOUND_PATH", "AdminGuardMiddleware", "check_networks"]

NOT_FOUND_PATH = "/_launchready/not-found"
_log = get_logger("launchready.perimeter")


Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def check_networks(values: Iterable[str]) -> tuple[Network, ...]:
    """Parse CIDR networks or addresses; ValueError naming the first bad entry."""
    networks: list[Network] = []
    for value in values:
        if not isinstance(value, str) or value.strip() == "*":
            raise ValueError(
                f"{value!r} is not an IP address or CIDR network (list networks; '*' would "
                "admit everyone)"
            )
        try:
            networks.extend(parse_networks([value]))
        except ValueError:
            raise ValueError(
                f"{value!r} is not an IP address or CIDR network (for example 10.0.0.0/8)"
            ) from None
    return tuple(networks)


class AdminGuardMiddleware:
    """Admin paths only for clients in `allow` (see the module docstring).

    Args:
        app: the ASGI app to wrap.
        paths: route patterns, e.g. `("/admin/*",)`.
        allow: CIDR networks or addresses allowed to reach them; empty admits nobody.
        client_ip: resolves the client address; by default `ProxyResolver(trusted_proxies)`.
        trusted_proxies: used when `client_ip` is not given.

    Raises:
        ValueError: a bad pattern or network.
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        paths: Iterable[str],
        allow: Iterable[str] = (),
        client_ip: Callable[[Scope], str | None] | None = None,
        trusted_proxies: Iterable[str] = (),
    ) -> None:
        self.app = app
        self.table: PatternTable[bool] = PatternTable(dict.fromkeys(paths, True))
        self.networks = check_networks(allow)
        self._client_ip = client_ip or ProxyResolver(trusted_proxies).client_ip
        self._admits = functools.lru_cache(maxsize=1024)(self._check)

    def _check(self, address: str) -> bool:
        try:
            ip = ipaddress.ip_address(address)
        except ValueError:
            return False
        return any(ip in network for network in self.networks)

    def admits(self, scope: Scope) -> bool:
        """Whether the request's client may reach an admin path."""
        address = self._client_ip(scope)
        return address is not None and bool(self.networks) and self._admits(address)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket") or not self.table.match(route_path(scope)):
            await self.app(scope, receive, send)
            return
        if self.admits(scope):
            await self.app(scope, receive, send)
            return
        _log.info(
            "perimeter.admin_denied",
            path=route_path(scope)[:200],
            client_ip=self._client_ip(scope),
        )
        if scope["type"] == "websocket":
            await send({"type": "websocket.close", "code": 1008})
            return
        await self.app(_not_found_scope(scope), receive, send)


def _not_found_scope(scope: Scope) -> Scope:
    """The request as one for a path nothing routes: the app answers its own 404."""
    root = scope.get("root_path") or ""
    probe = {
        key: value
        for key, value in scope.items()
        if key not in ("route", "endpoint", "path_params", SCOPE_ROUTE)
    }
    probe.update(
        path=root + NOT_FOUND_PATH,
        raw_path=(root + NOT_FOUND_PATH).encode(),
        query_string=b"",
    )
    probe[SCOPE_PATH] = NOT_FOUND_PATH
    return probe
