"""Content-Security-Policy: a policy checked once at start-up, rendered per request from
precomputed variants, and the request's nonce.

A policy is written as the header is (`"default-src 'self'; img-src 'self' data:"`) or as a
mapping of directive to sources (`{"default-src": "'self'", "img-src": ["'self'", "data:"]}`).
`'nonce-{nonce}'` among a directive's sources stands for the request's nonce: the header
carries it only when the response read it (a template called `csp_nonce(request)`); otherwise
the source is dropped, so pages without inline scripts send the same header every time.

Security stance: everything that would make a browser ignore a policy, or part of it, is a
`ValueError` at start-up: an unknown directive, a directive given twice (browsers ignore the
second), a keyword without its quotes (`self` is a host named "self"), a quoted word that is
no keyword, `'none'` beside other sources, `;` or `,` inside a value (a `,` starts a second
policy), characters outside printable ASCII (header injection), a fixed `'nonce-...'` (a nonce
that never changes protects nothing), and a policy without `default-src`. The nonce is 128
random bits from `secrets`, made only when read.

Limits, candidly: sources are checked for shape, not meaning; a policy that allows
`'unsafe-inline'` or `https:` everywhere is accepted, as the browser would accept it.
"""

from __future__ import annotations

import base64
import binascii
import difflib
import re
import secrets
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

__all__ = ["SCOPE_CSP_NONCE", "CspNonce", "Policy", "check_policy", "csp_nonce", "parse_policy"]

SCOPE_CSP_NONCE = "launchready.csp_nonce"
NONCE_SOURCE = "'nonce-{nonce}'"
FETCH_DIRECTIVES = frozenset(
    {
        "default-src",
        "child-src",
        "connect-src",
        "fenced-frame-src",
        "font-src",
        "frame-src",
        "img-src",
        "manifest-src",
        "media-src",
        "object-src",
        "prefetch-src",
        "script-src",
        "script-src-attr",
        "script-src-elem",
        "style-src",
        "style-src-attr",
        "style-src-elem",
        "worker-src",
        # Document and navigation directives take source lists too.
        "base-uri",
        "form-action",
        "frame-ancestors",
    }
)
_FLAGS = frozenset({"upgrade-insecure-requests", "block-all-mixed-content"})
_OTHERS = frozenset(
    {"sandbox", "report-uri", "report-to", "require-trusted-types-for", "trusted-types", "webrtc"}
)
DIRECTIVES = FETCH_DIRECTIVES | _FLAGS | _OTHERS
KEYWORDS = frozenset(
    {
        "'self'",
        "'none'",
        "'unsafe-inline'",
        "'unsafe-eval'",
        "'unsafe-hashes'",
        "'strict-dynamic'",
        "'report-sample'",
        "'wasm-unsafe-eval'",
        "'inline-speculation-rules'",
        "'trusted-types-eval'",
        "'report-sha256'",
        "'report-sha384'",
        "'report-sha512'",
    }
)
_BARE_KEYWORDS = frozenset(k.strip("'") for k in KEYWORDS)
_HASH = re.compile(r"'(sha256|sha384|sha512)-([A-Za-z0-9+/_-]+={0,2})'")
_HASH_BYTES = {"sha256": 32, "sha384": 48, "sha512": 64}
_SCHEME_SOURCE = re.compile(r"[a-z][a-z0-9+.-]*:")
_HOST_SOURCE = re.compile(
    r"(?:[a-z][a-z0-9+.-]*://)?"  # scheme
    r"(?:\*|(?:\*\.)?[a-z0-9-]+(?:\.[a-z0-9-]+)*|\[[0-9a-f:.]+\])"  # host
    r"(?::(?:[0-9]{1,5}|\*))?"  # port
    r"(?:/[A-Za-z0-9._~!$&'()*+=:@%/-]*)?",  # path (no ';' or ',')
    re.IGNORECASE,
)
_TOKEN = re.compile(r"[A-Za-z0-9_.-]+")
_PRINTABLE = re.compile(r"[\x21-\x7e]+")


