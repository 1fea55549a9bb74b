"""The rolling window: one series' per-minute histograms, the minute in progress and its total."""

from __future__ import annotations

from collections import deque

from launchready_sdk.latency._histogram import LogLinearHistogram

SeriesKey = tuple[str, str, int]  # method, route template, status class (2 for 2xx)


class RollingHistogram:
    """One key's histogram for the minute in progress, the previous minutes and since start."""

    __slots__ = ("current", "minute", "ring", "total")

    def __init__(self, window_slots: int, minute: int) -> None:
        self.current = LogLinearHistogram()
        self.minute = minute
        self.ring: deque[tuple[int, LogLinearHistogram]] = deque(maxlen=window_slots)
        self.total = LogLinearHistogram()

    def record(self, seconds: float, minute: int) -> None:
        """Count one duration in `minute` (a minute number; earlier ones count as the current)."""
        if minute > self.minute:
            self.rotate(minute)
        self.current.record(seconds)

    def rotate(self, minute: int) -> None:
        if self.current.count:
            self.ring.append((self.minute, self.current))
            self.total.merge(self.current)
            self.current = LogLinearHistogram()
        self.minute = minute

    def window(self, minute: int, slots: int) -> LogLinearHistogram:
        """The merge of the minutes in (minute - slots, minute]."""
        out = LogLinearHistogram()
        if self.minute > minute - slots - 1:
            out.merge(self.current)
        for m, h in list(self.ring):
            if m > minute - slots - 1:
                out.merge(h)
        return out

    def since_start(self) -> LogLinearHistogram:
        return LogLinearHistogram().merge(self.total).merge(self.current)

    def minute_hist(self, minute: int) -> LogLinearHistogram | None:
        if self.minute == minute:
            return self.current
        for m, h in list(self.ring):
            if m == minute:
                return h
        return None
