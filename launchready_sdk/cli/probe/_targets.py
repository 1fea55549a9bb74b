"""What the probe checks: URLs from the command line and a TOML file of targets.

    [[target]]
    name = "login"                       # how logs and alerts name it (default: the URL)
    url = "https://shop.example/login"
    method = "GET"                       # GET (default), HEAD, POST, PUT, PATCH, DELETE, OPTIONS
    status = 200                         # or [200, 204]; default: any status below 400
    text = "Sign in"                     # must appear in the first 1 MiB of the body
    max_latency_ms = 2000                # slower counts as a failure
    headers = { Authorization = "Bearer ${PROBE_TOKEN}" }
    body = "..."                         # sent with POST/PUT/PATCH
    follow_redirects = true              # up to 5; false: a 3xx is the answer

`${NAME}` in `url`, `headers` and `body` is replaced by the environment variable NAME when the
file is read (a missing variable is an error). Logs and alerts show the URL as written, so a
token kept in the environment never reaches them.

Security stance: every URL is checked before the first request (http or https, a host, a
valid port, no whitespace or control characters); duplicate names, and two targets sending the
same request, are refused. Header values are never logged.

Limits, candidly: one file, no includes; `${NAME}` is the only substitution.
"""

from __future__ import annotations

import dataclasses
import os
import re
import tomllib
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx

from launchready_sdk.cli.tomlpos import find_line
from launchready_sdk.redaction import redact

METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")
MAX_URL_LENGTH = 2048
_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
_HEADER_NAME = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+\Z")
_KEYS = frozenset(
    (
        "name",
        "url",
        "method",
        "status",
        "text",
        "max_latency_ms",
        "headers",
        "body",
        "follow_redirects",
    )
)


class ConfigError(ValueError):
    """A target, a channel or an option is malformed; the message says where and how to fix it."""


@dataclasses.dataclass(frozen=True)
class Target:
    """One thing to check. `url` is as written; `request_url` has `${NAME}`s replaced."""

    name: str
    url: str
    request_url: str
    method: str = "GET"
    status: tuple[int, ...] = ()
    text: str | None = None
    max_latency_ms: float | None = None
    headers: tuple[tuple[str, str], ...] = ()
    body: bytes | None = None
    follow_redirects: bool = True

    def accepts(self, status: int) -> bool:
        """Whether `status` counts as up."""
        return status in self.status if self.status else status < 400


def check_url(text: str, what: str = "URL") -> str:
    """`text` if it is an absolute http(s) URL with a host; else `ConfigError` saying why."""
    if not isinstance(text, str) or not text:
        raise ConfigError(f"{what}: expected an http:// or https:// URL")
    if len(text) > MAX_URL_LENGTH:
        raise ConfigError(f"{what}: longer than {MAX_URL_LENGTH} characters")
    if any(c.isspace() or ord(c) < 32 or ord(c) == 127 for c in text):
        raise ConfigError(f"{what} {_shown(text)}: contains whitespace or control characters")
    parts = urlsplit(text)
    if parts.scheme not in ("http", "https"):
        raise ConfigError(
            f"{what} {_shown(text)}: the scheme must be http or https "
            "(for example https://shop.example/healthz)"
        )
    try:
        port = parts.port
        url = httpx.URL(text)
    except (ValueError, httpx.InvalidURL) as exc:
        raise ConfigError(f"{what} {_shown(text)}: {exc}") from None
    if not parts.hostname or not url.host:
        raise ConfigError(f"{what} {_shown(text)}: no host (for example https://shop.example/)")
    if port == 0:
        raise ConfigError(f"{what} {_shown(text)}: port 0 cannot be reached")
    return text


def _shown(url: str) -> str:
    """`url` for an error message, redacted (a query or a password may hold a token)."""
    return repr(str(redact(url)))


def expand(text: str, environ: Mapping[str, str], where: str) -> str:
    """`text` with every `${NAME}` replaced by the variable's value."""

    def value(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in environ:
            raise ConfigError(f"{where}: ${{{name}}} is not set in the environment")
        return environ[name]

    return _VAR.sub(value, text)


def from_urls(urls: Sequence[str], environ: Mapping[str, str] | None = None) -> list[Target]:
    """Targets for URLs given on the command line (each named by its URL)."""
    env = os.environ if environ is None else environ
    targets = []
    for url in urls:
        real = check_url(expand(url, env, f"URL {url!r}"))
        targets.append(Target(name=url, url=url, request_url=real))
    return targets


def load_targets(path: Path, environ: Mapping[str, str] | None = None) -> list[Target]:
    """The targets of a TOML file; `ConfigError` naming the file, line and key."""
    env = os.environ if environ is None else environ
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read it ({exc.strerror or exc})") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not UTF-8 text") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    extra = sorted(set(data) - {"target"})
    if extra:
        line = find_line(text, (), extra[0])
        raise ConfigError(f"{_at(path, line)}: unknown key {extra[0]!r}; targets go in [[target]]")
    tables = data.get("target", [])
    if not isinstance(tables, list) or not tables or not all(isinstance(t, dict) for t in tables):
        raise ConfigError(f"{path}: no [[target]] tables (each needs at least url = ...)")
    return [_target(tables[i], i, path, text, env) for i in range(len(tables))]


