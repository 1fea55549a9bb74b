"""The bundled Django shop, end to end through real uvicorn, on SQLite and on PostgreSQL.

The shared flows (`tests/shopflows.py`) run against it exactly as against the FastAPI shop;
the tests here add what is Django's own: the admin, migrations on first start, the resolver's
route templates and the query figures.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import ROOT
from tests.shopflows import Shop, ShopFlows, postgres_database, running_shop, wait_for

SPEC = "examples.django_shop.asgi:application"


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def shop(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Shop]:
    folder: Path = tmp_path_factory.mktemp(f"django-shop-{request.param}")
    if request.param == "sqlite":
        with running_shop(SPEC, folder, None) as shop:
            yield shop
    else:
        with postgres_database() as url, running_shop(SPEC, folder, url) as shop:
            yield shop


def manage(shop: Shop, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    """Run a Django management command with the shop's own environment."""
    full = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "DJANGO_SETTINGS_MODULE": "examples.django_shop.settings",
        **shop.env,
        **env,
    }
    return subprocess.run(
        [sys.executable, "-m", "django", *args],
        env=full,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )


class TestDjangoShop(ShopFlows):
    def test_a_staff_edit_in_the_django_admin_invalidates_the_cache(self, shop: Shop) -> None:
        """A product saved through the admin's change form is served fresh, not from the cache."""
        username, password = f"staff{uuid.uuid4().hex[:8]}", uuid.uuid4().hex
        manage(
            shop,
            "createsuperuser",
            "--noinput",
            DJANGO_SUPERUSER_USERNAME=username,
            DJANGO_SUPERUSER_EMAIL=f"{username}@example.com",
            DJANGO_SUPERUSER_PASSWORD=password,
        )
        with shop.client() as c:
            product = c.get("/products/88").json()
            assert c.get("/products/88").headers["x-cache"] == "HIT"
            page = c.get("/admin/login/", headers={"Accept": "text/html"})
            assert page.status_code == 200
            logged_in = c.post(
                "/admin/login/",
                data={
                    "username": username,
                    "password": password,
                    "csrfmiddlewaretoken": _csrf(page.text),
                    "next": "/admin/",
                },
                headers={"Accept": "text/html"},
            )
            assert logged_in.status_code == 302, logged_in.text
            change = f"/admin/shop/product/{product['id']}/change/"
            form = c.get(change, headers={"Accept": "text/html"})
            assert form.status_code == 200
            saved = c.post(
                change,
                data={
                    "csrfmiddlewaretoken": _csrf(form.text),
                    "sku": product["sku"],
                    "name": product["name"] + " (edited)",
                    "category": product["category"],
                    "price_cents": "1234",
                    "stock": str(product["stock"]),
                    "description": product["description"],
                    "_save": "Save",
                },
                headers={"Accept": "text/html"},
            )
            assert saved.status_code == 302, saved.text
            fresh = c.get("/products/88")
        assert fresh.json()["price_cents"] == 1234
        assert fresh.json()["name"].endswith("(edited)")
        assert fresh.headers["x-cache"] != "HIT"

    def test_the_admin_login_page_is_html_and_staff_only(self, shop: Shop) -> None:
        """The admin serves its own HTML to browsers and sends strangers to its login page."""
        with shop.client() as c:
            page = c.get("/admin/login/", headers={"Accept": "text/html"})
            css = c.get("/static/admin/css/base.css")
            outsider = c.get("/admin/shop/order/", headers={"Accept": "text/html"})
        assert page.headers["content-type"].startswith("text/html")
        assert css.status_code == 200
        assert outsider.status_code == 302
        assert outsider.headers["location"].startswith("/admin/login/")

    def test_the_admin_login_form_is_rate_limited(self, shop: Shop) -> None:
        """Password guesses at the admin's login form meet the same kind of limit as /login."""
        with shop.client() as c:
            answers = [
                c.post("/admin/login/", data={"username": "x", "password": "guess"}).status_code
                for _ in range(12)
            ]
            page = c.get("/admin/login/", headers={"Accept": "text/html"})
        assert answers[-1] == 429, answers
        assert 429 not in answers[:10]
        assert page.status_code == 200  # GETs of the form itself are not counted

    def test_routes_and_queries_are_named_by_template(self, shop: Shop) -> None:
        """The shop's figures use the resolver's templates and literal-free query fingerprints."""
        _, token = _signup(shop)
        with shop.client(token=token) as c:
            c.get("/products/19")
            c.get("/products/20")
            c.get("/cart")
            metrics = c.get("/metrics").text
        routes, statements = set(), set()
        for family in text_string_to_metric_families(metrics):
            for sample in family.samples:
                if sample.name == "launchready_http_request_duration_seconds_count":
                    routes.add(sample.labels["route"])
                elif sample.name == "launchready_db_query_duration_seconds_count":
                    statements.add(sample.labels["statement"])
        assert {"/products/{id}", "/cart"} <= routes
        assert not [r for r in routes if re.search(r"/\d", r)]
        assert any('FROM "shop_cartitem"' in s for s in statements), statements
        assert not [s for s in statements if "@example.com" in s]


