"""The app `bench_metrics.py --load` serves: `/ping` behind the SDK, its latency tracker
filled to the route cap (500 templates, each with GET and POST and four status classes)."""

from __future__ import annotations

import random

from starlette.applications import Starlette
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from launchready_sdk import LaunchReady, Settings


async def ping(request: object) -> PlainTextResponse:
    return PlainTextResponse("pong")


lr = LaunchReady(Settings(access_log=False, log_level="WARNING", rate_limits={}))
rnd = random.Random(7)
for r in range(250):
    for method in ("GET", "POST"):
        for status in (200, 302, 404, 503):
            for _ in range(60):
                lr.latency.observe(method, f"/api/v1/resource{r}/{{item_id}}", status,
                                   rnd.lognormvariate(-4, 1.2))  # fmt: skip
app = lr.wrap(Starlette(routes=[Route("/ping", ping)]))
