"""Client address, scheme and host behind trusted proxies.

Every middleware that keys, limits, caches or logs by client reads it through this module: the
request context and the rate limiter take the client from `ProxyResolver.client_ip`, redirects
and HSTS take `ProxyResolver.scheme` and `host`. One pass over a request's headers serves all
three, and its result is kept in the scope. It does no I/O; its only state is a few bounded
LRU caches.

Security stance:

- Forwarding headers are believed only when the socket peer is in `trusted_proxies`. With none
  configured (the default) the client is the socket peer and every header that claims
  otherwise is ignored. `X-Real-IP`, `CF-Connecting-IP` and `True-Client-IP` are never read:
  configure the proxy to write `X-Forwarded-For` instead.
- The chain is walked right to left, skipping entries that are themselves trusted proxies; the
  first untrusted entry is the client. Whatever a client writes to the left of what your
  proxies append therefore cannot choose its address (no leftmost-entry spoofing, no victim
  lockout). If every entry is trusted, the leftmost one is the client. A garbage entry
  (`unknown`, an obfuscated `_name`, bad syntax) stops the walk at the last trusted hop, since
  anything to its left was not vouched for. Only the last 32 entries are considered.
- When a request carries `X-Forwarded-For`, the `X-Forwarded-*` family is used and `Forwarded`
  is ignored; `Forwarded` (RFC 7239: `for=`, `proto=`, `host=` of the hop the walk stops at)
  is used only when no `X-Forwarded-For` line is present, as most proxies write the former.
  Footgun: a proxy that writes only `Forwarded` must strip client-sent `X-Forwarded-*` lines,
  or a client can pick its address; `'*'` is refused as a trusted proxy for the same reason.
- A peer that is not an IP address (a unix socket) has no client address: `client_ip` returns
  None and forwarding headers from it are not believed.
"""

from __future__ import annotations

import functools
import ipaddress
import re
import socket
from collections.abc import Callable, Iterable, Mapping, Sequence
from ipaddress import IPv4Network, IPv6Address, IPv6Network
from typing import Any

__all__ = ["ProxyResolver", "normalize_ip", "parse_networks"]


_MAX_FORWARDED_HOPS = 32
_MAX_IP_TEXT = 128
_IP_CACHE_SIZE = 4096
_TRUST_CACHE_SIZE = 1024
_XFF_CACHE_SIZE = 4096
_MAX_CACHED_XFF = 256
_HOST_CACHE_SIZE = 1024
_MAX_HOST_LINE = 300

_OCTET = r"(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])"
_CANONICAL_IPV4 = re.compile(rf"(?:{_OCTET}\.){{3}}{_OCTET}")
_AF_INET, _AF_INET6 = int(socket.AF_INET), int(socket.AF_INET6)
_PORT = re.compile(r"[0-9]{1,5}|_[A-Za-z0-9._-]+")
_HOST = re.compile(r"[a-z0-9._:\[\]-]{1,300}")
_FORWARDING = frozenset(
    (b"x-forwarded-for", b"forwarded", b"x-forwarded-proto", b"x-forwarded-host")
)

_Network = IPv4Network | IPv6Network


# --- addresses -----------------------------------------------------------------------------


def parse_networks(values: Iterable[str]) -> tuple[IPv4Network | IPv6Network, ...]:
    """Parse trusted-proxy addresses and CIDR networks.

    Args:
        values: entries such as `"10.0.0.0/8"`, `"127.0.0.1"`, `"::1"`, `"2001:db8::/32"`; a
            single string is read as a comma-separated list. Blank entries are skipped, host
            bits are allowed (`10.1.2.3/8` is `10.0.0.0/8`) and IPv4-mapped IPv6 entries are
            folded to IPv4.

    Raises:
        ValueError: naming the first entry that is not an address or network.
    """
    if isinstance(values, str):
        values = values.split(",")
    networks: list[_Network] = []
    for raw in values:
        if not isinstance(raw, str):
            raise ValueError(f"trusted proxy {raw!r} is not a string")
        if raw.strip():
            networks.append(_parse_network(raw.strip()))
    return tuple(networks)


