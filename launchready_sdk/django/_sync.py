"""`cached_sync`: `@cached` for sync functions called from sync Django views."""

from __future__ import annotations

import asyncio
import functools
import os
from collections.abc import Callable, Iterable
from typing import Any, ParamSpec, TypeVar

from launchready_sdk.cache import Cache, cached

P = ParamSpec("P")
R = TypeVar("R")


def cached_sync(
    ttl: int,
    *,
    tags: Iterable[str] = (),
    key: Callable[..., str] | None = None,
    cache: Cache | None = None,
) -> Callable[[Callable[P, R]], Callable[P, R]]:
    """`@cached` for a sync function called from sync Django views served over ASGI.

    The lookup and the store run on the server's event loop (asgiref's `async_to_sync`); the
    function itself runs in the calling thread, so it keeps its database connection. Outside
    a server's worker thread the function is called directly, uncached. Arguments as for
    `@cached`.
    """
    from asgiref.sync import async_to_sync, sync_to_async

    def decorate(fn: Callable[P, R]) -> Callable[P, R]:
        @cached(ttl, tags=tags, key=key, cache=cache)
        @functools.wraps(fn)
        async def run(*args: Any, **kwargs: Any) -> Any:
            return await sync_to_async(fn)(*args, **kwargs)

        @functools.wraps(fn)
        def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
            if not _in_server_thread():
                return fn(*args, **kwargs)
            result: R = async_to_sync(run)(*args, **kwargs)
            return result

        return wrapper

    return decorate


def _in_server_thread() -> bool:
    """True in a thread asgiref's `sync_to_async` started from this process's running loop."""
    from asgiref.sync import SyncToAsync

    try:
        asyncio.get_running_loop()
        return False  # on the loop itself: async_to_sync cannot run here
    except RuntimeError:
        pass
    local = SyncToAsync.threadlocal
    loop = getattr(local, "main_event_loop", None)
    return (
        loop is not None
        and getattr(local, "main_event_loop_pid", None) == os.getpid()
        and not loop.is_closed()
        and loop.is_running()
    )
