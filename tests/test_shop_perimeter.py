"""Both bundled shops told their public host and staff networks, as a real shop runs: HTTPS
and canonical-host redirects, hosts refused, webhooks and checkout never redirected into
failure, admin routes hidden outside the staff network."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from examples.shopcore import ShopConfigError, perimeter_settings
from tests.shopflows import (
    Shop,
    assert_security_headers,
    fill_cart,
    orders_of,
    running_shop,
    signed_event,
    signup,
    wait_for,
)

PUBLIC = {
    "SHOP_PUBLIC_HOST": "www.shop.example",
    # The fake payment provider calls the webhook at the shop's own loopback address.
    "SHOP_ALLOWED_HOSTS": "127.0.0.1",
    "SHOP_ADMIN_ALLOW": "198.18.0.0/15",  # where the shop flows' clients come from
}
HTTPS = {"X-Forwarded-Proto": "https"}
PLAIN = {"X-Forwarded-Proto": "http"}
# What the shop's TLS proxy sends for a visitor of https://www.shop.example.
VISITOR = {"Host": "www.shop.example", **HTTPS}
OUTSIDER = "203.0.113.50"


@pytest.fixture(
    scope="module",
    params=["examples.fastapi_shop.app:app", "examples.django_shop.asgi:application"],
    ids=["fastapi", "django"],
)
def shop(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Shop]:
    folder = tmp_path_factory.mktemp("shop-perimeter")
    with running_shop(request.param, folder, None, PUBLIC) as running:
        running.headers = VISITOR
        yield running


def test_plain_http_goes_to_https_then_to_the_public_host(shop: Shop) -> None:
    """http://shop.example → https://shop.example → https://www.shop.example, query kept;
    the public host over HTTPS is served with HSTS."""
    with shop.client() as c:
        first = c.get("/products?category=books", headers={"Host": "shop.example", **PLAIN})
        second = c.get("/products?category=books", headers={"Host": "shop.example", **HTTPS})
        served = c.get("/products?category=books", headers={"Host": "www.shop.example", **HTTPS})
        refused = c.get("/products", headers={"Host": "evil.example", **HTTPS})
    assert first.status_code == 301
    assert first.headers["location"] == "https://shop.example/products?category=books"
    assert second.status_code == 301
    assert second.headers["location"] == "https://www.shop.example/products?category=books"
    assert served.status_code == 200
    assert served.json()["total"] == 30
    assert_security_headers(served, hsts=True)
    assert refused.status_code == 400
    assert refused.headers["content-type"] == "application/problem+json"
    for response in (first, second, refused):
        assert_security_headers(response, hsts=response is not first)


def test_checkout_over_plain_http_is_redirected_as_a_post(shop: Shop) -> None:
    """A POST over plain HTTP gets a 308, so a client that follows it posts again with its
    body; it never turns into a GET."""
    with shop.client() as c:
        response = c.post("/checkout", headers=PLAIN, json={})
    assert response.status_code == 308
    assert response.headers["location"] == "https://www.shop.example/checkout"


def test_the_payment_webhook_is_never_redirected(shop: Shop) -> None:
    """The provider's own webhook reaches the shop over plain HTTP at its loopback address and
    pays the order; a delivery to the apex host over HTTP is answered there, not redirected."""
    email, token = signup(shop)
    with shop.client(token=token) as c:
        fill_cart(c, (9, 1))
        placed = c.post("/checkout")
    assert placed.status_code == 201, placed.text
    assert wait_for(lambda: orders_of(shop, email)[0]["status"] == "paid")
    raw, signature = signed_event(placed.json())
    headers = {"Payment-Signature": signature, "Content-Type": "application/json"}
    with httpx.Client(base_url=shop.url, timeout=10) as c:
        apex = c.post("/webhooks/payment", content=raw, headers={**headers, "Host": "shop.example"})
    assert apex.status_code == 200, apex.text
    assert apex.json()["status"] in ("processed", "duplicate")
    assert "location" not in apex.headers


def test_admin_routes_only_from_the_staff_network(shop: Shop) -> None:
    """Staff reach the admin routes; from anywhere else they answer like a missing page,
    even with the admin token and a forged forwarding header."""
    with shop.admin() as staff:
        assert staff.get("/admin/orders", params={"limit": 1}).status_code == 200
    _, token = signup(shop)
    outsider = {**VISITOR, "X-Forwarded-For": OUTSIDER, "Authorization": "Bearer " + token}
    with httpx.Client(base_url=shop.url, timeout=10) as c:
        hidden = c.get("/admin/orders", headers=outsider)
        forged = c.get(
            "/admin/orders",
            headers={**outsider, "X-Forwarded-For": "198.18.0.9, " + OUTSIDER},
        )
        missing = c.get("/no-such-page", headers=outsider)
        django_admin = c.get("/admin/", headers=outsider)
    assert hidden.status_code == forged.status_code == missing.status_code == 404
    hidden_body, missing_body = hidden.json(), missing.json()
    assert hidden_body.pop("request_id") == hidden.headers["x-request-id"]
    assert missing_body.pop("request_id") == missing.headers["x-request-id"]
    assert hidden_body == missing_body
    assert django_admin.status_code == 404


def test_a_bad_public_host_stops_the_shop() -> None:
    """A public host that is not a host name is a configuration error naming the variable."""
    with pytest.raises(ShopConfigError, match="SHOP_PUBLIC_HOST"):
        perimeter_settings({"SHOP_PUBLIC_HOST": "https://www.shop.example/"})
    assert perimeter_settings({}) == {}
    assert perimeter_settings({"SHOP_PUBLIC_HOST": "shop.example."}) == {
        "canonical_host": "shop.example",
        "https_redirect": True,
        "allowed_hosts": ("shop.example", "www.shop.example"),
    }
