"""Redis URLs: the forms the SDK takes, checked once, with the password never in a message.

    redis://[[user]:password@]host[:port][/db]
    rediss://...?ssl_cert_reqs=required|optional|none&ssl_ca_certs=PATH
                 &ssl_certfile=PATH&ssl_keyfile=PATH&ssl_check_hostname=true|false
    unix:///path/to/redis.sock[?db=N]
    redis+sentinel://[[user]:password@]host:port[,host:port...]/service_name[/db]
    redis+cluster://[[user]:password@]host:port[,host:port...]

`rediss+sentinel://` and `rediss+cluster://` are the same over TLS. The TLS options carry
redis-py's names; the default verifies the server's certificate and host name against the
system's CAs (or `ssl_ca_certs`). A Sentinel deployment whose sentinels need their own
credentials names them with `sentinel_username` and `sentinel_password`; the URL's user and
password are those of the Redis servers. Special characters in a password are
percent-encoded (`@` as `%40`, `#` as `%23`, `/` as `%2F`, `?` as `%3F`).

`parse_url` raises `ValueError` with a message that names what is wrong and never includes
the password; `settings` turns it into a `SettingsError` naming the variable.
"""

from __future__ import annotations

import dataclasses
import os
import ssl
import urllib.parse
from typing import Any, Literal

Kind = Literal["standalone", "sentinel", "cluster"]
_SCHEMES: dict[str, tuple[Kind, bool]] = {
    "redis": ("standalone", False),
    "rediss": ("standalone", True),
    "unix": ("standalone", False),
    "redis+sentinel": ("sentinel", False),
    "rediss+sentinel": ("sentinel", True),
    "redis+cluster": ("cluster", False),
    "rediss+cluster": ("cluster", True),
}
_TLS_OPTIONS = (
    "ssl_cert_reqs",
    "ssl_ca_certs",
    "ssl_certfile",
    "ssl_keyfile",
    "ssl_check_hostname",
)
_OPTIONS = {
    "standalone": (*_TLS_OPTIONS,),
    "sentinel": (*_TLS_OPTIONS, "sentinel_username", "sentinel_password"),
    "cluster": (*_TLS_OPTIONS,),
}
_CERT_REQS = {"required": ssl.CERT_REQUIRED, "optional": ssl.CERT_OPTIONAL, "none": ssl.CERT_NONE}
DEFAULT_PORT = 6379
DEFAULT_SENTINEL_PORT = 26379
EXAMPLES = {
    "standalone": "redis://127.0.0.1:6379/0",
    "sentinel": "redis+sentinel://:password@sentinel-1:26379,sentinel-2:26379/mymaster/0",
    "cluster": "redis+cluster://:password@node-1:6379,node-2:6379",
}


@dataclasses.dataclass(frozen=True)
class RedisURL:
    """A parsed Redis URL (see the module doc for the forms)."""

    kind: Kind
    hosts: tuple[tuple[str, int], ...]  # the server; the sentinels; the cluster's seed nodes
    unix: str | None = None
    username: str | None = dataclasses.field(default=None, repr=False)
    password: str | None = dataclasses.field(default=None, repr=False)
    db: int = 0
    tls: bool = False
    cert_reqs: str = "required"
    ca_certs: str | None = None
    certfile: str | None = None
    keyfile: str | None = None
    check_hostname: bool = True
    service: str | None = None  # the Sentinel master's name
    sentinel_username: str | None = dataclasses.field(default=None, repr=False)
    sentinel_password: str | None = dataclasses.field(default=None, repr=False)

    def ssl_context(self) -> ssl.SSLContext | None:
        """The TLS context the options describe, or None without TLS (files are read now)."""
        if not self.tls:
            return None
        context = ssl.create_default_context(cafile=self.ca_certs)
        context.check_hostname = self.check_hostname and self.cert_reqs != "none"
        context.verify_mode = _CERT_REQS[self.cert_reqs]
        if self.certfile:
            context.load_cert_chain(self.certfile, self.keyfile)
        return context

    def setup(self) -> list[tuple[str | int, ...]]:
        """The commands a new connection sends first: AUTH (ACL user or password), SELECT."""
        commands: list[tuple[str | int, ...]] = []
        if self.password is not None:
            if self.username:
                commands.append(("AUTH", self.username, self.password))
            else:
                commands.append(("AUTH", self.password))
        if self.db:
            commands.append(("SELECT", self.db))
        return commands

    def connection(self) -> dict[str, Any]:
        """What `RespClient` connects with: host, port, unix path, TLS context, setup."""
        host, port = self.hosts[0] if self.hosts else ("127.0.0.1", DEFAULT_PORT)
        return {
            "unix": self.unix,
            "host": host,
            "port": port,
            "ssl": self.ssl_context(),
            "setup": self.setup(),
        }


