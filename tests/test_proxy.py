"""Tests for launchready_sdk.proxy: client address, scheme, host, paths and patterns."""

from __future__ import annotations

import time
from ipaddress import IPv4Network, IPv6Network
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from launchready_sdk.proxy import ProxyResolver, normalize_ip, parse_networks

VICTIM = "198.51.100.77"
HEADER_NAMES = [
    b"x-forwarded-for",
    b"forwarded",
    b"x-forwarded-proto",
    b"x-forwarded-host",
    b"host",
]


def make_scope(
    peer: str | None = "203.0.113.9",
    headers: list[tuple[str, str]] | None = None,
    *,
    scheme: str = "http",
    kind: str = "http",
) -> dict[str, Any]:
    """Build a minimal ASGI scope with lowercase byte headers."""
    return {
        "type": kind,
        "scheme": scheme,
        "client": None if peer is None else (peer, 50000),
        "headers": [(k.lower().encode(), v.encode("latin-1")) for k, v in headers or []],
    }


SPOOF_HEADERS = [
    ("X-Forwarded-For", VICTIM),
    ("X-Forwarded-For", f"{VICTIM}, 10.0.0.1"),
    ("X-Real-IP", VICTIM),
    ("CF-Connecting-IP", VICTIM),
    ("True-Client-IP", VICTIM),
    ("Forwarded", f"for={VICTIM}"),
    ("X_Forwarded_For", VICTIM),
]


# --- parse_networks ------------------------------------------------------------------------


def test_parse_networks_accepts_addresses_and_cidrs() -> None:
    """Addresses become /32 or /128 networks and CIDRs keep their prefix."""
    assert parse_networks(["10.0.0.0/8", "127.0.0.1", "::1", "2001:db8::/32"]) == (
        IPv4Network("10.0.0.0/8"),
        IPv4Network("127.0.0.1/32"),
        IPv6Network("::1/128"),
        IPv6Network("2001:db8::/32"),
    )


def test_parse_networks_allows_host_bits_and_blank_entries() -> None:
    """Host bits are masked off and blank entries are skipped."""
    assert parse_networks([" 10.1.2.3/8 ", ""]) == (IPv4Network("10.0.0.0/8"),)


def test_parse_networks_reads_a_string_as_a_comma_list() -> None:
    """A single string is a comma-separated list, not an iterable of characters."""
    assert parse_networks("10.0.0.0/8,127.0.0.1") == (
        IPv4Network("10.0.0.0/8"),
        IPv4Network("127.0.0.1/32"),
    )


def test_parse_networks_folds_ipv4_mapped_entries() -> None:
    """An IPv4-mapped IPv6 entry trusts the IPv4 peer it denotes."""
    assert parse_networks(["::ffff:10.0.0.0/104"]) == (IPv4Network("10.0.0.0/8"),)


@pytest.mark.parametrize("bad", ["localhost", "10.0.0.0/33", "1.2.3", "*", "10.0.0.0/8 x"])
def test_parse_networks_names_the_bad_entry(bad: str) -> None:
    """A bad entry raises ValueError quoting it."""
    with pytest.raises(ValueError, match="trusted proxy") as info:
        parse_networks(["127.0.0.1", bad])
    assert repr(bad) in str(info.value)


# --- normalize_ip --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("1.2.3.4", "1.2.3.4"),
        (" 1.2.3.4 ", "1.2.3.4"),
        ("1.2.3.4:5678", "1.2.3.4"),
        ("[2001:db8::1]:443", "2001:db8::1"),
        ('"[2001:DB8:0:0::1]:443"', "2001:db8::1"),
        ("[2001:db8::1]", "2001:db8::1"),
        ("2001:0db8:0000::0001", "2001:db8::1"),
        ("::ffff:1.2.3.4", "1.2.3.4"),
        ("[::ffff:1.2.3.4]:80", "1.2.3.4"),
        ("fe80::1%eth0", "fe80::1"),
        ("1.2.3.4:_port", "1.2.3.4"),
        ("001.002.003.004", None),
        ("unknown", None),
        ("", None),
        ("foo", None),
        ("_hidden", None),
        ("1.2.3.4:", None),
        ("1.2.3.4:99999999", None),
        ("[2001:db8::1", None),
        ("[2001:db8::1]x", None),
        ("256.1.1.1", None),
        ("example.com:80", None),
        ("1" * 10_000, None),
    ],
)
def test_normalize_ip(text: str, expected: str | None) -> None:
    """Addresses come back canonical; anything that is not one gives None."""
    assert normalize_ip(text) == expected