class Policy:
    """A checked policy: its directives in order, and the header values it renders to.

    `value(secure, frame, nonce)` is the header value: without `upgrade-insecure-requests`
    unless `secure` (the request came over HTTPS) and the policy enforces; with
    `frame-ancestors` replaced by `frame` when given (an app's own X-Frame-Options); with the
    request's nonce where the policy names it, or without those sources when `nonce` is None.
    Every value without a nonce is rendered once, here.
    """

    def __init__(self, directives: Sequence[tuple[str, tuple[str, ...]]], *, report_only: bool):
        self.directives = tuple(directives)
        self.report_only = report_only
        self.uses_nonce = any(NONCE_SOURCE in sources for _, sources in self.directives)
        self.frames = "frame-ancestors" in dict(self.directives)
        self._values: dict[tuple[bool, str | None], bytes] = {}
        self._templates: dict[tuple[bool, str | None], tuple[bytes, ...]] = {}
        for secure in (False, True):
            for frame in (None, "'self'", "'none'"):
                self._values[secure, frame] = self._render(secure, frame, None).encode()
                if self.uses_nonce:
                    parts = self._render(secure, frame, "\x00").split("\x00")
                    self._templates[secure, frame] = tuple(p.encode() for p in parts)

    def __str__(self) -> str:
        return render(self.directives)

    def value(self, secure: bool, frame: str | None = None, nonce: str | None = None) -> bytes:
        """The header value for one response (see the class docstring)."""
        key = (secure, frame)
        if key not in self._values:  # an app's `ALLOW-FROM origin`: rare, rendered here
            return self._render(secure, frame, nonce).encode()
        if nonce is None:
            return self._values[key]
        return nonce.encode().join(self._templates[key])

    def _render(self, secure: bool, frame: str | None, nonce: str | None) -> str:
        out: list[tuple[str, tuple[str, ...]]] = []
        for name, sources in self.directives:
            if name == "upgrade-insecure-requests" and (not secure or self.report_only):
                continue
            if name == "frame-ancestors" and frame is not None:
                sources = (frame,)
            if NONCE_SOURCE in sources:
                if nonce is None:
                    sources = tuple(s for s in sources if s != NONCE_SOURCE) or ("'none'",)
                else:
                    sources = tuple(f"'nonce-{nonce}'" if s == NONCE_SOURCE else s for s in sources)
            out.append((name, sources))
        return render(out)


def render(directives: Iterable[tuple[str, Sequence[str]]]) -> str:
    """`name source source; name ...`, the header's form."""
    return "; ".join(" ".join((name, *sources)) for name, sources in directives)


def check_policy(policy: str | Mapping[str, Any] | None) -> str:
    """The policy in its canonical header form ("" for none); ValueError saying what is wrong."""
    if policy is None:
        return ""
    if isinstance(policy, str) and not policy.strip():
        return ""
    return render(parse_policy(policy))


def parse_policy(policy: str | Mapping[str, Any]) -> list[tuple[str, tuple[str, ...]]]:
    """Directives of a policy written as a header value or a mapping, checked.

    Raises:
        ValueError: naming the directive or source at fault and how to write it.
    """
    if isinstance(policy, str):
        pairs = _split_header(policy)
    elif isinstance(policy, Mapping):
        pairs = [(_name(key), _values(key, value)) for key, value in policy.items()]
    else:
        raise ValueError(f"a policy is a string or a mapping of directives, got {policy!r}")
    seen: set[str] = set()
    directives: list[tuple[str, tuple[str, ...]]] = []
    for name, sources in pairs:
        _check_directive(name, sources)
        if name in seen:
            raise ValueError(
                f"{name} is given twice; browsers ignore the second: merge their sources"
            )
        seen.add(name)
        directives.append((name, tuple(sources)))
    if "default-src" not in seen:
        raise ValueError(
            "the policy has no default-src, so everything it does not name is allowed; "
            "start it with default-src 'self' (or 'none')"
        )
    return directives


def _split_header(text: str) -> list[tuple[str, list[str]]]:
    if not text.isascii() or any((ord(c) < 0x20 and c != "\t") or ord(c) == 0x7F for c in text):
        raise ValueError(
            "the policy holds control or non-ASCII characters (a line break would end the "
            "header); write it on one line, IDNA hosts as xn--..."
        )
    if "," in text:
        raise ValueError(
            "a ',' in a Content-Security-Policy starts a second policy; "
            "separate directives with ';' and send one policy"
        )
    pairs = []
    for part in text.split(";"):
        words = part.split()
        if words:
            pairs.append((_name(words[0]), words[1:]))
    if not pairs:
        raise ValueError("the policy names no directive")
    return pairs


def _name(raw: object) -> str:
    if not isinstance(raw, str):
        raise ValueError(f"a directive name is a string, got {raw!r}")
    name = raw.strip().lower().replace("_", "-")
    if name not in DIRECTIVES:
        close = difflib.get_close_matches(name, sorted(DIRECTIVES), n=1)
        hint = f" (did you mean {close[0]}?)" if close else ""
        raise ValueError(f"unknown directive {raw!r}{hint}")
    return name


def _values(name: object, value: object) -> list[str]:
    """The sources of a mapping entry: one string of space-separated sources, or a list."""
    items: list[object]
    if isinstance(value, str):
        items = list(value.split())
    elif isinstance(value, Sequence) and not isinstance(value, bytes | bytearray):
        items = list(value)
    elif value is True or value is None:
        items = []
    else:
        raise ValueError(f"{name}: sources are a string or a list of strings, got {value!r}")
    for item in items:
        if not isinstance(item, str):
            raise ValueError(f"{name}: a source must be a string, got {item!r}")
        if ";" in item or "," in item:
            raise ValueError(
                f"{name}: {item!r} holds a ';' or ',', which would end the directive or "
                "the policy; give each source as its own item"
            )
    return [str(item) for item in items]


