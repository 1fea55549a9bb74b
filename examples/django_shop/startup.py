"""First start: migrate, seed and find the providers, once per process, before serving.

Two processes starting at once (uvicorn workers, a test and a server) take turns: SQLite under
an exclusive lock on a file beside the database, PostgreSQL under an advisory lock, so only one
migrates and seeds and the other finds the work done.
"""

from __future__ import annotations

import contextlib
import fcntl
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from django.conf import settings
from django.core.management import call_command
from django.core.management.color import no_style
from django.db import connection, connections, transaction

from examples.shopcore import DEMO_EMAIL, hash_password, seed_products

_ADVISORY_KEY = 0x5_4C_52_53_48_4F_50  # "LRSHOP"


@dataclass
class Prepared:
    seeded: bool
    payment_url: str
    email_url: str
    fake_providers: bool


def prepare() -> Prepared:
    """Migrate and seed (in a thread of its own: uvicorn imports the app inside its event loop,
    where Django refuses database work), then start the fake providers if none are set."""
    result: list[bool] = []
    failure: list[BaseException] = []

    def work() -> None:
        try:
            result.append(migrate_and_seed())
        except BaseException as exc:
            failure.append(exc)
        finally:
            connections.close_all()

    thread = threading.Thread(target=work, name="shop-prepare")
    thread.start()
    thread.join()
    if failure:
        raise failure[0]
    payment_url, email_url, fake = _providers()
    from examples.django_shop.shop.services import providers

    providers.payment_url, providers.email_url = payment_url, email_url
    return Prepared(result[0], payment_url, email_url, fake)


def migrate_and_seed() -> bool:
    """Bring the schema up to date and seed an empty catalog. True if it seeded."""
    with _exclusive():
        call_command("migrate", interactive=False, verbosity=0)
        return seed(settings.SHOP.demo_password)


def seed(demo_password: str) -> bool:
    from examples.django_shop.shop.models import Customer, Product

    if Product.objects.exists():
        return False
    with transaction.atomic():
        Product.objects.bulk_create(Product(**p) for p in seed_products())
        Customer.objects.create(
            email=DEMO_EMAIL, password_hash=hash_password(demo_password), name="Demo"
        )
    # The seed wrote explicit ids: move PostgreSQL's sequence past them.
    statements = connection.ops.sequence_reset_sql(no_style(), [Product])
    if statements:
        with connection.cursor() as cursor:
            for sql in statements:
                cursor.execute(sql)
    return True


@contextlib.contextmanager
def _exclusive() -> Iterator[None]:
    db = settings.DATABASES["default"]
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_lock(%s)", [_ADVISORY_KEY])
            try:
                yield
            finally:
                cursor.execute("SELECT pg_advisory_unlock(%s)", [_ADVISORY_KEY])
        return
    name = str(db.get("NAME", ""))
    if connection.vendor != "sqlite" or not name or name == ":memory:":
        yield
        return
    Path(name).parent.mkdir(parents=True, exist_ok=True)
    with open(name + ".lock", "a+b") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _providers() -> tuple[str, str, bool]:
    shop = settings.SHOP
    if shop.payment_url is not None:
        return shop.payment_url, shop.email_url or shop.payment_url, False
    from examples.providers.background import start_in_thread

    url, server = start_in_thread()
    deadline = time.monotonic() + 10
    while not server.started:
        if time.monotonic() > deadline:
            raise RuntimeError(f"the fake providers did not start on {url}")
        time.sleep(0.02)
    return url, url, True


def report(prepared: Prepared) -> None:
    """Log what the first start did, and warn when the shop runs in development mode."""
    from launchready_sdk import get_logger

    log = get_logger("shop")
    if prepared.seeded:
        log.info("shop.seeded")
    if prepared.fake_providers:
        log.info("shop.fake_providers", url=prepared.payment_url)
    if settings.SHOP.using_dev_secrets or prepared.fake_providers:
        log.warning(
            "shop.dev_mode",
            hint="development mode: public secrets or the fake payment provider; "
            "set SHOP_SECRET_KEY, SHOP_WEBHOOK_SECRET, SHOP_DEMO_PASSWORD and PAYMENT_URL",
        )
