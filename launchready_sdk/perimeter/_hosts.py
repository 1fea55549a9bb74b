"""Host names: the host a request names, parsed and normalised, and the allowed-host list.

A request's host comes from `ProxyResolver.host` (the `Host` header, or `X-Forwarded-Host`
from a trusted proxy), already lowercased and limited to `[a-z0-9._:[]-]`. `parse_host` splits
off the port, drops one trailing dot (`shop.example.` is `shop.example`), checks each label and
the port, and writes IPv6 literals compressed in brackets (`[2001:db8::1]`), so the result can
go into a URL as it is. Allowed-host entries are normalised the same way, and a Unicode entry
(`bücher.example`) is turned into the ASCII form browsers send (`xn--bcher-kva.example`).

Security stance: only hosts that parse are ever matched or written into a `Location`; a
`Host` with Unicode, spaces, `@`, `/`, a bad port or several `Host` lines parses to None.
"""

from __future__ import annotations

import functools
import ipaddress
import re
from collections.abc import Iterable

__all__ = ["HostList", "check_host_entry", "parse_host"]

_LABEL = re.compile(r"[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?")
_MAX_NAME = 253
_PARSE_CACHE = 4096


def parse_host(value: str | None) -> tuple[str, int | None] | None:
    """`(host, port)` of a host header value, or None when it is not a valid host.

    The host is lowercase, without a trailing dot; an IPv6 literal is compressed and bracketed.
    """
    if not value or len(value) > 300:
        return None
    return _parse(value)


@functools.lru_cache(maxsize=_PARSE_CACHE)
def _parse(value: str) -> tuple[str, int | None] | None:
    text = value.strip().lower()
    port: int | None = None
    if text.startswith("["):
        end = text.find("]")
        if end < 0:
            return None
        rest, host = text[end + 1 :], _ipv6(text[1:end])
        if host is None:
            return None
        if rest:
            if not rest.startswith(":"):
                return None
            port = _port(rest[1:])
            if port is None:
                return None
        return host, port
    if text.count(":") > 1:
        return None  # an IPv6 literal without brackets is not a Host
    name, sep, raw_port = text.partition(":")
    if sep:
        port = _port(raw_port)
        if port is None:
            return None
    name = name[:-1] if name.endswith(".") else name
    if not _valid_name(name):
        return None
    return name, port


def _ipv6(text: str) -> str | None:
    try:
        address = ipaddress.IPv6Address(text)
    except ValueError:
        return None
    if address.scope_id is not None:
        return None  # a zone (%eth0) names the server's own interface, never a site
    return f"[{address.compressed}]"


def _port(text: str) -> int | None:
    if not text.isdigit() or not text.isascii() or len(text) > 5:
        return None
    port = int(text)
    return port if 0 < port < 65536 else None


def _valid_name(name: str) -> bool:
    if not name or len(name) > _MAX_NAME:
        return False
    return all(_LABEL.fullmatch(label) for label in name.split("."))


def check_host_entry(entry: object, *, wildcard: bool = True) -> str:
    """An allowed-host entry in its canonical form: `shop.example`, `*.shop.example`, an IP.

    Unicode names are IDNA-encoded; case and a trailing dot do not matter. Ports are not
    part of an entry (the `Host` port is ignored when matching, as Django does).

    Raises:
        ValueError: saying what is wrong with the entry.
    """
    if not isinstance(entry, str) or not entry.strip():
        raise ValueError(f"expected a host name such as shop.example, got {entry!r}")
    text = entry.strip()
    if text == "*":
        raise ValueError("'*' allows every host: leave the list empty for that")
    prefix = ""
    if text.startswith("*."):
        if not wildcard:
            raise ValueError(f"{entry!r}: a wildcard cannot be the canonical host")
        prefix, text = "*.", text[2:]
    if "*" in text:
        raise ValueError(f"{entry!r}: '*' may only start an entry, as in *.shop.example")
    if "://" in text or "/" in text:
        raise ValueError(f"{entry!r}: give the host alone, without a scheme or path")
    if not text.isascii():
        text = _idna(entry, text)
    parsed = parse_host(text if text.startswith("[") or text.count(":") < 2 else f"[{text}]")
    if parsed is None:
        raise ValueError(f"{entry!r} is not a valid host name or IP address")
    host, port = parsed
    if port is not None:
        raise ValueError(
            f"{entry!r}: allowed hosts carry no port (the request's port is ignored when "
            "matching); write the host alone"
        )
    if prefix and host.startswith("["):
        raise ValueError(f"{entry!r}: a wildcard needs a domain name, not an address")
    return prefix + host


def _idna(entry: str, text: str) -> str:
    try:
        import idna

        return str(idna.encode(text.rstrip("."), uts46=True).decode("ascii"))
    except ImportError:  # pragma: no cover - idna comes with httpx
        pass
    except Exception as exc:
        raise ValueError(f"{entry!r} is not a valid internationalised domain name") from exc
    try:  # pragma: no cover
        return text.rstrip(".").encode("idna").decode("ascii")
    except UnicodeError as exc:  # pragma: no cover
        raise ValueError(f"{entry!r} is not a valid internationalised domain name") from exc


def check_canonical_host(value: object) -> str | None:
    """`host` or `host:port` in canonical form, or None; ValueError when it is not a host."""
    if value is None:
        return None
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"expected a host name such as www.shop.example, got {value!r}")
    text = value.strip()
    if "://" in text or "/" in text:
        raise ValueError(f"{value!r}: give the host alone, without a scheme or path")
    if not text.isascii():
        name, sep, port = text.rpartition(":") if text.count(":") == 1 else (text, "", "")
        text = _idna(value, name) + sep + port
    parsed = parse_host(text)
    if parsed is None:
        raise ValueError(f"{value!r} is not a valid host name or IP address")
    host, port_number = parsed
    return host if port_number is None else f"{host}:{port_number}"


class HostList:
    """Allowed hosts: exact names and `*.domain` (any subdomain of `domain`, not itself).

    Empty, it allows every host. Matching is on the parsed host, without its port.
    """

    def __init__(self, entries: Iterable[str]) -> None:
        exact: set[str] = set()
        suffixes: list[str] = []
        for entry in entries:
            canonical = check_host_entry(entry)
            if canonical.startswith("*."):
                suffixes.append(canonical[1:])  # ".shop.example"
            else:
                exact.add(canonical)
        self.exact = frozenset(exact)
        self.suffixes = tuple(suffixes)

    def __bool__(self) -> bool:
        return bool(self.exact or self.suffixes)

    def allows(self, host: str) -> bool:
        """Whether a parsed host (no port) is on the list; an empty list allows every host."""
        if host in self.exact or not (self.exact or self.suffixes):
            return True
        return any(host.endswith(suffix) for suffix in self.suffixes)

    def listed(self, host: str) -> bool:
        """Whether the host is named by an entry (an empty list names none)."""
        return host in self.exact or any(host.endswith(s) for s in self.suffixes)
