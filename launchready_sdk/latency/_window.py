"""The rolling window: one series' per-minute histograms, the minute in progress and its total."""

from __future__ import annotations

from collections import deque

from launchready_sdk.latency._histogram import LogLinearHistogram

SeriesKey = tuple[str, str, int]  # method, route template, status class (2 for 2xx)


class RollingHistogram:
    """One key's histogram for the minute in progress, the previous minutes and since start."""

    __slots__ = ("_past", "current", "minute", "ring", "total", "version")

    def __init__(self, window_slots: int, minute: int) -> None:
        self.current = LogLinearHistogram()
        self.minute = minute
        self.ring: deque[tuple[int, LogLinearHistogram]] = deque(maxlen=window_slots)
        self.total = LogLinearHistogram()
        # The merge of the finished minutes of the last window asked for, and that window's
        # oldest minute: finished minutes never change, so a snapshot merges them once.
        self._past: tuple[int, LogLinearHistogram] | None = None
        self.version = 0  # bumped whenever a finished minute joins the ring and the total

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
            self._past = None
            self.version += 1
        self.minute = minute

    def window(self, minute: int, slots: int) -> LogLinearHistogram:
        """The merge of the minutes in (minute - slots, minute]."""
        out = LogLinearHistogram()
        for part in self.window_parts(minute, slots):
            out.merge(part)
        return out

    def window_parts(self, minute: int, slots: int) -> list[LogLinearHistogram]:
        """Histograms whose merge is `window(minute, slots)`: the finished minutes, merged
        once and kept until the ring turns, and the minute in progress."""
        oldest = minute - slots
        parts: list[LogLinearHistogram] = []
        past = self.past(oldest)
        if past.count:
            parts.append(past)
        if self.minute >= oldest and self.current.count:
            parts.append(self.current)
        return parts

    def past(self, oldest: int) -> LogLinearHistogram:
        """The merge of the finished minutes from `oldest` on (kept until the ring turns)."""
        past = self._past
        if past is None or past[0] != oldest:
            merged = LogLinearHistogram()
            for m, h in list(self.ring):
                if m >= oldest:
                    merged.merge(h)
            past = self._past = (oldest, merged)
        return past[1]

    def since_start(self) -> LogLinearHistogram:
        return LogLinearHistogram().merge(self.total).merge(self.current)

    def minute_hist(self, minute: int) -> LogLinearHistogram | None:
        if self.minute == minute:
            return self.current
        for m, h in list(self.ring):
            if m == minute:
                return h
        return None