def _parse_network(entry: str) -> _Network:
    if entry == "*":
        raise ValueError(
            "trusted proxy '*' is not accepted: trusting every peer lets any client choose "
            "its own address; list your proxies' addresses or networks (e.g. 10.0.0.0/8)"
        )
    try:
        network = ipaddress.ip_network(entry, strict=False)
    except ValueError:
        raise ValueError(
            f"trusted proxy {entry!r} is not an IP address or CIDR network "
            "(expected e.g. 10.0.0.0/8, 127.0.0.1 or ::1)"
        ) from None
    mapped = network.network_address.ipv4_mapped if network.version == 6 else None
    if mapped is not None and network.prefixlen >= 96:
        return IPv4Network((mapped, network.prefixlen - 96))
    return network


def normalize_ip(text: str) -> str | None:
    """Return the canonical form of an address as proxies and servers write it, else None.

    Accepts `1.2.3.4`, `1.2.3.4:5678`, `[2001:db8::1]:443`, `2001:db8::1`, with optional
    surrounding quotes and spaces. IPv6 comes back compressed and lowercase, without a zone
    (`%eth0`); IPv4-mapped IPv6 (`::ffff:1.2.3.4`) is folded to IPv4 so both share one key.
    `unknown`, RFC 7239 obfuscated identifiers (`_hidden`), hostnames and anything else that is
    not an address give None, as does `001.002.003.004`: leading zeros are octal to some
    parsers and decimal to others, and no proxy writes them. Never raises.
    """
    if not isinstance(text, str) or len(text) > _MAX_IP_TEXT:
        return None
    return _normalize_ip_cached(text)


@functools.lru_cache(maxsize=_IP_CACHE_SIZE)
def _normalize_ip_cached(text: str) -> str | None:
    host = _strip_port(text.strip().strip('"').strip())
    if host is None:
        return None
    if _CANONICAL_IPV4.fullmatch(host):
        return host  # the common case, ten times cheaper than ipaddress
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return None
    if isinstance(address, IPv6Address):
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
        if address.scope_id is not None:
            address = IPv6Address(int(address))
    return str(address)


def _strip_port(text: str) -> str | None:
    """`[v6]:port` -> `v6`, `v4:port` -> `v4`, anything else unchanged; None if malformed."""
    if text.startswith("["):
        end = text.find("]")
        rest = text[end + 1 :]
        if end < 0 or (rest and not (rest[0] == ":" and _PORT.fullmatch(rest, 1))):
            return None
        return text[1:end]
    if text.count(":") == 1:
        host, _, port = text.partition(":")
        return host if _PORT.fullmatch(port) else None
    return text


def _peer(scope: Mapping[str, Any]) -> str | None:
    client = scope.get("client")
    if not client:
        return None
    host = client[0]
    return _normalize_ip_cached(host) if isinstance(host, str) else None


