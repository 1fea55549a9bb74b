"""Event loops of the WSGI integration: one private loop per worker thread, one background loop
per process. Each runs forever in a daemon thread of its own."""

from __future__ import annotations

import asyncio
import atexit
import concurrent.futures
import contextlib
import contextvars
import os
import threading
import weakref
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, TypeVar

from launchready_sdk.logs import get_logger

T = TypeVar("T")
_log = get_logger("launchready.wsgi")
_forks = [0]  # bumped in a forked child: loops (threads) of the parent are gone there


def _forked() -> None:
    _forks[0] += 1


os.register_at_fork(after_in_child=_forked)


class LoopThread:
    """An event loop running forever in a daemon thread."""

    def __init__(self, name: str) -> None:
        self.generation = _forks[0]
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self._run, name=name, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        loop = self.loop
        asyncio.set_event_loop(loop)
        try:
            loop.run_forever()
        finally:  # stopped: cancel what is left, then close the loop
            tasks = asyncio.all_tasks(loop)
            for task in tasks:
                task.cancel()
            with contextlib.suppress(Exception):
                loop.run_until_complete(asyncio.gather(*tasks, return_exceptions=True))
                loop.run_until_complete(loop.shutdown_default_executor())
            loop.close()

    @property
    def alive(self) -> bool:
        return self.generation == _forks[0] and self.thread.is_alive()

    def submit(
        self, coro: Coroutine[Any, Any, T], context: contextvars.Context | None = None
    ) -> concurrent.futures.Future[T]:
        """Run `coro` as a task of this loop (in `context`); its result as a thread future."""
        result: concurrent.futures.Future[T] = concurrent.futures.Future()
        loop = self.loop

        def start() -> None:
            task = loop.create_task(coro, context=context)
            task.add_done_callback(lambda done: _settle(result, done))

        try:
            loop.call_soon_threadsafe(start)
        except RuntimeError:  # the loop was closed
            coro.close()
            raise
        return result

    def stop(self, timeout_s: float) -> None:
        with contextlib.suppress(RuntimeError):
            self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout_s)


def _settle(result: concurrent.futures.Future[T], task: asyncio.Task[T]) -> None:
    if task.cancelled():
        result.cancel()
    elif task.exception() is not None:
        result.set_exception(task.exception())
    else:
        result.set_result(task.result())


_local = threading.local()


class _Owner:
    """Kept in the owning thread's locals only: collected when that thread ends."""

    __slots__ = ("__weakref__",)


def thread_loop() -> LoopThread:
    """The calling thread's private loop, started on first use (again after a fork).

    It also becomes the loop asgiref's `async_to_sync` uses in this thread (when asgiref is
    installed), so Django's async views, `cached_sync` and the SDK's async calls made from
    sync code all share the loop, and with it the Redis connection and HTTP pools.
    """
    current: LoopThread | None = getattr(_local, "loop", None)
    if current is not None and current.alive:
        return current
    name = f"launchready-loop-{threading.current_thread().name}"
    current = _local.loop = LoopThread(name)
    # The loop stops when its thread ends (a thread's locals are dropped then).
    owner = _local.owner = _Owner()
    weakref.finalize(owner, current.stop, 0)
    with contextlib.suppress(ImportError):
        from asgiref.sync import SyncToAsync

        SyncToAsync.threadlocal.main_event_loop = current.loop
        SyncToAsync.threadlocal.main_event_loop_pid = os.getpid()
    return current


class Background:
    """The process's background loop: the SDK's start-up work (the latency flush and fleet
    merge) runs there from the first request, and its shutdown work at interpreter exit.

    Args:
        startup: awaited on the background loop when the first request arrives.
        shutdown: awaited there at exit (atexit), bounded by `stop_timeout_s`.
    """

    def __init__(
        self,
        startup: Callable[[], Awaitable[None]],
        shutdown: Callable[[], Awaitable[None]],
        *,
        stop_timeout_s: float = 5.0,
    ) -> None:
        self._startup = startup
        self._shutdown = shutdown
        self._stop_timeout_s = stop_timeout_s
        self._generation = -1
        self._lock = threading.Lock()
        self.thread: LoopThread | None = None

    def ensure_started(self) -> None:
        """Start the background loop in this process unless it runs already (cheap)."""
        if self._generation == _forks[0]:
            return
        with self._lock:
            if self._generation == _forks[0]:
                return
            self._generation = _forks[0]
            self.thread = LoopThread("launchready-background")
            self.thread.submit(self._run(self._startup)).add_done_callback(_logged)
            atexit.register(self.stop)

    def stop(self) -> None:
        """Run the shutdown work (flush the latency figures, close Redis) and stop the loop."""
        thread, self.thread = self.thread, None
        if thread is None or not thread.alive:
            return
        try:
            thread.submit(self._run(self._shutdown)).result(self._stop_timeout_s)
        except Exception:
            _log.warning("wsgi.shutdown_incomplete", exc_info=True)
        thread.stop(self._stop_timeout_s)

    @staticmethod
    async def _run(step: Callable[[], Awaitable[None]]) -> None:
        await step()


def _logged(future: concurrent.futures.Future[None]) -> None:
    if not future.cancelled() and future.exception() is not None:
        _log.warning("wsgi.startup_failed", exc_info=future.exception())
