"""Tests for launchready_sdk.patterns: path normalisation, the pattern grammar, PatternTable."""

from __future__ import annotations

import time

import pytest
from hypothesis import given
from hypothesis import strategies as st

from launchready_sdk.patterns import PatternTable, normalize_path, split_methods, validate_pattern


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("/login", "/login"),
        ("/LOGIN/", "/LOGIN"),
        ("//login", "/login"),
        ("/%6Cogin", "/login"),
        ("/./login", "/login"),
        ("/api/../login", "/login"),
        ("/login/../../login", "/login"),
        ("/login%2F", "/login"),
        ("/%2e%2e/login", "/login"),
        ("/a/b/..", "/a"),
        ("/a/.", "/a"),
        ("", "/"),
        ("/", "/"),
        ("///", "/"),
        ("login", "/login"),
        ("/bad%zzescape%", "/bad%zzescape%"),
        ("/caf%C3%A9", "/café"),
        ("/.well-known/x", "/.well-known/x"),
        ("/a/...", "/a/..."),
    ],
)
def test_normalize_path(path: str, expected: str) -> None:
    """Paths are decoded once, dot segments resolved and slashes collapsed, case kept."""
    assert normalize_path(path) == expected


def test_normalize_path_decoded_skips_percent_decoding() -> None:
    """With decoded=True escapes are left alone, so nothing is decoded twice."""
    assert normalize_path("/a%252F", decoded=False) == "/a%2F"
    assert normalize_path("/a%2F", decoded=True) == "/a%2F"


def test_normalize_path_hostile_input_is_linear() -> None:
    """A 1 MB path and 100,000 slashes or dot segments normalise quickly."""
    start = time.perf_counter()
    assert normalize_path("/" * 100_000) == "/"
    assert normalize_path("/.." * 100_000 + "/x") == "/x"
    assert normalize_path("/a" * 500_000).count("/") == 500_000
    assert normalize_path("%2F" * 300_000) == "/"
    assert time.perf_counter() - start < 1.0


@given(st.text())
def test_normalize_path_properties(path: str) -> None:
    """normalize_path never raises, is idempotent and yields a clean absolute path."""
    once = normalize_path(path)
    assert normalize_path(once, decoded=True) == once
    assert once.startswith("/")
    assert "//" not in once
    assert once == "/" or not once.endswith("/")
    assert not {".", ".."} & set(once.split("/"))


@given(st.text(alphabet="/.%2eEfF6c"))
def test_normalize_path_properties_on_dots_and_escapes(path: str) -> None:
    """Properties hold on inputs made only of slashes, dots and escapes."""
    once = normalize_path(path)
    assert normalize_path(once, decoded=True) == once
    assert "//" not in once
    assert "/./" not in once + "/"
    assert "/../" not in once + "/"


# --- patterns ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "path",
    ["/login", "/LOGIN/", "//login", "/%6Cogin", "/./login", "/api/../login", "/login/../../login"],
)
def test_login_variants_match_the_login_pattern(path: str) -> None:
    """Every spelling of /login meets the rule for /login, case-insensitively."""
    table = PatternTable({"/login": "5/minute", "/api/*": "100/minute"})
    assert table.match(normalize_path(path)) == ("/login", "5/minute")


def test_patterns_are_normalised_when_compiled() -> None:
    """A pattern written `/Login/` is the same route as `/login`."""
    assert PatternTable({"/Login/": 1}).match("/login") == ("/Login/", 1)


def test_placeholder_matches_exactly_one_segment() -> None:
    """`{id}` matches one non-empty segment, never zero or two."""
    table = PatternTable({"/products/{id}": 60})
    assert table.match("/products/42") == ("/products/{id}", 60)
    assert table.match("/Products/ABC") == ("/products/{id}", 60)
    assert table.match("/products") is None
    assert table.match("/products/42/reviews") is None


def test_placeholder_in_the_middle() -> None:
    """`{name}` may be any whole segment."""
    table = PatternTable({"/users/{uid}/orders": 1})
    assert table.match("/users/7/orders") == ("/users/{uid}/orders", 1)
    assert table.match("/users/7/8/orders") is None


def test_star_matches_the_rest_including_nothing() -> None:
    """A trailing `*` matches any number of segments, zero included, on segment boundaries."""
    table = PatternTable({"/webhooks/*": 300})
    for path in ["/webhooks", "/webhooks/stripe", "/webhooks/a/b", "/WEBHOOKS/x"]:
        assert table.match(path) == ("/webhooks/*", 300)
    assert table.match("/webhooksx") is None
    assert table.match("/") is None


