from __future__ import annotations

from typing import Any

from django.apps import AppConfig


class ShopConfig(AppConfig):
    name = "examples.django_shop.shop"
    label = "shop"
    verbose_name = "Shop"
    default_auto_field = "django.db.models.AutoField"

    def ready(self) -> None:
        from django.db.backends.signals import connection_created

        connection_created.connect(_sqlite_pragmas, dispatch_uid="shop.sqlite_pragmas")


def _sqlite_pragmas(sender: Any, connection: Any, **_: Any) -> None:
    if connection.vendor == "sqlite":
        with connection.cursor() as cursor:
            # WAL lets the catalog be read while an order is written.
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=NORMAL")