def _at(path: Path, line: int | None) -> str:
    return f"{path}:{line}" if line else str(path)


def _target(table: Any, index: int, path: Path, text: str, env: Mapping[str, str]) -> Target:
    def fail(key: str, problem: str) -> ConfigError:
        line = find_line(text, ("target", index), key)
        return ConfigError(f"{_at(path, line)}: target {index + 1}, {key}: {problem}")

    unknown = sorted(set(table) - _KEYS)
    if unknown:
        hint = ", ".join(sorted(_KEYS))
        raise fail(unknown[0], f"unknown key (known keys: {hint})")
    url = table.get("url")
    if not isinstance(url, str):
        raise fail("url", "required, a string such as https://shop.example/healthz")
    try:
        request_url = check_url(expand(url, env, "url"))
    except ConfigError as exc:
        raise fail("url", str(exc)) from None
    name = table.get("name", url)
    if not isinstance(name, str) or not name.strip() or len(name) > 200:
        raise fail("name", "a non-empty string of at most 200 characters")
    method = table.get("method", "GET")
    if not isinstance(method, str) or method.upper() not in METHODS:
        raise fail("method", f"one of {', '.join(METHODS)}")
    status = table.get("status", [])
    statuses = [status] if isinstance(status, int) else status
    if not isinstance(statuses, list) or not all(
        isinstance(s, int) and not isinstance(s, bool) and 100 <= s <= 599 for s in statuses
    ):
        raise fail("status", "an HTTP status (100-599) or a list of them, e.g. [200, 204]")
    expected = table.get("text")
    if expected is not None and (not isinstance(expected, str) or not expected):
        raise fail("text", "a non-empty string to find in the body")
    limit = table.get("max_latency_ms")
    if limit is not None and (
        isinstance(limit, bool) or not isinstance(limit, int | float) or limit <= 0
    ):
        raise fail("max_latency_ms", "a positive number of milliseconds")
    body = table.get("body")
    if body is not None and not isinstance(body, str):
        raise fail("body", "a string")
    follow = table.get("follow_redirects", True)
    if not isinstance(follow, bool):
        raise fail("follow_redirects", "true or false")
    try:
        headers = _headers(table.get("headers", {}), env)
        body_bytes = expand(body, env, "body").encode() if body is not None else None
    except ConfigError as exc:
        raise fail("headers" if "header" in str(exc) else "body", str(exc)) from None
    return Target(
        name=name.strip(),
        url=url,
        request_url=request_url,
        method=method.upper(),
        status=tuple(statuses),
        text=expected,
        max_latency_ms=float(limit) if limit is not None else None,
        headers=headers,
        body=body_bytes,
        follow_redirects=follow,
    )


def _headers(value: Any, env: Mapping[str, str]) -> tuple[tuple[str, str], ...]:
    if not isinstance(value, dict):
        raise ConfigError('headers must be a table, e.g. { Authorization = "Bearer ${TOKEN}" }')
    out = []
    for key, raw in value.items():
        if not _HEADER_NAME.match(key):
            raise ConfigError(f"header name {key!r} is not a valid HTTP header name")
        if not isinstance(raw, str):
            raise ConfigError(f"header {key!r} must be a string")
        real = expand(raw, env, f"header {key!r}")
        if any(c in real for c in "\r\n\0"):
            raise ConfigError(f"header {key!r} contains a line break or NUL")
        out.append((key, real))
    return tuple(out)


def check_unique(targets: Sequence[Target]) -> None:
    """`ConfigError` when two targets share a name or send the same request."""
    names: dict[str, Target] = {}
    requests: dict[tuple[str, str, bytes | None], Target] = {}
    for target in targets:
        if target.name in names:
            raise ConfigError(
                f"two targets are named {target.name!r}; give each a distinct name "
                "(a URL given twice counts too)"
            )
        names[target.name] = target
        request = (target.method, str(httpx.URL(target.request_url)), target.body)
        if request in requests:
            raise ConfigError(
                f"targets {requests[request].name!r} and {target.name!r} send the same "
                f"request ({target.method} {_shown(target.url)}); keep one"
            )
        requests[request] = target