@given(st.text())
def test_normalize_ip_never_raises(text: str) -> None:
    """Arbitrary text gives a string or None, never an exception."""
    result = normalize_ip(text)
    assert result is None or normalize_ip(result) == result


# --- client_ip -----------------------------------------------------------------------------


@pytest.mark.parametrize(("name", "value"), SPOOF_HEADERS)
def test_no_trusted_proxy_ignores_every_forwarding_header(name: str, value: str) -> None:
    """With no trusted proxy every spoof header is ignored and the peer is the client."""
    scope = make_scope("203.0.113.9", [(name, value)])
    assert ProxyResolver().client_ip(scope) == "203.0.113.9"


@pytest.mark.parametrize(("name", "value"), SPOOF_HEADERS)
def test_untrusted_peer_ignores_every_forwarding_header(name: str, value: str) -> None:
    """A peer outside trusted_proxies cannot choose its address through any header."""
    scope = make_scope("203.0.113.9", [(name, value)])
    assert ProxyResolver(["10.0.0.0/8"]).client_ip(scope) == "203.0.113.9"


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ([("X-Forwarded-For", "6.6.6.6, 203.0.113.9")], "203.0.113.9"),
        ([("X-Forwarded-For", f"{VICTIM}, 203.0.113.9")], "203.0.113.9"),
        ([("X-Forwarded-For", f"{VICTIM}, 203.0.113.9, 10.0.0.7")], "203.0.113.9"),
        ([("X-Forwarded-For", f"{VICTIM}"), ("X-Forwarded-For", "203.0.113.9")], "203.0.113.9"),
        ([("X-Forwarded-For", "10.0.0.3, 10.0.0.2")], "10.0.0.3"),
        ([("X-Forwarded-For", "::ffff:203.0.113.9")], "203.0.113.9"),
        ([("X-Forwarded-For", "203.0.113.9:5678")], "203.0.113.9"),
        ([("X-Forwarded-For", "[2001:db8::1]:443")], "2001:db8::1"),
        ([("X-Forwarded-For", "")], "10.0.0.5"),
        ([("X-Forwarded-For", " , ,")], "10.0.0.5"),
        ([], "10.0.0.5"),
        ([("X-Forwarded-For", "unknown")], "10.0.0.5"),
        ([("X-Forwarded-For", f"{VICTIM}, unknown")], "10.0.0.5"),
        ([("X-Forwarded-For", f"{VICTIM}, foo, 10.0.0.3")], "10.0.0.3"),
        ([("X-Forwarded-For", f"{VICTIM}, 001.002.003.004")], "10.0.0.5"),
        ([("X-Forwarded-For", "203.0.113.9,")], "203.0.113.9"),
        ([("X-Forwarded-For", "," * 10_240)], "10.0.0.5"),
        ([("X-Forwarded-For", "," * 10_240 + "203.0.113.9")], "203.0.113.9"),
        ([("X-Real-IP", VICTIM)], "10.0.0.5"),
        ([("CF-Connecting-IP", VICTIM)], "10.0.0.5"),
        ([("True-Client-IP", VICTIM)], "10.0.0.5"),
    ],
    ids=[
        "one-hop",
        "victim-injected-left",
        "two-trusted-hops",
        "two-lines-joined",
        "all-trusted-leftmost",
        "ipv4-mapped",
        "port",
        "bracketed-ipv6",
        "empty-xff",
        "only-blanks",
        "no-xff",
        "unknown",
        "garbage-stops-walk",
        "garbage-behind-trusted-hop",
        "leading-zeros",
        "trailing-comma",
        "10kb-of-commas",
        "10kb-of-commas-then-client",
        "x-real-ip-ignored",
        "cf-connecting-ip-ignored",
        "true-client-ip-ignored",
    ],
)
def test_trusted_proxy_x_forwarded_for(headers: list[tuple[str, str]], expected: str) -> None:
    """From a trusted peer X-Forwarded-For is walked right to left past trusted hops."""
    scope = make_scope("10.0.0.5", headers)
    assert ProxyResolver(["10.0.0.0/8"]).client_ip(scope) == expected


