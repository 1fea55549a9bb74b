"""`lr.background(fn, *args, **kwargs)`: work that runs after the response is sent.

Called while a request is served, the job waits until the response has gone out (under ASGI
when the request-context layer has sent the last chunk; under WSGI when the server closes
the response), then runs; called anywhere else, it runs at once. Async functions run as tasks
on the event loop (the server's; under WSGI a loop of the jobs' own in a daemon thread), sync
functions in a thread pool of the jobs' own. Each job runs in a copy of the context it was
submitted in, so its log lines carry the request id of the request that asked for it.

Bounds: at most `concurrency` jobs run at once (8 by default); up to `max_queued` more wait
(1,000 by default, jobs held back until their response is sent included). When the queue is
full a new job is dropped: `background()` returns False, the
`launchready_background_dropped_total` counter goes up, and one warning a second at most says
how many were dropped. An async job that runs longer than `timeout_s` (300 s by default) is
cancelled (`background.timed_out`); a sync one cannot be (Python threads cannot be stopped),
so it keeps its slot and `background.slow` names it. A job that raises is
logged (`background.failed`, with the traceback through the redacting log pipeline) and
never reaches a response.

Shutdown (ASGI lifespan, or the WSGI process's exit) drains: no new job starts, running ones
get `drain_timeout_s` (10 s) to finish, then async ones are cancelled; how many were left is
logged.

Security stance: a job's arguments are never logged, only its function's name; its failure
goes through the same redaction as every log line.

Limits, candidly: jobs live in the process's memory, so a crash or a `kill -9` loses the
queued ones, and nothing is retried: work that must survive that belongs in a task queue
(Celery, with `launchready_sdk.celery.propagate_request_ids()` carrying the request id there).
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import contextvars
import functools
import inspect
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from launchready_sdk.context import RequestContext, current
from launchready_sdk.logs import get_logger

_log = get_logger("launchready.background")

DEFAULT_CONCURRENCY = 8
DEFAULT_MAX_QUEUED = 1000
DEFAULT_TIMEOUT_S = 300.0
DEFAULT_DRAIN_TIMEOUT_S = 10.0
_RELEASED: list[Any] = []  # `ctx.jobs` once the response is sent: later jobs start at once


@dataclass
class _Job:
    fn: Callable[..., Any]
    args: tuple[Any, ...]
    kwargs: dict[str, Any]
    context: contextvars.Context
    loop: asyncio.AbstractEventLoop | None
    name: str = field(default="")


class BackgroundJobs:
    """Runs jobs off the request path, bounded in concurrency and queue length.

    Args:
        concurrency: jobs running at once.
        max_queued: jobs waiting (held back for their response, or for a free slot).
        timeout_s: an async job running longer is cancelled; a sync one is reported.
        drain_timeout_s: how long shutdown waits for running jobs.
    """

    def __init__(
        self,
        *,
        concurrency: int = DEFAULT_CONCURRENCY,
        max_queued: int = DEFAULT_MAX_QUEUED,
        timeout_s: float = DEFAULT_TIMEOUT_S,
        drain_timeout_s: float = DEFAULT_DRAIN_TIMEOUT_S,
    ) -> None:
        if concurrency < 1 or max_queued < 0:
            raise ValueError("concurrency must be at least 1 and max_queued at least 0")
        self.concurrency = concurrency
        self.max_queued = max_queued
        self.timeout_s = timeout_s
        self.drain_timeout_s = drain_timeout_s
        self.dropped = 0
        self.failed = 0
        self.completed = 0
        self._lock = threading.Lock()
        self._waiting: collections.deque[_Job] = collections.deque()
        self._held = 0  # jobs held back until their response is sent
        self._running = 0
        self._idle = threading.Event()  # set while no job runs
        self._idle.set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._closed = False
        self._executor: concurrent.futures.ThreadPoolExecutor | None = None
        self._runner: Any = None  # the jobs' own loop thread, when no loop runs where submitted
        self._last_drop_log = 0.0
        self._drops_unlogged = 0

    @property
    def queued(self) -> int:
        """Jobs waiting now (held back for their response, or for a slot)."""
        return len(self._waiting) + self._held

    @property
    def running(self) -> int:
        """Jobs running now."""
        return self._running

    def submit(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> bool:
        """Run `fn(*args, **kwargs)` after the current response is sent (at once outside a
        request). False when the job was dropped (queue full, or shutting down)."""
        try:
            loop: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
        except RuntimeError:
            loop = None
        job = _Job(fn, args, kwargs, contextvars.copy_context(), loop, _name_of(fn))
        with self._lock:
            if self._closed or self.queued >= self.max_queued:
                self._dropped(job)
                return False
            ctx = current()
            if ctx is not None and ctx.jobs is not _RELEASED:
                self._held += 1
                if ctx.jobs is None:
                    ctx.jobs = []
                ctx.jobs.append(job)
                return True
            self._enqueue(job)
        return True

    def release(self, ctx: RequestContext) -> None:
        """The response of `ctx`'s request has been sent: start the jobs it held back
        (called by the request-context layer)."""
        jobs: list[_Job] | None = ctx.jobs
        ctx.jobs = _RELEASED
        if not jobs:
            return
        with self._lock:
            self._held -= len(jobs)
            for job in jobs:
                if self._closed:
                    self._dropped(job)
                else:
                    self._enqueue(job)

    def _enqueue(self, job: _Job) -> None:
        # Under the lock.
        if self._running < self.concurrency:
            self._running += 1
            self._idle.clear()
            self._launch(job)
        else:
            self._waiting.append(job)

    def _launch(self, job: _Job) -> None:
        loop = job.loop
        if loop is None or loop.is_closed() or not loop.is_running():
            loop = self._own_loop()
        coroutine = self._run(job)
        try:
            here = asyncio.get_running_loop()
        except RuntimeError:
            here = None
        if loop is here:
            self._track(loop.create_task(coroutine, context=job.context))
        else:
            loop.call_soon_threadsafe(
                lambda: self._track(loop.create_task(coroutine, context=job.context))
            )

    def _track(self, task: asyncio.Task[None]) -> None:
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _own_loop(self) -> asyncio.AbstractEventLoop:
        from launchready_sdk.wsgi import LoopThread

        runner = self._runner
        if runner is None or not runner.alive:
            runner = self._runner = LoopThread("launchready-jobs")
        loop: asyncio.AbstractEventLoop = runner.loop
        return loop

    async def _run(self, job: _Job) -> None:
        started = time.monotonic()
        limit = asyncio.timeout(self.timeout_s)
        try:
            if inspect.iscoroutinefunction(job.fn):
                async with limit:
                    await job.fn(*job.args, **job.kwargs)
            else:
                # A copy: the task's own steps run in `job.context` meanwhile.
                call = functools.partial(job.context.copy().run, job.fn, *job.args, **job.kwargs)
                future = asyncio.get_running_loop().run_in_executor(self._pool(), call)
                try:
                    await asyncio.wait_for(asyncio.shield(future), self.timeout_s)
                except TimeoutError:
                    _log.warning("background.slow", job=job.name, timeout_s=self.timeout_s)
                    await future  # a thread cannot be stopped: it keeps its slot
            self.completed += 1
        except asyncio.CancelledError:
            _log.warning("background.cancelled", job=job.name)
            raise
        except TimeoutError as exc:
            if not limit.expired():
                self._failed(job, started, exc)
            else:
                self.failed += 1
                _log.warning("background.timed_out", job=job.name, timeout_s=self.timeout_s)
        except BaseException as exc:
            self._failed(job, started, exc)
        finally:
            self._finished()

    def _failed(self, job: _Job, started: float, exc: BaseException) -> None:
        self.failed += 1
        duration_ms = round((time.monotonic() - started) * 1000, 3)
        _log.error("background.failed", job=job.name, duration_ms=duration_ms, exc_info=exc)

    def _finished(self) -> None:
        with self._lock:
            if self._waiting and not self._closed:
                self._launch(self._waiting.popleft())
            else:
                self._running -= 1
                if not self._running:
                    self._idle.set()

    def _pool(self) -> concurrent.futures.ThreadPoolExecutor:
        if self._executor is None:
            self._executor = concurrent.futures.ThreadPoolExecutor(
                self.concurrency, thread_name_prefix="launchready-job"
            )
        return self._executor

    def _dropped(self, job: _Job) -> None:
        # Under the lock: count, and warn at most once a second.
        self.dropped += 1
        self._drops_unlogged += 1
        now = time.monotonic()
        if now - self._last_drop_log >= 1.0:
            _log.warning(
                "background.dropped",
                job=job.name,
                dropped=self._drops_unlogged,
                reason="shutting down" if self._closed else "queue full",
                max_queued=self.max_queued,
            )
            self._last_drop_log = now
            self._drops_unlogged = 0

    async def drain(self, timeout_s: float | None = None) -> int:
        """Stop taking jobs, wait for running ones (up to `timeout_s`, by default
        `drain_timeout_s`), cancel those left; how many were left (waiting ones included)."""
        with self._lock:
            self._closed = True
            abandoned = len(self._waiting)
            self._waiting.clear()
        deadline = time.monotonic() + (self.drain_timeout_s if timeout_s is None else timeout_s)
        if self._running:
            wait = max(0.0, deadline - time.monotonic())
            await asyncio.get_running_loop().run_in_executor(None, self._idle.wait, wait)
        left = self._running
        for task in list(self._tasks):
            loop = task.get_loop()
            if not loop.is_closed():
                loop.call_soon_threadsafe(task.cancel)
        if self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)
        runner, self._runner = self._runner, None
        if runner is not None:
            runner.stop(1.0)
        if left or abandoned:
            _log.warning("background.abandoned", running=left, waiting=abandoned)
        return left + abandoned


def _name_of(fn: Callable[..., Any]) -> str:
    name = getattr(fn, "__qualname__", None) or getattr(fn, "__name__", None) or repr(type(fn))
    module = getattr(fn, "__module__", None)
    return f"{module}.{name}" if module else str(name)
