"""`SlowRequests`: the latest requests that went over their route's budget, in a bounded ring."""

from __future__ import annotations

import time
from collections import deque
from typing import Any

from launchready_sdk.context import RequestContext
from launchready_sdk.latency import KNOWN_METHODS, UNMATCHED, LatencyTracker

DEFAULT_SLOW_KEPT = 50
_MAX_BUDGETS = 4096

# (at, method, route, status, duration_s, budget_s, request_id)
SlowEntry = tuple[float, str, str, int, float, float, str]


class SlowRequests:
    """The last `size` requests slower than their route's budget.

    The request-context layer's observer compares each request's duration with `floor_s` (the
    smallest budget of any route): one comparison per request. Only a request slower than that
    reaches `offer`, which looks its route's budget up (remembered per route) and keeps it when
    over. What is kept is the route template, the method from a fixed list, the status, the
    duration and the request id: never the path, query, headers or body.

    Args:
        tracker: where route budgets come from.
        floor_ms: the smallest budget of any route.
        size: how many slow requests are kept.
    """

    def __init__(self, tracker: LatencyTracker, *, floor_ms: float, size: int = DEFAULT_SLOW_KEPT):
        self.tracker = tracker
        self.floor_s = floor_ms / 1000.0
        self.ring: deque[SlowEntry] = deque(maxlen=size)
        self.seen = 0
        self._budgets: dict[tuple[str, str], float] = {}

    def offer(self, ctx: RequestContext, status: int, duration_s: float) -> None:
        """Keep the request when it went over its route's budget."""
        method = ctx.method if ctx.method in KNOWN_METHODS else "OTHER"
        key = (method, ctx.route or UNMATCHED)
        budget = self._budgets.get(key)
        if budget is None:
            if len(self._budgets) >= _MAX_BUDGETS:
                self._budgets.clear()
            budget = self._budgets[key] = self.tracker.budget_for(*key) / 1000.0
        if duration_s > budget:
            self.seen += 1
            self.ring.append(
                (time.time(), key[0], key[1], status or 499, duration_s, budget, ctx.request_id)
            )

    def entries(self) -> list[SlowEntry]:
        """The kept requests, newest first."""
        return list(reversed(self.ring))


def slow_record(entry: SlowEntry | list[Any]) -> dict[str, Any]:
    """A kept request as the JSON view shows it (`at` is epoch seconds until rendered)."""
    at, method, route, status, duration_s, budget_s, request_id = entry
    return {
        "at": float(at),
        "method": str(method),
        "route": str(route),
        "status": int(status),
        "duration_ms": round(float(duration_s) * 1000.0, 3),
        "budget_ms": round(float(budget_s) * 1000.0, 3),
        "request_id": str(request_id),
    }