class ProxyResolver:
    """Resolve the client address, scheme and host, believing forwarding headers only from
    trusted proxies (see the module docstring for the rules).

    Args:
        trusted_proxies: addresses and CIDR networks of your reverse proxies and load
            balancers, as accepted by `parse_networks`. Empty (the default) trusts no one.

    Raises:
        ValueError: naming a bad trusted-proxy entry.
    """

    def __init__(self, trusted_proxies: Iterable[str] = ()) -> None:
        self._networks = parse_networks(trusted_proxies)
        self._v4 = _int_ranges(net for net in self._networks if net.version == 4)
        self._v6 = _int_ranges(net for net in self._networks if net.version == 6)
        self._trusted: Callable[[str], bool] = functools.lru_cache(maxsize=_TRUST_CACHE_SIZE)(
            self._check_trusted
        )
        self._xff_cached: Callable[[str], str | None] = functools.lru_cache(
            maxsize=_XFF_CACHE_SIZE
        )(self._xff)
        self._origin_key = f"launchready.origin.{id(self)}"
        self._view_key = f"launchready.forwarding.{id(self)}"

    def __repr__(self) -> str:
        return f"ProxyResolver({[str(net) for net in self._networks]!r})"

    @property
    def trusts_anyone(self) -> bool:
        """Whether any proxy is trusted (with none, the scope's own scheme and Host count)."""
        return bool(self._networks)

    def is_trusted_peer(self, scope: Mapping[str, Any]) -> bool:
        """Tell whether the socket peer of `scope` is one of the trusted proxies."""
        if not self._networks:
            return False
        peer = _peer(scope)
        return peer is not None and self._trusted(peer)

    def client_ip(self, scope: Mapping[str, Any]) -> str | None:
        """Return the canonical client address for an ASGI scope, or None if unknown."""
        peer = _peer(scope)
        if peer is None or not self._networks or not self._trusted(peer):
            return peer
        hop = self._client_hop(self._view(scope)[1])
        return peer if hop is None else hop[0]

    def scheme(self, scope: Mapping[str, Any]) -> str:
        """Return `scope["scheme"]`, or the scheme a trusted proxy reports (http/https only).

        For a websocket scope a forwarded `https` gives `wss` and `http` gives `ws`.
        """
        if not self._networks:  # nobody's headers are believed: the server's own scheme
            websocket = scope.get("type") == "websocket"
            return str(scope.get("scheme") or ("ws" if websocket else "http"))
        return self.origin(scope)[0]

    def host(self, scope: Mapping[str, Any]) -> str | None:
        """Return the lowercased `Host` (or a trusted proxy's forwarded host), else None.

        Only the charset is checked (letters, digits, `.-_:[]`); several `Host` lines or a
        value with other characters give None. A bad forwarded host falls back to `Host`.
        """
        return self.origin(scope)[1]

    def origin(self, scope: Mapping[str, Any]) -> tuple[str, str | None]:
        """`(scheme, host)` as `scheme()` and `host()` give them, worked out once per request.

        The pair is kept in the scope (under a key of this resolver's own), so the layers that
        need it (security headers, redirects, the cache key) share one pass over the headers.
        """
        found = scope.get(self._origin_key)
        if found is None:
            found = self._origin(scope)
            if isinstance(scope, dict):  # ASGI scopes are dicts; any other mapping: each time
                scope[self._origin_key] = found
        return found

    def _view(self, scope: Mapping[str, Any]) -> tuple[bool, dict[bytes, str], bytes | None]:
        """`(peer trusted, its forwarding headers, the one Host line or None)`, from one pass
        over the headers, kept in the scope for `client_ip`, `scheme` and `host`."""
        found = scope.get(self._view_key)
        if found is not None:
            return found  # type: ignore[no-any-return]
        trusted = self.is_trusted_peer(scope)
        forwarding: dict[bytes, str] = {}
        line: bytes | None = None
        several = repeated = False
        for name, value in scope.get("headers") or ():
            if name == b"host":
                several = line is not None
                line = value
            elif trusted and name in _FORWARDING:
                repeated = repeated or name in forwarding
                forwarding[name] = value.decode("latin-1")
        if repeated:
            forwarding = _joined_forwarding_headers(scope)
        view = (trusted, forwarding, None if several else line)
        if isinstance(scope, dict):
            scope[self._view_key] = view
        return view

    def _origin(self, scope: Mapping[str, Any]) -> tuple[str, str | None]:
        websocket = scope.get("type") == "websocket"
        scheme = str(scope.get("scheme") or ("ws" if websocket else "http"))
        trusted, forwarding, line = self._view(scope)
        host = _host_line(line) if line is not None else None
        if not trusted:
            return scheme, host
        if b"x-forwarded-for" in forwarding or b"forwarded" not in forwarding:
            proto = forwarding.get(b"x-forwarded-proto")
            proto = _first_value(proto) if proto is not None else None
            forwarded = forwarding.get(b"x-forwarded-host")
            forwarded_host = _valid_host(_first_value(forwarded)) if forwarded else None
        else:
            hop = self._client_hop(forwarding)
            params = hop[1] if hop is not None else {}
            proto = params.get("proto")
            forwarded_host = _valid_host(params.get("host"))
        proto = proto.lower() if proto else None
        if proto in ("http", "https"):
            scheme = proto.replace("http", "ws") if websocket else proto
        return scheme, forwarded_host or host

    def _check_trusted(self, address: str) -> bool:
        """Membership of a canonical address, by integer masks (ipaddress is slow to build)."""
        family, ranges = (_AF_INET6, self._v6) if ":" in address else (_AF_INET, self._v4)
        try:
            ip = int.from_bytes(socket.inet_pton(family, address), "big")
        except OSError:
            return False
        return any(ip & mask == network for network, mask in ranges)

    def _client_hop(self, headers: Mapping[bytes, str]) -> tuple[str, Mapping[str, str]] | None:
        """Client address the right-to-left walk stops at, with its `Forwarded` parameters
        (empty for `X-Forwarded-For`); None when no entry is usable."""
        xff = headers.get(b"x-forwarded-for")
        if xff is not None:
            address = self._xff_cached(xff) if len(xff) <= _MAX_CACHED_XFF else self._xff(xff)
            return None if address is None else (address, {})
        forwarded = headers.get(b"forwarded")
        if forwarded is None:
            return None
        elements = [_forwarded_params(element) for element in _last_entries(forwarded)]
        found = self._walk([params.get("for") or "unknown" for params in elements])
        return None if found is None else (found[1], elements[found[0]])

    def _xff(self, value: str) -> str | None:
        found = self._walk(_last_entries(value))
        return None if found is None else found[1]

    def _walk(self, entries: Sequence[str]) -> tuple[int, str] | None:
        """Index and address of the first untrusted entry from the right (or of the last
        trusted one before the chain ends or turns to garbage)."""
        found: tuple[int, str] | None = None
        for index in range(len(entries) - 1, -1, -1):
            entry = entries[index]
            if not entry or entry.isspace():
                continue  # empty entries come from joining lines, not from a proxy
            address = normalize_ip(entry)
            if address is None:
                break
            found = (index, address)
            if not self._trusted(address):
                break
        return found