def parse_url(url: str) -> RedisURL:
    """Parse and check a Redis URL; `ValueError` says what is wrong (never the password)."""
    if not isinstance(url, str) or "://" not in url:
        raise ValueError("expected a URL such as redis://host:6379/0")
    scheme = url.split("://", 1)[0].lower()
    if scheme not in _SCHEMES:
        known = ", ".join(f"{s}://" for s in _SCHEMES)
        raise ValueError(f"unknown scheme {scheme!r}: expected one of {known}")
    kind, tls = _SCHEMES[scheme]
    rest = url.split("://", 1)[1]
    if "#" in rest:
        raise ValueError("the URL holds a '#': percent-encode it in a password as %23")
    rest, _, query = rest.partition("?")
    netloc, _, path = rest.partition("/")
    userinfo, at, hostlist = netloc.rpartition("@")
    username, password = _credentials(userinfo) if at else (None, None)
    options = _options(query, kind)
    if scheme == "unix":
        return _unix(url, username, password, options)
    hosts = _hosts(hostlist, DEFAULT_SENTINEL_PORT if kind == "sentinel" else DEFAULT_PORT)
    if kind == "standalone" and len(hosts) != 1:
        raise ValueError("a redis:// URL names one host; for several use redis+sentinel:// or "
                         "redis+cluster://")  # fmt: skip
    service: str | None = None
    segments = [urllib.parse.unquote(s) for s in path.split("/")] if path else []
    if kind == "sentinel":
        if not segments or not segments[0]:
            raise ValueError("a redis+sentinel:// URL names its service: .../mymaster[/db]")
        service, segments = segments[0], segments[1:]
    db = _db(segments, kind)
    tls_options = _tls(options, tls)
    parsed = RedisURL(
        kind=kind,
        hosts=hosts,
        username=username,
        password=password,
        db=db,
        tls=tls,
        service=service,
        sentinel_username=options.get("sentinel_username"),
        sentinel_password=options.get("sentinel_password"),
        **tls_options,
    )
    try:
        parsed.ssl_context()
    except (OSError, ssl.SSLError) as exc:
        raise ValueError(f"the TLS files cannot be used: {type(exc).__name__}: {exc}") from None
    return parsed


