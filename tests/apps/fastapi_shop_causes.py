"""The bundled FastAPI shop with three injected bottlenecks: an N+1 route, a route that
blocks the event loop with `time.sleep`, and a 500 KB JSON route."""

from __future__ import annotations

import time
from typing import Any

from sqlalchemy import select

from examples.fastapi_shop.app import Product, Session, api, app
from tests.apps.causes import BLOCK_S, N_PLUS_ONE_PRODUCTS, big_payload

__all__ = ["app"]


@api.get("/causes/n1")
async def n_plus_one() -> dict[str, Any]:
    async with Session() as s:
        ids = list(await s.scalars(select(Product.id).limit(N_PLUS_ONE_PRODUCTS)))
        names = [(await s.get(Product, i)).name for i in ids]  # type: ignore[union-attr]
    return {"names": names}


@api.get("/causes/block")
async def block() -> dict[str, str]:
    time.sleep(BLOCK_S)  # noqa: ASYNC251 (deliberately blocking: the monitor must catch it)
    return {"status": "slept"}


@api.get("/causes/big")
async def big() -> dict[str, object]:
    return big_payload()