def _check_directive(name: str, sources: Sequence[str]) -> None:
    for source in sources:
        if not _PRINTABLE.fullmatch(source):
            raise ValueError(
                f"{name}: {source!r} holds spaces, control or non-ASCII characters; "
                "sources are printable ASCII (IDNA hosts as xn--...)"
            )
    if name in _FLAGS:
        if sources:
            raise ValueError(f"{name} takes no value, got {' '.join(sources)!r}")
        return
    if name in FETCH_DIRECTIVES:
        _check_sources(name, sources)
    elif name == "sandbox":
        for token in sources:
            if not re.fullmatch(r"allow-[a-z-]+", token):
                raise ValueError(f"sandbox: {token!r} is not a sandbox flag such as allow-forms")
    elif name == "report-to":
        if len(sources) != 1 or not _TOKEN.fullmatch(sources[0]):
            raise ValueError("report-to takes one endpoint name, such as report-to csp")
    elif name == "report-uri":
        if not sources:
            raise ValueError("report-uri needs a URL, such as report-uri /csp-reports")
    elif not sources and name != "trusted-types":
        raise ValueError(f"{name} needs a value")


def _check_sources(name: str, sources: Sequence[str]) -> None:
    if not sources:
        raise ValueError(f"{name} lists no source; write {name} 'none' to allow nothing")
    if "'none'" in sources and len(sources) > 1:
        raise ValueError(f"{name}: 'none' with other sources is ignored; keep one or the other")
    for source in sources:
        _check_source(name, source)


def _check_source(name: str, source: str) -> None:
    lowered = source.lower()
    if source.startswith("'"):
        if lowered in KEYWORDS or source == NONCE_SOURCE:
            return
        if lowered.startswith("'nonce-"):
            raise ValueError(
                f"{name}: a fixed nonce {source!r} never changes, so it protects nothing; "
                f"write {NONCE_SOURCE} for the request's own nonce"
            )
        if _valid_hash(source):
            return
        raise ValueError(
            f"{name}: {source!r} is no CSP keyword; quoted words are 'self', 'none', "
            "'unsafe-inline', 'strict-dynamic', ..., 'sha256-<base64>' or " + NONCE_SOURCE
        )
    if lowered in _BARE_KEYWORDS or lowered.startswith(("nonce-", "sha256-", "sha384-", "sha512-")):
        raise ValueError(
            f"{name}: {source!r} must be quoted ('{source}'); unquoted, it names a host"
        )
    if "{" in source or "}" in source:
        raise ValueError(f"{name}: {source!r}: the request's nonce is written {NONCE_SOURCE}")
    if not (_SCHEME_SOURCE.fullmatch(lowered) or _HOST_SOURCE.fullmatch(source)):
        raise ValueError(
            f"{name}: {source!r} is not a source: expected a host (cdn.example.com, "
            "*.example.com, https://cdn.example.com:443/path), a scheme (https:, data:) "
            "or a quoted keyword"
        )


def _valid_hash(source: str) -> bool:
    found = _HASH.fullmatch(source)
    if found is None:
        return False
    digest = found[2].replace("-", "+").replace("_", "/")
    try:
        raw = base64.b64decode(digest + "=" * (-len(digest) % 4), validate=True)
    except (binascii.Error, ValueError):
        return False
    return len(raw) == _HASH_BYTES[found[1]]


class CspNonce:
    """The request's CSP nonce: 128 random bits, made the first time it is read.

    `str(nonce)` gives the value (base64url, safe in HTML attributes); `used` tells whether a
    template read it, and so whether the header must carry it.
    """

    __slots__ = ("_value",)

    def __init__(self) -> None:
        self._value: str | None = None

    def __str__(self) -> str:
        if self._value is None:
            self._value = secrets.token_urlsafe(16)
        return self._value

    __html__ = __str__  # Jinja2 and MarkupSafe: already safe to put in an attribute

    def __repr__(self) -> str:
        return "CspNonce(used)" if self._value is not None else "CspNonce(unread)"

    @property
    def used(self) -> bool:
        return self._value is not None

    @property
    def value(self) -> str | None:
        """The nonce if it was read, else None (reading this does not make one)."""
        return self._value


def csp_nonce(request: Any) -> str:
    """The request's CSP nonce, for `<script nonce="...">` in a template.

    `request` is a Starlette/FastAPI `Request`, a Django `HttpRequest` served over ASGI, or
    an ASGI scope. Reading it is what puts the nonce into the response's policy. Returns ""
    when the route's policy has no `'nonce-{nonce}'` source (an inline script then runs only
    if the policy allows it otherwise).
    """
    scope = getattr(request, "scope", request)
    nonce = scope.get(SCOPE_CSP_NONCE) if isinstance(scope, Mapping) else None
    return str(nonce) if nonce is not None else ""
