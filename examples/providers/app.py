"""Fake payment and email providers, for local runs, the bench and the tests.

One Starlette app plays both: the payment provider creates charges (the same `Idempotency-Key`
gives the same charge) and later POSTs a signed `charge.succeeded` webhook to the shop; the email
provider accepts messages and lists what it was sent. Latency, failure rate and a hang are set by
environment (`PROVIDER_LATENCY_MS`, `PROVIDER_FAILURE_RATE`, `PROVIDER_HANG`,
`PROVIDER_WEBHOOK_DELAY_MS`) or at run time with `POST /_control`, so a test can make a provider
slow, flaky or dead.

    uvicorn examples.providers.app:app --port 9100
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import secrets
from dataclasses import dataclass, field
from typing import Any

import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from examples.shopcore import DEV_WEBHOOK_SECRET, sign_webhook

MAX_RECORDS = 10_000


@dataclass
class Behaviour:
    latency_ms: float = field(default_factory=lambda: float(_env("PROVIDER_LATENCY_MS", "0")))
    failure_rate: float = field(default_factory=lambda: float(_env("PROVIDER_FAILURE_RATE", "0")))
    hang: bool = field(default_factory=lambda: _env("PROVIDER_HANG", "0") == "1")
    webhook_delay_ms: float = field(
        default_factory=lambda: float(_env("PROVIDER_WEBHOOK_DELAY_MS", "50"))
    )


def _env(name: str, default: str) -> str:
    return os.environ.get(name) or default


class Providers:
    def __init__(self) -> None:
        self.behaviour = Behaviour()
        self.webhook_secret = os.environ.get("SHOP_WEBHOOK_SECRET") or DEV_WEBHOOK_SECRET
        self.charges: dict[str, dict[str, Any]] = {}
        self.charge_by_key: dict[str, str] = {}
        self.messages: list[dict[str, Any]] = []
        self.webhooks_sent = 0
        self._tasks: set[asyncio.Task[None]] = set()

    async def misbehave(self, request: Request) -> Response | None:
        """Wait, hang or fail as the behaviour says; None means answer normally.

        A hang lasts until the caller gives up (disconnects) or the hang is switched off, so a
        server shutting down never waits on a request nobody is waiting for.
        """
        b = self.behaviour
        while b.hang:
            if await request.is_disconnected():
                return JSONResponse({"error": "client_gone"}, status_code=499)
            await asyncio.sleep(0.05)
        if b.latency_ms > 0:
            await asyncio.sleep(b.latency_ms / 1000)
        if b.failure_rate > 0 and random.random() < b.failure_rate:
            return JSONResponse({"error": "provider_unavailable"}, status_code=503)
        return None

    async def create_charge(self, request: Request) -> Response:
        body = await _json(request)  # read first: a hang then watches for the disconnect
        failed = await self.misbehave(request)
        if failed is not None:
            return failed
        if body is None or not isinstance(body.get("amount_cents"), int):
            return JSONResponse({"error": "invalid_request"}, status_code=400)
        key = request.headers.get("idempotency-key")
        if key and key in self.charge_by_key:
            return JSONResponse(self.charges[self.charge_by_key[key]], status_code=201)
        charge = {
            "id": "ch_" + secrets.token_hex(10),
            "status": "pending",
            "amount_cents": body["amount_cents"],
            "currency": body.get("currency", "usd"),
            "order_id": body.get("order_id"),
        }
        if len(self.charges) >= MAX_RECORDS:
            self.charges.pop(next(iter(self.charges)))
        self.charges[charge["id"]] = charge
        if key:
            self.charge_by_key[key] = charge["id"]
        webhook_url = body.get("webhook_url")
        if isinstance(webhook_url, str) and webhook_url.startswith(("http://", "https://")):
            task = asyncio.create_task(self._deliver(webhook_url, charge))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        return JSONResponse(charge, status_code=201)

    async def _deliver(self, url: str, charge: dict[str, Any]) -> None:
        await asyncio.sleep(self.behaviour.webhook_delay_ms / 1000)
        event = {
            "id": "evt_" + secrets.token_hex(10),
            "type": "charge.succeeded",
            "data": {
                "charge_id": charge["id"],
                "order_id": charge["order_id"],
                "amount_cents": charge["amount_cents"],
                "currency": charge["currency"],
            },
        }
        charge["status"] = "succeeded"
        raw = json.dumps(event).encode()
        headers = {
            "content-type": "application/json",
            "payment-signature": sign_webhook(self.webhook_secret, raw),
        }
        # A real provider retries a delivery that was not answered 2xx (the shop answers 409
        # while its checkout has not stored the charge id yet); five tries, a second apart.
        async with httpx.AsyncClient(timeout=5.0) as client:
            for _ in range(5):
                try:
                    response = await client.post(url, content=raw, headers=headers)
                    if response.is_success:
                        self.webhooks_sent += 1
                        return
                except httpx.HTTPError:
                    pass
                await asyncio.sleep(1.0)

    async def list_charges(self, request: Request) -> Response:
        return JSONResponse({"items": list(self.charges.values())})

    async def send_email(self, request: Request) -> Response:
        body = await _json(request)
        failed = await self.misbehave(request)
        if failed is not None:
            return failed
        if body is None or not isinstance(body.get("to"), str):
            return JSONResponse({"error": "invalid_request"}, status_code=400)
        message = {
            "id": "msg_" + secrets.token_hex(10),
            "to": body["to"],
            "subject": str(body.get("subject", "")),
            "text": str(body.get("text", "")),
        }
        if len(self.messages) >= MAX_RECORDS:
            del self.messages[0]
        self.messages.append(message)
        return JSONResponse({"id": message["id"]}, status_code=202)

    async def list_emails(self, request: Request) -> Response:
        to = request.query_params.get("to")
        items = [m for m in self.messages if to is None or m["to"] == to]
        return JSONResponse({"items": items})

    async def control(self, request: Request) -> Response:
        body = await _json(request) or {}
        b = self.behaviour
        b.latency_ms = float(body.get("latency_ms", b.latency_ms))
        b.failure_rate = float(body.get("failure_rate", b.failure_rate))
        b.hang = bool(body.get("hang", b.hang))
        b.webhook_delay_ms = float(body.get("webhook_delay_ms", b.webhook_delay_ms))
        return JSONResponse(vars(b))

    async def health(self, request: Request) -> Response:
        return JSONResponse({"status": "ok"})


async def _json(request: Request) -> dict[str, Any] | None:
    try:
        body = json.loads(await request.body())
    except ValueError:
        return None
    return body if isinstance(body, dict) else None


def create_app() -> Starlette:
    providers = Providers()
    app = Starlette(
        routes=[
            Route("/payments/charges", providers.create_charge, methods=["POST"]),
            Route("/payments/charges", providers.list_charges, methods=["GET"]),
            Route("/email/messages", providers.send_email, methods=["POST"]),
            Route("/email/messages", providers.list_emails, methods=["GET"]),
            Route("/_control", providers.control, methods=["POST"]),
            Route("/healthz", providers.health, methods=["GET"]),
        ]
    )
    app.state.providers = providers
    return app


app = create_app()
