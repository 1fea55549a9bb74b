"""Client address and scheme behind trusted proxies, path normalisation and route patterns.

Every middleware that keys, limits, caches or logs by client or by route reads its inputs
through this module: the request context and the rate limiter take the client from
`ProxyResolver.client_ip`, redirects and HSTS take `ProxyResolver.scheme` and `host`, and
rate-limit, cache and idempotency rules are looked up in a `PatternTable` with a path from
`normalize_path`. It does no I/O; its only state is a few bounded LRU caches.

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
- Paths are percent-decoded at most once, dot segments are resolved without climbing above
  the root, repeated and trailing slashes are dropped, and patterns match case-insensitively,
  so `/LOGIN/`, `//login`, `/%6Cogin` and `/api/../login` all meet the rule for `/login`.
  Matrix parameters (`/login;x=1`) are left alone: ASGI routers do not strip them either.
"""

from __future__ import annotations

import functools
import ipaddress
import re
import socket
from collections.abc import Callable, Iterable, Mapping, Sequence
from ipaddress import IPv4Network, IPv6Address, IPv6Network
from typing import Any, Generic, NamedTuple, TypeVar
from urllib.parse import unquote

__all__ = [
    "PatternTable",
    "ProxyResolver",
    "normalize_ip",
    "normalize_path",
    "parse_networks",
    "validate_pattern",
]

_V = TypeVar("_V")

_MAX_FORWARDED_HOPS = 32
_MAX_IP_TEXT = 128
_IP_CACHE_SIZE = 4096
_TRUST_CACHE_SIZE = 1024
_XFF_CACHE_SIZE = 4096
_MAX_CACHED_XFF = 256
_MATCH_CACHE_SIZE = 2048
_MAX_CACHED_PATH = 512
_MAX_PATTERN_LENGTH = 2048

_OCTET = r"(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])"
_CANONICAL_IPV4 = re.compile(rf"(?:{_OCTET}\.){{3}}{_OCTET}")
_AF_INET, _AF_INET6 = int(socket.AF_INET), int(socket.AF_INET6)
_PORT = re.compile(r"[0-9]{1,5}|_[A-Za-z0-9._-]+")
_HOST = re.compile(r"[a-z0-9._:\[\]-]{1,300}")
_PLACEHOLDER = re.compile(r"\{([a-z_][a-z0-9_]*)\}")
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

    def __repr__(self) -> str:
        return f"ProxyResolver({[str(net) for net in self._networks]!r})"

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
        hop = self._client_hop(_forwarding_headers(scope))
        return peer if hop is None else hop[0]

    def scheme(self, scope: Mapping[str, Any]) -> str:
        """Return `scope["scheme"]`, or the scheme a trusted proxy reports (http/https only).

        For a websocket scope a forwarded `https` gives `wss` and `http` gives `ws`.
        """
        websocket = scope.get("type") == "websocket"
        default = str(scope.get("scheme") or ("ws" if websocket else "http"))
        if not self.is_trusted_peer(scope):
            return default
        headers = _forwarding_headers(scope)
        if b"x-forwarded-for" in headers or b"forwarded" not in headers:
            proto = _first_value(headers.get(b"x-forwarded-proto"))
        else:
            hop = self._client_hop(headers)
            proto = hop[1].get("proto") if hop is not None else None
        proto = proto.lower() if proto else None
        if proto not in ("http", "https"):
            return default
        return proto.replace("http", "ws") if websocket else proto

    def host(self, scope: Mapping[str, Any]) -> str | None:
        """Return the lowercased `Host` (or a trusted proxy's forwarded host), else None.

        Only the charset is checked (letters, digits, `.-_:[]`); several `Host` lines or a
        value with other characters give None. A bad forwarded host falls back to `Host`.
        """
        if self.is_trusted_peer(scope):
            headers = _forwarding_headers(scope)
            if b"x-forwarded-for" in headers or b"forwarded" not in headers:
                forwarded = _valid_host(_first_value(headers.get(b"x-forwarded-host")))
            else:
                hop = self._client_hop(headers)
                forwarded = _valid_host(hop[1].get("host") if hop is not None else None)
            if forwarded is not None:
                return forwarded
        lines = [value for name, value in scope.get("headers") or () if name == b"host"]
        return _valid_host(lines[0].decode("latin-1")) if len(lines) == 1 else None

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


