"""Query timing through Django's execute wrappers, and the database readiness check."""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

from launchready_sdk.dbtiming import QueryStats
from launchready_sdk.errors import LaunchReadyError


class _QueryTimer:
    """The execute wrapper put on every Django connection: times each statement."""

    def __init__(self) -> None:
        self.stats: QueryStats | None = None

    def attach(self, sender: object, connection: Any, **_: Any) -> None:
        wrappers = getattr(connection, "execute_wrappers", None)
        if isinstance(wrappers, list) and self not in wrappers:
            wrappers.append(self)

    def __call__(
        self,
        execute: Callable[..., Any],
        sql: str,
        params: Any,
        many: bool,
        context: Mapping[str, Any],
    ) -> Any:
        stats = self.stats
        if stats is None:
            return execute(sql, params, many, context)
        start = time.perf_counter()
        try:
            result = execute(sql, params, many, context)
        except Exception:
            stats.record(sql, time.perf_counter() - start, failed=True)
            raise
        stats.record(sql, time.perf_counter() - start)
        return result


TIMER = _QueryTimer()


class DatabaseCheck:
    """A readiness check: `SELECT 1` on a fresh connection to `alias`, in a worker thread.

    The connection is closed after each check, and its statement is not timed. A check that
    is still running (a database that accepts and never answers) makes the next one fail at
    once, so stuck threads never pile up.
    """

    def __init__(self, alias: str = "default") -> None:
        self.alias = alias
        self._busy = threading.Lock()

    async def __call__(self) -> None:
        if not self._busy.acquire(blocking=False):
            raise DatabaseCheckBusy(self.alias)
        try:
            future = asyncio.get_running_loop().run_in_executor(None, self._ping)
        except BaseException:
            self._busy.release()
            raise
        await future

    def _ping(self) -> None:
        try:
            from django.db import connections

            connection = connections.create_connection(self.alias)
            try:
                connection.ensure_connection()
                cursor = connection.connection.cursor()
                try:
                    cursor.execute("SELECT 1")
                    cursor.fetchone()
                finally:
                    cursor.close()
            finally:
                connection.close()
        finally:
            self._busy.release()


class DatabaseCheckBusy(LaunchReadyError):
    """The previous readiness check of this database has not finished."""


def quiet_query_log() -> None:
    # Django's query debug lines interpolate the parameter values into the SQL.
    logger = logging.getLogger("django.db.backends")
    if logger.level < logging.INFO:
        logger.setLevel(logging.INFO)
