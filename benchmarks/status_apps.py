"""Benchmark apps for the status page: the same FastAPI app and SDK, with and without it.

`uvicorn benchmarks.status_apps:app` with `BENCH_CONFIG` set to `sdk` (the default stack, rate
limits off) or `sdk_status` (the same with `status_token` set: the status layer in the stack,
the slow-request comparison in the observer and the error hook). `GET /products` is uncached.
"""

from __future__ import annotations

import os
from typing import Any

from fastapi import FastAPI

CONFIGS = ("sdk", "sdk_status")
STATUS_TOKEN = "bench-" + "Zq3x7Lk9PwN2mB8vRt5YcHs4JdFg6Ae1Uo0"


def build_api() -> FastAPI:
    """The same trivial JSON route as `benchmarks/apps.py`."""
    api = FastAPI()

    @api.get("/products")
    async def products() -> dict[str, Any]:
        return {"items": [{"id": 1, "name": "mug", "price_cents": 1200}], "page": 1}

    return api


def build(config: str) -> Any:
    from launchready_sdk import LaunchReady, Settings

    if config not in CONFIGS:
        raise SystemExit(f"BENCH_CONFIG must be one of {CONFIGS}, got {config!r}")
    token = STATUS_TOKEN if config == "sdk_status" else None
    lr = LaunchReady(Settings(service_name="bench", rate_limits={}, status_token=token))
    return lr.wrap(build_api())


app = build(os.environ.get("BENCH_CONFIG", "sdk"))