def _valid_host(value: str | None) -> str | None:
    if not value:
        return None
    value = value.strip().lower()
    return value if _HOST.fullmatch(value) else None


# --- paths ---------------------------------------------------------------------------------


def normalize_path(path: str, *, decoded: bool = False) -> str:
    """Return the canonical form of a URL path; never raises, linear in the input.

    Percent-decodes once unless `decoded` (pass True for ASGI `scope["path"]`, which the
    server already decoded), resolves `.` and `..` without climbing above the root, collapses
    repeated slashes and drops a trailing one. Case is kept; matching lowercases. Bad
    escapes are left as they are and invalid UTF-8 becomes U+FFFD.
    """
    if not decoded and "%" in path:
        path = unquote(path)
    if (
        path[:1] == "/"
        and "//" not in path
        and "/." not in path
        and (path[-1] != "/" or len(path) == 1)
    ):
        return path
    segments: list[str] = []
    for segment in path.split("/"):
        if segment == "..":
            if segments:
                segments.pop()
        elif segment and segment != ".":
            segments.append(segment)
    return "/" + "/".join(segments)


# --- patterns ------------------------------------------------------------------------------


class _Pattern(NamedTuple):
    key: str
    segments: tuple[str, ...]

    @property
    def is_exact(self) -> bool:
        return not any(s == "*" or s.startswith("{") for s in self.segments)

    def rank(self) -> tuple[Any, ...]:
        """Sort key, most specific first: more literal segments, more fixed segments (literal
        or `{name}`), no `*`, then literals further left, then the text itself."""
        kinds = tuple(0 if s == "*" else 1 if s.startswith("{") else 2 for s in self.segments)
        literals = kinds.count(2)
        fixed = literals + kinds.count(1)
        return (-literals, -fixed, 0 in kinds, tuple(-kind for kind in kinds), self.key)

    def regex(self) -> str:
        parts = []
        for segment in self.segments:
            if segment == "*":
                parts.append("(?:/.*)?")
            elif segment.startswith("{"):
                parts.append("/[^/]+")
            else:
                parts.append("/" + re.escape(segment))
        return "".join(parts) or "/"


def validate_pattern(pattern: str) -> None:
    """Check a route pattern such as `/login`, `/products/{id}` or `/webhooks/*`.

    A pattern starts with `/`; `{name}` (an identifier) matches exactly one path segment and
    must be a whole segment; `*` matches the rest of the path, including nothing, and must be
    the last segment.

    Raises:
        ValueError: saying what is wrong with the pattern.
    """
    _compile_pattern(pattern)


def _compile_pattern(pattern: str) -> _Pattern:
    if not isinstance(pattern, str) or not pattern.startswith("/"):
        raise ValueError(f"route pattern {pattern!r} must be a string starting with '/'")
    if len(pattern) > _MAX_PATTERN_LENGTH:
        raise ValueError(f"route pattern is longer than {_MAX_PATTERN_LENGTH} characters")
    key = normalize_path(pattern).lower()
    segments = tuple(key.split("/")[1:]) if key != "/" else ()
    names: set[str] = set()
    for index, segment in enumerate(segments):
        _check_segment(pattern, segment, index == len(segments) - 1, names)
    return _Pattern(key, segments)


