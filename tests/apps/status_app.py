"""A FastAPI app with the status page on (settings from `LAUNCHREADY_*`), and routes that fail
in the ways the error tracker must survive.

`STATUS_SENTRY_DSN` initialises `sentry_sdk` with that DSN before the SDK is built (as a user
would), with local variables on, to show they never leave.
"""

from __future__ import annotations

import asyncio
import os
from typing import Any

from fastapi import FastAPI

if os.environ.get("STATUS_SENTRY_DSN"):
    import sentry_sdk

    # `STATUS_SENTRY_OWN=0`: none of Sentry's own integrations, so only the hand-off reports.
    own = os.environ.get("STATUS_SENTRY_OWN", "1") == "1"
    sentry_sdk.init(
        dsn=os.environ["STATUS_SENTRY_DSN"],
        data_collection={"stack_frame_variables": True},
        default_integrations=own,
        auto_enabling_integrations=own,
    )

from launchready_sdk import LaunchReady

SECRET = "sk_live_" + "4eC39HqLyjWDarjtT1zdp7dc"  # a Stripe-shaped secret key


class UnprintableError(Exception):
    def __str__(self) -> str:
        raise RuntimeError("no message for you")


def build() -> Any:
    api = FastAPI()

    @api.get("/products/{product_id}")
    async def product(product_id: int, q: str = "") -> dict[str, int]:
        return {"id": product_id}

    @api.get("/slow/{ms}")
    async def slow(ms: int) -> dict[str, int]:
        await asyncio.sleep(ms / 1000)
        return {"slept": ms}

    @api.get("/boom/secret")
    async def boom_secret() -> None:
        charge_with = SECRET  # held in a local variable: must never be shown
        raise RuntimeError(f"payment failed for {charge_with}: password=hunter2-{len(charge_with)}")

    @api.get("/boom/huge")
    async def boom_huge() -> None:
        raise ValueError("x" * 5_000_000 + " password=hunter2")

    @api.get("/boom/bytes")
    async def boom_bytes() -> None:
        raise ValueError(b"\xff\xfe\x00 raw bytes", "lone \udcff surrogate \x00\x1b[31m")

    @api.get("/boom/unprintable")
    async def boom_unprintable() -> None:
        raise UnprintableError()

    @api.get("/boom/recursion")
    async def boom_recursion() -> None:
        def down(n: int) -> int:
            return down(n + 1) + 1

        down(0)

    @api.get("/boom/chained")
    async def boom_chained() -> None:
        try:
            {}["missing"]
        except KeyError as exc:
            raise LookupError("order lookup failed") from exc

    @api.get("/boom/type/{n}")
    async def boom_type(n: int) -> None:
        raise type(f"GeneratedError{n}", (Exception,), {})(f"generated {n}")

    return api


async def always_ready() -> None:
    """A readiness check that passes."""


lr = LaunchReady()
lr.add_health_check("app", always_ready)
app = lr.wrap(build())
