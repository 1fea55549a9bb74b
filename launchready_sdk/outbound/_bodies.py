"""Response bodies: the small ones read inside the attempt, the rest guarded by the call's
deadline and size cap."""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import AsyncIterator, Iterator
from typing import Final

import httpx

from launchready_sdk.outbound._errors import DeadlineExceeded, ResponseTooLarge

PREFETCH_MAX_BYTES: Final = 256 * 1024


def prefetch(response: httpx.Response) -> bool:
    """Whether to read the body inside the attempt: a small, declared length (and not a HEAD's
    or a 304's, which have none)."""
    length = response.headers.get("content-length")
    return length is not None and length.isdigit() and 0 < int(length) <= PREFETCH_MAX_BYTES


async def prefetched(response: httpx.Response) -> httpx.Response:
    """The same response with its raw body already read (httpx still decodes it and times it)."""
    try:
        raw = b"".join([chunk async for chunk in response.aiter_raw()])
    except BaseException:
        await response.aclose()
        raise
    return httpx.Response(
        response.status_code,
        headers=response.headers.raw,
        stream=httpx.ByteStream(raw),
        extensions=response.extensions,
    )


class GuardedAsyncStream(httpx.AsyncByteStream):
    """The body under the call's deadline and size cap."""

    def __init__(
        self, inner: httpx.AsyncByteStream, deadline: float, limit: int | None, host: str
    ) -> None:
        self._inner = inner
        self._deadline = deadline
        self._limit = limit
        self._host = host

    async def __aiter__(self) -> AsyncIterator[bytes]:
        chunks = self._inner.__aiter__()
        seen = 0
        while True:
            remaining = self._deadline - time.monotonic()
            if remaining <= 0:
                raise DeadlineExceeded(
                    "outbound deadline exceeded reading the body", host=self._host
                )
            try:
                async with asyncio.timeout(None if remaining == math.inf else remaining):
                    chunk = await chunks.__anext__()
            except StopAsyncIteration:
                return
            except TimeoutError as exc:
                raise DeadlineExceeded(
                    "outbound deadline exceeded reading the body", host=self._host
                ) from exc
            seen += len(chunk)
            if self._limit is not None and seen > self._limit:
                raise ResponseTooLarge(self._limit, host=self._host)
            yield chunk

    async def aclose(self) -> None:
        await self._inner.aclose()


class GuardedSyncStream(httpx.SyncByteStream):
    """The body under the deadline (checked between chunks) and the size cap."""

    def __init__(
        self, inner: httpx.SyncByteStream, deadline: float, limit: int | None, host: str
    ) -> None:
        self._inner = inner
        self._deadline = deadline
        self._limit = limit
        self._host = host

    def __iter__(self) -> Iterator[bytes]:
        seen = 0
        for chunk in self._inner:
            if time.monotonic() >= self._deadline:
                raise DeadlineExceeded(
                    "outbound deadline exceeded reading the body", host=self._host
                )
            seen += len(chunk)
            if self._limit is not None and seen > self._limit:
                raise ResponseTooLarge(self._limit, host=self._host)
            yield chunk

    def close(self) -> None:
        self._inner.close()