def _signup(shop: Shop) -> tuple[str, str]:
    from tests.shopflows import signup

    return signup(shop)


def _csrf(html: str) -> str:
    found = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', html)
    assert found, "no CSRF token in the page"
    return found.group(1)


def test_two_processes_starting_together_migrate_and_seed_once(tmp_path: Path) -> None:
    """Two processes importing the shop at once on a fresh SQLite file both start; one seeds."""
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "SHOP_DATA_DIR": str(tmp_path),
        "SHOP_ADMIN_TOKEN": "adm_" + uuid.uuid4().hex,
        "SHOP_DEV_MODE": "1",
        "PAYMENT_URL": "http://127.0.0.1:9",
        "LAUNCHREADY_ACCESS_LOG": "false",
    }
    code = (
        "import examples.django_shop.asgi as a; "
        "from examples.django_shop.shop.models import Product; "
        "print('seeded' if a._prepared.seeded else 'found')"
    )
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", code],
            env=env,
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    outputs = [p.communicate(timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outputs
    verdicts = sorted(out.strip().splitlines()[-1] for out, _ in outputs)
    assert verdicts == ["found", "seeded"], outputs
    count = subprocess.run(
        [
            sys.executable,
            "-c",
            "import os; os.environ['DJANGO_SETTINGS_MODULE'] = 'examples.django_shop.settings'; "
            "import django; django.setup(); "
            "from examples.django_shop.shop.models import Product; print(Product.objects.count())",
        ],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert count.stdout.strip() == "240"


def test_the_shop_starts_with_its_own_fake_providers(tmp_path: Path, serve: object) -> None:
    """In development mode, with no PAYMENT_URL, the shop runs the fake providers itself and
    can take an order."""
    server = serve(  # type: ignore[operator]
        SPEC,
        {
            "SHOP_DATA_DIR": str(tmp_path),
            "SHOP_ADMIN_TOKEN": "adm_" + uuid.uuid4().hex,
            "SHOP_DEV_MODE": "1",
        },
        ready="/readyz",
    )
    with httpx.Client(base_url=server.url, timeout=20) as c:
        email = f"solo-{uuid.uuid4().hex[:8]}@example.com"
        token = c.post("/signup", json={"email": email, "password": "long enough pw"}).json()[
            "token"
        ]
        auth = {"Authorization": f"Bearer {token}"}
        assert c.post("/cart/items", json={"product_id": 1, "quantity": 1}, headers=auth).is_success
        order = c.post("/checkout", headers=auth).json()
        paid = wait_for(
            lambda: c.get(f"/orders/{order['order_id']}", headers=auth).json()["status"] == "paid"
        )
    assert paid
    assert any(line.get("event") == "shop.fake_providers" for line in server.log_lines())
