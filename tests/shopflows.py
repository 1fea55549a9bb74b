"""End-to-end flows shared by the bundled shops' tests (FastAPI and Django).

Each shop's test module makes a `shop` fixture (a real uvicorn server, SQLite or PostgreSQL,
with the fake providers in a server of their own so a test can make them hang) and subclasses
`ShopFlows`, whose test methods then run against it. The HTTP contract is the one in
`examples/README.md`.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from examples.shopcore import DEMO_EMAIL, sign_webhook
from examples.shopinput import MAX_LINE_QUANTITY, MAX_ORDER_TOTAL_CENTS, MAX_PRICE_CENTS
from tests.conftest import Server

ADMIN_TOKEN = "adm_test_" + uuid.uuid4().hex
WEBHOOK_SECRET = "whsec_test_" + uuid.uuid4().hex
DEMO_PASSWORD = "demo-" + uuid.uuid4().hex
_addresses = itertools.count(1)


def new_ip() -> str:
    """A client address of its own: one test's per-client rate limits never touch another's."""
    n = next(_addresses)
    return f"198.18.{n // 250}.{n % 250 + 1}"


@dataclass
class Shop:
    url: str
    server: Server
    providers: Server
    env: dict[str, str]  # what the shop was started with: production-like, no development mode
    headers: dict[str, str] = field(default_factory=dict)  # sent by every client (a proxy's)

    def client(self, ip: str | None = None, token: str | None = None) -> httpx.Client:
        headers = {**self.headers, "X-Forwarded-For": ip or new_ip()}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        return httpx.Client(base_url=self.url, headers=headers, timeout=20.0)

    def admin(self) -> httpx.Client:
        return self.client(token=ADMIN_TOKEN)

    def control(self, **behaviour: Any) -> None:
        httpx.post(self.providers.url + "/_control", json=behaviour, timeout=5).raise_for_status()

    def emails(self, to: str) -> list[dict[str, Any]]:
        response = httpx.get(self.providers.url + "/email/messages", params={"to": to}, timeout=5)
        items: list[dict[str, Any]] = response.json()["items"]
        return items

    def access_lines(self) -> list[dict[str, Any]]:
        return [r for r in self.server.log_lines() if r.get("logger") == "launchready.access"]


@contextlib.contextmanager
def postgres_database() -> Iterator[str]:
    """A fresh database on the local PostgreSQL, dropped afterwards; yields its URL."""
    name = f"lrshop_{uuid.uuid4().hex[:12]}"
    subprocess.run(["createdb", "-h", "127.0.0.1", name], check=True, capture_output=True)
    try:
        yield f"postgresql://127.0.0.1:5432/{name}"
    finally:
        subprocess.run(
            ["dropdb", "-h", "127.0.0.1", "--force", "--if-exists", name],
            check=False,
            capture_output=True,
        )


@contextlib.contextmanager
def running_shop(
    spec: str,
    folder: Path,
    database_url: str | None,
    extra_env: dict[str, str] | None = None,
    server: type[Server] = Server,
) -> Iterator[Shop]:
    """The fake providers and the shop `spec`, each under its own server (uvicorn unless
    `server` says otherwise, for the shop), on loopback.

    The shop runs as in production: its own secrets and a payment URL, no development mode.
    `extra_env` adds to its environment (a status token, a public host, staff networks).
    """
    folder.mkdir(parents=True, exist_ok=True)
    provider_env = {"SHOP_WEBHOOK_SECRET": WEBHOOK_SECRET, "PROVIDER_WEBHOOK_DELAY_MS": "20"}
    providers = Server("examples.providers.app:app", provider_env, folder / "providers.log")
    shop_server: Server | None = None
    try:
        providers.wait_ready()
        env = {
            "SHOP_DATA_DIR": str(folder),
            "SHOP_ADMIN_TOKEN": ADMIN_TOKEN,
            "SHOP_SECRET_KEY": "test-secret-" + uuid.uuid4().hex,
            "SHOP_WEBHOOK_SECRET": WEBHOOK_SECRET,
            "SHOP_DEMO_PASSWORD": DEMO_PASSWORD,
            "SHOP_DEV_MODE": "0",
            "PAYMENT_URL": providers.url,
            "EMAIL_URL": providers.url,
            "LAUNCHREADY_TRUSTED_PROXIES": "127.0.0.1/32",
            "LAUNCHREADY_OUTBOUND_TIMEOUT_S": "1",
            "LAUNCHREADY_OUTBOUND_DEADLINE_S": "2",
        }
        if database_url:
            env["DATABASE_URL"] = database_url
        env.update(extra_env or {})
        shop_server = server(spec, env, folder / "shop.log")
        shop_server.wait_ready("/readyz", timeout_s=60)
        yield Shop(shop_server.url, shop_server, providers, env)
    finally:
        if shop_server is not None:
            shop_server.stop()
        providers.stop()


def assert_problem(response: httpx.Response, status: int | tuple[int, ...]) -> dict[str, Any]:
    """A problem+json answer with the expected status, carrying the response's request id."""
    wanted = (status,) if isinstance(status, int) else status
    assert response.status_code in wanted, (response.status_code, response.text)
    assert response.headers["content-type"].startswith("application/problem+json"), response.text
    body: dict[str, Any] = response.json()
    assert body["status"] == response.status_code
    assert body["request_id"] == response.headers["x-request-id"]
    return body


