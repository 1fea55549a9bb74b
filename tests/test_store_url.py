"""Redis URLs: every form the SDK takes, and bad ones refused naming the variable."""

from __future__ import annotations

import ssl
from pathlib import Path

import pytest

from launchready_sdk import Settings, SettingsError
from launchready_sdk.store import parse_redis_url, parse_url, redacted


def test_standalone_forms() -> None:
    """Host, port, ACL user, percent-encoded password, database, unix socket."""
    u = parse_url("redis://shop:p%40ss%23%2F%3F@cache.internal:6380/3")
    assert (u.kind, u.hosts, u.username, u.password, u.db) == (
        "standalone", (("cache.internal", 6380),), "shop", "p@ss#/?", 3,
    )  # fmt: skip
    assert u.setup() == [("AUTH", "shop", "p@ss#/?"), ("SELECT", 3)]
    assert parse_url("redis://:pw@h").setup() == [("AUTH", "pw")]
    assert parse_url("redis://[::1]:7000").hosts == (("::1", 7000),)
    sock = parse_url("unix:///run/redis.sock?db=2")
    assert (sock.unix, sock.db) == ("/run/redis.sock", 2)
    t = parse_redis_url("redis://user:p%40ss@cache.internal:6380/3")
    assert t["setup"] == [("AUTH", "user", "p@ss"), ("SELECT", 3)]


def test_tls_defaults_verify_and_options_apply(tmp_path: Path) -> None:
    """rediss:// verifies by default; ssl_cert_reqs=none turns verification off."""
    context = parse_url("rediss://h:6380").ssl_context()
    assert context is not None
    assert context.verify_mode == ssl.CERT_REQUIRED
    assert context.check_hostname
    relaxed = parse_url("rediss://h:6380?ssl_cert_reqs=none").ssl_context()
    assert relaxed is not None
    assert relaxed.verify_mode == ssl.CERT_NONE
    assert not relaxed.check_hostname


def test_sentinel_and_cluster_forms() -> None:
    """Sentinels with their service and database; cluster seed nodes."""
    s = parse_url("redis+sentinel://:pw@s1:26379,s2/mymaster/2?sentinel_password=sp")
    assert s.kind == "sentinel"
    assert s.hosts == (("s1", 26379), ("s2", 26379))
    assert (s.service, s.db, s.password, s.sentinel_password) == ("mymaster", 2, "pw", "sp")
    c = parse_url("redis+cluster://n1:7000,n2:7001")
    assert (c.kind, c.hosts) == ("cluster", (("n1", 7000), ("n2", 7001)))


BAD = [
    ("http://h:6379", "unknown scheme"),
    ("redis://h:notaport", "not a number"),
    ("redis://h:99999", "out of range"),
    ("redis://h/abc", "not a number"),
    ("redis://h?ssl_cert_reqs=none", "needs TLS"),
    ("rediss://h?ssl_cert_reqs=maybe", "required, optional or none"),
    ("rediss://h?ssl_ca_certs=/nonexistent/ca.pem", "no such file"),
    ("redis://h?timeout=5", "unknown option"),
    ("redis://h1,h2", "one host"),
    ("redis+sentinel://s1:26379", "names its service"),
    ("redis+sentinel://s1:26379/", "names its service"),
    ("redis+cluster://n1:7000/3", "only database 0"),
    ("redis://:pa#ss@h:6379", "%23"),
    ("redis://:pa/ss@h:6379/0", "percent-encoded"),
    ("redis://", "no host"),
    ("redis://hunter2secret@h:6379/0", "without a ':'"),
    ("unix://relative.sock", "absolute"),
]


@pytest.mark.parametrize(("url", "message"), BAD)
def test_bad_urls_are_refused(url: str, message: str) -> None:
    """Each malformed URL raises ValueError saying what is wrong."""
    with pytest.raises(ValueError, match=message):
        parse_url(url)


@pytest.mark.parametrize(("url", "message"), BAD)
def test_bad_urls_name_the_variable_and_never_the_password(url: str, message: str) -> None:
    """From the environment, the SettingsError names LAUNCHREADY_REDIS_URL, not the password."""
    url = url.replace("//", "//:hunter2secret@", 1) if "@" not in url else url
    with pytest.raises(SettingsError) as info:
        Settings.from_env({"LAUNCHREADY_REDIS_URL": url})
    assert "LAUNCHREADY_REDIS_URL" in str(info.value)
    assert "hunter2secret" not in str(info.value)
    assert "pa#ss" not in str(info.value)
    assert "pa/ss" not in str(info.value)


def test_good_urls_are_accepted_by_settings() -> None:
    """The DESIGN forms pass the settings check unchanged."""
    for url in (
        "redis://127.0.0.1:6379/0",
        "rediss://:pw@h:6380/0?ssl_cert_reqs=none",
        "redis+sentinel://:pw@s1:26379,s2:26380/mymaster/0",
        "redis+cluster://n1:7000,n2:7001",
        "unix:///run/redis.sock?db=1",
    ):
        assert Settings(redis_url=url).redis_url == url


def test_redacted_hides_passwords() -> None:
    """The password and a sentinel password never appear in the redacted URL."""
    shown = redacted("redis+sentinel://u:secret@s1/m?sentinel_password=also")
    assert "secret" not in shown
    assert "also" not in shown
    assert shown.startswith("redis+sentinel://u:***@s1")


def test_unreadable_tls_files_name_the_variable(tmp_path: Path) -> None:
    """A CA file that is not PEM, or a key without its certificate, is a SettingsError."""
    garbage = tmp_path / "ca.pem"
    garbage.write_text("not a certificate")
    for query in (f"ssl_ca_certs={garbage}", f"ssl_keyfile={garbage}"):
        with pytest.raises(SettingsError, match="LAUNCHREADY_REDIS_URL"):
            Settings.from_env({"LAUNCHREADY_REDIS_URL": f"rediss://:pw@h:6380/0?{query}"})