def _int_ranges(networks: Iterable[_Network]) -> tuple[tuple[int, int], ...]:
    return tuple((int(net.network_address), int(net.netmask)) for net in networks)


def _forwarding_headers(scope: Mapping[str, Any]) -> dict[bytes, str]:
    """Forwarding header values by name; repeated lines are joined in order with ','."""
    found: dict[bytes, str] = {}
    repeated = False
    for name, value in scope.get("headers") or ():
        if name in _FORWARDING:
            repeated = repeated or name in found
            found[name] = value.decode("latin-1")
    return _joined_forwarding_headers(scope) if repeated else found


def _joined_forwarding_headers(scope: Mapping[str, Any]) -> dict[bytes, str]:
    grouped: dict[bytes, list[bytes]] = {}
    for name, value in scope.get("headers") or ():
        if name in _FORWARDING:
            grouped.setdefault(name, []).append(value)
    return {name: b",".join(values).decode("latin-1") for name, values in grouped.items()}


def _last_entries(value: str) -> list[str]:
    """The last `_MAX_FORWARDED_HOPS` comma-separated entries, without splitting the rest."""
    entries = value.rsplit(",", _MAX_FORWARDED_HOPS)
    return entries[1:] if len(entries) > _MAX_FORWARDED_HOPS else entries


def _forwarded_params(element: str) -> dict[str, str]:
    """Parameters of one RFC 7239 element, names lowercased, first occurrence kept."""
    params: dict[str, str] = {}
    for pair in element.split(";"):
        name, sep, value = pair.partition("=")
        if sep:
            params.setdefault(name.strip().lower(), _unquote(value.strip()))
    return params


def _unquote(value: str) -> str:
    """An RFC 7239 token or quoted string; unbalanced quotes (a split quoted comma) give ''."""
    if len(value) >= 2 and value[0] == value[-1] == '"':
        value = value[1:-1]
    return "" if '"' in value else value


def _first_value(value: str | None) -> str | None:
    return value.split(",", 1)[0].strip() if value is not None else None


@functools.lru_cache(maxsize=_HOST_CACHE_SIZE)
def _host_line(value: bytes) -> str | None:
    return _valid_host(value.decode("latin-1")) if len(value) <= _MAX_HOST_LINE else None


def _valid_host(value: str | None) -> str | None:
    if not value:
        return None
    value = value.strip().lower()
    return value if _HOST.fullmatch(value) else None
