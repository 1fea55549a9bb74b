"""The injected causes the bench must name, shared by both shops' test variants: how many
statements an N+1 route runs, how long a blocking route sleeps, how big a large route is."""

from __future__ import annotations

N_PLUS_ONE_PRODUCTS = 30  # one statement for the list, then one per product
BLOCK_S = 0.25  # a `time.sleep` on the event loop
BIG_ITEMS = 2500  # about 500 KB of JSON


def big_payload() -> dict[str, object]:
    """About 500 KB of JSON."""
    return {"items": [{"id": i, "text": "x" * 190} for i in range(BIG_ITEMS)]}
