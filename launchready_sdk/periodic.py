"""`Periodic`: one background task that runs a step every few seconds, between the lifespan's
start-up and shutdown, and a last time when it stops (a final flush before Redis closes).

A step that raises is logged at debug level and the next one runs on time: background work
never ends itself, and never reaches a request.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable

from launchready_sdk.logs import get_logger

_log = get_logger("launchready.periodic")


class Periodic:
    """Runs `step()` every `interval_s` from `start()` to `stop()`, and `final()` at stop.

    Args:
        name: names the task and its failures in the logs.
        interval_s: seconds between the end of one step and the start of the next.
        step: the work of one round.
        final: run once by `stop()` after the task ends (default: `step`); its failure is
            swallowed.
    """

    def __init__(
        self,
        name: str,
        interval_s: float,
        step: Callable[[], Awaitable[object]],
        final: Callable[[], Awaitable[object]] | None = None,
    ) -> None:
        self.name = name
        self.interval_s = interval_s
        self._step = step
        self._final = final or step
        self._task: asyncio.Task[None] | None = None

    @property
    def running(self) -> bool:
        return self._task is not None

    async def start(self) -> None:
        """Start the task (once; later calls do nothing)."""
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run(), name=self.name)

    async def stop(self) -> None:
        """Stop the task and run the final step."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        with contextlib.suppress(Exception):
            await self._final()

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.interval_s)
            try:
                await self._step()
            except Exception:
                _log.debug("periodic.step_failed", task=self.name, exc_info=True)
