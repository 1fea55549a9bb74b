"""The event-loop monitor: how long the loop was blocked, and what blocked it.

A request on an async server waits whenever anything on the event loop runs without yielding:
a `time.sleep`, a sync database driver or HTTP client, a big `json.dumps`, CPU work. Every
request in flight waits for it, not only the one that called it. `LoopMonitor` measures that.

Two parts, both cheap enough to stay on in production:

- **A tick on the loop.** A timer callback re-arms itself every `interval_s` (10 ms) and
  measures how late it ran. A lateness of at least 5 ms is a block: its interval is kept (the
  last 64), added to `blocked_s`, and charged to every request in flight during it
  (`blocked_during`, which `launchready_sdk.breakdown` calls after each response). A block of
  at least `stall_ms` (100 ms by default, the `loop_stall_ms` setting) is a *stall*: it is
  logged once, as `loop.stall`, with how long it lasted, the route whose code was running,
  the routes in flight, the stack that blocked, and `blocked_at`: its innermost frame outside
  the standard library and installed packages (the app's own line).
- **A watchdog thread.** It wakes every `stall_ms / 4` and, when the tick is overdue by half
  the threshold, takes the loop thread's stack (`sys._current_frames()`), the task running on
  the loop and the requests in flight, once per block. That is what asyncio's debug mode
  cannot give cheaply: debug mode names the slow callback after the fact and costs on every
  callback; this costs nothing per callback, and takes a stack only while the loop is stuck.

What it costs: a timer callback every 10 ms (about 3 µs each, 0.03 % of a core) and a thread
wake every 25 ms (a few µs, and a brief GIL hand-over when the loop is busy); per request, a
dict entry for the request in flight and two comparisons after the response. The benchmark
(`benchmarks/bench_breakdown.py`) finds no difference in server CPU per request with the
monitor on or off.

Security stance: the log line names route templates and code locations (file, line,
function): never request paths, query strings, headers or variable values.

Limits, candidly: a block is measured by the tick's lateness, so one that began between two
ticks is counted up to one interval short (at most 10 ms). When the running code belongs to
no request the SDK knows (a background task, or a task the app started) the stall names every
route in flight instead of the one that ran; Django's views, which run in a task of their own,
are known (its middleware calls `serving`). A request still being routed when the stall is
logged is named `<not routed yet>`. A stall is logged when the
loop wakes from it, so a loop blocked for ever is never logged (the watchdog has its stack,
but logging from the watchdog would need the loop). One monitor watches one loop: the loop
that started it.
"""

from __future__ import annotations

import asyncio
import math
import sys
import sysconfig
import threading
import time
import traceback
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from launchready_sdk.context import SCOPE_CONTEXT, SCOPE_METHOD
from launchready_sdk.logs import get_logger
from launchready_sdk.routing import route_template
from launchready_sdk.types import Scope

__all__ = [
    "BLOCK_FLOOR_S",
    "DEFAULT_INTERVAL_S",
    "DEFAULT_STALL_MS",
    "LoopMonitor",
    "Stall",
    "serving",
]

_log = get_logger("launchready.loop")

DEFAULT_STALL_MS = 100.0
DEFAULT_INTERVAL_S = 0.01
BLOCK_FLOOR_S = 0.005  # a tick this late means something held the loop
_RECENT_BLOCKS = 64
_STACK_FRAMES = 12
UNKNOWN_ROUTE = ("-", "<no request>")
NOT_ROUTED = "<not routed yet>"

RouteKey = tuple[str, str]
Request = tuple[Scope, str]  # a request's scope and the root path it arrived with
_running_monitors: set[LoopMonitor] = set()


@dataclass(slots=True)
class Stall:
    """What the watchdog saw while the loop was stuck, then how long it lasted."""

    due: float  # when the tick should have run: the stall began at or before it
    stack: list[str] = field(default_factory=list)
    running: Request | None = None  # the request whose task was on the loop, when known
    in_flight: list[Request] = field(default_factory=list)
    blocked_s: float = 0.0