def test_ipv4_mapped_and_plain_share_a_key() -> None:
    """`::ffff:1.2.3.4` and `1.2.3.4` resolve to the same client, as peer or forwarded."""
    resolver = ProxyResolver(["10.0.0.0/8"])
    assert resolver.client_ip(make_scope("::ffff:1.2.3.4")) == "1.2.3.4"
    assert resolver.client_ip(make_scope("::ffff:10.0.0.5", [("X-Forwarded-For", "1.2.3.4")]))
    assert ProxyResolver().client_ip(make_scope("::ffff:1.2.3.4")) == "1.2.3.4"


def test_only_the_last_32_entries_are_walked() -> None:
    """A long chain of trusted entries stops after 32 hops, at the leftmost one considered."""
    chain = ", ".join(["6.6.6.6"] + [f"10.0.0.{i}" for i in range(1, 41)])
    scope = make_scope("10.0.0.5", [("X-Forwarded-For", chain)])
    assert ProxyResolver(["10.0.0.0/8"]).client_ip(scope) == "10.0.0.9"


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ('for="[2001:db8::1]:443"', "2001:db8::1"),
        ("for=192.0.2.60;proto=http;by=203.0.113.43", "192.0.2.60"),
        (f"for={VICTIM}, for=192.0.2.60", "192.0.2.60"),
        ("For=192.0.2.60", "192.0.2.60"),
        ("for=192.0.2.60, for=10.0.0.2", "192.0.2.60"),
        ("for=_hidden", "10.0.0.5"),
        ("for=unknown", "10.0.0.5"),
        (f"for={VICTIM}, proto=https", "10.0.0.5"),
        ('for="192.0.2.60,for=6.6.6.6"', "10.0.0.5"),
    ],
)
def test_trusted_proxy_forwarded_header(value: str, expected: str) -> None:
    """RFC 7239 `for=` is walked like X-Forwarded-For, quotes and brackets handled."""
    scope = make_scope("10.0.0.5", [("Forwarded", value)])
    assert ProxyResolver(["10.0.0.0/8"]).client_ip(scope) == expected


def test_x_forwarded_for_wins_over_forwarded() -> None:
    """When both are present X-Forwarded-For is used and Forwarded ignored."""
    headers = [("Forwarded", f"for={VICTIM}"), ("X-Forwarded-For", "203.0.113.9")]
    scope = make_scope("10.0.0.5", headers)
    assert ProxyResolver(["10.0.0.0/8"]).client_ip(scope) == "203.0.113.9"


@pytest.mark.parametrize("peer", [None, "/run/app.sock", "", "not-an-ip"])
def test_peer_without_an_address_gives_none(peer: str | None) -> None:
    """A missing or unix-socket peer has no client address, and its headers are not believed."""
    scope = make_scope(peer, [("X-Forwarded-For", VICTIM)])
    assert ProxyResolver(["10.0.0.0/8"]).client_ip(scope) is None
    assert ProxyResolver().client_ip(scope) is None


def test_scope_without_client_or_headers() -> None:
    """A scope missing `client` and `headers` keys resolves to None without raising."""
    assert ProxyResolver(["10.0.0.0/8"]).client_ip({"type": "http"}) is None


def test_ipv6_trusted_network() -> None:
    """IPv6 peers are checked against IPv6 networks."""
    scope = make_scope("2001:db8::5", [("X-Forwarded-For", "203.0.113.9")])
    assert ProxyResolver(["2001:db8::/32"]).client_ip(scope) == "203.0.113.9"
    assert ProxyResolver(["10.0.0.0/8"]).client_ip(scope) == "2001:db8::5"


def test_is_trusted_peer() -> None:
    """is_trusted_peer tells whether the socket peer is a configured proxy."""
    resolver = ProxyResolver(["10.0.0.0/8"])
    assert resolver.is_trusted_peer(make_scope("10.0.0.5"))
    assert not resolver.is_trusted_peer(make_scope("203.0.113.9"))
    assert not ProxyResolver().is_trusted_peer(make_scope("10.0.0.5"))


def test_resolver_rejects_bad_trusted_proxies() -> None:
    """A bad trusted-proxy entry raises ValueError at construction."""
    with pytest.raises(ValueError, match="'nginx'"):
        ProxyResolver(["nginx"])


