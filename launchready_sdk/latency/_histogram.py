"""The log-linear histogram: its bins, merge, quantiles, wire format, bucket bounds and figures."""

from __future__ import annotations

import math
from bisect import bisect_left
from collections.abc import Iterable
from itertools import accumulate
from typing import Any

DEFAULT_BUCKETS_S = (
    0.005,
    0.01,
    0.025,
    0.05,
    0.075,
    0.1,
    0.25,
    0.5,
    0.75,
    1.0,
    2.5,
    5.0,
    7.5,
    10.0,
)
_QUANTILES = (0.5, 0.95, 0.99)


_PER_DECADE = 360  # 40 linear bins per tenth of a decade: the bin width is 2.5 % of its decade
_DECADES = 8  # 1 µs .. 100 s
NBINS = _PER_DECADE * _DECADES
_POW10 = tuple(10.0**k for k in range(_DECADES + 1))
_MAX_US = _POW10[_DECADES]


def bin_index(seconds: float) -> int:
    """The bin of a duration: below 1 µs in the first, above 100 s in the last."""
    us = seconds * 1e6
    if us < 1.0:
        return 0
    if not us < _MAX_US:  # also NaN and infinity
        return NBINS - 1
    k = int(math.log10(us))
    base = _POW10[k]
    return k * _PER_DECADE + min(int((us - base) * 40.0 / base), _PER_DECADE - 1)


def bin_bounds(index: int) -> tuple[float, float]:
    """A bin's [low, high) edges in seconds."""
    k, j = divmod(index, _PER_DECADE)
    base = _POW10[k] / 1e6
    return base * (1 + j / 40), base * (1 + (j + 1) / 40)


class LogLinearHistogram:
    """Durations in seconds, counted in at most `NBINS` log-linear bins (relative error ≤ 1.25 %).

    Insert is O(1); histograms merge by adding bins, and `to_wire()`/`from_wire()` give a
    compact JSON-able list. Memory is bounded by `NBINS` entries; a typical route uses a few
    hundred.
    """

    __slots__ = ("bins", "count", "max", "min", "sum")

    def __init__(self) -> None:
        self.bins: dict[int, int] = {}
        self.count = 0
        self.sum = 0.0
        self.min = math.inf
        self.max = 0.0

    def record(self, seconds: float) -> None:
        """Count one duration."""
        us = seconds * 1e6
        if 1.0 <= us < _MAX_US:  # bin_index, inlined: this runs on every request
            k = int(math.log10(us))
            base = _POW10[k]
            j = int((us - base) * 40.0 / base)  # 360 only by rounding, at a decade's top
            i = k * _PER_DECADE + (j if j < _PER_DECADE else _PER_DECADE - 1)
        else:
            i = bin_index(seconds)
        bins = self.bins
        bins[i] = bins.get(i, 0) + 1
        self.count += 1
        self.sum += seconds
        if seconds > self.max:
            self.max = seconds
        if seconds < self.min:
            self.min = seconds

    def copy(self) -> LogLinearHistogram:
        """A histogram with the same counts."""
        return LogLinearHistogram().merge(self)

    def merge(self, other: LogLinearHistogram) -> LogLinearHistogram:
        """Add `other`'s counts to this histogram; returns self."""
        bins = self.bins
        if not bins:  # into an empty histogram: a copy, done in C
            self.bins = dict(other.bins)
        else:
            for i, n in list(other.bins.items()):
                bins[i] = bins.get(i, 0) + n
        self.count += other.count
        self.sum += other.sum
        self.min = min(self.min, other.min)
        self.max = max(self.max, other.max)
        return self

    def quantile(self, q: float) -> float | None:
        """The nearest-rank `q` quantile (0 < q ≤ 1) in seconds, or None when empty."""
        return self.quantiles((q,))[0]

    def quantiles(self, qs: Iterable[float]) -> list[float | None]:
        """Several nearest-rank quantiles (each 0 < q ≤ 1) from one sort of the bins; None each
        when empty."""
        wanted = list(qs)
        if self.count == 0:
            return [None] * len(wanted)
        bins = self.bins
        keys = sorted(bins)
        running = list(accumulate([bins[k] for k in keys]))
        out: list[float | None] = []
        for q in wanted:
            at = bisect_left(running, max(1, math.ceil(q * self.count)))
            if at >= len(keys):
                out.append(self.max)
                continue
            low, high = bin_bounds(keys[at])
            out.append(min(max((low + high) / 2, self.min), self.max))
        return out

    def count_above(self, seconds: float) -> int:
        """How many durations fell in bins wholly above `seconds`."""
        edge = bin_index(seconds) + 1
        return sum(n for i, n in list(self.bins.items()) if i >= edge)

    def cumulative(self, bounds: Iterable[float]) -> list[int]:
        """Counts at or below each bound (bounds must be bin edges, in increasing order)."""
        edges = [bin_index(b * (1 + 1e-9)) for b in bounds]
        out = [0] * len(edges)
        for i, n in list(self.bins.items()):
            for k, edge in enumerate(edges):
                if i < edge:
                    out[k] += n
        return out

    def to_wire(self) -> list[float]:
        """`[count, sum, min, max, bin, n, bin, n, ...]`."""
        wire: list[float] = [self.count, self.sum, self.min if self.count else 0.0, self.max]
        for i, n in self.bins.items():
            wire += (i, n)
        return wire

    @classmethod
    def from_wire(cls, wire: list[Any]) -> LogLinearHistogram:
        """The inverse of `to_wire` (bins out of range are dropped)."""
        h = cls()
        h.count, h.sum, h.max = int(wire[0]), float(wire[1]), float(wire[3])
        h.min = float(wire[2]) if h.count else math.inf
        for k in range(4, len(wire) - 1, 2):
            i = int(wire[k])
            if 0 <= i < NBINS:
                h.bins[i] = h.bins.get(i, 0) + int(wire[k + 1])
        return h


def check_buckets(bounds: Iterable[float]) -> tuple[float, ...]:
    """Validate Prometheus bucket bounds: increasing, each one a histogram bin edge."""
    out = tuple(float(b) for b in bounds)
    for b in out:
        low, _ = bin_bounds(bin_index(b * (1 + 1e-9)))
        if not 1e-6 <= b <= 100 or abs(low - b) > b * 1e-9:
            raise ValueError(
                f"bucket {b} s is not a bin edge: use multiples of 0.025 times 10^k (0.1, 0.125)"
            )
    if list(out) != sorted(set(out)):
        raise ValueError("bucket bounds must be strictly increasing")
    return out


def describe_histogram(h: LogLinearHistogram, errors: int) -> dict[str, Any]:
    """Count, errors, error rate, p50/p95/p99 and max (ms) of a histogram."""
    p50, p95, p99 = h.quantiles(_QUANTILES)
    return {
        "count": h.count,
        "errors": errors,
        "error_rate": round(errors / h.count, 6) if h.count else 0.0,
        "p50_ms": _ms(p50),
        "p95_ms": _ms(p95),
        "p99_ms": _ms(p99),
        "max_ms": _ms(h.max) if h.count else None,
    }


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1000, 3)