def checkout(shop: Shop, *lines: tuple[int, int]) -> tuple[str, dict[str, Any]]:
    """A new customer's order of `lines`, its webhook held back: (email, the checkout's body)."""
    shop.control(webhook_delay_ms=600_000)  # the provider's own delivery stays out of the way
    try:
        email, token = signup(shop)
        with shop.client(token=token) as c:
            fill_cart(c, *lines)
            placed = c.post("/checkout")
        assert placed.status_code == 201, placed.text
        return email, placed.json()
    finally:
        shop.control(webhook_delay_ms=20)


def signup(shop: Shop, ip: str | None = None) -> tuple[str, str]:
    """A new customer: (email, token)."""
    email = f"buyer-{uuid.uuid4().hex[:10]}@example.com"
    with shop.client(ip) as c:
        response = c.post("/signup", json={"email": email, "password": "correct horse battery"})
    assert response.status_code == 201, response.text
    return email, response.json()["token"]


def fill_cart(c: httpx.Client, *lines: tuple[int, int]) -> dict[str, Any]:
    cart: dict[str, Any] = {}
    for product_id, quantity in lines:
        response = c.post("/cart/items", json={"product_id": product_id, "quantity": quantity})
        assert response.status_code == 201, response.text
        cart = response.json()
    return cart


def orders_of(shop: Shop, email: str) -> list[dict[str, Any]]:
    with shop.admin() as c:
        response = c.get("/admin/orders", params={"limit": 500})
    assert response.status_code == 200, response.text
    return [o for o in response.json()["items"] if o["user_email"] == email]


def wait_for(condition: Any, timeout_s: float = 10.0) -> Any:
    deadline = time.monotonic() + timeout_s
    while True:
        value = condition()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(0.05)


def signed_event(
    order: dict[str, Any], event_id: str | None = None, *, age_s: int = 0, **data: Any
) -> tuple[bytes, str]:
    """A signed charge.succeeded event for a checkout's `order` (its charge, amount and
    currency unless `data` says otherwise; a value of None leaves the field out)."""
    fields = {
        "charge_id": order["charge_id"],
        "order_id": order["order_id"],
        "amount_cents": order["total_cents"],
        "currency": "usd",
        **data,
    }
    event = {
        "id": event_id or "evt_" + uuid.uuid4().hex,
        "type": "charge.succeeded",
        "data": {k: v for k, v in fields.items() if v is not None},
    }
    raw = json.dumps(event).encode()
    return raw, sign_webhook(WEBHOOK_SECRET, raw, int(time.time()) - age_s)


