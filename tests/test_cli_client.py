"""The bench's HTTP/1.1 client (wire.py, client.py): parsing, keep-alive, close, timeouts."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest

from launchready_sdk.cli.client import Origin, Pool
from launchready_sdk.cli.wire import ClientError, ResponseParser, encode_request

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


def feed_all(parser: ResponseParser, *pieces: bytes) -> list[object]:
    return [parser.feed(p) for p in pieces]


def test_content_length_response_in_pieces() -> None:
    """A Content-Length body split across reads completes on its last byte."""
    parser = ResponseParser()
    results = feed_all(parser, b"HTTP/1.1 200 OK\r\nContent-Le", b"ngth: 5\r\n\r\nhel", b"lo")
    assert results[:2] == [None, None]
    response = results[2]
    assert response is not None
    assert response.status == 200
    assert response.body == b"hello"
    assert parser.keep_alive


def test_chunked_response_with_extensions_and_trailers() -> None:
    """Chunked bodies are joined; chunk extensions and trailers are skipped."""
    parser = ResponseParser()
    wire = (
        b"HTTP/1.1 201 Created\r\nTransfer-Encoding: chunked\r\nX-A: 1\r\nx-a: 2\r\n\r\n"
        b"4;ext=1\r\nWiki\r\n5\r\npedia\r\n0\r\nTrailer: yes\r\n\r\n"
    )
    response = None
    for i in range(len(wire)):  # one byte at a time: every state sees a partial buffer
        response = parser.feed(wire[i : i + 1]) or response
    assert response is not None
    assert response.status == 201
    assert response.body == b"Wikipedia"
    assert response.headers["x-a"] == "1, 2"


def test_head_and_no_content_responses_have_no_body() -> None:
    """HEAD, 204 and 304 responses end at their head, whatever Content-Length says."""
    head = ResponseParser(head_only=True).feed(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n")
    assert head is not None
    assert head.body == b""
    empty = ResponseParser().feed(b"HTTP/1.1 204 No Content\r\n\r\n")
    assert empty is not None
    assert empty.status == 204


def test_interim_responses_are_skipped() -> None:
    """A 100 Continue before the real response is ignored."""
    parser = ResponseParser()
    wire = b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
    response = parser.feed(wire)
    assert response is not None
    assert response.status == 200
    assert response.body == b"ok"


def test_body_until_close() -> None:
    """Without a length the body runs to the end of the connection, which is not reused."""
    parser = ResponseParser()
    assert parser.feed(b"HTTP/1.0 200 OK\r\n\r\nsome ") is None
    assert parser.feed(b"bytes") is None
    assert not parser.keep_alive
    assert parser.feed_eof().body == b"some bytes"


def test_connection_close_and_http10_are_not_kept_alive() -> None:
    """`Connection: close`, and HTTP/1.0 without keep-alive, end the connection."""
    closing = ResponseParser()
    closing.feed(b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 0\r\n\r\n")
    assert not closing.keep_alive
    old = ResponseParser()
    old.feed(b"HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 0\r\n\r\n")
    assert old.keep_alive


@pytest.mark.parametrize(
    "wire",
    [
        b"HTTP/2 200 OK\r\n\r\n",
        b"HTTP/1.1 abc OK\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nno colon here\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: 1, 2\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nabXY",
    ],
)
def test_malformed_responses_raise_protocol_errors(wire: bytes) -> None:
    """Garbage from the server is a ClientError of kind 'protocol', never a crash."""
    with pytest.raises(ClientError) as info:
        ResponseParser().feed(wire)
    assert info.value.kind == "protocol"


def test_truncated_response_is_closed_error() -> None:
    """A connection that ends inside a Content-Length body is an error of kind 'closed'."""
    parser = ResponseParser()
    parser.feed(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc")
    with pytest.raises(ClientError) as info:
        parser.feed_eof()
    assert info.value.kind == "closed"


def test_encode_request_refuses_header_injection() -> None:
    """A line break in a header value or the target is refused, not sent."""
    data = encode_request("POST", "/x", "h:1", [("A", "b")], b"{}")
    assert data == b"POST /x HTTP/1.1\r\nHost: h:1\r\nA: b\r\nContent-Length: 2\r\n\r\n{}"
    with pytest.raises(ValueError, match="line break"):
        encode_request("GET", "/x", "h", [("A", "b\r\nEvil: 1")])
    with pytest.raises(ValueError, match="line break"):
        encode_request("GET", "/x\nY", "h")


def test_origin_parsing() -> None:
    """URLs give scheme, host, port and a path prefix; other schemes are refused."""
    origin = Origin.parse("http://127.0.0.1:8000/api/")
    assert (origin.host, origin.port, origin.prefix) == ("127.0.0.1", 8000, "/api")
    assert origin.host_header == "127.0.0.1:8000"
    assert Origin.parse("https://example.com").host_header == "example.com"
    with pytest.raises(ValueError, match="not an http"):
        Origin.parse("ftp://x")


# --- against real sockets ---------------------------------------------------------------------


class RawServer:
    """An asyncio TCP server whose handler writes raw bytes; counts connections."""

    def __init__(self, handler: Handler) -> None:
        self.handler = handler
        self.connections = 0
        self.server: asyncio.Server | None = None
        self.port = 0

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            await self.handler(reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()

    async def __aenter__(self) -> RawServer:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self.server is not None
        self.server.close()
        await self.server.wait_closed()

    def pool(self, **kwargs: float) -> Pool:
        return Pool(Origin.parse(f"http://127.0.0.1:{self.port}"), **kwargs)  # type: ignore[arg-type]


async def read_request(reader: asyncio.StreamReader) -> bytes:
    head = await reader.readuntil(b"\r\n\r\n")
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            await reader.readexactly(int(line.split(b":")[1]))
    return head


async def keep_alive_handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    while True:
        head = await read_request(reader)
        body = head.split(b" ")[1]
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))
        await writer.drain()


@pytest.fixture
async def keep_alive_server() -> AsyncIterator[RawServer]:
    async with RawServer(keep_alive_handler) as server:
        yield server


async def test_keep_alive_connection_is_reused(keep_alive_server: RawServer) -> None:
    """Sequential requests share one connection."""
    pool = keep_alive_server.pool()
    for i in range(5):
        response = await pool.request("GET", f"/n{i}")
        assert response.body == f"/n{i}".encode()
    assert keep_alive_server.connections == 1
    assert pool.opened == 1
    await pool.close()


async def test_pool_caps_connections_and_queues(keep_alive_server: RawServer) -> None:
    """Concurrent requests beyond max_connections wait for a free connection."""
    pool = keep_alive_server.pool(max_connections=2)
    responses = await asyncio.gather(*(pool.request("GET", f"/{i}") for i in range(20)))
    assert [r.body for r in responses] == [f"/{i}".encode() for i in range(20)]
    assert keep_alive_server.connections == 2
    await pool.close()


async def test_connection_close_opens_a_new_connection() -> None:
    """After `Connection: close` the next request uses a fresh connection."""

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nok")
        await writer.drain()

    async with RawServer(handler) as server:
        pool = server.pool()
        for _ in range(3):
            assert (await pool.request("GET", "/")).body == b"ok"
        assert server.connections == 3
        await pool.close()


async def test_chunked_and_until_close_bodies_over_the_wire() -> None:
    """A chunked response, then a close-delimited one, each arrive whole."""

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n")
        await writer.drain()
        await asyncio.sleep(0.01)
        writer.write(b"2\r\nde\r\n0\r\n\r\n")
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\n\r\nuntil the end")
        await writer.drain()

    async with RawServer(handler) as server:
        pool = server.pool()
        assert (await pool.request("GET", "/a")).body == b"abcde"
        assert (await pool.request("GET", "/b")).body == b"until the end"
        assert server.connections == 1
        await pool.close()


async def test_idle_connection_closed_by_server_is_retried() -> None:
    """A keep-alive connection the server closed while idle is replaced transparently."""

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
        await writer.drain()
        # then close without saying so, as a keep-alive timeout does

    async with RawServer(handler) as server:
        pool = server.pool()
        assert (await pool.request("GET", "/")).body == b"ok"
        await asyncio.sleep(0.05)
        assert (await pool.request("POST", "/", body=b"x")).body == b"ok"
        assert server.connections == 2
        await pool.close()


async def test_timeout_and_refused_connection() -> None:
    """A server that never answers times out; a closed port is a 'connect' error."""

    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        await asyncio.sleep(5)

    async with RawServer(silent) as server:
        pool = server.pool(timeout_s=0.2)
        with pytest.raises(ClientError) as info:
            await pool.request("GET", "/")
        assert info.value.kind == "timeout"
        port = server.port
    refused = Pool(Origin.parse(f"http://127.0.0.1:{port}"), timeout_s=1.0)
    with pytest.raises(ClientError) as info:
        await refused.request("GET", "/")
    assert info.value.kind == "connect"