def _check_segment(pattern: str, segment: str, is_last: bool, names: set[str]) -> None:
    where = f"route pattern {pattern!r}, segment {segment!r}"
    if segment == "*":
        if not is_last:
            raise ValueError(f"{where}: '*' is only allowed as the last segment")
        return
    placeholder = _PLACEHOLDER.fullmatch(segment)
    if placeholder is not None:
        if placeholder[1] in names:
            raise ValueError(f"{where}: placeholder name {placeholder[1]!r} is used twice")
        names.add(placeholder[1])
    elif "*" in segment:
        raise ValueError(f"{where}: '*' must be a whole segment, such as /webhooks/*")
    elif segment.startswith("{") and segment.endswith("}"):
        raise ValueError(f"{where}: a placeholder name must be an identifier, such as {{id}}")
    elif "{" in segment or "}" in segment:
        raise ValueError(f"{where}: a placeholder must be a whole segment, such as /items/{{id}}")


class PatternTable(Generic[_V]):
    """Route patterns mapped to values, matched against normalised paths.

    Matching is case-insensitive. When several patterns match, an exact pattern (no `{name}`,
    no `*`) wins; otherwise the one with more literal segments, then more fixed segments
    (literal or `{name}`), then without `*`, then with its literals further left. Two patterns
    that normalise alike (`/login` and `/LOGIN/`) are refused. Results are cached per path in
    a bounded LRU, so a client sending millions of distinct paths cannot grow memory.

    Args:
        mapping: pattern to value, e.g. `{"/login": "5/minute", "/webhooks/*": "300/minute"}`.

    Raises:
        ValueError: naming a bad or duplicate pattern.
    """

    def __init__(self, mapping: Mapping[str, _V]) -> None:
        self._exact: dict[str, tuple[str, _V]] = {}
        wildcards: list[tuple[_Pattern, str, _V]] = []
        seen: dict[str, str] = {}
        for pattern, value in mapping.items():
            compiled = _compile_pattern(pattern)
            if compiled.key in seen:
                raise ValueError(
                    f"route patterns {seen[compiled.key]!r} and {pattern!r} are the same route"
                )
            seen[compiled.key] = pattern
            if compiled.is_exact:
                self._exact[compiled.key] = (pattern, value)
            else:
                wildcards.append((compiled, pattern, value))
        wildcards.sort(key=lambda item: item[0].rank())
        self._wildcards = [(pattern, value) for _, pattern, value in wildcards]
        self._regex = _alternation([compiled for compiled, _, _ in wildcards])
        self._cached: Callable[[str], tuple[str, _V] | None] = functools.lru_cache(
            maxsize=_MATCH_CACHE_SIZE
        )(self._lookup)

    def __bool__(self) -> bool:
        return bool(self._exact or self._wildcards)

    def __len__(self) -> int:
        return len(self._exact) + len(self._wildcards)

    def __repr__(self) -> str:
        patterns = [p for p, _ in self._exact.values()] + [p for p, _ in self._wildcards]
        return f"PatternTable({patterns!r})"

    def match(self, normalized_path: str) -> tuple[str, _V] | None:
        """Return `(pattern, value)` for the best pattern matching the path, else None.

        `normalized_path` should come from `normalize_path`; it is normalised again (without
        decoding) so a raw path cannot slip past. The pattern is returned as written.
        """
        if self._regex is None and not self._exact:
            return None
        if len(normalized_path) > _MAX_CACHED_PATH:
            return self._lookup(normalized_path)
        return self._cached(normalized_path)

    def _lookup(self, path: str) -> tuple[str, _V] | None:
        key = normalize_path(path, decoded=True).lower()
        exact = self._exact.get(key)
        if exact is not None or self._regex is None:
            return exact
        found = self._regex.fullmatch(key)
        if found is None or found.lastgroup is None:
            return None
        return self._wildcards[int(found.lastgroup[1:])]


def _alternation(patterns: Sequence[_Pattern]) -> re.Pattern[str] | None:
    """One regex trying the patterns in order; the named group that matched gives the index."""
    if not patterns:
        return None
    body = "|".join(f"(?P<p{index}>{p.regex()})" for index, p in enumerate(patterns))
    return re.compile(body, re.DOTALL)