def test_root_star_matches_everything() -> None:
    """`/*` matches the root and every path."""
    table = PatternTable({"/*": 1})
    assert table.match("/") == ("/*", 1)
    assert table.match("/a/b\nc") == ("/*", 1)


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("/api/users/me", "/api/users/me"),
        ("/api/users/42", "/api/users/{id}"),
        ("/api/users", "/api/users/*"),
        ("/api/users/42/posts", "/api/users/*"),
        ("/api/orders", "/api/*"),
        ("/a/b/c", "/a/{x}/c"),
        ("/a/b/d", "/a/b/*"),
        ("/x/y", "/x/{b}"),
        ("/other", "/*"),
    ],
)
def test_precedence(path: str, expected: str) -> None:
    """Exact wins, then more literal segments, then more fixed segments, then literals left."""
    patterns = [
        "/*",
        "/api/*",
        "/api/users/*",
        "/api/users/{id}",
        "/api/users/me",
        "/a/b/*",
        "/a/{x}/c",
        "/{a}/y",
        "/x/{b}",
    ]
    table = PatternTable({pattern: pattern for pattern in patterns})
    assert table.match(path) == (expected, expected)


@pytest.mark.parametrize(
    ("pattern", "reason"),
    [
        ("", "starting with '/'"),
        ("login", "starting with '/'"),
        ("/a*b", "whole segment"),
        ("/a/*/b", "last segment"),
        ("/{unclosed", "placeholder must be a whole segment"),
        ("/items/x{id}", "placeholder must be a whole segment"),
        ("/items/{}", "identifier"),
        ("/items/{1d}", "identifier"),
        ("/{id}/{id}", "used twice"),
        ("/" + "a" * 5000, "longer than"),
    ],
)
def test_invalid_patterns_raise_with_a_reason(pattern: str, reason: str) -> None:
    """Bad patterns raise ValueError saying what is wrong."""
    with pytest.raises(ValueError, match=reason):
        validate_pattern(pattern)
    with pytest.raises(ValueError, match=reason):
        PatternTable({pattern: 1})


def test_non_string_pattern_raises_value_error() -> None:
    """A pattern that is not a string raises ValueError, not TypeError."""
    with pytest.raises(ValueError, match="string"):
        validate_pattern(42)  # type: ignore[arg-type]


def test_duplicate_patterns_raise() -> None:
    """Two patterns that normalise alike are refused."""
    with pytest.raises(ValueError, match="same route"):
        PatternTable({"/login": 1, "/LOGIN/": 2})


@pytest.mark.parametrize("pattern", ["/", "/login", "/products/{id}", "/webhooks/*", "/*"])
def test_valid_patterns(pattern: str) -> None:
    """Well-formed patterns pass validation."""
    validate_pattern(pattern)


def test_empty_table() -> None:
    """An empty table is falsy and matches nothing."""
    table: PatternTable[int] = PatternTable({})
    assert not table
    assert len(table) == 0
    assert table.match("/login") is None


def test_len_and_bool() -> None:
    """len counts exact and wildcard patterns alike."""
    table = PatternTable({"/a": 1, "/b/*": 2, "/c/{id}": 3})
    assert table
    assert len(table) == 3


def test_match_normalises_a_raw_path() -> None:
    """A path passed without normalisation still cannot slip past a rule."""
    table = PatternTable({"/login": 1, "/x/*": 2})
    assert table.match("//LOGIN/") == ("/login", 1)
    assert PatternTable({"/login": 1}).match("/a/../login/") == ("/login", 1)


def test_match_cache_is_bounded() -> None:
    """A million-path flood cannot grow the match cache past its cap; long paths still match."""
    table = PatternTable({"/webhooks/*": 1, "/p/{id}": 2})
    for index in range(5000):
        table.match(f"/p/{index}")
    assert table.cached_paths <= 2048
    assert table.match("/webhooks/" + "a" * 10_000) == ("/webhooks/*", 1)


@given(st.text())
def test_match_never_raises(path: str) -> None:
    """Matching arbitrary text returns a match or None."""
    table = PatternTable({"/login": 1, "/p/{id}": 2, "/w/*": 3})
    result = table.match(path)
    assert result is None or result[1] in (1, 2, 3)


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("/login", (None, "/login")),
        ("POST /login", (frozenset({"POST"}), "/login")),
        ("get,Post /search", (frozenset({"GET", "POST"}), "/search")),
        ("  /x  ", (None, "/x")),
    ],
)
def test_split_methods(spec: str, expected: tuple[frozenset[str] | None, str]) -> None:
    """A rule's optional method list is read upper-cased, whatever its case."""
    assert split_methods(spec) == expected


@pytest.mark.parametrize("spec", ["P0ST /login", ", /login", "GET;POST /x"])
def test_split_methods_refuses_bad_method_lists(spec: str) -> None:
    """A method list that is not letters is refused with the rule named."""
    with pytest.raises(ValueError, match="bad method list"):
        split_methods(spec)