class LoopMonitor:
    """Measures event-loop blocks, charges them to requests, and logs stalls once.

    Args:
        stall_ms: a block at least this long is a stall, logged with its stack.
        interval_s: how often the tick runs; a block is measured up to this much short.
    """

    def __init__(
        self, *, stall_ms: float = DEFAULT_STALL_MS, interval_s: float = DEFAULT_INTERVAL_S
    ) -> None:
        if not stall_ms > 0 or not interval_s > 0:
            raise ValueError("stall_ms and interval_s must be positive")
        self.stall_s = stall_ms / 1000
        self.interval_s = interval_s
        self.in_flight: dict[Any, Request] = {}  # task -> the request it serves
        self.due = math.inf  # when the next tick should run (perf_counter)
        self.last_end = -math.inf  # when the latest recorded block ended
        self.blocked_s = 0.0
        self.stalls = 0
        self.stalls_by_route: dict[RouteKey, int] = {}
        self.last_stall: Stall | None = None
        self._recent: deque[tuple[float, float]] = deque(maxlen=_RECENT_BLOCKS)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._handle: asyncio.TimerHandle | None = None
        self._loop_thread = 0
        self._watchdog: threading.Thread | None = None
        self._stop = threading.Event()
        self._seen: Stall | None = None

    @property
    def running(self) -> bool:
        """Whether it watches a loop that is still open."""
        return self._loop is not None and not self._loop.is_closed()

    def start(self) -> None:
        """Start watching the running loop (idempotent; call from the loop's thread; without a
        running loop, as under WSGI, it does nothing)."""
        if self._loop is not None and not self._loop.is_closed():
            return
        try:
            self._loop = asyncio.get_running_loop()
        except RuntimeError:
            return
        self._loop_thread = threading.get_ident()
        self._stop.clear()
        self._arm(time.perf_counter())
        self._watchdog = threading.Thread(
            target=self._watch, name="launchready-loop-monitor", daemon=True
        )
        self._watchdog.start()
        _running_monitors.add(self)

    def stop(self) -> None:
        """Stop the tick and the watchdog."""
        _running_monitors.discard(self)
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None
        self._loop = None
        self.due = math.inf
        self._stop.set()
        if self._watchdog is not None and self._watchdog is not threading.current_thread():
            self._watchdog.join(timeout=1.0)
        self._watchdog = None

    # --- the tick, on the loop ---------------------------------------------------------------

    def _arm(self, now: float) -> None:
        loop = self._loop
        if loop is None:
            return
        self.due = now + self.interval_s
        self._handle = loop.call_later(self.interval_s, self._tick)

    def _tick(self) -> None:
        now = time.perf_counter()
        late = now - self.due
        try:
            if late >= BLOCK_FLOOR_S:
                self._blocked(self.due, now, late)
        except Exception:  # a failed report must not stop the monitor
            _log.debug("loop.report_failed", exc_info=True)
        self._arm(now)

    def _blocked(self, start: float, end: float, seconds: float) -> None:
        self.blocked_s += seconds
        self._recent.append((start, end))
        self.last_end = end
        if seconds >= self.stall_s:
            seen, self._seen = self._seen, None
            stall = seen if seen is not None and seen.due == start else Stall(start)
            stall.blocked_s = seconds
            self._report(stall)

    def _report(self, stall: Stall) -> None:
        self.stalls += 1
        self.last_stall = stall
        # Routes are read now, after the block: a request routed while it ran is named.
        running = _route(*stall.running) if stall.running is not None else None
        in_flight = _routes(stall.in_flight)
        charged = [running] if running is not None else in_flight
        for key in dict.fromkeys(charged or [UNKNOWN_ROUTE]):
            self.stalls_by_route[key] = self.stalls_by_route.get(key, 0) + 1
        _log.warning(
            "loop.stall",
            blocked_ms=round(stall.blocked_s * 1000, 1),
            threshold_ms=round(self.stall_s * 1000, 1),
            running=_name(running) if running is not None else None,
            blocked_at=_own_frame(stall.stack),
            in_flight=[_name(k) for k in in_flight],
            blocking_stack=stall.stack,
            hint="something ran on the event loop without yielding (a sync call, time.sleep, "
            "CPU work); every request in flight waited for it",
        )

    # --- per request --------------------------------------------------------------------------

    def blocked_during(self, start: float, end: float) -> float:
        """Seconds the loop was blocked between `start` and `end` (perf_counter readings).

        A block still in progress at `end` (the tick overdue) counts up to `end`.
        """
        total = 0.0
        if self.last_end > start:
            for low, high in reversed(self._recent):
                if high <= start:
                    break
                total += max(0.0, min(high, end) - max(low, start))
        due = self.due
        if end - due >= BLOCK_FLOOR_S:
            total += end - max(due, start)
        return total

    # --- the watchdog thread ------------------------------------------------------------------

    def _watch(self) -> None:
        check_s = max(0.005, self.stall_s / 4)
        capture_after = self.stall_s / 2
        while not self._stop.wait(check_s):
            loop = self._loop
            if loop is None or loop.is_closed():  # its loop is gone: so is the monitor
                _running_monitors.discard(self)
                return
            due = self.due
            if time.perf_counter() - due < capture_after:
                continue
            seen = self._seen
            if seen is not None and seen.due == due:
                continue
            try:
                self._seen = self._capture(due)
            except Exception:  # whatever goes wrong here must not stop the watching
                _log.debug("loop.capture_failed", exc_info=True)
                self._seen = Stall(due)

    def _capture(self, due: float) -> Stall:
        stall = Stall(due)
        frame = sys._current_frames().get(self._loop_thread)
        if frame is not None:
            stall.stack = _stack(frame)
        loop = self._loop
        task = asyncio.current_task(loop) if loop is not None else None
        requests = self.in_flight.copy()
        stall.running = requests.get(task) if task is not None else None
        stall.in_flight = list(requests.values())
        return stall


