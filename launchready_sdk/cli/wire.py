"""HTTP/1.1 on the wire: the bytes of a request, and an incremental response parser.

`ResponseParser` reads `Content-Length` bodies, chunked bodies (extensions and trailers
skipped) and bodies delimited by the close of the connection, skips 1xx interim responses, and
says whether the connection may carry another request. It refuses what it cannot trust (a bad
status line or header, conflicting lengths, a malformed chunk, a head over 64 KiB or a body
over 64 MiB) with a `ClientError` of kind "protocol". `encode_request` refuses a line break in
a header or the target, so a scenario value cannot smuggle a header.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import orjson

MAX_HEAD_BYTES = 64 * 1024
MAX_BODY_BYTES = 64 * 1024 * 1024

ErrorKind = Literal["connect", "timeout", "closed", "protocol"]


class ClientError(Exception):
    """A request that got no usable response. `kind`: connect, timeout, closed or protocol."""

    kind: ErrorKind = "protocol"

    def __init__(self, message: str, kind: ErrorKind | None = None) -> None:
        super().__init__(message)
        if kind is not None:
            self.kind = kind


@dataclass(slots=True)
class Response:
    """A complete response: lower-case header names, repeated headers joined with ", "."""

    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        """The body parsed as JSON (raises `orjson.JSONDecodeError`)."""
        return orjson.loads(self.body)


# --- parsing ----------------------------------------------------------------------------------

_HEAD, _LENGTH, _CHUNK_SIZE, _CHUNK_DATA, _TRAILERS, _UNTIL_CLOSE, _DONE = range(7)


class ResponseParser:
    """Incremental parser of one response; `feed()` returns it once complete."""

    __slots__ = (
        "_buf",
        "_chunks",
        "_head_only",
        "_remaining",
        "_state",
        "headers",
        "keep_alive",
        "status",
    )

    def __init__(self, *, head_only: bool = False) -> None:
        self._buf = bytearray()
        self._chunks: list[bytes] = []
        self._head_only = head_only
        self._remaining = 0
        self._state = _HEAD
        self.status = 0
        self.headers: dict[str, str] = {}
        self.keep_alive = True

    def feed(self, data: bytes) -> Response | None:
        """Take bytes from the wire; the response once it is complete, else None."""
        buf = self._buf
        buf += data
        while True:
            state = self._state
            if state == _HEAD:
                end = buf.find(b"\r\n\r\n")
                if end < 0:
                    if len(buf) > MAX_HEAD_BYTES:
                        raise ClientError("response head too large", "protocol")
                    return None
                head = bytes(buf[:end])
                del buf[: end + 4]
                self._read_head(head)
                if self._state == _DONE:
                    return self._finish()
            elif state == _LENGTH:
                if len(buf) < self._remaining:
                    return None
                self._chunks.append(bytes(buf[: self._remaining]))
                del buf[: self._remaining]
                return self._finish()
            elif state == _CHUNK_SIZE:
                if not self._read_chunk_size():
                    return None
            elif state == _CHUNK_DATA:
                if len(buf) < self._remaining + 2:
                    return None
                if buf[self._remaining : self._remaining + 2] != b"\r\n":
                    raise ClientError("malformed chunk", "protocol")
                self._chunks.append(bytes(buf[: self._remaining]))
                del buf[: self._remaining + 2]
                self._state = _CHUNK_SIZE
            elif state == _TRAILERS:
                end = buf.find(b"\r\n")
                if end < 0:
                    return None
                line = bytes(buf[:end])
                del buf[: end + 2]
                if not line:
                    return self._finish()
            elif state == _UNTIL_CLOSE:
                self._grow(len(buf))
                self._chunks.append(bytes(buf))
                buf.clear()
                return None
            else:
                raise ClientError("data after the end of a response", "protocol")

    def feed_eof(self) -> Response:
        """The connection closed: the response, if its body was delimited by the close."""
        if self._state == _UNTIL_CLOSE:
            return self._finish()
        raise ClientError("connection closed before a complete response", "closed")

    @property
    def started(self) -> bool:
        return self._state != _HEAD or bool(self._buf) or self.status != 0

    @property
    def leftover(self) -> bool:
        return bool(self._buf)

    def _read_head(self, head: bytes) -> None:
        lines = head.split(b"\r\n")
        parts = lines[0].split(b" ", 2)
        if len(parts) < 2 or not parts[0].startswith(b"HTTP/1.") or not parts[1].isdigit():
            raise ClientError(f"bad status line {lines[0][:80]!r}", "protocol")
        status = int(parts[1])
        headers: dict[str, str] = {}
        for line in lines[1:]:
            name, sep, value = line.partition(b":")
            if not sep or not name or name != name.strip():
                raise ClientError(f"bad header line {line[:80]!r}", "protocol")
            key = name.decode("latin-1").lower()
            text = value.strip().decode("latin-1")
            headers[key] = f"{headers[key]}, {text}" if key in headers else text
        if 100 <= status < 200:
            if status == 101:
                raise ClientError("the server switched protocols", "protocol")
            return  # an interim response: the real one follows
        self.status, self.headers = status, headers
        connection = headers.get("connection", "").lower()
        if parts[0] == b"HTTP/1.0":
            self.keep_alive = "keep-alive" in connection
        else:
            self.keep_alive = "close" not in connection
        self._choose_body(headers)

    def _choose_body(self, headers: dict[str, str]) -> None:
        if self._head_only or self.status in (204, 304):
            self._state = _DONE
            return
        encoding = headers.get("transfer-encoding")
        if encoding is not None:
            if encoding.lower().rsplit(",", 1)[-1].strip() != "chunked":
                self._until_close()
            else:
                self._state = _CHUNK_SIZE
            return
        length = headers.get("content-length")
        if length is None:
            self._until_close()
            return
        values = {v.strip() for v in length.split(",")}
        if len(values) != 1 or not next(iter(values)).isdigit():
            raise ClientError(f"bad Content-Length {length!r}", "protocol")
        self._remaining = int(values.pop())
        self._grow(self._remaining)
        self._state = _LENGTH

    def _until_close(self) -> None:
        self.keep_alive = False
        self._state = _UNTIL_CLOSE

    def _read_chunk_size(self) -> bool:
        buf = self._buf
        end = buf.find(b"\r\n")
        if end < 0:
            if len(buf) > MAX_HEAD_BYTES:
                raise ClientError("chunk size line too long", "protocol")
            return False
        line = bytes(buf[:end]).split(b";", 1)[0].strip()
        del buf[: end + 2]
        try:
            size = int(line, 16)
        except ValueError:
            raise ClientError(f"bad chunk size {line[:20]!r}", "protocol") from None
        if size < 0:
            raise ClientError("negative chunk size", "protocol")
        if size == 0:
            self._state = _TRAILERS
        else:
            self._grow(size)
            self._remaining = size
            self._state = _CHUNK_DATA
        return True

    def _grow(self, n: int) -> None:
        if sum(map(len, self._chunks)) + n > MAX_BODY_BYTES:
            raise ClientError("response body too large", "protocol")

    def _finish(self) -> Response:
        self._state = _DONE
        body = self._chunks[0] if len(self._chunks) == 1 else b"".join(self._chunks)
        return Response(self.status, self.headers, body)


def encode_request(
    method: str,
    target: str,
    host: str,
    headers: Sequence[tuple[str, str]] = (),
    body: bytes | None = None,
) -> bytes:
    """The bytes of one request; raises ValueError on a line break in any header or target."""
    lines = [f"{method} {target} HTTP/1.1", f"Host: {host}"]
    lines.extend(f"{name}: {value}" for name, value in headers)
    if body is not None:
        lines.append(f"Content-Length: {len(body)}")
    if any("\r" in line or "\n" in line for line in lines):
        raise ValueError("a line break inside a request header or target")
    head = "\r\n".join(lines)
    data = (head + "\r\n\r\n").encode()
    return data + body if body else data
