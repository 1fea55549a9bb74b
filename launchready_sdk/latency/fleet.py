"""Reading the fleet back from Redis: hash replies, workers' wire blobs, stale totals."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import orjson

from launchready_sdk.latency.histogram import LogLinearHistogram
from launchready_sdk.latency.window import SeriesKey

_FLEET_STALE_S = 3600.0


def _pairs(reply: Any) -> Iterator[tuple[bytes, bytes]]:
    items = list(reply or [])
    for k in range(0, len(items) - 1, 2):
        yield items[k], items[k + 1]


def _merge_blob(into: dict[SeriesKey, LogLinearHistogram], blob: Any) -> None:
    for method, route, klass, wire in blob:
        key = (str(method), str(route), int(klass))
        h = into.get(key)
        if h is None:
            into[key] = LogLinearHistogram.from_wire(wire)
        else:
            h.merge(LogLinearHistogram.from_wire(wire))


def _merge_totals(into: dict[SeriesKey, LogLinearHistogram], raw: bytes) -> bool:
    """Merge one worker's totals; False when it has not flushed for an hour (stale)."""
    data = orjson.loads(raw)
    if time.time() - float(data.get("t", 0)) > _FLEET_STALE_S:
        return False
    _merge_blob(into, data.get("s", []))
    return True