def order_status(shop: Shop, email: str) -> str:
    status: str = orders_of(shop, email)[0]["status"]
    return status


SECURITY_HEADERS = {
    "x-content-type-options": "nosniff",
    "x-frame-options": "DENY",
    "referrer-policy": "strict-origin-when-cross-origin",
    "cross-origin-opener-policy": "same-origin-allow-popups",
}


def assert_security_headers(response: httpx.Response, *, hsts: bool = False) -> None:
    """The SDK's security headers, each once; HSTS exactly when the request was HTTPS."""
    for name, value in SECURITY_HEADERS.items():
        assert response.headers.get_list(name) == [value], (name, response.headers)
    assert response.headers["content-security-policy"].startswith("default-src 'self'")
    assert "camera=()" in response.headers["permissions-policy"]
    assert ("strict-transport-security" in response.headers) is hsts


class ShopFlows:
    """The flows every bundled shop must pass. Subclasses provide the `shop` fixture."""

    def test_every_answer_carries_the_security_headers(self, shop: Shop) -> None:
        """The shop's pages, its errors, the SDK's 429 and cache hits carry the headers; no
        HSTS over plain HTTP."""
        with shop.client() as c:
            answers = [c.get("/products/3"), c.get("/products/3"), c.get("/products/99999")]
            answers += [c.get("/cart"), c.post("/signup", content=b"{")]
        with shop.client() as c:
            flood = [c.post("/password-reset", json={"email": "a@example.com"}) for _ in range(8)]
        assert answers[1].headers["x-cache"] == "HIT"
        assert [r.status_code for r in answers] == [200, 200, 404, 401, 422]
        assert flood[-1].status_code == 429
        for response in (*answers, flood[-1]):
            assert_security_headers(response)

    def test_browse_cart_checkout_webhook_paid_email(self, shop: Shop) -> None:
        with shop.client() as c:
            home = c.get("/")
            assert home.status_code == 200
            assert len(home.json()["featured"]) == 12
            page = c.get("/products", params={"category": "books", "page": 1, "per_page": 5})
            assert page.json()["total"] == 30
            assert [p["category"] for p in page.json()["items"]] == ["books"] * 5
            product = c.get("/products/42").json()
            assert product["sku"] == "SKU-0042"
        email, token = signup(shop)
        with shop.client(token=token) as c:
            cart = fill_cart(c, (42, 2), (7, 1), (42, 1))
            assert {(i["product_id"], i["quantity"]) for i in cart["items"]} == {(42, 3), (7, 1)}
            assert cart == c.get("/cart").json()
            placed = c.post("/checkout", headers={"Idempotency-Key": uuid.uuid4().hex})
            assert placed.status_code == 201, placed.text
            order = placed.json()
            assert order["status"] == "awaiting_payment"
            assert order["total_cents"] == cart["total_cents"]
            assert c.get("/cart").json()["items"] == []
            # The provider sends its signed webhook; the order is paid and confirmed by email.
            paid = wait_for(
                lambda: c.get(f"/orders/{order['order_id']}").json()["status"] == "paid"
            )
            assert paid
        confirmations = wait_for(lambda: shop.emails(email))
        assert [m["subject"] for m in confirmations] == [f"Order {order['order_id']} confirmed"]
        assert orders_of(shop, email)[0]["status"] == "paid"

    def test_a_retried_checkout_makes_one_order(self, shop: Shop) -> None:
        email, token = signup(shop)
        key = uuid.uuid4().hex
        with shop.client(token=token) as c:
            fill_cart(c, (3, 1))
            first = c.post("/checkout", headers={"Idempotency-Key": key})
            again = c.post("/checkout", headers={"Idempotency-Key": key})
        assert first.status_code == again.status_code == 201
        assert again.headers["idempotent-replayed"] == "true"
        assert again.json() == first.json()
        assert len(orders_of(shop, email)) == 1

    def test_concurrent_checkouts_of_one_cart_make_one_order(self, shop: Shop) -> None:
        """Two checkouts at once, with one key or with none: one order, never two."""
        for headers in ({"Idempotency-Key": uuid.uuid4().hex}, {}):
            email, token = signup(shop)
            with shop.client(token=token) as c:
                fill_cart(c, (21, 2), (22, 1))

            async def both(token: str = token, headers: dict[str, str] = headers) -> list[int]:
                h = {"Authorization": f"Bearer {token}", "X-Forwarded-For": new_ip(), **headers}
                async with httpx.AsyncClient(base_url=shop.url, timeout=30) as client:
                    answers = await asyncio.gather(
                        client.post("/checkout", headers=h), client.post("/checkout", headers=h)
                    )
                for r in answers:
                    if r.status_code != 201:
                        assert_problem(r, 409)
                return sorted(r.status_code for r in answers)

            statuses = asyncio.run(both())
            assert statuses[0] == 201, statuses
            assert len(orders_of(shop, email)) == 1
            with shop.client(token=token) as c:
                assert c.get("/cart").json()["items"] == []

    def test_concurrent_duplicate_webhooks_pay_the_order_once(self, shop: Shop) -> None:
        email, order = checkout(shop, (11, 1))
        raw, signature = signed_event(order)

        async def deliver_all() -> list[httpx.Response]:
            headers = {"Payment-Signature": signature, "Content-Type": "application/json"}
            async with httpx.AsyncClient(base_url=shop.url, timeout=30) as client:
                return await asyncio.gather(
                    *(
                        client.post(
                            "/webhooks/payment",
                            content=raw,
                            headers={**headers, "X-Forwarded-For": new_ip()},
                        )
                        for _ in range(100)
                    )
                )

        answers = asyncio.run(deliver_all())
        statuses = sorted(r.json()["status"] for r in answers)
        assert statuses == ["duplicate"] * 99 + ["processed"], statuses
        assert orders_of(shop, email)[0]["status"] == "paid"
        assert len(wait_for(lambda: shop.emails(email))) == 1
        time.sleep(0.3)  # a second confirmation, if one were coming, would have arrived
        assert len(shop.emails(email)) == 1

    def test_a_hanging_payment_provider_fails_checkout_cleanly(self, shop: Shop) -> None:
        email, token = signup(shop)
        shop.control(hang=True)
        try:
            with shop.client(token=token) as c:
                cart = fill_cart(c, (5, 2))
                started = time.monotonic()
                response = c.post("/checkout", headers={"Idempotency-Key": uuid.uuid4().hex})
                elapsed = time.monotonic() - started
                body = assert_problem(response, (502, 504))
                assert "No order" in body["detail"]
                assert c.get("/cart").json() == cart  # the cart is kept for another try
        finally:
            shop.control(hang=False)
        assert elapsed < 10  # the outbound deadline is 2 s here; never a hang
        assert orders_of(shop, email) == []

    def test_a_login_flood_is_refused(self, shop: Shop) -> None:
        ip = new_ip()
        with shop.client(ip) as c:
            answers = [
                c.post("/login", json={"email": DEMO_EMAIL, "password": "wrong password"})
                for _ in range(14)
            ]
        statuses = [r.status_code for r in answers]
        assert set(statuses[:10]) == {401}, statuses
        refused = assert_problem(answers[-1], 429)
        assert refused["request_id"]
        assert int(answers[-1].headers["retry-after"]) >= 1
        with shop.client() as other:  # another client is unaffected
            ok = other.post("/login", json={"email": DEMO_EMAIL, "password": DEMO_PASSWORD})
        assert ok.status_code == 200
        assert ok.json()["token"]

    def test_an_admin_edit_invalidates_the_cached_product(self, shop: Shop) -> None:
        with shop.client() as c:
            c.get("/products/77")
            cached = c.get("/products/77")
            assert cached.headers["x-cache"] == "HIT"
            with shop.admin() as admin:
                edited = admin.patch("/admin/products/77", json={"price_cents": 4242})
            assert edited.status_code == 200, edited.text
            fresh = c.get("/products/77")
            assert fresh.json()["price_cents"] == 4242
            assert fresh.headers["x-cache"] != "HIT"

    def test_password_reset_answers_the_same_for_unknown_accounts(self, shop: Shop) -> None:
        email, _ = signup(shop)
        with shop.client() as c:
            known = c.post("/password-reset", json={"email": email})
            unknown = c.post("/password-reset", json={"email": "nobody@example.com"})
        assert known.status_code == unknown.status_code == 202
        assert known.json() == unknown.json()
        assert [m["subject"] for m in wait_for(lambda: shop.emails(email))] == [
            "Reset your password"
        ]
        assert shop.emails("nobody@example.com") == []

    @pytest.mark.parametrize(
        ("method", "path", "body", "status"),
        [
            ("POST", "/signup", b'{"email": "x@example.com", "password":', 422),
            ("POST", "/signup", b'{"email": 5, "password": ["a"]}', 422),
            ("POST", "/signup", b'{"email": "x@example.com"}', 422),
            ("POST", "/signup", b'{"email": "not-an-email", "password": "long enough"}', 422),
            ("POST", "/signup", b'["a list"]', 422),
            ("POST", "/login", b"", 422),
            ("POST", "/cart/items", b'{"product_id": 9999, "quantity": 1}', 404),
            ("POST", "/cart/items", b'{"product_id": 1, "quantity": -3}', 422),
            ("POST", "/cart/items", b'{"product_id": 1, "quantity": 0}', 422),
            ("POST", "/cart/items", b'{"product_id": "one", "quantity": 1}', 422),
            ("POST", "/cart/items", b"{not json", 422),
            ("GET", "/products/999999", None, 404),
            ("GET", "/products/abc", None, (404, 422)),
            ("GET", "/products?page=0", None, 422),
            ("GET", "/products?per_page=100000", None, 422),
            ("GET", "/orders/ord_doesnotexist", None, 404),
            ("PATCH", "/admin/products/1", b'{"price_cents": 100}', 401),
        ],
    )
    def test_bad_input_is_a_problem_not_a_500(
        self, shop: Shop, method: str, path: str, body: bytes | None, status: int | tuple[int, ...]
    ) -> None:
        _, token = signup(shop) if path.startswith(("/cart", "/orders")) else (None, None)
        with shop.client(token=token) as c:
            response = c.request(
                method, path, content=body, headers={"Content-Type": "application/json"}
            )
        assert_problem(response, status)

    def test_bad_webhooks_are_refused_and_change_nothing(self, shop: Shop) -> None:
        email, order = checkout(shop, (13, 1))
        raw, good = signed_event(order)
        stale_raw, stale = signed_event(order, age_s=3600)  # a replay from an hour ago
        forged = good.replace("v1=", "v1=0")
        cases = [
            (raw, {}),
            (raw, {"Payment-Signature": forged}),
            (raw, {"Payment-Signature": "t=abc,v1=zz"}),
            (raw, {"Payment-Signature": (good.split(",")[0] + ",v1=\u00e9").encode()}),
            (raw + b" ", {"Payment-Signature": good}),
            (stale_raw, {"Payment-Signature": stale}),
        ]
        with shop.client() as c:
            for content, headers in cases:
                response = c.post("/webhooks/payment", content=content, headers=headers)
                assert_problem(response, 400)
            bad_json = b"{not json"
            response = c.post(
                "/webhooks/payment",
                content=bad_json,
                headers={"Payment-Signature": sign_webhook(WEBHOOK_SECRET, bad_json)},
            )
            assert_problem(response, (400, 422))
        assert orders_of(shop, email)[0]["status"] == "awaiting_payment"
        with shop.client() as c:  # and the genuine event still works afterwards
            response = c.post("/webhooks/payment", content=raw, headers={"Payment-Signature": good})
        assert response.json() == {"status": "processed"}
        assert orders_of(shop, email)[0]["status"] == "paid"

    def test_an_empty_checkout_and_foreign_orders(self, shop: Shop) -> None:
        _, token = signup(shop)
        _, other = signup(shop)
        with shop.client(token=token) as c:
            assert_problem(c.post("/checkout"), 409)
            fill_cart(c, (2, 1))
            order_id = c.post("/checkout").json()["order_id"]
        with shop.client(token=other) as c:
            assert_problem(c.get(f"/orders/{order_id}"), 404)
        tokens = ["1.99999999999.forged", "1.2.\u00e9", "\u00b2.99999999999.x", "1..", "a.b.c"]
        with shop.client() as c:
            for token in tokens:  # as UTF-8 bytes: the server reads non-ASCII as latin-1
                headers = {"Authorization": b"Bearer " + token.encode()}
                assert_problem(c.get("/cart", headers=headers), 401)

    def test_health_metrics_and_no_500s(self, shop: Shop) -> None:
        with shop.client() as c:
            assert c.get("/healthz").status_code == 200
            assert c.get("/readyz").status_code == 200
            metrics = c.get("/metrics").text
        assert 'route="/products/{id}"' in metrics or 'route="/products/{' in metrics
        errors = [line for line in shop.access_lines() if line.get("status", 0) >= 500]
        expected = [line for line in errors if line.get("route") == "/checkout"]
        assert errors == expected, errors

    # --- what a founder who copies the shop must not inherit -----------------------------------

    def test_forged_or_mismatched_payment_events_leave_the_order_unpaid(self, shop: Shop) -> None:
        """A signed event whose amount, currency or charge id is not the order's is refused and
        changes nothing; the order's own event, even under a refused event's id, pays it."""
        email, order = checkout(shop, (14, 2))
        _, other = checkout(shop, (15, 1))
        event_id = "evt_" + uuid.uuid4().hex
        forged = [
            signed_event(order, event_id, amount_cents=1),
            signed_event(order, event_id, amount_cents=order["total_cents"] + 1),
            signed_event(order, event_id, charge_id=other["charge_id"]),
            signed_event(order, event_id, currency="eur"),
            signed_event(order, event_id, currency=None),
            signed_event(order, event_id, amount_cents=str(order["total_cents"])),
            signed_event(order, event_id, amount_cents=True),
        ]
        with shop.client() as c:
            for raw, signature in forged:
                response = c.post(
                    "/webhooks/payment", content=raw, headers={"Payment-Signature": signature}
                )
                assert_problem(response, 422)
            assert order_status(shop, email) == "awaiting_payment"
            raw, signature = signed_event(order, event_id)
            response = c.post(
                "/webhooks/payment", content=raw, headers={"Payment-Signature": signature}
            )
        assert response.json() == {"status": "processed"}
        assert order_status(shop, email) == "paid"

    def test_concurrent_adds_to_one_cart_line_lose_nothing(self, shop: Shop) -> None:
        """20 parallel adds of 3 to a line holding 1 leave 61, on every database."""
        _, token = signup(shop)
        with shop.client(token=token) as c:
            fill_cart(c, (60, 1))

        async def add_all() -> list[httpx.Response]:
            headers = {"Authorization": f"Bearer {token}", "X-Forwarded-For": new_ip()}
            body = {"product_id": 60, "quantity": 3}
            async with httpx.AsyncClient(base_url=shop.url, timeout=60) as client:
                return await asyncio.gather(
                    *(client.post("/cart/items", json=body, headers=headers) for _ in range(20))
                )

        answers = asyncio.run(add_all())
        assert [r.status_code for r in answers] == [201] * 20, [r.text for r in answers]
        with shop.client(token=token) as c:
            items = c.get("/cart").json()["items"]
        assert [(i["product_id"], i["quantity"]) for i in items] == [(60, 61)]

    def test_prices_quantities_and_totals_are_bounded(self, shop: Shop) -> None:
        """Out-of-range prices and stock are 422s; a cart over 2**31 cents checks out (64-bit
        money columns); a full line or an order over the maximum is a 422, never a 500."""
        with shop.admin() as admin:
            for change in (
                {"price_cents": 2**63},
                {"price_cents": 2**64 + 1},
                {"price_cents": MAX_PRICE_CENTS + 1},
                {"price_cents": -1},
                {"price_cents": 12.5},
                {"price_cents": True},
                {"price_cents": "100"},
                {"stock": 2**31},
                {"stock": -1},
            ):
                assert_problem(admin.patch("/admin/products/230", json=change), 422)
            assert admin.patch("/admin/products/231", json={"price_cents": 10**7}).is_success
            assert admin.patch(
                "/admin/products/232", json={"price_cents": MAX_PRICE_CENTS}
            ).is_success
        email, order = checkout(shop, (231, 100), (231, 100), (231, 100))
        assert order["total_cents"] == 3 * 10**9 > 2**31
        assert orders_of(shop, email)[0]["total_cents"] == 3 * 10**9
        _, token = signup(shop)
        with shop.client(token=token) as c:
            full = fill_cart(c, *[(232, 100)] * (MAX_LINE_QUANTITY // 100))
            assert full["total_cents"] == MAX_ORDER_TOTAL_CENTS
            assert_problem(c.post("/cart/items", json={"product_id": 232, "quantity": 1}), 422)
            fill_cart(c, (1, 1))
            too_large = c.post("/checkout")
            assert_problem(too_large, 422)
            cart = c.get("/cart").json()
        assert [(i["product_id"], i["quantity"]) for i in cart["items"]] == [(1, 1), (232, 1000)]

    @pytest.mark.parametrize(
        "variant",
        ["{}\n", "{}\r\n", " {}", "{}\t", "{}\x00", "{}\u2028", "{}\u0085", "\n{}", "{}\x0b"],
    )
    def test_an_email_with_a_line_break_is_not_a_second_account(
        self, shop: Shop, variant: str
    ) -> None:
        """`victim@x.io` plus a newline, a space or a control character is refused at sign-up,
        so it cannot become a second account beside the victim's."""
        email, _ = signup(shop)
        with shop.client() as c:
            response = c.post(
                "/signup", json={"email": variant.format(email), "password": "long enough pw"}
            )
        body = assert_problem(response, 422)
        assert body["errors"][0]["loc"] == ["body", "email"]

    @pytest.mark.parametrize(
        ("method", "path", "body"),
        [
            ("POST", "/signup", b'{"email": "n@example.com", "password": "x\\u0000long enough"}'),
            ("POST", "/signup", b'{"email": "n@x.io", "password": "12345678", "name": "\\ud800"}'),
            ("POST", "/login", b'{"email": "a\\u0000@example.com", "password": "long enough"}'),
            ("GET", "/products?category=%00", None),
            ("GET", "/products?page=%C2%B2", None),
            ("GET", "/products?page=99999999999999999999999", None),
            ("GET", "/products/%C2%B2", None),
            ("GET", "/admin/orders?status=%00", None),
        ],
    )  # fmt: skip
    def test_text_postgresql_cannot_store_is_a_422(
        self, shop: Shop, method: str, path: str, body: bytes | None
    ) -> None:
        """NUL characters, unpaired surrogates and non-ASCII digits are refused as bad input on
        both shops and both databases, never passed on to become a 500."""
        with shop.admin() as c:
            response = c.request(
                method, path, content=body, headers={"Content-Type": "application/json"}
            )
        assert_problem(response, 422)

    def test_the_admin_token_is_never_empty(self, shop: Shop) -> None:
        """An empty, blank or missing bearer token never reaches the admin routes."""
        for header in (
            "Bearer",
            "bearer",
            "",
            "Basic " + ADMIN_TOKEN,
            "Bearer " + ADMIN_TOKEN[:-1],
        ):
            with shop.client() as c:
                response = c.get("/admin/orders", headers={"Authorization": header})
            assert_problem(response, 401)