def redacted(url: str) -> str:
    """The URL with any password replaced by `***` (for messages and logs).

    Everything up to the last `@` is taken for credentials, so a password with an unencoded
    `/`, `?` or `#` is hidden too."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        return "<not a URL>"
    userinfo, at, rest = rest.rpartition("@")
    if at:
        user, colon, _ = userinfo.partition(":")
        shown_user = user if colon and "/" not in user and "?" not in user else ""
        rest = f"{shown_user}:***@{rest}" if shown_user else f"***@{rest}"
    head, q, query = rest.partition("?")
    if q:
        parts = [
            "sentinel_password=***" if p.lower().startswith("sentinel_password=") else p
            for p in query.split("&")
        ]
        rest = head + "?" + "&".join(parts)
    return f"{scheme}://{rest}"


def _credentials(userinfo: str) -> tuple[str | None, str | None]:
    user, colon, password = userinfo.partition(":")
    if not colon:  # `redis://name@host`: a user with no password, or a password without `:`?
        raise ValueError(
            "credentials without a ':': write redis://:PASSWORD@host for a password alone, "
            "or redis://USER:PASSWORD@host for an ACL user"
        )
    return (urllib.parse.unquote(user) or None), urllib.parse.unquote(password)


def _options(query: str, kind: Kind) -> dict[str, str]:
    options: dict[str, str] = {}
    for name, value in urllib.parse.parse_qsl(query, keep_blank_values=True):
        if name not in _OPTIONS[kind] and name != "db":
            allowed = ", ".join(_OPTIONS[kind])
            raise ValueError(f"unknown option {name!r} in the URL (known: {allowed})")
        if name in options:
            raise ValueError(f"option {name!r} given twice")
        options[name] = value
    return options


def _unix(
    url: str, username: str | None, password: str | None, options: dict[str, str]
) -> RedisURL:
    path = urllib.parse.unquote(urllib.parse.urlsplit(url).path)
    if not path.startswith("/"):
        raise ValueError("a unix:// URL names an absolute socket path: unix:///run/redis.sock")
    db = _db([options.pop("db")] if "db" in options else [], "standalone")
    if any(name.startswith("ssl_") for name in options):
        raise ValueError("TLS options do not apply to a unix socket")
    return RedisURL(kind="standalone", hosts=(), unix=path, username=username,
                    password=password, db=db)  # fmt: skip


def _hosts(hostlist: str, default_port: int) -> tuple[tuple[str, int], ...]:
    hosts: list[tuple[str, int]] = []
    for item in hostlist.split(","):
        item = item.strip()
        if not item:
            raise ValueError("the URL names no host (or an empty one between commas)")
        if item.startswith("["):  # [::1]:6379
            host, _, port_text = item[1:].partition("]")
            port_text = port_text.removeprefix(":")
        elif item.count(":") > 1:
            raise ValueError(f"write an IPv6 address in brackets: [{item}]")
        else:
            host, _, port_text = item.partition(":")
        if not host or any(c in host for c in " /\\@"):
            raise ValueError(
                f"{host!r} is not a host name (is a '/', '?' or '#' of the password not "
                "percent-encoded?)"
            )
        try:
            port = int(port_text) if port_text else default_port
        except ValueError:
            raise ValueError(
                f"port {port_text!r} is not a number (is a ':' or '@' of the password not "
                "percent-encoded?)"
            ) from None
        if not 0 < port < 65536:
            raise ValueError(f"port {port} is out of range")
        hosts.append((host, port))
    return tuple(hosts)


def _db(segments: list[str], kind: Kind) -> int:
    segments = [s for s in segments if s != ""]
    if len(segments) > 1:
        raise ValueError("the URL's path has more parts than a database number")
    if not segments:
        return 0
    try:
        db = int(segments[0])
    except ValueError:
        raise ValueError(f"database {segments[0]!r} is not a number") from None
    if db < 0:
        raise ValueError(f"database {db} is negative")
    if kind == "cluster" and db:
        raise ValueError("a Redis Cluster has only database 0")
    return db


def _tls(options: dict[str, str], tls: bool) -> dict[str, Any]:
    given = [name for name in _TLS_OPTIONS if name in options]
    if given and not tls:
        raise ValueError(f"{given[0]} needs TLS: use rediss:// (or rediss+sentinel://, ...)")
    out: dict[str, Any] = {}
    reqs = options.get("ssl_cert_reqs", "required").lower()
    if reqs not in _CERT_REQS:
        raise ValueError(f"ssl_cert_reqs must be required, optional or none, not {reqs!r}")
    out["cert_reqs"] = reqs
    for name, key in (("ssl_ca_certs", "ca_certs"), ("ssl_certfile", "certfile"),
                      ("ssl_keyfile", "keyfile")):  # fmt: skip
        if name in options:
            path = options[name]
            if not path or not os.path.isfile(path):
                raise ValueError(f"{name}: no such file {path!r}")
            out[key] = path
    if "ssl_keyfile" in options and "ssl_certfile" not in options:
        raise ValueError("ssl_keyfile needs ssl_certfile")
    check = options.get("ssl_check_hostname", "true").lower()
    if check not in ("true", "false", "1", "0", "yes", "no"):
        raise ValueError(f"ssl_check_hostname must be true or false, not {check!r}")
    out["check_hostname"] = check in ("true", "1", "yes")
    return out
