"""The ASGI scope of a WSGI request, and chunked request bodies made plain."""

from __future__ import annotations

import tempfile
from collections.abc import MutableMapping
from typing import Any

Environ = MutableMapping[str, Any]

# A chunked body is held in memory up to this size, then in a temporary file.
SPOOL_MEMORY_BYTES = 1024 * 1024
# A chunked body larger than this is refused with 413.
MAX_CHUNKED_BODY_BYTES = 64 * 1024 * 1024
_READ_BYTES = 64 * 1024
SPOOL_KEY = "launchready.spool"  # the environ key of a spooled chunked body (closed at the end)
_PLAIN = frozenset({"CONTENT_TYPE", "CONTENT_LENGTH"})
_NAMES: dict[str, bytes] = {}


def _name_of(key: str) -> bytes:
    return (key[5:] if key[:5] == "HTTP_" else key).replace("_", "-").lower().encode("latin-1")


def _name(key: str) -> bytes:
    """`HTTP_USER_AGENT` as `b"user-agent"`, remembered (up to 512 names)."""
    name = _name_of(key)
    if len(_NAMES) < 512:
        _NAMES[key] = name
    return name


def all_headers(environ: Environ) -> list[tuple[bytes, bytes]]:
    """The request's headers as an ASGI scope lists them."""
    names = _NAMES
    return [
        (names.get(key) or _name(key), value.encode("latin-1"))
        for key, value in environ.items()
        if (key[:5] == "HTTP_" or key in _PLAIN) and value
    ]


# What the request context reads: the request id, the forwarding headers a trusted proxy
# sets (`proxy.py`), and what picks the format of an error (Host, Accept).
_CONTEXT_HEADERS = tuple(
    (key, _name_of(key))
    for key in (
        "HTTP_X_REQUEST_ID",
        "HTTP_X_FORWARDED_FOR",
        "HTTP_FORWARDED",
        "HTTP_X_FORWARDED_PROTO",
        "HTTP_X_FORWARDED_HOST",
        "HTTP_HOST",
        "HTTP_ACCEPT",
    )
)


def scope_from_environ(environ: Environ, *, lean: bool = False) -> dict[str, Any]:
    """An ASGI HTTP scope describing the WSGI request `environ` (PEP 3333 strings are the
    request's bytes decoded as latin-1; the ASGI path is UTF-8).

    With `lean`, `headers` holds only what the request context reads; put `all_headers()`
    there before the scope goes to a layer.
    """
    if lean:
        headers = [
            (name, value.encode("latin-1"))
            for key, name in _CONTEXT_HEADERS
            if (value := environ.get(key))
        ]
    else:
        headers = all_headers(environ)
    script = environ.get("SCRIPT_NAME", "") or ""
    raw = (script + (environ.get("PATH_INFO", "") or "")).encode("latin-1")
    addr = environ.get("REMOTE_ADDR") or None
    port = environ.get("REMOTE_PORT")
    protocol = str(environ.get("SERVER_PROTOCOL") or "HTTP/1.1")
    return {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.3"},
        "http_version": protocol[5:] if protocol.startswith("HTTP/") else "1.1",
        "method": environ.get("REQUEST_METHOD", "GET"),
        "scheme": environ.get("wsgi.url_scheme", "http"),
        "path": raw.decode("utf-8", "replace") or "/",
        "raw_path": raw,
        "root_path": script.encode("latin-1").decode("utf-8", "replace"),
        "query_string": (environ.get("QUERY_STRING") or "").encode("latin-1"),
        "headers": headers,
        "client": (addr, int(port) if port and str(port).isdigit() else 0) if addr else None,
        "server": (environ.get("SERVER_NAME", ""), int(environ.get("SERVER_PORT") or 0)),
        "state": {},
    }


def is_chunked(environ: Environ) -> bool:
    """A request body sent with `Transfer-Encoding: chunked` and no length."""
    coding = environ.get("HTTP_TRANSFER_ENCODING")
    return bool(coding and "chunked" in str(coding).lower() and not environ.get("CONTENT_LENGTH"))


class BodyRefused(Exception):
    """A chunked request body that cannot be handed on: its status and why."""

    def __init__(self, status: int, detail: str) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail


def spool_chunked(environ: Environ, max_bytes: int = MAX_CHUNKED_BODY_BYTES) -> int:
    """Read a chunked body to its end and hand it on as a plain one with a `CONTENT_LENGTH`.

    Django (and other WSGI frameworks) read `CONTENT_LENGTH` bytes, so without this a
    chunked body reaches the view empty. Returns the size. Raises `BodyRefused` (413) for a
    body larger than `max_bytes` and (400) for a malformed one or a client that left before
    its end; the spool is closed then.
    """
    spool = tempfile.SpooledTemporaryFile(max_size=SPOOL_MEMORY_BYTES)  # noqa: SIM115
    stream = environ["wsgi.input"]
    size = 0
    try:
        while chunk := stream.read(_READ_BYTES):
            size += len(chunk)
            if size > max_bytes:
                raise BodyRefused(413, "The chunked request body is too large.")
            spool.write(chunk)
    except BodyRefused:
        spool.close()
        raise
    except Exception as exc:  # a malformed chunk or a lost client: the server's reader says so
        spool.close()
        raise BodyRefused(400, "The chunked request body is malformed or incomplete.") from exc
    spool.seek(0)
    environ["wsgi.input"] = spool
    environ["CONTENT_LENGTH"] = str(size)
    environ.pop("HTTP_TRANSFER_ENCODING", None)
    environ[SPOOL_KEY] = spool
    return size