def _stack(frame: Any) -> list[str]:
    """The innermost frames, outermost first, as `file:line in function` (no source is read:
    the loop thread may resume at any moment, and reading files would give it time to)."""
    frames = []
    for f, lineno in traceback.walk_stack(frame):
        frames.append(f"{f.f_code.co_filename}:{lineno} in {f.f_code.co_name}")
        if len(frames) >= _STACK_FRAMES:
            break
    return frames[::-1]


_LIBRARIES = tuple(
    {
        sysconfig.get_paths()["stdlib"],
        sysconfig.get_paths()["purelib"],
        sysconfig.get_paths()["platlib"],
    }
)


def _own_frame(stack: list[str]) -> str | None:
    """The innermost frame outside the standard library and installed packages: the app's
    own line that blocked (or None when every frame is a library's)."""
    for frame in reversed(stack):
        if not frame.startswith(_LIBRARIES):
            return frame
    return None


def serving(scope: Scope) -> Callable[[], None]:
    """Count the current task as serving the request of `scope` while it runs (for a
    framework that runs a view in a task of its own, as Django does): a stall in it is then
    charged to that request's route. Returns the function that ends it."""
    task = asyncio.current_task()
    monitors = [m for m in _running_monitors if task is not None and task not in m.in_flight]
    for monitor in monitors:
        monitor.in_flight[task] = (scope, "")

    def done() -> None:
        for monitor in monitors:
            monitor.in_flight.pop(task, None)

    return done


def _routes(requests: list[Request]) -> list[RouteKey]:
    """The routes of the requests, one per request (a request registered twice, by its own
    task and by the task a framework ran its view in, counts once, under its known route)."""
    by_request: dict[int, RouteKey] = {}
    for scope, root_path in requests:
        key = _route(scope, root_path)
        ident = id(scope.get(SCOPE_CONTEXT, scope))
        if by_request.get(ident, (None, NOT_ROUTED))[1] == NOT_ROUTED:
            by_request[ident] = key
    return list(dict.fromkeys(by_request.values()))


def _route(scope: Scope, root_path: str) -> RouteKey:
    method = str(scope.get(SCOPE_METHOD) or scope.get("method") or "GET")
    try:
        template = route_template(scope, root_path)
    except Exception:
        template = None
    return method, template or NOT_ROUTED


def _name(key: RouteKey) -> str:
    return key[1] if key == UNKNOWN_ROUTE else f"{key[0]} {key[1]}"
