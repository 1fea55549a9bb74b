"""HTTP/1.1 on the wire: the bytes of a request, and an incremental response parser.

`ResponseParser` reads `Content-Length` bodies, chunked bodies (extensions and trailers
skipped) and bodies delimited by the close of the connection, skips 1xx interim responses, and
says whether the connection may carry another request. It refuses what it cannot trust (a bad
status line or header, a length that is not plain ASCII digits, conflicting lengths, a
malformed chunk, a head or trailers over 64 KiB, more than 256 header lines or 32 interim
responses, a body over 64 MiB) with a `ClientError` of kind "protocol". Its cost is linear in
the bytes received, however the server slices them. `encode_request` refuses a line break in
a header or the target, so a scenario value cannot smuggle a header.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import orjson

MAX_HEAD_BYTES = 64 * 1024  # a response head; the trailers of a chunked body too
MAX_HEADER_LINES = 256
MAX_CHUNK_LINE_BYTES = 4096  # a chunk size with its extensions
MAX_INTERIM_RESPONSES = 32  # 1xx responses before the final one
MAX_BODY_BYTES = 64 * 1024 * 1024

ErrorKind = Literal["connect", "timeout", "closed", "protocol", "internal"]


class ClientError(Exception):
    """A request that got no usable response. `kind`: connect, timeout, closed, protocol
    (the server broke HTTP/1.1 framing) or internal (a fault of the client itself)."""

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
_STATUS = re.compile(rb"HTTP/1\.[01] ([0-9]{3})(?: [^\r\n]*)?")
_TOKEN = re.compile(rb"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
_DECIMAL = re.compile(r"[0-9]{1,18}")
_HEX = re.compile(rb"[0-9A-Fa-f]{1,16}")
_CHUNK_LINE = re.compile(rb"([0-9A-Fa-f]{1,16})(?:;[^\r\n]{0,4000})?\r\n")


class ResponseParser:
    """Incremental parser of one response; `feed()` returns it once complete.

    Every byte is looked at a bounded number of times: searches for a line end resume where
    the previous one stopped, and the body length is a running total. So a body of 60,000
    one-byte chunks costs what one of a few large chunks costs, and the event loop (where
    `--timeout` fires) is never held up by parsing.
    """

    __slots__ = (
        "_body_len",
        "_buf",
        "_chunks",
        "_head_only",
        "_interim",
        "_remaining",
        "_scan",
        "_state",
        "_trailer_bytes",
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
        self._scan = 0  # where the next search for a line end starts
        self._body_len = 0
        self._trailer_bytes = 0
        self._interim = 0
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
                end = self._line_end(b"\r\n\r\n", MAX_HEAD_BYTES, "response head too large")
                if end < 0:
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
                self._whole_chunks()
                end = self._line_end(b"\r\n", MAX_CHUNK_LINE_BYTES, "chunk size line too long")
                if end < 0:
                    return None
                line = bytes(buf[:end])
                del buf[: end + 2]
                self._read_chunk_size(line)
            elif state == _CHUNK_DATA:
                if len(buf) < self._remaining + 2:
                    return None
                if buf[self._remaining : self._remaining + 2] != b"\r\n":
                    raise ClientError("malformed chunk: no CRLF after its data", "protocol")
                self._chunks.append(bytes(buf[: self._remaining]))
                del buf[: self._remaining + 2]
                self._state = _CHUNK_SIZE
            elif state == _TRAILERS:
                room = MAX_HEAD_BYTES - self._trailer_bytes
                end = self._line_end(b"\r\n", room, "trailers too large")
                if end < 0:
                    return None
                del buf[: end + 2]
                if end == 0:
                    return self._finish()
                self._trailer_bytes += end + 2
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
        return self._state != _HEAD or bool(self._buf) or self.status != 0 or self._interim > 0

    @property
    def leftover(self) -> bool:
        return bool(self._buf)

    def _line_end(self, terminator: bytes, limit: int, too_long: str) -> int:
        """Where `terminator` starts in the buffer (-1 while it has not arrived); a protocol
        error once more than `limit` bytes arrived without it. Resumes the last search."""
        buf = self._buf
        end = buf.find(terminator, self._scan)
        if end < 0:
            if len(buf) > limit:
                raise ClientError(too_long, "protocol")
            self._scan = max(0, len(buf) - len(terminator) + 1)
            return -1
        if end > limit:
            raise ClientError(too_long, "protocol")
        self._scan = 0
        return end

    def _read_head(self, head: bytes) -> None:
        lines = head.split(b"\r\n")
        status_line = _STATUS.fullmatch(lines[0])
        if status_line is None:
            raise ClientError(f"bad status line {lines[0][:80]!r}", "protocol")
        if len(lines) > MAX_HEADER_LINES:
            raise ClientError(f"more than {MAX_HEADER_LINES} header lines", "protocol")
        status = int(status_line.group(1))
        headers: dict[str, str] = {}
        for line in lines[1:]:
            name, sep, value = line.partition(b":")
            if not sep or _TOKEN.fullmatch(name) is None:
                raise ClientError(f"bad header line {line[:80]!r}", "protocol")
            key = name.decode("latin-1").lower()
            text = value.strip().decode("latin-1")
            headers[key] = f"{headers[key]}, {text}" if key in headers else text
        if status < 200:
            if status == 101:
                raise ClientError("the server switched protocols", "protocol")
            self._interim += 1
            if self._interim > MAX_INTERIM_RESPONSES:
                raise ClientError(f"more than {MAX_INTERIM_RESPONSES} 1xx responses", "protocol")
            return  # an interim response has no body, whatever its headers say
        self.status, self.headers = status, headers
        connection = headers.get("connection", "").lower()
        if lines[0].startswith(b"HTTP/1.0"):
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
            codings = [c.strip().lower() for c in encoding.split(",")]
            if "content-length" in headers:
                self.keep_alive = False  # both framings: answer this one, trust no more
            if codings[-1] != "chunked":
                self._until_close()
            elif codings.count("chunked") > 1:
                raise ClientError(f"bad Transfer-Encoding {encoding[:80]!r}", "protocol")
            else:
                self._state = _CHUNK_SIZE
            return
        length = headers.get("content-length")
        if length is None:
            self._until_close()
            return
        values = {v.strip() for v in length.split(",")}
        value = values.pop()
        if values or _DECIMAL.fullmatch(value) is None:
            raise ClientError(f"bad Content-Length {length[:40]!r}", "protocol")
        self._remaining = int(value)
        self._grow(self._remaining)
        self._state = _LENGTH

    def _until_close(self) -> None:
        self.keep_alive = False
        self._state = _UNTIL_CLOSE

    def _whole_chunks(self) -> None:
        """Take every complete, well-formed chunk at the start of the buffer in one pass (a
        regular expression reads each size line), deleting the consumed bytes once. What it
        cannot decide (a partial chunk, the last chunk, anything malformed) is left to the
        general path."""
        buf = self._buf
        match = _CHUNK_LINE.match
        chunks = self._chunks
        pos, length = 0, len(buf)
        while (line := match(buf, pos)) is not None:
            size = int(line.group(1), 16)
            start = line.end()
            stop = start + size
            if size == 0 or stop + 2 > length or buf[stop : stop + 2] != b"\r\n":
                break
            self._grow(size)
            chunks.append(bytes(buf[start:stop]))
            pos = stop + 2
        if pos:
            del buf[:pos]
            self._scan = 0

    def _read_chunk_size(self, line: bytes) -> None:
        digits = line.split(b";", 1)[0].strip(b" \t")
        if _HEX.fullmatch(digits) is None:
            raise ClientError(f"bad chunk size {line[:20]!r}", "protocol")
        size = int(digits, 16)
        if size == 0:
            self._state = _TRAILERS
        else:
            self._grow(size)
            self._remaining = size
            self._state = _CHUNK_DATA

    def _grow(self, n: int) -> None:
        self._body_len += n
        if self._body_len > MAX_BODY_BYTES:
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
