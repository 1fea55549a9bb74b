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
from launchready_sdk.outbound._retry import Retrying

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


class _Guard:
    """The call's deadline and the policy's body cap, checked as the chunks arrive."""

    def __init__(self, retrying: Retrying) -> None:
        self._deadline = retrying.deadline
        self._limit = retrying.policy.max_response_bytes
        self._host = retrying.host.name

    def _expired(self) -> DeadlineExceeded:
        return DeadlineExceeded("outbound deadline exceeded reading the body", host=self._host)

    def _counted(self, seen: int, chunk: bytes) -> int:
        seen += len(chunk)
        if self._limit is not None and seen > self._limit:
            raise ResponseTooLarge(self._limit, host=self._host)
        return seen


class GuardedAsyncStream(_Guard, httpx.AsyncByteStream):
    """An async body under the call's deadline and the size cap."""

    def __init__(self, inner: httpx.AsyncByteStream, retrying: Retrying) -> None:
        super().__init__(retrying)
        self._inner = inner

    async def __aiter__(self) -> AsyncIterator[bytes]:
        chunks = self._inner.__aiter__()
        seen = 0
        while True:
            remaining = self._deadline - time.monotonic()
            if remaining <= 0:
                raise self._expired()
            try:
                async with asyncio.timeout(None if remaining == math.inf else remaining):
                    chunk = await chunks.__anext__()
            except StopAsyncIteration:
                return
            except TimeoutError as exc:
                raise self._expired() from exc
            seen = self._counted(seen, chunk)
            yield chunk

    async def aclose(self) -> None:
        await self._inner.aclose()


class GuardedSyncStream(_Guard, httpx.SyncByteStream):
    """A sync body under the deadline (checked between chunks) and the size cap."""

    def __init__(self, inner: httpx.SyncByteStream, retrying: Retrying) -> None:
        super().__init__(retrying)
        self._inner = inner

    def __iter__(self) -> Iterator[bytes]:
        seen = 0
        for chunk in self._inner:
            if time.monotonic() >= self._deadline:
                raise self._expired()
            seen = self._counted(seen, chunk)
            yield chunk

    def close(self) -> None:
        self._inner.close()