@given(
    st.lists(st.tuples(st.sampled_from(HEADER_NAMES), st.binary())),
    st.sampled_from(["10.0.0.5", "203.0.113.9"]),
)
def test_client_ip_never_raises(headers: list[tuple[bytes, bytes]], peer: str) -> None:
    """Arbitrary forwarding header bytes give a canonical address or None, never an error."""
    scope = {"type": "http", "client": (peer, 1), "headers": headers}
    resolver = ProxyResolver(["10.0.0.0/8"])
    result = resolver.client_ip(scope)
    assert result is None or normalize_ip(result) == result
    resolver.scheme(scope)
    resolver.host(scope)


def test_ten_kilobytes_of_commas_is_cheap() -> None:
    """Resolving a 10 KB comma header takes well under a millisecond per call."""
    scope = make_scope("10.0.0.5", [("X-Forwarded-For", "," * 10_240)])
    resolver = ProxyResolver(["10.0.0.0/8"])
    start = time.perf_counter()
    for _ in range(200):
        resolver.client_ip(scope)
    assert (time.perf_counter() - start) / 200 < 0.001


# --- scheme and host -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("trusted", "headers", "expected"),
    [
        ([], [("X-Forwarded-Proto", "https")], "http"),
        (["10.0.0.0/8"], [("X-Forwarded-Proto", "https")], "https"),
        (["10.0.0.0/8"], [("X-Forwarded-Proto", "HTTPS, http")], "https"),
        (["10.0.0.0/8"], [("X-Forwarded-Proto", "ftp")], "http"),
        (["10.0.0.0/8"], [("X-Forwarded-Proto", "")], "http"),
        (["10.0.0.0/8"], [("Forwarded", "for=203.0.113.9;proto=https")], "https"),
        (["10.0.0.0/8"], [("Forwarded", "for=203.0.113.9;proto=gopher")], "http"),
        (
            ["10.0.0.0/8"],
            [("Forwarded", "for=203.0.113.9;proto=https"), ("X-Forwarded-For", "203.0.113.9")],
            "http",
        ),
        ([], [("Forwarded", "for=203.0.113.9;proto=https")], "http"),
    ],
)
def test_scheme(trusted: list[str], headers: list[tuple[str, str]], expected: str) -> None:
    """X-Forwarded-Proto or Forwarded proto= override the scheme only from a trusted peer."""
    scope = make_scope("10.0.0.5", headers)
    assert ProxyResolver(trusted).scheme(scope) == expected


def test_scheme_for_websocket() -> None:
    """A forwarded https on a websocket scope gives wss."""
    scope = make_scope("10.0.0.5", [("X-Forwarded-Proto", "https")], scheme="ws", kind="websocket")
    assert ProxyResolver(["10.0.0.0/8"]).scheme(scope) == "wss"
    assert ProxyResolver().scheme(scope) == "ws"
    assert ProxyResolver().scheme({"type": "websocket"}) == "ws"
    assert ProxyResolver().scheme({"type": "http"}) == "http"


@pytest.mark.parametrize(
    ("trusted", "headers", "expected"),
    [
        ([], [("Host", "Example.COM:8443")], "example.com:8443"),
        ([], [("Host", "example.com"), ("X-Forwarded-Host", "evil.test")], "example.com"),
        (["10.0.0.0/8"], [("Host", "app:8000"), ("X-Forwarded-Host", "Shop.test")], "shop.test"),
        (["10.0.0.0/8"], [("Host", "app:8000"), ("X-Forwarded-Host", "a b")], "app:8000"),
        (
            ["10.0.0.0/8"],
            [("Host", "app"), ("Forwarded", "for=1.2.3.4;host=shop.test")],
            "shop.test",
        ),
        ([], [("Host", "evil.test/x")], None),
        ([], [("Host", "a.test"), ("Host", "b.test")], None),
        ([], [], None),
        ([], [("Host", "[::1]:8000")], "[::1]:8000"),
    ],
)
def test_host(trusted: list[str], headers: list[tuple[str, str]], expected: str | None) -> None:
    """Host is lowercased and charset-checked; X-Forwarded-Host only from a trusted peer."""
    assert ProxyResolver(trusted).host(make_scope("10.0.0.5", headers)) == expected


# --- normalize_path ------------------------------------------------------------------------
