"""A small FastAPI app wrapped by LaunchReady, configured from LAUNCHREADY_* variables."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator

from fastapi import FastAPI, Request
from fastapi.responses import StreamingResponse

from launchready_sdk import LaunchReady, get_logger

api = FastAPI()
log = get_logger("tests.basic")
stdlib_log = logging.getLogger("tests.basic.stdlib")


@api.get("/")
async def home() -> dict[str, str]:
    return {"hello": "world"}


@api.get("/items/{item_id}")
async def item(item_id: int) -> dict[str, int]:
    log.info("item.read", item_id=item_id)
    return {"id": item_id}


@api.post("/login")
async def login(body: dict[str, str]) -> dict[str, bool]:
    log.info("login.attempt", password=body.get("password"), note=body.get("note"))
    stdlib_log.warning("stdlib login line token=%s", body.get("password"))
    return {"ok": True}


@api.get("/sync")
def sync_view() -> dict[str, str]:
    log.info("sync.view")
    stdlib_log.info("sync stdlib line")
    return {"sync": "yes"}


@api.get("/slow")
async def slow() -> dict[str, str]:
    log.info("slow.start")
    await asyncio.sleep(0.05)
    log.info("slow.end")
    return {"slow": "yes"}


@api.get("/boom")
async def boom() -> dict[str, str]:
    raise RuntimeError("database password=hunter2 exploded")


@api.get("/stream")
async def stream() -> StreamingResponse:
    async def chunks() -> AsyncIterator[bytes]:
        for i in range(5):
            yield f"chunk{i}\n".encode()

    return StreamingResponse(chunks(), media_type="text/plain")


@api.post("/echo-body")
async def echo_body(request: Request) -> dict[str, int]:
    return {"bytes": len(await request.body())}


lr = LaunchReady()
app = lr.wrap(api)
